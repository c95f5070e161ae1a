//! The single writer of the database while a sweep runs.
//!
//! Everything that changes a row goes through `Recorder::send` as a
//! `StoreEvent`; one task applies them, batching whatever is queued into one
//! transaction. Readers (`sweep report`, `sqlite3`) see whole transactions only
//! (WAL), and a trial becomes `done` only after all of its test rows landed.
//!
//! The writer holds one connection of its own, with a short busy timeout, and
//! stops writing at the first failed commit (a full disk, an I/O error): every
//! later batch would fail the same way, each after waiting on SQLite's busy
//! handler, and the coordinator would hang instead of stopping. It never
//! prints: the failure goes to [`Recorder::failed`] and the flushes.
use super::model::{FailureClass, SweepStatus, TrialStatus};
use super::now;
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};
use sweep_protocol::{TrialParams, WorkerMessage};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
pub enum StoreEvent {
    Worker {
        trial: String,
        attempt: u32,
        msg: WorkerMessage,
    },
    AttemptStarted {
        trial: String,
        attempt: u32,
        pid: Option<u32>,
        device: String,
        batch_size: u32,
    },
    AttemptPlaced {
        trial: String,
        attempt: u32,
        node: String,
        gpus: String,
        job: String,
        device: String,
    },
    AttemptEnded {
        trial: String,
        attempt: u32,
        exit_code: Option<i32>,
        signal: Option<i32>,
        error_class: Option<FailureClass>,
        message: Option<String>,
    },
    TrialStatus {
        trial: String,
        status: TrialStatus,
    },
    SweepStatus {
        sweep_id: i64,
        status: SweepStatus,
    },
    Heartbeat {
        sweep_id: i64,
    },
    Decision(DecisionRow),
    /// A PBT generation's decisions and exploits (one transaction).
    Generation(Box<super::lineage::Generation>),
    /// A point of a TPE search and its trials (`proposals`), before they start.
    Proposal(Box<super::proposals::ProposalRow>),
    Flush(oneshot::Sender<Result<(), WriteError>>),
    AfterCommit(AfterCommit),
}

/// A deferred action, run once everything sent before it is committed (never
/// when that commit failed): file work that must not run ahead of the
/// database, such as removing a finished trial's resume state. It runs on a
/// blocking thread, so that slow file work (rewriting a VGG checkpoint as
/// float16 takes seconds) never holds up the next commits; a flush waits for
/// it, and so does the writer's end.
pub struct AfterCommit(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterCommit(..)")
    }
}

pub use super::proposals::ProposalRow;

/// The row the recorder writes for a stopping decision (one type with the
/// readers': `sweep report`, the restore on resume and `sweep serve`).
pub use super::model::DecisionRow;

/// Why the recorder can keep no more results. Cloned to every waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A commit failed; nothing after it was written.
    #[error("database write failed: {reason}")]
    Failed {
        reason: String,
        /// SQLite said the database or its disk is full (SQLITE_FULL, ENOSPC).
        full: bool,
    },
    /// The writer task is gone (it panicked or the runtime is shutting down).
    #[error("the database writer stopped")]
    Stopped,
}

impl WriteError {
    fn of(e: &sqlx::Error) -> WriteError {
        let code = e.as_database_error().and_then(|d| d.code());
        let text = e.to_string();
        WriteError::Failed {
            full: code.as_deref() == Some("13")
                || text.contains("database or disk is full")
                || text.contains("No space left on device"),
            reason: text,
        }
    }

    /// Whether the failure was a full disk (or database size limit).
    pub fn is_full(&self) -> bool {
        matches!(self, WriteError::Failed { full: true, .. })
    }
}

/// Seconds the writer waits for a lock held by another process (`sqlite3`
/// with an open write transaction) before the commit fails. Readers never
/// block it (WAL); a longer wait only hides a stuck writer.
const WRITER_BUSY_TIMEOUT_MS: u32 = 5_000;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<StoreEvent>,
    failed: tokio::sync::watch::Receiver<Option<WriteError>>,
}

impl Recorder {
    /// Starts the writer task on a connection of its own (taken from `pool`
    /// and detached from it); it ends when every `Recorder` clone is dropped.
    pub async fn spawn(
        pool: &SqlitePool,
    ) -> Result<(Recorder, tokio::task::JoinHandle<Result<(), WriteError>>), sqlx::Error> {
        Recorder::spawn_on(pool.acquire().await?.detach()).await
    }

