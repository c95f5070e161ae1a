-- `[random] sampler = "tpe"`: every point of a sweep's search, in order, one
-- row each, written before its trials start. A resumed sweep reads them back
-- and continues the sequence instead of drawing new points.
CREATE TABLE proposals (
    sweep_id     INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    k            INTEGER NOT NULL,   -- 0-based position in the sweep's sequence
    sampler      TEXT    NOT NULL CHECK (sampler IN ('random','tpe')),
    budget       INTEGER,            -- tpe: the epoch whose validation results it modelled
    observations INTEGER NOT NULL,   -- tpe: how many results at that epoch (random: 0)
    params       TEXT    NOT NULL,   -- JSON object: parameter → proposed value
    coords       TEXT    NOT NULL,   -- JSON array: the point as the sampler sees it (choice index, value, integer)
    trial_ids    TEXT    NOT NULL,   -- JSON array: its trials (one per seed)
    time         REAL    NOT NULL,
    PRIMARY KEY (sweep_id, k)
);
