//! The read side of `sweep serve`: a read-only connection (SQLite
//! `mode=ro`, `query_only`) and the queries the live dashboard asks.
//!
//! Never writes, never migrates, never changes the journal mode: the database
//! may belong to a running `sweep run` (WAL: readers never block its writer)
//! or be a copied file on a laptop. Every value from a request is bound as a
//! parameter, never spliced into SQL. Statuses and error classes are read as
//! text, so a status a newer `sweep` adds shows as it is instead of failing.
use crate::db::{MIGRATOR, OpenCause, StoreError};
use crate::model::DecisionRow;
use crate::queries::{ClassAccuracy, ConfusionCell};
use crate::scan::{Arg, scan};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection};
use std::path::Path;
use std::time::Duration;

fn options(path: &Path) -> SqliteConnectOptions {
    // `read_only(true)` opens with SQLITE_OPEN_READONLY (the `mode=ro` of a
    // URI); `query_only` makes even a stray write statement fail. No journal
    // mode is set: a WAL database stays WAL, read through its `-wal`. No
    // `mmap_size`: mapping the file saved a first read some system calls,
    // but every connection's mapped pages count in the server's RSS (a peak
    // of 242 MB on the 210 MB benchmark database, against 45 MB without).
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .pragma("query_only", "ON")
        .busy_timeout(Duration::from_secs(5))
}

fn open_error(path: &Path, e: sqlx::Error) -> StoreError {
    let cause = match e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff)
    {
        Some(11 | 26) => OpenCause::NotADatabase,
        _ => OpenCause::Machine,
    };
    StoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
        cause,
    }
}

/// Opens `path` read-only: a pool for the queries, and refuses a file that is
/// not a sweep database or comes from a newer `sweep`, writing nothing.
pub async fn open_read_only(path: &Path) -> Result<SqlitePool, StoreError> {
    if path.is_dir() {
        return Err(StoreError::IsDirectory(path.to_path_buf()));
    }
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options(path))
        .await
        .map_err(|e| open_error(path, e))?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .map_err(|e| open_error(path, e))?;
    if !tables.iter().any(|t| t == "_sqlx_migrations") || !tables.iter().any(|t| t == "sweeps") {
        let mut shown: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
        if tables.len() > 5 {
            shown.push("…");
        }
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            tables: if shown.is_empty() {
                "none".into()
            } else {
                shown.join(", ")
            },
        });
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&pool)
        .await
        .map_err(|e| open_error(path, e))?;
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(found) = applied.iter().copied().filter(|&v| v > known).max() {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    Ok(pool)
}

/// One connection of its own for [`data_version`]: SQLite's counter moves
/// only for commits made by *other* connections, so it must be asked on the
/// same connection every time.
pub async fn change_probe(path: &Path) -> Result<SqliteConnection, StoreError> {
    SqliteConnection::connect_with(&options(path))
        .await
        .map_err(|e| open_error(path, e))
}

/// `PRAGMA data_version`: changes whenever another connection (the recorder
/// of a running sweep) committed since the last call on `conn`.
pub async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

/// A sweep's row with its trials counted by status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SweepRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub metric: String,
    /// 'max' | 'min' (None in databases made before it).
    pub direction: Option<String>,
    /// `[program] command` (None: the built-in trainer).
    pub program: Option<String>,
    pub dataset: String,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub heartbeat_at: Option<f64>,
    pub trials: i64,
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub pruned: i64,
    pub failed: i64,
    pub interrupted: i64,
    /// Waiting at a rung of promotion-based stopping (`mode = "promote"`).
    pub paused: i64,
    /// When its first attempt started and its last one ended (or the latest start).
    pub first_start: Option<f64>,
    pub last_activity: Option<f64>,
}

