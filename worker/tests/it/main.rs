//! The worker's integration tests, one binary (one libtorch link instead of
//! one per file). Each module is one subject; they share `tests/common`.

#[path = "../common/mod.rs"]
mod common;

mod epoch_records;
mod exact_resume;
mod layer_decay;
mod optim_parity;
mod pth_hostile;
mod stdin_stop;
mod train_parity;
mod transfer;
