-- Where an attempt's time went. `hello_at`: when the worker's `hello` arrived
-- (so `hello_at - started_at` is the worker's start-up: process start, loading
-- libtorch). `timings`: the worker's own measure of its phases, as JSON
-- seconds (`data_s`, `model_s`, `train_s`, `batch_wait_s`, `valid_s`,
-- `checkpoint_s`, `test_s`), from its `done` message. NULL for attempts that
-- never got that far and for workers that do not send them. `threads`: the
-- torch intra-op threads the worker said (in `hello`) it trains with.
ALTER TABLE attempts ADD COLUMN hello_at REAL;
ALTER TABLE attempts ADD COLUMN timings TEXT;
ALTER TABLE attempts ADD COLUMN threads INTEGER;
