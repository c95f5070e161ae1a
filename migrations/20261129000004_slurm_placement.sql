-- Where a Slurm attempt ran: the node, the GPU ids its job or step got
-- (SLURM_STEP_GPUS, else CUDA_VISIBLE_DEVICES) and its Slurm id ("JOBID" or
-- "JOBID.STEPID"). NULL for attempts of the local launcher. The new failure
-- classes `preempted` and `cancelled` need no change: attempts.error_class
-- has no CHECK constraint.
ALTER TABLE attempts ADD COLUMN node TEXT;
ALTER TABLE attempts ADD COLUMN gpus TEXT;
ALTER TABLE attempts ADD COLUMN slurm_job TEXT;