    /// [`Recorder::spawn`] on a given connection (tests set limits on it).
    pub async fn spawn_on(
        mut conn: SqliteConnection,
    ) -> Result<(Recorder, tokio::task::JoinHandle<Result<(), WriteError>>), sqlx::Error> {
        sqlx::query(&format!("PRAGMA busy_timeout = {WRITER_BUSY_TIMEOUT_MS}"))
            .execute(&mut conn)
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let handle = tokio::spawn(writer(conn, rx, failed_tx));
        Ok((Recorder { tx, failed }, handle))
    }

    /// Resolves with the error once a database write has failed (disk full,
    /// I/O error): results can no longer be kept, so the dispatcher stops.
    pub async fn failed(&self) -> WriteError {
        let mut rx = self.failed.clone();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn send(&self, ev: StoreEvent) {
        // The writer outlives every sender; a send error means it failed, which flush reports.
        let _ = self.tx.send(ev);
    }

    /// Waits until everything sent so far is committed.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(StoreEvent::Flush(tx))
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Applies one batch in one transaction: the writes, then (after the commit)
/// which flushes to answer and which file work to run.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: Vec<StoreEvent>,
    acks: &mut Vec<oneshot::Sender<Result<(), WriteError>>>,
    after: &mut Vec<AfterCommit>,
) -> Result<(), sqlx::Error> {
    // Flushes and file work are taken out first: a write that fails midway
    // must still answer every flush of the batch (with the error).
    let mut writes = Vec::with_capacity(batch.len());
    for ev in batch {
        match ev {
            StoreEvent::Flush(ack) => acks.push(ack),
            StoreEvent::AfterCommit(f) => after.push(f),
            ev => writes.push(ev),
        }
    }
    let mut tx = conn.begin().await?;
    for ev in writes {
        apply(&mut tx, ev).await?;
    }
    tx.commit().await
}

async fn writer(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<StoreEvent>,
    failed: tokio::sync::watch::Sender<Option<WriteError>>,
) -> Result<(), WriteError> {
    let mut last_error: Option<WriteError> = None;
    let mut file_work: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let mut after = Vec::new();
        if last_error.is_none() {
            if let Err(e) = commit_batch(&mut conn, batch, &mut acks, &mut after).await {
                let e = WriteError::of(&e);
                failed.send_replace(Some(e.clone()));
                last_error = Some(e);
            }
        } else {
            // Nothing more is written after a failed commit: only the
            // flushes are answered (with the error), and no file work runs.
            for ev in batch {
                if let StoreEvent::Flush(ack) = ev {
                    acks.push(ack);
                }
            }
        }
        if last_error.is_none() {
            file_work.retain(|h| !h.is_finished());
            file_work.extend(
                after
                    .into_iter()
                    .map(|AfterCommit(f)| tokio::task::spawn_blocking(f)),
            );
        }
        if !acks.is_empty() {
            for h in file_work.drain(..) {
                let _ = h.await;
            }
        }
        for ack in acks {
            let _ = ack.send(match &last_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            });
        }
    }
    for h in file_work {
        let _ = h.await;
    }
    let _ = conn.close().await;
    match last_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one bind per column of the metrics row"
)]
async fn metric(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    split: &str,
    epoch: u32,
    batch: u32,
    step: u64,
    name: &str,
    value: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time) VALUES (?,?,?,?,?,?,?,?,?)
         ON CONFLICT (trial_id, split, epoch, step, name) DO UPDATE SET value = excluded.value, attempt = excluded.attempt, batch = excluded.batch, time = excluded.time",
    )
    .bind(trial)
    .bind(attempt)
    .bind(split)
    .bind(epoch)
    .bind(batch)
    .bind(step as i64)
    .bind(name)
    .bind(value)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply(tx: &mut Transaction<'_, Sqlite>, ev: StoreEvent) -> Result<(), sqlx::Error> {
    match ev {
        StoreEvent::Flush(_) | StoreEvent::AfterCommit(_) => {}
        StoreEvent::Heartbeat { sweep_id } => {
            sqlx::query("UPDATE sweeps SET heartbeat_at = ? WHERE id = ?")
                .bind(now())
                .bind(sweep_id)
                .execute(&mut **tx)
                .await?;
        }
        StoreEvent::SweepStatus { sweep_id, status } => {
            sqlx::query("UPDATE sweeps SET status = ?, updated_at = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(now())
                .bind(sweep_id)
                .execute(&mut **tx)
                .await?;
        }
        StoreEvent::TrialStatus { trial, status } => trial_status(tx, &trial, status).await?,
        StoreEvent::AttemptStarted {
            trial,
            attempt,
            pid,
            device,
            batch_size,
        } => attempt_started(tx, &trial, attempt, pid, &device, batch_size).await?,
        StoreEvent::AttemptPlaced {
            trial,
            attempt,
            node,
            gpus,
            job,
            device,
        } => attempt_placed(tx, &trial, attempt, [&node, &gpus, &job, &device]).await?,
        StoreEvent::AttemptEnded {
            trial,
            attempt,
            exit_code,
            signal,
            error_class,
            message,
        } => {
            let end = (exit_code, signal, error_class, message);
            attempt_ended(tx, &trial, attempt, end).await?
        }
        StoreEvent::Worker {
            trial,
            attempt,
            msg,
        } => apply_message(tx, &trial, attempt, msg).await?,
        StoreEvent::Decision(d) => decision(tx, &d).await?,
        StoreEvent::Generation(g) => super::lineage::insert(tx, &g).await?,
        StoreEvent::Proposal(p) => super::proposals::insert(tx, &p).await?,
    }
    Ok(())
}

/// A trial's status; it started when first running, ended when final or stopped.
async fn trial_status(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    status: TrialStatus,
) -> Result<(), sqlx::Error> {
    let t = now();
    sqlx::query(
        "UPDATE trials SET status = ?1,
           started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?2 ELSE started_at END,
           finished_at = CASE WHEN ?1 IN ('done','failed','interrupted','pruned') THEN ?2 ELSE NULL END
         WHERE id = ?3",
    )
    .bind(status.as_str())
    .bind(t)
    .bind(trial)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new attempt row; the trial's device is the attempt's.
async fn attempt_started(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    pid: Option<u32>,
    device: &str,
    batch_size: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO attempts (trial_id, attempt, pid, device, batch_size, started_at) VALUES (?,?,?,?,?,?)")
        .bind(trial)
        .bind(attempt)
        .bind(pid)
        .bind(device)
        .bind(batch_size)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    trial_device(tx, trial, device).await
}

/// A trial's device is its latest attempt's.
async fn trial_device(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    device: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE trials SET device = ? WHERE id = ?")
        .bind(device)
        .bind(trial)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Where Slurm placed an attempt: `[node, gpus, job, device]`.
async fn attempt_placed(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    [node, gpus, job, device]: [&str; 4],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE attempts SET node = ?, gpus = ?, slurm_job = ?, device = ? WHERE trial_id = ? AND attempt = ?")
        .bind(node)
        .bind(gpus)
        .bind(job)
        .bind(device)
        .bind(trial)
        .bind(attempt)
        .execute(&mut **tx)
        .await?;
    trial_device(tx, trial, device).await
}

/// An attempt's end: (exit code, signal, failure class, message).
async fn attempt_ended(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    (exit_code, signal, error_class, message): (
        Option<i32>,
        Option<i32>,
        Option<FailureClass>,
        Option<String>,
    ),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE attempts SET finished_at = ?, exit_code = ?, signal = ?,
           error_class = COALESCE(?, error_class), message = COALESCE(?, message)
         WHERE trial_id = ? AND attempt = ?",
    )
    .bind(now())
    .bind(exit_code)
    .bind(signal)
    .bind(error_class.map(FailureClass::as_str))
    .bind(message)
    .bind(trial)
    .bind(attempt)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One early-stopping decision.
pub(super) async fn decision(
    tx: &mut Transaction<'_, Sqlite>,
    d: &DecisionRow,
) -> Result<(), sqlx::Error> {
    // A decision is taken once; a replayed epoch never writes a second row.
    // A `pause` (promotion mode, PBT) is the one decision that changes later:
    // it becomes `promote`, `stop` or (PBT) `exploit`, with the cutoff and
    // count of that moment.
    sqlx::query(
        "INSERT INTO decisions (trial_id, epoch, method, rung, bracket, metric, value, cutoff, compared, action, time)
         VALUES (?,?,?,?,?,?,?,?,?,?,?)
         ON CONFLICT (trial_id, epoch, method) DO UPDATE SET
           action = excluded.action, cutoff = excluded.cutoff,
           compared = excluded.compared, time = excluded.time
         WHERE decisions.action = 'pause' AND excluded.action IN ('promote', 'stop', 'exploit')",
    )
    .bind(&d.trial_id)
    .bind(d.epoch)
    .bind(&d.method)
    .bind(d.rung)
    .bind(d.bracket)
    .bind(&d.metric)
    .bind(d.value)
    .bind(d.cutoff)
    .bind(d.compared)
    .bind(&d.action)
    .bind(d.time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One worker message → its rows. One small function per message kind.
async fn apply_message(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    msg: WorkerMessage,
) -> Result<(), sqlx::Error> {
    match msg {
        // The attempt keeps the physical device the launcher gave it (`cuda:3`);
        // the worker's own view after CUDA_VISIBLE_DEVICES (`Cuda(0)`) is not a fact about the machine.
        WorkerMessage::Hello { threads, .. } => sqlx::query(
            "UPDATE attempts SET hello_at = ?, threads = ? WHERE trial_id = ? AND attempt = ?",
        )
        .bind(now())
        .bind(threads)
        .bind(trial)
        .bind(attempt)
        .execute(&mut **tx)
        .await
        .map(drop),
        WorkerMessage::Checkpoint { .. } => Ok(()),
        WorkerMessage::Data {
            classes, counts, ..
        } => class_counts(tx, trial, &classes, counts).await,
        WorkerMessage::Resumed { from_epoch } => sqlx::query(
            "UPDATE attempts SET resumed_from_epoch = ? WHERE trial_id = ? AND attempt = ?",
        )
        .bind(from_epoch)
        .bind(trial)
        .bind(attempt)
        .execute(&mut **tx)
        .await
        .map(drop),
        WorkerMessage::TrainStep {
            epoch,
            batch,
            step,
            loss,
            accuracy,
            lr,
            images_per_s,
        } => {
            for (name, v) in [
                ("loss", loss),
                ("accuracy", accuracy),
                ("lr", lr),
                ("images_per_s", images_per_s),
            ] {
                metric(tx, trial, attempt, "train", epoch, batch, step, name, v).await?;
            }
            Ok(())
        }
        WorkerMessage::Epoch {
            epoch,
            train_loss,
            train_accuracy,
            val_loss,
            val_accuracy,
            step,
            seconds,
            images_per_s,
        } => {
            for (split, name, v) in [
                ("train_epoch", "loss", train_loss),
                ("train_epoch", "accuracy", train_accuracy),
                ("train_epoch", "seconds", seconds),
                ("train_epoch", "images_per_s", images_per_s),
                ("valid", "loss", val_loss),
                ("valid", "accuracy", val_accuracy),
            ] {
                metric(tx, trial, attempt, split, epoch, 0, step, name, v).await?;
            }
            epoch_done(tx, trial, epoch, val_accuracy).await
        }
        WorkerMessage::Test {
            loss,
            accuracy,
            n,
            per_class,
            epoch,
        } => test_results(tx, trial, (loss, accuracy, n, epoch), per_class).await,
        WorkerMessage::Confusion { classes, matrix } => {
            confusion(tx, trial, &classes, &matrix).await
        }
        WorkerMessage::Misclassified { items } => misclassified(tx, trial, items).await,
        WorkerMessage::Record {
            epoch,
            step,
            values,
        } => program_record(tx, trial, attempt, (epoch, step), values).await,
        WorkerMessage::Done {
            wall_s,
            images_per_s,
            timings,
            ..
        } => {
            if let Some(t) = timings {
                sqlx::query("UPDATE attempts SET timings = ? WHERE trial_id = ? AND attempt = ?")
                    .bind(serde_json::to_string(&t).unwrap_or_default())
                    .bind(trial)
                    .bind(attempt)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query("UPDATE trials SET wall_s = ?, images_per_s = ? WHERE id = ?")
                .bind(wall_s)
                .bind(images_per_s)
                .bind(trial)
                .execute(&mut **tx)
                .await
                .map(drop)
        }
        WorkerMessage::Error { class, message } => sqlx::query(
            "UPDATE attempts SET error_class = ?, message = ? WHERE trial_id = ? AND attempt = ?",
        )
        .bind(class.as_str())
        .bind(&message)
        .bind(trial)
        .bind(attempt)
        .execute(&mut **tx)
        .await
        .map(drop),
    }
}

async fn class_counts(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    classes: &[String],
    counts: Vec<sweep_protocol::SplitCounts>,
) -> Result<(), sqlx::Error> {
    for sc in counts {
        for (c, n) in classes.iter().zip(sc.counts) {
            sqlx::query(
                "INSERT INTO class_distribution (sweep_id, split, class, count)
                 SELECT sweep_id, ?, ?, ? FROM trials WHERE id = ?
                 ON CONFLICT (sweep_id, split, class) DO UPDATE SET count = excluded.count",
            )
            .bind(&sc.split)
            .bind(c)
            .bind(n as i64)
            .bind(trial)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// A user program's record: each value a `metrics` row under the name the
/// program gave it: split 'test' for `test_*` fields, 'step' in a record with
/// a `step`, else 'epoch' (see migrations/20261207000002_program.sql). A
/// replayed record (a resumed program reporting an epoch again) replaces its
/// rows. An epoch record moves `trials.epochs_done`.
async fn program_record(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    attempt: u32,
    (epoch, step): (Option<u32>, Option<u64>),
    values: std::collections::BTreeMap<String, f64>,
) -> Result<(), sqlx::Error> {
    let e = epoch.unwrap_or(0);
    for (name, v) in &values {
        let (split, s) = if name.starts_with("test_") {
            ("test", 0)
        } else if let Some(s) = step {
            ("step", s)
        } else {
            ("epoch", 0)
        };
        metric(tx, trial, attempt, split, e, 0, s, name, *v).await?;
    }
    if let (Some(epoch), None) = (epoch, step) {
        sqlx::query("UPDATE trials SET epochs_done = MAX(epochs_done, ?) WHERE id = ?")
            .bind(epoch)
            .bind(trial)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn epoch_done(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    epoch: u32,
    val_accuracy: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE trials SET epochs_done = MAX(epochs_done, ?1),
           best_val_accuracy = CASE WHEN best_val_accuracy IS NULL OR ?2 > best_val_accuracy THEN ?2 ELSE best_val_accuracy END
         WHERE id = ?3",
    )
    .bind(epoch)
    .bind(val_accuracy)
    .bind(trial)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// (loss, accuracy, n, epoch of the checkpoint) and the per-class accuracies.
async fn test_results(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    (loss, accuracy, n, epoch): (f64, f64, usize, u32),
    per_class: Vec<sweep_protocol::ClassAccuracy>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO test_results (trial_id, loss, accuracy, n, epoch, time) VALUES (?,?,?,?,?,?)")
        .bind(trial)
        .bind(loss)
        .bind(accuracy)
        .bind(n as i64)
        .bind(epoch)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    for c in per_class {
        sqlx::query("INSERT OR REPLACE INTO class_accuracy (trial_id, class, correct, total, accuracy) VALUES (?,?,?,?,?)")
            .bind(trial)
            .bind(&c.class)
            .bind(c.correct as i64)
            .bind(c.total as i64)
            .bind(c.accuracy)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn confusion(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    classes: &[String],
    matrix: &[Vec<u64>],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM confusion WHERE trial_id = ?")
        .bind(trial)
        .execute(&mut **tx)
        .await?;
    for (t, row) in classes.iter().zip(matrix) {
        for (p, count) in classes.iter().zip(row) {
            sqlx::query(
                "INSERT INTO confusion (trial_id, true_class, pred_class, count) VALUES (?,?,?,?)
                 ON CONFLICT (trial_id, true_class, pred_class) DO UPDATE SET count = count + excluded.count",
            )
            .bind(trial)
            .bind(t)
            .bind(p)
            .bind(*count as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

async fn misclassified(
    tx: &mut Transaction<'_, Sqlite>,
    trial: &str,
    items: Vec<sweep_protocol::Misclassified>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM misclassified WHERE trial_id = ?")
        .bind(trial)
        .execute(&mut **tx)
        .await?;
    for m in items {
        sqlx::query("INSERT OR REPLACE INTO misclassified (trial_id, file, true_class, pred_class, prob) VALUES (?,?,?,?,?)")
            .bind(trial)
            .bind(&m.file)
            .bind(&m.truth)
            .bind(&m.pred)
            .bind(m.prob)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Existing state of a trial when a sweep (re)starts.
#[derive(Debug, Clone)]
pub struct TrialState {
    pub id: String,
    pub status: TrialStatus,
    pub attempts: u32,
}

/// A sweep as the store registers it (built from the plan by the coordinator).
#[derive(Debug, Clone)]
pub struct NewSweep<'a> {
    pub name: &'a str,
    pub file: String,
    pub toml: &'a str,
    pub description: Option<&'a str>,
    pub metric: &'a str,
    /// How `metric` ranks: true = higher is better.
    pub maximize: bool,
    /// `[program] command` as JSON (None: the built-in trainer).
    pub program: Option<String>,
    pub dataset: String,
    pub dataset_hash: &'a str,
    pub system_info: serde_json::Value,
    /// (trial id, resolved config), in plan order.
    pub trials: Vec<(&'a str, &'a TrialParams)>,
}

/// Registers the sweep and its planned trials (before any worker starts; the
/// recorder is not running yet, so this is still the only writer). Existing
/// trials keep their status; attempts left open by a dead coordinator are closed.
pub async fn register(
    pool: &SqlitePool,
    plan: &NewSweep<'_>,
) -> Result<(i64, Vec<TrialState>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let t = now();
    sqlx::query(
        "INSERT INTO sweeps (name, file, toml, description, metric, dataset, dataset_hash, system_info, status, created_at, updated_at, coordinator_pid, heartbeat_at, direction, program)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9, ?9, ?10, ?9, ?11, ?12)
         ON CONFLICT (name) DO UPDATE SET file = excluded.file, toml = excluded.toml, description = excluded.description,
           metric = excluded.metric, dataset = excluded.dataset, dataset_hash = excluded.dataset_hash,
           direction = excluded.direction, program = excluded.program,
           system_info = excluded.system_info, status = 'running', updated_at = excluded.updated_at,
           coordinator_pid = excluded.coordinator_pid, heartbeat_at = excluded.heartbeat_at",
    )
    .bind(plan.name)
    .bind(&plan.file)
    .bind(plan.toml)
    .bind(plan.description)
    .bind(plan.metric)
    .bind(&plan.dataset)
    .bind(plan.dataset_hash)
    .bind(plan.system_info.to_string())
    .bind(t)
    .bind(std::process::id())
    .bind(if plan.maximize { "max" } else { "min" })
    .bind(&plan.program)
    .execute(&mut *tx)
    .await?;
    let sweep_id: i64 = sqlx::query_scalar("SELECT id FROM sweeps WHERE name = ?")
        .bind(plan.name)
        .fetch_one(&mut *tx)
        .await?;
    for (i, (id, c)) in plan.trials.iter().enumerate() {
        insert_trial(
            &mut tx,
            id,
            sweep_id,
            i as i64,
            c,
            t,
            OnConflict::UpdateOrdinal,
        )
        .await?;
    }
    // A coordinator killed with -9 leaves attempts open and trials 'running'.
    sqlx::query(
        "UPDATE attempts SET finished_at = ?, error_class = COALESCE(error_class, 'crash'),
           message = COALESCE(message, 'coordinator died while this attempt ran')
         WHERE finished_at IS NULL AND trial_id IN (SELECT id FROM trials WHERE sweep_id = ?)",
    )
    .bind(t)
    .bind(sweep_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE trials SET status = 'interrupted' WHERE sweep_id = ? AND status = 'running'",
    )
    .bind(sweep_id)
    .execute(&mut *tx)
    .await?;
    // 'pruned' trials stay pruned; a trial killed mid-run is 'interrupted' and resumes.
    let rows: Vec<(String, TrialStatus, i64)> =
        sqlx::query_as("SELECT t.id, t.status, (SELECT COALESCE(MAX(attempt), 0) FROM attempts a WHERE a.trial_id = t.id) FROM trials t WHERE t.sweep_id = ?")
            .bind(sweep_id)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok((
        sweep_id,
        rows.into_iter()
            .map(|(id, status, a)| TrialState {
                id,
                status,
                attempts: a as u32,
            })
            .collect(),
    ))
}

/// What inserting a trial that exists already does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnConflict {
    /// Keep the row as it is (a proposal's trials).
    Nothing,
    /// Move it to its place in the sweep file (a re-registered plan).
    UpdateOrdinal,
}

/// One `trials` row, `queued`, for trial `id` of `sweep_id` with config `c`.
pub(super) async fn insert_trial(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
    sweep_id: i64,
    ordinal: i64,
    c: &TrialParams,
    time: f64,
    on_conflict: OnConflict,
) -> Result<(), sqlx::Error> {
    let conflict = match on_conflict {
        OnConflict::Nothing => "DO NOTHING",
        OnConflict::UpdateOrdinal => "DO UPDATE SET ordinal = excluded.ordinal",
    };
    sqlx::query(&format!(
        "INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, created_at)
         VALUES (?,?,?,?,?,?,?,?,?,?,'queued',?) ON CONFLICT (id) {conflict}"
    ))
    .bind(id)
    .bind(sweep_id)
    .bind(ordinal)
    .bind(serde_json::to_string(c).unwrap_or_default())
    // A program's trial fills these columns from its parameters of the same
    // name when it has them (see migrations/20261207000002_program.sql).
    .bind(match c {
        TrialParams::Builtin(c) => c.backbone.clone(),
        TrialParams::Program(m) => m
            .get("backbone")
            .map(sweep_protocol::config::value_text)
            .unwrap_or_default(),
    })
    .bind(c.number("lr").unwrap_or(0.0))
    .bind(c.epochs().unwrap_or(0))
    .bind(c.number("batch_size").unwrap_or(0.0) as i64)
    .bind(c.number("image_size").unwrap_or(0.0) as i64)
    .bind(c.seed() as i64)
    .bind(time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use std::time::Duration;

    /// A registered sweep with one trial, and a writer connection whose
    /// database may grow by `room_pages` pages at most (SQLite's
    /// `max_page_count`: a full disk, in milliseconds).
    async fn full_soon(
        dir: &std::path::Path,
        room_pages: i64,
    ) -> (SqlitePool, i64, SqliteConnection) {
        let path = dir.join("r.db");
        let pool = crate::db::open(&path, true).await.unwrap();
        let config = TrialParams::Builtin(sweep_protocol::TrialConfig::default());
        let new = NewSweep {
            name: "s",
            file: "s.toml".into(),
            toml: "",
            description: None,
            metric: "accuracy",
            maximize: true,
            program: None,
            dataset: "data".into(),
            dataset_hash: "h",
            system_info: serde_json::json!({}),
            trials: vec![("t1", &config)],
        };
        let (sweep_id, _) = register(&pool, &new).await.unwrap();
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {}", pages + room_pages))
            .execute(&mut conn)
            .await
            .unwrap();
        (pool, sweep_id, conn)
    }

    /// A program's records land in `metrics` under its own names, by split;
    /// a replayed epoch replaces its rows; only epoch records move `epochs_done`.
    #[tokio::test]
    async fn program_records_are_metric_rows_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("r.db"), true)
            .await
            .unwrap();
        let mut params = serde_json::Map::new();
        params.insert("lr".into(), serde_json::json!(0.01));
        params.insert("epochs".into(), serde_json::json!(5));
        params.insert("seed".into(), serde_json::json!(3));
        let params = TrialParams::Program(params);
        let new = NewSweep {
            name: "p",
            file: "p.toml".into(),
            toml: "",
            description: None,
            metric: "val_loss",
            maximize: false,
            program: Some(r#"["python","train.py"]"#.into()),
            dataset: String::new(),
            dataset_hash: "",
            system_info: serde_json::json!({}),
            trials: vec![("t1", &params)],
        };
        register(&pool, &new).await.unwrap();
        let (rec, writer) = Recorder::spawn(&pool).await.unwrap();
        rec.send(StoreEvent::AttemptStarted {
            trial: "t1".into(),
            attempt: 1,
            pid: None,
            device: "cpu".into(),
            batch_size: 0,
        });
        let record =
            |epoch: Option<u32>, step: Option<u64>, kv: &[(&str, f64)]| StoreEvent::Worker {
                trial: "t1".into(),
                attempt: 1,
                msg: WorkerMessage::Record {
                    epoch,
                    step,
                    values: kv.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                },
            };
        rec.send(record(None, Some(10), &[("loss", 2.0)]));
        rec.send(record(Some(1), Some(20), &[("loss", 1.5)]));
        rec.send(record(
            Some(1),
            None,
            &[("val_loss", 0.9), ("val_acc", 0.5)],
        ));
        rec.send(record(Some(2), None, &[("val_loss", 0.8)]));
        rec.send(record(
            Some(2),
            None,
            &[("val_loss", 0.7), ("test_acc", 0.6)],
        ));
        rec.flush().await.unwrap();
        drop(rec);
        writer.await.unwrap().unwrap();
        let rows: Vec<(String, i64, i64, String, f64)> = sqlx::query_as(
            "SELECT split, epoch, step, name, value FROM metrics WHERE trial_id = 't1' ORDER BY split, epoch, step, name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let expect = [
            ("epoch", 1, 0, "val_acc", 0.5),
            ("epoch", 1, 0, "val_loss", 0.9),
            ("epoch", 2, 0, "val_loss", 0.7),
            ("step", 0, 10, "loss", 2.0),
            ("step", 1, 20, "loss", 1.5),
            ("test", 2, 0, "test_acc", 0.6),
        ];
        let rows: Vec<(&str, i64, i64, &str, f64)> = rows
            .iter()
            .map(|(a, b, c, d, e)| (a.as_str(), *b, *c, d.as_str(), *e))
            .collect();
        assert_eq!(rows, expect);
        let (done, lr, epochs, seed, dir_, prog): (i64, f64, i64, i64, String, Option<String>) = sqlx::query_as(
            "SELECT t.epochs_done, t.lr, t.epochs, t.seed, s.direction, s.program FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = 't1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((done, lr, epochs, seed), (2, 0.01, 5, 3));
        assert_eq!(dir_, "min");
        assert_eq!(prog.as_deref(), Some(r#"["python","train.py"]"#));
    }

    fn decision(i: usize) -> StoreEvent {
        StoreEvent::Decision(DecisionRow {
            trial_id: "t1".into(),
            epoch: i as i64,
            method: "asha".into(),
            rung: Some(0),
            bracket: None,
            // A wide row, so that the database fills in a few batches.
            metric: "x".repeat(2000),
            value: 0.5,
            cutoff: None,
            compared: 1,
            action: "continue".into(),
            time: 0.0,
        })
    }

    async fn decisions(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn after_the_first_failed_commit_nothing_more_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, sweep_id, conn) = full_soon(dir.path(), 3).await;
        let (recorder, writer) = Recorder::spawn_on(conn).await.unwrap();
        recorder.send(decision(0));
        recorder.flush().await.expect("one row fits");
        assert_eq!(decisions(&pool).await, 1);
        // Batches until one no longer fits.
        let mut failed = None;
        for i in 1..200 {
            recorder.send(decision(i));
            if let Err(e) = recorder.flush().await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the database filled up");
        assert!(e.is_full(), "{e}");
        assert_eq!(recorder.failed().await, e);
        let kept = decisions(&pool).await;
        let beat = || async {
            sqlx::query_scalar::<_, f64>("SELECT heartbeat_at FROM sweeps WHERE id = ?")
                .bind(sweep_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        let beat_before = beat().await;
        // A heartbeat needs no new page, so it would commit if the writer
        // tried again: it must not, nothing lands after the failure.
        recorder.send(StoreEvent::Heartbeat { sweep_id });
        let again = tokio::time::timeout(Duration::from_secs(30), recorder.flush())
            .await
            .expect("a flush after the failure answers at once");
        assert_eq!(again, Err(e.clone()));
        assert_eq!(
            decisions(&pool).await,
            kept,
            "rows written after the failure"
        );
        assert_eq!(
            beat().await,
            beat_before,
            "a heartbeat written after the failure"
        );
        drop(recorder);
        let end = tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer ends once its senders are gone")
            .unwrap();
        assert_eq!(end, Err(e));
        let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(ok, "ok");
    }

    async fn finished_at(pool: &SqlitePool) -> Option<f64> {
        sqlx::query_scalar("SELECT finished_at FROM trials WHERE id = 't1'")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// A pruned trial has ended: queries and timelines that read
    /// `trials.finished_at` must not lose it.
    #[tokio::test]
    async fn a_pruned_trial_has_a_finish_time() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, _, conn) = full_soon(dir.path(), 1000).await;
        let (recorder, writer) = Recorder::spawn_on(conn).await.unwrap();
        for status in [TrialStatus::Running, TrialStatus::Pruned] {
            recorder.send(StoreEvent::TrialStatus {
                trial: "t1".into(),
                status,
            });
        }
        recorder.flush().await.unwrap();
        assert!(finished_at(&pool).await.is_some());
        drop(recorder);
        writer.await.unwrap().unwrap();
    }

    /// Databases written before the fix: the upgrade gives their pruned
    /// trials the end of their last attempt.
    #[tokio::test]
    async fn the_upgrade_gives_old_pruned_trials_their_finish_time() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, _, _) = full_soon(dir.path(), 1000).await;
        for sql in [
            "UPDATE trials SET status = 'pruned', finished_at = NULL WHERE id = 't1'",
            "INSERT INTO attempts (trial_id, attempt, started_at, finished_at) VALUES ('t1', 1, 10.0, 20.0), ('t1', 2, 30.0, 42.5)",
            "DELETE FROM _sqlx_migrations WHERE version = 20261207000001",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let pool = crate::db::open(&dir.path().join("r.db"), false)
            .await
            .unwrap();
        assert_eq!(finished_at(&pool).await, Some(42.5));
    }

    #[tokio::test]
    async fn the_writer_waits_briefly_for_a_lock_held_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, sweep_id, conn) = full_soon(dir.path(), 1000).await;
        let (recorder, writer) = Recorder::spawn_on(conn).await.unwrap();
        // Another process (`sqlite3`) holds the write lock and never lets go.
        let mut other = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *other)
            .await
            .unwrap();
        recorder.send(StoreEvent::Heartbeat { sweep_id });
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(50), recorder.flush())
            .await
            .expect("the writer gave up on the lock instead of waiting a minute");
        assert!(
            matches!(r, Err(WriteError::Failed { full: false, .. })),
            "{r:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(WRITER_BUSY_TIMEOUT_MS as u64 / 2));
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        drop(recorder);
        assert!(writer.await.unwrap().is_err());
    }
}
