//! Every way a command can fail, and its exit code (docs/cli.md#exit-codes):
//! 0 ok, 1 some trials failed or the machine failed (a database that is
//! locked, corrupt or full, a file that cannot be written), 2 bad input (the
//! user's sweep file, flags, ids, paths), 130 interrupted.
//!
//! The code comes from the variant, never from the message text. Each
//! module's own error converts into [`Error`] with `From`; `exit_code`
//! matches every variant of every nested error without a catch-all, so a new
//! variant anywhere does not compile until it is given its code here.
use crate::coordinator::RunError;
use crate::coordinator::launcher::local::WorkerNotFound;
use crate::report::html::HtmlError;
use crate::report::plot::PlotError;
use crate::report::rank::RankError;
use crate::report::show::ShowError;
use crate::spec::SpecError;
use crate::store::db::{OpenCause, StoreError};
use crate::store::queries::ResolveError;
use sweep_export::ExportError;
use sweep_export::mlflow::MlflowError;

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
    /// A sweep or trial named on the command line (`--sweep`, a trial id).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// `sweep plot`, `sweep data show`.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// `sweep report --html`.
    #[error(transparent)]
    Html(#[from] HtmlError),
    /// `sweep show`.
    #[error(transparent)]
    Show(#[from] ShowError),
    /// `sweep report`: the metric or the format.
    #[error(transparent)]
    Rank(#[from] RankError),
    /// `sweep export`.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// `sweep serve`: flags, the database, the port.
    #[error(transparent)]
    Serve(#[from] sweep_serve::ServeError),
    /// A query of an opened database failed: locked, corrupt, unreadable.
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
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
            Error::Spec(_) | Error::WorkerNotFound(_) | Error::BadInput(_) => EXIT_BAD_INPUT,
            Error::Store(e) => store_code(e),
            Error::Serve(sweep_serve::ServeError::Store(e)) => store_code(e),
            Error::Serve(e) if e.is_bad_input() => EXIT_BAD_INPUT,
            Error::Serve(_) => EXIT_FAILED,
            Error::Run(e) => run_code(e),
            Error::Resolve(e) => resolve_code(e),
            Error::Plot(e) => plot_code(e),
            Error::Export(e) => export_code(e),
            Error::Html(HtmlError::IsDirectory(_)) => EXIT_BAD_INPUT,
            Error::Html(HtmlError::Plot(e)) => plot_code(e),
            Error::Show(ShowError::Resolve(e)) => resolve_code(e),
            Error::Rank(RankError::UnknownFormat(_) | RankError::UnknownMetric { .. }) => {
                EXIT_BAD_INPUT
            }
            Error::Html(HtmlError::Db(_))
            | Error::Show(ShowError::Db(_))
            | Error::Rank(RankError::Json(_))
            | Error::Db(_)
            | Error::Failed(_) => EXIT_FAILED,
        }
    }
}

/// Every way `db::open` refuses is about the `--db` the user gave: a folder,
/// nothing there, another program's or version's database, a file that is not
/// SQLite. `Open` also covers a database that stays locked past the busy
/// timeout or a folder without permission; it carries no typed cause to tell
/// those apart, so they read as the user's too, until it does.
fn store_code(e: &StoreError) -> i32 {
    match e {
        StoreError::IsDirectory(_)
        | StoreError::Missing(_)
        | StoreError::Newer { .. }
        | StoreError::Unknown { .. }
        | StoreError::Foreign { .. }
        | StoreError::Open {
            cause: OpenCause::NotADatabase,
            ..
        } => EXIT_BAD_INPUT,
        StoreError::Open {
            cause: OpenCause::Machine,
            ..
        } => EXIT_FAILED,
    }
}

fn run_code(e: &RunError) -> i32 {
    match e {
        RunError::AlreadyRunning { .. }
        | RunError::Resources(_)
        | RunError::ProposalMismatch(_) => EXIT_BAD_INPUT,
        RunError::Database(_) | RunError::WriteFailed { .. } | RunError::Io(_) => EXIT_FAILED,
    }
}

fn resolve_code(e: &ResolveError) -> i32 {
    match e {
        ResolveError::NoSuchSweep { .. }
        | ResolveError::NoSweeps
        | ResolveError::NotATrialId { .. }
        | ResolveError::NoSuchTrial { .. }
        | ResolveError::Ambiguous { .. } => EXIT_BAD_INPUT,
        ResolveError::Db(_) => EXIT_FAILED,
    }
}

fn export_code(e: &ExportError) -> i32 {
    match e {
        ExportError::Resolve(e) => resolve_code(e),
        ExportError::OutIsFile(_) | ExportError::BadSweepName(_) | ExportError::Busy(_) => {
            EXIT_BAD_INPUT
        }
        ExportError::Mlflow(MlflowError::BadUri(_) | MlflowError::Auth { .. }) => EXIT_BAD_INPUT,
        ExportError::Mlflow(
            MlflowError::Unreachable { .. }
            | MlflowError::Rejected { .. }
            | MlflowError::BadResponse { .. },
        )
        | ExportError::Db(_)
        | ExportError::Write { .. } => EXIT_FAILED,
    }
}

fn plot_code(e: &PlotError) -> i32 {
    match e {
        PlotError::Resolve(e) => resolve_code(e),
        PlotError::OutIsFile(_)
        | PlotError::UnsupportedOut { .. }
        | PlotError::PerClass { .. }
        | PlotError::NotAFileName(_)
        | PlotError::TrialHasNoMetrics { .. }
        | PlotError::NoTrials(_)
        | PlotError::SweepHasNoMetrics(_)
        | PlotError::Dataset(_) => EXIT_BAD_INPUT,
        PlotError::Db(_)
        | PlotError::Vanished(_)
        | PlotError::CreateDir { .. }
        | PlotError::Write { .. }
        | PlotError::Draw(_)
        | PlotError::Encode(_)
        | PlotError::Font
        | PlotError::Internal(_) => EXIT_FAILED,
    }
}

pub type CmdResult = Result<i32, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The same question ("is there such a trial?") answered by a broken
    /// database is the machine's failure, not the user's input.
    #[test]
    fn a_database_failure_is_never_bad_input() {
        let db = || sqlx::Error::PoolTimedOut;
        let not_found = ResolveError::NoSuchTrial {
            prefix: "abc".into(),
        };
        assert_eq!(Error::from(not_found).exit_code(), EXIT_BAD_INPUT);
        assert_eq!(Error::from(ResolveError::Db(db())).exit_code(), EXIT_FAILED);
        assert_eq!(
            Error::from(ShowError::Resolve(ResolveError::Db(db()))).exit_code(),
            EXIT_FAILED
        );
        assert_eq!(
            Error::from(PlotError::Resolve(ResolveError::NoSweeps)).exit_code(),
            EXIT_BAD_INPUT
        );
        assert_eq!(
            Error::from(HtmlError::Plot(PlotError::Db(db()))).exit_code(),
            EXIT_FAILED
        );
        assert_eq!(Error::from(db()).exit_code(), EXIT_FAILED);
        let write = PlotError::Write {
            path: "x.png".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert_eq!(Error::from(write).exit_code(), EXIT_FAILED);
        assert_eq!(
            Error::from(HtmlError::IsDirectory("out".into())).exit_code(),
            EXIT_BAD_INPUT
        );
    }
}