const SWEEP_ROW: &str =
    "SELECT s.id, s.name, s.description, s.metric, s.direction, s.program, s.dataset, s.status,
       s.created_at, s.updated_at, s.heartbeat_at,
       COUNT(t.id) AS trials,
       COALESCE(SUM(t.status = 'queued'), 0) AS queued,
       COALESCE(SUM(t.status = 'running'), 0) AS running,
       COALESCE(SUM(t.status = 'done'), 0) AS done,
       COALESCE(SUM(t.status = 'pruned'), 0) AS pruned,
       COALESCE(SUM(t.status = 'failed'), 0) AS failed,
       COALESCE(SUM(t.status = 'interrupted'), 0) AS interrupted,
       COALESCE(SUM(t.status = 'paused'), 0) AS paused,
       MIN(t.started_at) AS first_start,
       NULLIF(MAX(MAX(COALESCE(t.finished_at, 0.0), COALESCE(t.started_at, 0.0))), 0.0) AS last_activity
FROM sweeps s LEFT JOIN trials t ON t.sweep_id = s.id";

/// Every sweep, the most recently created first.
pub async fn sweeps(pool: &SqlitePool) -> Result<Vec<SweepRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SWEEP_ROW} GROUP BY s.id ORDER BY s.created_at DESC, s.id DESC"
    ))
    .fetch_all(pool)
    .await
}

/// One sweep by name.
pub async fn sweep<'e>(
    on: impl sqlx::SqliteExecutor<'e>,
    name: &str,
) -> Result<Option<SweepRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SWEEP_ROW} WHERE s.name = ? GROUP BY s.id"))
        .bind(name)
        .fetch_optional(on)
        .await
}

/// The newest rowid of each table a sweep's snapshot follows, read in the
/// same transaction as the rows it was built from: the next refresh asks
/// only for rows past these. Every table here is appended to (metrics are
/// upserted in place only when a new attempt re-records an epoch, and a new
/// attempt makes the caller reload that trial's curve); rowids only grow
/// because nothing deletes the newest row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Marks {
    pub trials: i64,
    pub metrics: i64,
    pub attempts: i64,
    pub decisions: i64,
    pub tests: i64,
}

pub async fn marks(conn: &mut SqliteConnection) -> Result<Marks, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM trials) AS trials,
                (SELECT COALESCE(MAX(rowid), 0) FROM metrics) AS metrics,
                (SELECT COALESCE(MAX(rowid), 0) FROM attempts) AS attempts,
                (SELECT COALESCE(MAX(rowid), 0) FROM decisions) AS decisions,
                (SELECT COALESCE(MAX(rowid), 0) FROM test_results) AS tests",
    )
    .fetch_one(conn)
    .await
}

/// A trial's columns that never change once it is planned.
#[derive(Debug, Clone)]
pub struct TrialHead {
    pub rowid: i64,
    pub id: String,
    pub ordinal: i64,
    pub epochs: i64,
    pub params: String,
    /// How many attempts it has, and its changing columns, read with it:
    /// a first read needs no [`attempt_counts`] nor [`trial_states`].
    pub attempts: i64,
    pub state: TrialState,
}

// The queries a snapshot is built from return a row per trial, per curve
// value or per decision of a sweep (10,000 / 223,000 / 34,000 in the
// benchmark): they go through `scan`, not sqlx's per-row decoding.

/// The sweep's trials added after rowid `after` (0: all of them), by ordinal.
pub async fn trials_added(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    after: i64,
) -> Result<Vec<TrialHead>, sqlx::Error> {
    let mut out = Vec::new();
    scan(
        conn,
        &format!(
            "SELECT {STATE}, id, ordinal, epochs, params,
                    (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = trials.id)
             FROM trials WHERE sweep_id = ? AND rowid > ?"
        ),
        &[Arg::Int(sweep_id), Arg::Int(after)],
        |r| {
            out.push(TrialHead {
                rowid: r.int(0),
                id: r.text(8).into_owned(),
                ordinal: r.int(9),
                epochs: r.int(10),
                params: r.text(11).into_owned(),
                attempts: r.int(12),
                state: state(r),
            })
        },
    )
    .await?;
    // Sorted here: SQLite's ORDER BY would copy every params text into its sorter.
    out.sort_by_key(|t| (t.ordinal, t.rowid));
    Ok(out)
}

