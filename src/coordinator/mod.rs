//! The coordinator: runs a validated `SweepPlan`. The dispatcher owns run
//! state and decides; `attempt` runs one attempt and reports; the launcher
//! owns processes and slots; progress draws. It writes only through the
//! store's recorder and never links libtorch.
pub mod attempt;
pub mod dispatcher;
pub mod launcher;
pub mod lock;
pub mod estimate;
pub mod progress;
pub mod proposer;
pub mod sampler;
pub use sweep_trialfiles::{precision, retention};
pub mod stopping;
#[cfg(test)]
mod tests;

pub use dispatcher::{Outcome, run};
use std::path::PathBuf;
use std::time::Duration;

pub struct RunOptions {
    pub results: PathBuf,
    pub retry_failed: bool,
    pub plain: bool,
    /// Grace period between SIGTERM and SIGKILL on Ctrl-C.
    pub grace: Duration,
}

/// Why a sweep run could not go on (trial failures are an `Outcome`, not this).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "sweep {sweep:?} is already running (coordinator pid {pid}); wait for it to finish, follow it with `sweep status --sweep {sweep}`, or stop it with Ctrl-C"
    )]
    AlreadyRunning { sweep: String, pid: String },
    #[error("{0}")]
    Store(String),
    /// `[resources]` asks for what this machine does not have (GPUs that
    /// are not there).
    #[error("{0}")]
    Resources(String),
    #[error("{0}")]
    Io(std::io::Error),
}
