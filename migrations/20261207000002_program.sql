-- `[program]`: a user's own training program as the trial process.
-- sweeps.direction: how `[sweep] metric` ranks, 'max' or 'min' (NULL in
-- sweeps made before: val_accuracy is maximised, val_loss minimised).
-- sweeps.program: the JSON argv template of `[program] command`; NULL for the
-- built-in trainer (`sweep-worker`).
-- A program's records go into `metrics` as the built-in ones do, with the
-- names the program printed: split 'epoch' (a record with an `epoch` and no
-- `step`), 'step' (a record with a `step`; epoch 0 when it gave none) and
-- 'test' (its `test_*` fields, at the record's epoch). For a program's trial,
-- trials.backbone/lr/epochs/batch_size/image_size hold the parameter of that
-- name when it has one (else '' or 0); trials.params holds every parameter.
ALTER TABLE sweeps ADD COLUMN direction TEXT CHECK (direction IN ('max', 'min'));
ALTER TABLE sweeps ADD COLUMN program TEXT;
