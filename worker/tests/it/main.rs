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

/// Held by the tests that measure this process's peak RSS (`pth_hostile`)
/// and by the ones that grow it by gigabytes (the newer backbones'
/// parity, transfer, layer-decay and epoch tests): RSS is per process, so a
/// measurement beside a 2 GB model would count the model (seen in CI).
pub fn memory_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