/// A trial's columns that the recorder updates while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialState {
    pub rowid: i64,
    pub status: String,
    pub device: Option<String>,
    pub epochs_done: i64,
    pub images_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

/// A [`TrialState`]'s columns, first in a query; read by [`state`].
const STATE: &str =
    "rowid, status, device, epochs_done, images_per_s, wall_s, started_at, finished_at";

fn state(r: &crate::scan::Row<'_>) -> TrialState {
    TrialState {
        rowid: r.int(0),
        status: r.text(1).into_owned(),
        device: r.opt_text(2),
        epochs_done: r.int(3),
        images_per_s: r.opt_real(4),
        wall_s: r.opt_real(5),
        started_at: r.opt_real(6),
        finished_at: r.opt_real(7),
    }
}

/// Every trial's changing columns (trials have no change counter, and
/// 10,000 short rows cost a few milliseconds).
pub async fn trial_states(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    mut each: impl FnMut(TrialState),
) -> Result<(), sqlx::Error> {
    scan(
        conn,
        &format!("SELECT {STATE} FROM trials WHERE sweep_id = ?"),
        &[Arg::Int(sweep_id)],
        |r| each(state(r)),
    )
    .await?;
    Ok(())
}

/// How many attempts each trial has that gained one after attempt rowid `after`.
pub async fn attempt_counts(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    after: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let mut out = Vec::new();
    scan(
        conn,
        "SELECT t.rowid, (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id)
         FROM trials t
         WHERE t.sweep_id = ? AND t.id IN (SELECT trial_id FROM attempts WHERE rowid > ?)",
        &[Arg::Int(sweep_id), Arg::Int(after)],
        |r| out.push((r.int(0), r.int(1))),
    )
    .await?;
    Ok(out)
}

/// Test accuracies recorded after test rowid `after`: (trial rowid, accuracy).
pub async fn tests_added(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    after: i64,
) -> Result<Vec<(i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.rowid, r.accuracy FROM test_results r CROSS JOIN trials t ON t.id = r.trial_id
         WHERE r.rowid > ? AND t.sweep_id = ?",
    )
    .bind(after)
    .bind(sweep_id)
    .fetch_all(conn)
    .await
}

/// A stopping decision, as a trial's row shows its latest.
#[derive(Debug, Clone)]
pub struct DecisionMark {
    pub trial_rowid: i64,
    pub method: String,
    pub rung: Option<i64>,
    pub epoch: i64,
    pub action: String,
    pub time: f64,
}

/// The sweep's decisions recorded after decision rowid `after`, in no order.
pub async fn decisions_added(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    after: i64,
    mut each: impl FnMut(DecisionMark),
) -> Result<(), sqlx::Error> {
    // All of them: the sweep's trials, each with its decisions (a range of
    // the primary key); some: the new rows, each looking its trial up.
    let sql = if after == 0 {
        "SELECT t.rowid, d.method, d.rung, d.epoch, d.action, d.time
         FROM trials t JOIN decisions d ON d.trial_id = t.id
         WHERE d.rowid > ? AND t.sweep_id = ?"
    } else {
        "SELECT t.rowid, d.method, d.rung, d.epoch, d.action, d.time
         FROM decisions d CROSS JOIN trials t ON t.id = d.trial_id
         WHERE d.rowid > ? AND t.sweep_id = ?"
    };
    scan(conn, sql, &[Arg::Int(after), Arg::Int(sweep_id)], |r| {
        each(DecisionMark {
            trial_rowid: r.int(0),
            method: r.text(1).into_owned(),
            rung: r.opt_int(2),
            epoch: r.int(3),
            action: r.text(4).into_owned(),
            time: r.real(5),
        })
    })
    .await?;
    Ok(())
}

