-- The batch size an attempt really ran with: an `oom` failure is retried with
-- half the batch size (resources.oom_retry_halve_batch), and that change is
-- recorded here while the trial keeps its identity.
ALTER TABLE attempts ADD COLUMN batch_size INTEGER;
