-- Early stopping: trials may end `pruned`, and every stopping decision is a row.
--
-- SQLite cannot alter a CHECK constraint, and sqlx runs each migration in a
-- transaction, where `PRAGMA foreign_keys = OFF` is a no-op, so the usual
-- rebuild (copy, DROP, rename) would cascade into attempts/metrics. Instead
-- the constraint's text is edited in the schema, the procedure SQLite's ALTER
-- TABLE documentation gives for CHECK changes; `store::db::open` then bumps
-- the schema cookie and reconnects so every connection reads the new schema.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'CHECK (status IN (''queued'',''running'',''done'',''failed'',''interrupted''))',
                     'CHECK (status IN (''queued'',''running'',''done'',''failed'',''interrupted'',''pruned''))')
 WHERE type = 'table' AND name = 'trials';
PRAGMA writable_schema = OFF;

-- One row per stopping decision: which rule judged which trial at which
-- epoch, on what value, against what cutoff and how many records.
CREATE TABLE decisions (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    method      TEXT    NOT NULL,   -- asha, hyperband, median, patience
    rung        INTEGER,            -- asha/hyperband: rung index (0 = first)
    bracket     INTEGER,            -- asha/hyperband: bracket (asha: 0)
    metric      TEXT    NOT NULL,   -- val_accuracy or val_loss
    value       REAL    NOT NULL,   -- the trial's value at this epoch
    cutoff      REAL,               -- the value it had to reach
    compared    INTEGER NOT NULL,   -- records compared with (patience: epochs since the best)
    action      TEXT    NOT NULL CHECK (action IN ('continue','stop')),
    time        REAL    NOT NULL,
    PRIMARY KEY (trial_id, epoch, method)
);