/// Where a sweep's metric is recorded: a `[program]` sweep's (`program`)
/// in its epoch records (split `epoch`, under its own name); the built-in
/// worker's `val_X` in split `valid`, name `X`; any other name as it is, in
/// any per-epoch split.
pub fn metric_source(metric: &str, program: bool) -> (Option<&'static str>, String) {
    if program {
        return (Some("epoch"), metric.to_string());
    }
    match metric.strip_prefix("val_") {
        Some(rest) if !rest.is_empty() => (Some("valid"), rest.to_string()),
        _ => (None, metric.to_string()),
    }
}

/// One per-epoch value of the sweep's metric.
#[derive(Debug, Clone, Copy)]
pub struct EpochValue {
    /// The trial's rowid: cheaper than its id.
    pub trial_rowid: i64,
    pub epoch: i64,
    pub value: f64,
    pub time: f64,
}

/// Which of a sweep's metric values to read.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// All of them (through the covering index `metrics_epoch_values`, a
    /// range per trial).
    All,
    /// Those recorded after metrics rowid N (a range of the table itself).
    Since(i64),
    /// Those of the trial with this rowid.
    Trial(i64),
}

/// The sweep's per-epoch values of `metric`, handed to `each` as they are
/// read (never all in memory at once), in no promised order.
pub async fn metric_values(
    conn: &mut SqliteConnection,
    sweep_id: i64,
    metric: &str,
    program: bool,
    which: Values,
    mut each: impl FnMut(EpochValue),
) -> Result<(), sqlx::Error> {
    let (split, name) = metric_source(metric, program);
    // The `NOT IN` term is the partial index's own WHERE, written the same
    // way so that SQLite can use the index.
    let on = if split.is_some() {
        "m.split = ? AND m.name = ? AND m.split NOT IN ('train', 'step')"
    } else {
        "m.name = ? AND m.split NOT IN ('train', 'step')"
    };
    let cols = "t.rowid, m.epoch, m.value, m.time";
    let sql = match which {
        Values::All => {
            format!(
                "SELECT {cols} FROM trials t JOIN metrics m ON m.trial_id = t.id AND {on} WHERE t.sweep_id = ?"
            )
        }
        // CROSS JOIN keeps metrics the outer loop: a rowid range, not every trial's index range.
        Values::Since(_) => format!(
            "SELECT {cols} FROM metrics m CROSS JOIN trials t ON t.id = m.trial_id WHERE m.rowid > ? AND {on} AND t.sweep_id = ?"
        ),
        Values::Trial(_) => format!(
            "SELECT {cols} FROM trials t JOIN metrics m ON m.trial_id = t.id AND {on} WHERE t.sweep_id = ? AND t.rowid = ?"
        ),
    };
    let mut args = Vec::with_capacity(4);
    if let Values::Since(after) = which {
        args.push(Arg::Int(after));
    }
    if let Some(split) = split {
        args.push(Arg::Text(split));
    }
    args.extend([Arg::Text(&name), Arg::Int(sweep_id)]);
    if let Values::Trial(rowid) = which {
        args.push(Arg::Int(rowid));
    }
    scan(conn, &sql, &args, |r| {
        each(EpochValue {
            trial_rowid: r.int(0),
            epoch: r.int(1),
            value: r.real(2),
            time: r.real(3),
        })
    })
    .await?;
    Ok(())
}

/// One worker process, for the sweep's timeline.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TimelineBar {
    pub trial: String,
    pub attempt: i64,
    pub device: Option<String>,
    pub node: Option<String>,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub error_class: Option<String>,
    pub exit_code: Option<i64>,
    pub trial_status: String,
}

