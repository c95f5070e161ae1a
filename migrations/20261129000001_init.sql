-- sweep's results store. Forward-only; one file per change.
-- Times are unix seconds (REAL). JSON columns hold serde_json text.

CREATE TABLE sweeps (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    file        TEXT    NOT NULL,
    toml        TEXT    NOT NULL,
    description TEXT,
    metric      TEXT    NOT NULL DEFAULT 'val_accuracy',
    dataset     TEXT    NOT NULL,
    dataset_hash TEXT,
    system_info TEXT    NOT NULL DEFAULT '{}',  -- JSON: sweep version, git commit, libtorch, cuda, gpus
    status      TEXT    NOT NULL DEFAULT 'running' CHECK (status IN ('running','done','failed','interrupted')),
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    coordinator_pid INTEGER,
    heartbeat_at REAL
);

CREATE TABLE trials (
    id          TEXT    PRIMARY KEY,            -- short hash of sweep + dataset + resolved config
    sweep_id    INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,               -- position in the plan
    params      TEXT    NOT NULL,               -- JSON of the resolved TrialConfig
    backbone    TEXT    NOT NULL,
    lr          REAL    NOT NULL,
    epochs      INTEGER NOT NULL,
    batch_size  INTEGER NOT NULL,
    image_size  INTEGER NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued','running','done','failed','interrupted')),
    device      TEXT,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    best_val_accuracy REAL,
    wall_s      REAL,
    images_per_s REAL,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL
);
CREATE INDEX trials_sweep ON trials(sweep_id, status);

CREATE TABLE attempts (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    pid         INTEGER,
    device      TEXT,
    started_at  REAL    NOT NULL,
    finished_at REAL,
    exit_code   INTEGER,
    signal      INTEGER,
    error_class TEXT,       -- oom, data, nan, config, interrupted, internal, timeout, crash, protocol
    message     TEXT,
    resumed_from_epoch INTEGER,
    PRIMARY KEY (trial_id, attempt)
);

-- One row per (trial, split, epoch, step, name): a resumed trial that
-- replays a step overwrites, never duplicates.
CREATE TABLE metrics (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    split       TEXT    NOT NULL,   -- train (every log_every batches), train_epoch, valid
    epoch       INTEGER NOT NULL,
    batch       INTEGER NOT NULL,   -- batch within the epoch (0 for per-epoch rows)
    step        INTEGER NOT NULL,   -- global step
    name        TEXT    NOT NULL,   -- loss, accuracy, lr, images_per_s
    value       REAL    NOT NULL,
    time        REAL    NOT NULL,
    UNIQUE (trial_id, split, epoch, step, name)
);

CREATE TABLE test_results (
    trial_id    TEXT    PRIMARY KEY REFERENCES trials(id) ON DELETE CASCADE,
    loss        REAL    NOT NULL,
    accuracy    REAL    NOT NULL,
    n           INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,   -- epoch of the best-validation checkpoint tested
    time        REAL    NOT NULL
);

CREATE TABLE class_accuracy (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    class       TEXT    NOT NULL,
    correct     INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    accuracy    REAL    NOT NULL,
    PRIMARY KEY (trial_id, class)
);

CREATE TABLE confusion (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    true_class  TEXT    NOT NULL,
    pred_class  TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (trial_id, true_class, pred_class)
);

CREATE TABLE misclassified (
    trial_id    TEXT    NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    file        TEXT    NOT NULL,
    true_class  TEXT    NOT NULL,
    pred_class  TEXT    NOT NULL,
    prob        REAL    NOT NULL,
    PRIMARY KEY (trial_id, file)
);

CREATE TABLE class_distribution (
    sweep_id    INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    split       TEXT    NOT NULL,
    class       TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, split, class)
);

CREATE VIEW trial_summary AS
SELECT t.id            AS trial,
       s.name          AS sweep,
       t.backbone, t.lr, t.epochs, t.batch_size, t.image_size, t.seed,
       t.status,
       t.epochs_done,
       t.best_val_accuracy AS val_accuracy,
       (SELECT m.value FROM metrics m WHERE m.trial_id = t.id AND m.split = 'valid' AND m.name = 'loss'
         ORDER BY m.epoch DESC LIMIT 1) AS val_loss,
       r.accuracy      AS test_accuracy,
       r.loss          AS test_loss,
       t.wall_s, t.images_per_s, t.device,
       (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id) AS attempts,
       t.params
FROM trials t
JOIN sweeps s ON s.id = t.sweep_id
LEFT JOIN test_results r ON r.trial_id = t.id;
