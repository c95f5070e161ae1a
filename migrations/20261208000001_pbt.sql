-- Population-based training (`[stopping] method = "pbt"`): every `interval`
-- epochs a trial pauses (a `pause` decision, method `pbt`); when the whole
-- population has paused, each row becomes `promote` (it goes on as it is) or
-- `exploit` (it goes on from a better trial's checkpoint, its parameters
-- perturbed). The CHECK constraint is edited in the schema text, as in
-- 20261129000003_stopping.sql (`store::db::open` bumps the schema cookie).
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'CHECK (action IN (''continue'',''stop'',''pause'',''promote''))',
                     'CHECK (action IN (''continue'',''stop'',''pause'',''promote'',''exploit''))')
 WHERE type = 'table' AND name = 'decisions';
PRAGMA writable_schema = OFF;

-- One row per exploit: which trial copied which at which epoch, the values
-- that ranked them, and the parameters it trains with from then on
-- (`trials.params` keeps the ones it started with, which its id hashes).
CREATE TABLE lineage (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,   -- the epoch both had completed
    donor_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    value       REAL    NOT NULL,   -- the trial's metric at `epoch`
    donor_value REAL    NOT NULL,   -- the donor's
    params      TEXT    NOT NULL,   -- JSON: every parameter from here on
    changes     TEXT    NOT NULL,   -- JSON: {"lr": [donor's value, new value], ...}
    time        REAL    NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);
CREATE INDEX lineage_donor ON lineage (donor_id);