/// The newest `limit` attempts of a sweep, oldest first.
pub async fn timeline(
    pool: &SqlitePool,
    sweep_id: i64,
    limit: i64,
) -> Result<Vec<TimelineBar>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM (
           SELECT a.trial_id AS trial, a.attempt, a.device, a.node, a.started_at, a.finished_at,
                  a.error_class, a.exit_code, t.status AS trial_status
           FROM attempts a JOIN trials t ON t.id = a.trial_id
           WHERE t.sweep_id = ?
           ORDER BY a.started_at DESC LIMIT ?)
         ORDER BY started_at",
    )
    .bind(sweep_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One rung of a sweep's early stopping (for rules without rungs, median
/// and patience: one epoch), for the per-rung view.
#[derive(Debug, Clone)]
pub struct RungDecisions {
    pub method: String,
    /// 0 where the rule has none.
    pub bracket: i64,
    /// The rung's index, or the epoch for rules without rungs.
    pub rung: i64,
    /// The epochs its decisions were made at, ascending.
    pub epochs: Vec<i64>,
    /// The metric of its first decision.
    pub metric: String,
    /// How many decisions, and of those how many stopped, paused (still
    /// waiting at the rung), promoted (paused, then resumed) and (PBT)
    /// exploited (resumed from a better trial's checkpoint).
    pub decisions: usize,
    pub stopped: usize,
    pub paused: usize,
    pub promoted: usize,
    pub exploited: usize,
    /// The cutoff of its latest decision that had one.
    pub cutoff: Option<f64>,
    /// Its first decisions, in time order, at most `per_rung` of them.
    pub values: Vec<DecisionRow>,
}

/// The sweep's first `limit` stopping decisions (in time order) grouped by
/// (method, bracket, rung), each rung with its first `per_rung` decisions.
/// Returns how many decisions were grouped, and the rungs by method,
/// bracket and rung.
///
/// One unsorted read through [`scan`] (17 ms for 34,000 decisions on the
/// development machine), sorted and grouped here: SQLite's own sorter took
/// 40 ms more for the time order, and as much again to group.
pub async fn decisions_by_rung(
    pool: &SqlitePool,
    sweep_id: i64,
    limit: usize,
    per_rung: usize,
) -> Result<(usize, Vec<RungDecisions>), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut rows: Vec<DecisionRow> = Vec::new();
    scan(
        &mut conn,
        "SELECT d.trial_id, d.epoch, d.method, d.rung, d.bracket, d.metric, d.value, d.cutoff,
                d.compared, d.action, d.time
         FROM decisions d JOIN trials t ON t.id = d.trial_id
         WHERE t.sweep_id = ?",
        &[Arg::Int(sweep_id)],
        |r| {
            rows.push(DecisionRow {
                trial_id: r.text(0).into_owned(),
                epoch: r.int(1),
                method: r.text(2).into_owned(),
                rung: r.opt_int(3),
                bracket: r.opt_int(4),
                metric: r.text(5).into_owned(),
                value: r.real(6),
                cutoff: r.opt_real(7),
                compared: r.int(8),
                action: r.text(9).into_owned(),
                time: r.real(10),
            })
        },
    )
    .await?;
    drop(conn);
    // SQLite's `ORDER BY time, trial_id` (REAL and BINARY text compare the same way).
    rows.sort_by(|a, b| {
        a.time
            .total_cmp(&b.time)
            .then_with(|| a.trial_id.cmp(&b.trial_id))
    });
    rows.truncate(limit);
    let total = rows.len();
    // Rules without rungs (median, patience) group by epoch; no bracket is 0.
    let mut groups: std::collections::BTreeMap<(String, i64, i64), RungDecisions> =
        Default::default();
    for d in rows {
        let (bracket, rung) = (d.bracket.unwrap_or(0), d.rung.unwrap_or(d.epoch));
        let g = groups
            .entry((d.method.clone(), bracket, rung))
            .or_insert_with(|| RungDecisions {
                method: d.method.clone(),
                bracket,
                rung,
                epochs: Vec::new(),
                metric: d.metric.clone(),
                decisions: 0,
                stopped: 0,
                paused: 0,
                promoted: 0,
                exploited: 0,
                cutoff: None,
                values: Vec::new(),
            });
        g.decisions += 1;
        match d.action.as_str() {
            "stop" => g.stopped += 1,
            "pause" => g.paused += 1,
            "promote" => g.promoted += 1,
            "exploit" => g.exploited += 1,
            _ => {}
        }
        if d.cutoff.is_some() {
            g.cutoff = d.cutoff;
        }
        if let Err(i) = g.epochs.binary_search(&d.epoch) {
            g.epochs.insert(i, d.epoch);
        }
        if g.values.len() < per_rung {
            g.values.push(d);
        }
    }
    Ok((total, groups.into_values().collect()))
}

