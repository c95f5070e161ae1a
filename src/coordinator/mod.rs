//! The coordinator: runs a validated `SweepPlan`. The dispatcher owns run
//! state and decides; `attempt` runs one attempt and reports; the launcher
//! owns processes and slots; progress draws. It writes only through the
//! store's recorder and never links libtorch.
pub mod attempt;
pub mod dispatcher;
pub mod estimate;
pub mod launcher;
pub mod lock;
pub mod pbt;
pub mod program;
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
    /// A read or write of the database failed before or after the run.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The recorder could not commit while trials ran (a full disk, an I/O
    /// error): the workers were stopped, and the sweep resumes once there is room.
    #[error(
        "results can no longer be written to {}: {error}{}\n  every trial was stopped and is resumable; the database is intact up to the last committed write; free space and run the same command again to resume",
        db.display(),
        free.map(|f| format!(" ({} free on its filesystem)", crate::trialfiles::retention::human_bytes(f))).unwrap_or_default()
    )]
    WriteFailed {
        db: PathBuf,
        error: crate::store::recorder::WriteError,
        free: Option<u64>,
    },
    /// The sweep file was edited so that an earlier run's proposals no longer fit.
    #[error("{0}\n  restore the file's search space, or run the edited sweep under another name")]
    ProposalMismatch(#[from] proposer::ProposalMismatch),
    /// `[resources]` asks for what this machine does not have (GPUs that
    /// are not there).
    #[error("{0}")]
    Resources(String),
    #[error("{0}")]
    Io(std::io::Error),
}
