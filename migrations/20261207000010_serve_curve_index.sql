-- `sweep serve` reads every per-epoch value of a sweep's metric at once (the
-- learning curves of 10,000 trials): a covering index makes that one range
-- scan per trial instead of a table lookup per row. Partial: per-step rows
-- (the built-in worker's `train` split, a program's `step` records) are most
-- of the table and never read this way, so they stay out of it, and a step's
-- insert costs no more than before. serve opens the database read-only and
-- cannot create it; `sweep run` does, through this migration (a database
-- made before it is served correctly, only its first page load is slower).
CREATE INDEX IF NOT EXISTS metrics_epoch_values
    ON metrics (trial_id, split, name, epoch, value, time)
    WHERE split NOT IN ('train', 'step');
