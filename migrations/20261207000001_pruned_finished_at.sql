-- A pruned trial has ended: until this version `trials.finished_at` stayed
-- NULL for it (only its attempt had the time), so queries and timelines lost
-- it. New pruned trials get the time from the recorder; older ones get the end
-- of their last attempt.
UPDATE trials
SET finished_at = (SELECT MAX(a.finished_at) FROM attempts a WHERE a.trial_id = trials.id)
WHERE status = 'pruned' AND finished_at IS NULL;
