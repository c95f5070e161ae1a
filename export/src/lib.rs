//! `sweep export`: publishes a results database where people already look,
//! exactly and idempotently. SQLite stays the one source of truth; each
//! exporter reads it through `sweep_store::export_queries` and writes only
//! what is missing at the destination, so a second export of a finished sweep
//! writes nothing and an export killed half-way is completed by the next.
//!
//! * [`tensorboard`]: one run folder per trial of TensorBoard event files
//!   ([`tfrecord`] framing, [`proto`] messages): every metric row as a scalar
//!   at its global step, test results, and the HParams plugin's data;
//! * [`csv`]: a tidy long-format file of every metric row and one of trials
//!   with their parameters, for pandas;
//! * [`mlflow`]: one MLflow run per trial through the tracking server's REST
//!   API, found again by its trial-id tag;
//! * [`follow`]: repeats an export while `sweep run` writes, until the sweep
//!   ends or Ctrl-C.
//!
//! A view: it never imports the spec, the coordinator or the worker, and it
//! never writes the database.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod csv;
pub mod follow;
pub mod mlflow;
pub mod proto;
pub mod tensorboard;
pub mod tfrecord;

use std::path::{Path, PathBuf};
use sweep_store::export_queries::{self, ExportSweep};
use sweep_store::queries::{self, ResolveError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--sweep` names no sweep, or the database has none.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Mlflow(#[from] mlflow::MlflowError),
    #[error("{0} is a file; the export's OUT must be a folder (it is created if missing)")]
    OutIsFile(PathBuf),
    #[error(
        "sweep name {0:?} cannot be a folder name (it holds a path separator, is empty, `.` or `..`); this database was not written by `sweep run`"
    )]
    BadSweepName(String),
    #[error(
        "another `sweep export` is writing to {0} (it holds {0}/.sweep-export.lock); wait for it to end, or export to another folder"
    )]
    Busy(PathBuf),
    #[error("writing {path}: {source}; check that the folder is writable and the disk has room")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ExportError {
    pub(crate) fn write(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
        move |source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The sweeps an export covers: the one named by `--sweep` (an unknown name
/// is an error listing the known ones), else every sweep of the database.
pub async fn selected_sweeps(
    pool: &sqlx::SqlitePool,
    only: Option<&str>,
) -> Result<Vec<ExportSweep>, ExportError> {
    if let Some(name) = only {
        queries::resolve_sweep(pool, Some(name)).await?;
    }
    let sweeps = export_queries::sweeps(pool, only).await?;
    if sweeps.is_empty() {
        return Err(ResolveError::NoSweeps.into());
    }
    for s in &sweeps {
        folder_name(&s.name)?;
    }
    Ok(sweeps)
}

/// A sweep's name as one folder name below OUT, refused when it could reach
/// elsewhere (a database is input like any other).
pub fn folder_name(name: &str) -> Result<&str, ExportError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
    if bad {
        return Err(ExportError::BadSweepName(name.to_string()));
    }
    Ok(name)
}

/// OUT, created if missing, held for this export alone: a second export to
/// the same folder at the same time would interleave records. The lock goes
/// with the returned file (and with the process, on kill -9).
pub fn lock_out(out: &Path) -> Result<std::fs::File, ExportError> {
    if out.exists() && !out.is_dir() {
        return Err(ExportError::OutIsFile(out.to_path_buf()));
    }
    std::fs::create_dir_all(out).map_err(ExportError::write(out))?;
    let path = out.join(".sweep-export.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ExportError::write(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ExportError::Busy(out.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(ExportError::Write { path, source: e }),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and
/// a rename, so a reader (or a kill -9) never sees half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".sweep-export.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(ExportError::write(&tmp))?;
    f.write_all(bytes).map_err(ExportError::write(&tmp))?;
    f.sync_data().map_err(ExportError::write(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(ExportError::write(path))
}
