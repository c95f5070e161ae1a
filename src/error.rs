//! Every way a command can fail, and its exit code (docs/cli.md#exit-codes):
//! 0 ok, 1 some trials failed or the run broke, 2 bad input, 130 interrupted.
//! The code comes from the variant, never from the message text.
use crate::coordinator::RunError;
use crate::coordinator::launcher::local::WorkerNotFound;
use crate::spec::SpecError;
use crate::store::db::StoreError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sweep file is wrong (file:line:col).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The database cannot be opened or is not ours.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `sweep-worker` is not installed where we look.
    #[error(transparent)]
    WorkerNotFound(#[from] WorkerNotFound),
    /// The run could not go on.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A flag, a trial id, an image or a weights file is wrong.
    #[error("{0}")]
    BadInput(String),
    /// Something broke that the user did not cause.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn bad_input(m: impl std::fmt::Display) -> Self {
        Error::BadInput(m.to_string())
    }
    pub fn failed(m: impl std::fmt::Display) -> Self {
        Error::Failed(m.to_string())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec(_) | Error::Store(_) | Error::WorkerNotFound(_) | Error::BadInput(_) => {
                EXIT_BAD_INPUT
            }
            Error::Run(
                RunError::AlreadyRunning { .. }
                | RunError::Resources(_)
                | RunError::ProposalMismatch(_),
            ) => EXIT_BAD_INPUT,
            Error::Run(RunError::Database(_) | RunError::WriteFailed { .. } | RunError::Io(_))
            | Error::Failed(_) => EXIT_FAILED,
        }
    }
}

pub type CmdResult = Result<i32, Error>;
