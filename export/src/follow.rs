//! `--follow`: an export pass, then another every `interval`, while any of
//! the selected sweeps is `running`; the pass after the last one stopped
//! running is the final one, so it sees every row `sweep run` wrote. Ctrl-C
//! ends it between passes (each pass leaves the files whole).
//!
//! [`beside`] is the same loop run inside `sweep run` (`[sweep]
//! tensorboard`): it ends when the run says so, not on the sweep's status or
//! a signal (the run owns Ctrl-C), with a final pass after the run's last
//! write.
use crate::ExportError;
use std::future::Future;
use std::time::Duration;
use sweep_store::export_queries;

/// How following ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No selected sweep is running any more, and the last pass saw it so.
    Finished,
    /// Ctrl-C (or SIGTERM).
    Interrupted,
}

/// Runs `pass` once (`every` is None), or every `every` until the sweeps
/// named by `only` (or every sweep) have all left `running`, or until the
/// process is asked to stop (`--follow`).
pub async fn once_or_follow<F, Fut>(
    pool: &sqlx::SqlitePool,
    only: Option<&str>,
    every: Option<Duration>,
    mut pass: F,
) -> Result<Ended, ExportError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ExportError>>,
{
    match every {
        None => pass().await.map(|()| Ended::Finished),
        Some(interval) => follow(pool, only, interval, pass).await,
    }
}

/// Runs `pass` until the sweeps named by `only` (or every sweep) have all
/// left `running`, or until the process is asked to stop.
pub async fn follow<F, Fut>(
    pool: &sqlx::SqlitePool,
    only: Option<&str>,
    interval: Duration,
    mut pass: F,
) -> Result<Ended, ExportError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ExportError>>,
{
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ExportError::Write {
            path: "(signal handler)".into(),
            source: e,
        })?;
    loop {
        // Read before the pass: a sweep seen finished here has written everything this pass exports.
        let sweeps = export_queries::sweeps(pool, only).await?;
        let running = sweeps.iter().any(|s| s.status == "running");
        pass().await?;
        if !running {
            return Ok(Ended::Finished);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Interrupted),
            _ = term.recv() => return Ok(Ended::Interrupted),
        }
    }
}

/// Runs `pass` every `interval` until `done` resolves, then once more: that
/// final pass starts after the run's last write, so it exports everything.
/// A pass that fails while the run goes on (a full disk, a busy database) is
/// logged as a warning and tried again at the next; the run is never
/// stopped for it. The final pass's error is returned.
pub async fn beside<D, F, Fut, T>(
    interval: Duration,
    done: D,
    mut pass: F,
) -> Result<T, ExportError>
where
    D: Future<Output = ()>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ExportError>>,
{
    tokio::pin!(done);
    loop {
        tokio::select! {
            biased;
            () = &mut done => return pass().await,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = pass().await {
            sweep_protocol::log!(
                "warning: exporting while the sweep runs: {e}; trying again in {interval:?}"
            );
        }
    }
}