/// A trial's page head.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TrialDetail {
    pub id: String,
    pub sweep: String,
    pub metric: String,
    /// 'max' | 'min' (None in databases made before it).
    pub direction: Option<String>,
    pub dataset: String,
    pub ordinal: i64,
    pub status: String,
    pub device: Option<String>,
    pub epochs: i64,
    pub epochs_done: i64,
    pub params: String,
    pub best_val_accuracy: Option<f64>,
    pub images_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

pub async fn trial(pool: &SqlitePool, id: &str) -> Result<Option<TrialDetail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, s.name AS sweep, s.metric, s.direction, s.dataset, t.ordinal, t.status, t.device, t.epochs,
                t.epochs_done, t.params, t.best_val_accuracy, t.images_per_s, t.wall_s,
                t.created_at, t.started_at, t.finished_at
         FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// One metric row of a trial.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MetricPoint {
    pub split: String,
    pub name: String,
    pub epoch: i64,
    pub step: i64,
    pub value: f64,
}

/// A trial's metric rows, at most `limit` (the newest are dropped past it;
/// the caller thins the per-step series).
pub async fn trial_metrics(
    pool: &SqlitePool,
    id: &str,
    limit: i64,
) -> Result<Vec<MetricPoint>, sqlx::Error> {
    sqlx::query_as(
        "SELECT split, name, epoch, step, value FROM metrics WHERE trial_id = ?
         ORDER BY split, name, step, epoch LIMIT ?",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The train loss of several trials, per step, for the sweep page.
pub async fn train_loss(
    pool: &SqlitePool,
    id: &str,
    limit: i64,
) -> Result<Vec<(i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT step, value FROM metrics WHERE trial_id = ? AND split = 'train' AND name = 'loss'
         ORDER BY step LIMIT ?",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A trial's per-class accuracies, sorted by class, at most `limit`.
pub async fn trial_classes(
    pool: &SqlitePool,
    id: &str,
    limit: i64,
) -> Result<Vec<ClassAccuracy>, sqlx::Error> {
    sqlx::query_as(
        "SELECT class, correct, total, accuracy FROM class_accuracy WHERE trial_id = ? ORDER BY class LIMIT ?",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A trial's confusion cells, sorted by true and predicted class, at most `limit`.
pub async fn trial_confusion(
    pool: &SqlitePool,
    id: &str,
    limit: i64,
) -> Result<Vec<ConfusionCell>, sqlx::Error> {
    sqlx::query_as(
        "SELECT true_class, pred_class, count FROM confusion WHERE trial_id = ? ORDER BY true_class, pred_class LIMIT ?",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Whether `file` is one of the trial's misclassified images, and the
/// sweep's dataset root it is relative to.
pub async fn misclassified_file(
    pool: &SqlitePool,
    id: &str,
    file: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.dataset FROM misclassified m JOIN trials t ON t.id = m.trial_id
         JOIN sweeps s ON s.id = t.sweep_id WHERE m.trial_id = ? AND m.file = ?",
    )
    .bind(id)
    .bind(file)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with two sweeps; `s` has three trials whose decisions
    /// are written out of time order (rowid order is not time order), one
    /// rule with rungs and one without, ties in time, and cutoffs missing
    /// from the latest decisions of a rung.
    async fn decisions_db(dir: &Path) -> (SqlitePool, i64) {
        let path = dir.join("d.db");
        let w = crate::db::open(&path, true).await.unwrap();
        let mut sql = String::from(
            "INSERT INTO sweeps (name, file, toml, dataset, created_at, updated_at) VALUES ('s', 'f', '', 'd', 0, 0), ('other', 'f', '', 'd', 0, 0);",
        );
        for (id, sweep) in [("a", 1), ("b", 1), ("c", 1), ("z", 2)] {
            sql += &format!(
                "INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, created_at)
                 VALUES ('{id}', {sweep}, 0, '{{}}', 'r', 0.1, 9, 1, 8, 0, 'running', 0);"
            );
        }
        // (trial, epoch, method, rung, bracket, value, cutoff, action, time)
        for (t, e, m, rung, value, cutoff, action, time) in [
            ("c", 1, "asha", "0", 0.3, "0.5", "stop", 30.0),
            ("a", 1, "asha", "0", 0.9, "NULL", "pause", 10.0),
            ("b", 1, "asha", "0", 0.7, "0.6", "promote", 10.0),
            ("a", 3, "asha", "1", 0.95, "0.8", "continue", 40.0),
            ("a", 2, "median", "NULL", 0.9, "0.4", "continue", 20.0),
            ("b", 3, "asha", "1", 0.75, "NULL", "continue", 50.0),
            ("z", 1, "asha", "0", 0.1, "0.9", "stop", 1.0),
        ] {
            sql += &format!(
                "INSERT INTO decisions (trial_id, epoch, method, rung, bracket, metric, value, cutoff, compared, action, time)
                 VALUES ('{t}', {e}, '{m}', {rung}, NULL, 'val_accuracy', {value}, {cutoff}, 2, '{action}', {time});"
            );
        }
        sqlx::raw_sql(&sql).execute(&w).await.unwrap();
        w.close().await;
        (open_read_only(&path).await.unwrap(), 1)
    }

    #[tokio::test]
    async fn decisions_group_by_rung_in_time_order_cut_per_rung_with_every_count() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, sweep) = decisions_db(dir.path()).await;
        let (total, rungs) = decisions_by_rung(&pool, sweep, 100, 100).await.unwrap();
        assert_eq!(total, 6, "the other sweep's decision is not counted");
        let keys: Vec<(&str, i64, i64)> = rungs
            .iter()
            .map(|g| (g.method.as_str(), g.bracket, g.rung))
            .collect();
        // By method, bracket (none: 0), rung (none: the epoch).
        assert_eq!(keys, [("asha", 0, 0), ("asha", 0, 1), ("median", 0, 2)]);
        let r0 = &rungs[0];
        let order: Vec<&str> = r0.values.iter().map(|d| d.trial_id.as_str()).collect();
        // Time order, ties by trial id.
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(
            (r0.decisions, r0.stopped, r0.paused, r0.promoted),
            (3, 1, 1, 1)
        );
        assert_eq!(r0.cutoff, Some(0.5), "the latest cutoff");
        assert_eq!(r0.epochs, [1]);
        assert_eq!(r0.metric, "val_accuracy");
        // The latest decision of rung 1 has no cutoff: the one before it counts.
        assert_eq!(rungs[1].cutoff, Some(0.8));
        assert_eq!(rungs[1].values[0].rung, Some(1));
        assert_eq!(rungs[2].values[0].rung, None);
        assert_eq!(rungs[2].epochs, [2]);

        // per_rung cuts the values, never the counts.
        let (_, cut) = decisions_by_rung(&pool, sweep, 100, 1).await.unwrap();
        assert_eq!(cut[0].values.len(), 1);
        assert_eq!(cut[0].values[0].trial_id, "a");
        assert_eq!((cut[0].decisions, cut[0].stopped), (3, 1));
        assert_eq!(cut[0].cutoff, Some(0.5));
        // limit keeps the first decisions in time order.
        let (total, first) = decisions_by_rung(&pool, sweep, 3, 100).await.unwrap();
        assert_eq!(total, 3);
        let kept: Vec<(i64, &str)> = first
            .iter()
            .flat_map(|g| g.values.iter().map(|d| (d.epoch, d.trial_id.as_str())))
            .collect();
        assert_eq!(kept, [(1, "a"), (1, "b"), (2, "a")]);
    }
}
