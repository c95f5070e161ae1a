//! The trial folder (`results/<sweep>/<trial>/`): the file names the worker
//! writes and the coordinator reads, removes (`[resources] keep`) or rewrites
//! (`keep_precision`). Defined once, here, beside the job that names the folder
//! (`WorkerJob::out_dir`).
use std::path::{Path, PathBuf};

/// The weights of the best epoch (by the sweep's `select` metric).
pub const BEST: &str = "best.safetensors";
/// The weights of the last finished epoch.
pub const LAST: &str = "last.safetensors";
/// Weights and optimizer state for a bit-exact resume.
pub const TRAIN_STATE: &str = "train_state.safetensors";
/// The resume point: epoch, best value, RNG state (JSON).
pub const STATE: &str = "state.json";
/// Every message the worker sent, replayed on resume.
pub const JOURNAL: &str = "journal.jsonl";

/// A `[program]` trial's parameters as a JSON object (`SWEEP_PARAMS`),
/// written before each attempt.
pub const PARAMS: &str = "params.json";

/// Files whose presence means a trial has run here and may resume from them.
pub const RESUME_FILES: [&str; 3] = [STATE, LAST, TRAIN_STATE];

/// The stderr of attempt `attempt` (1-based).
pub fn attempt_log(dir: &Path, attempt: u32) -> PathBuf {
    dir.join(format!("attempt-{attempt}.log"))
}
