//! The read side: what `report`, `status` and `show` ask of the database.
//! Read-only; every user value is bound as a parameter, never spliced into SQL.
use super::model::TrialStatus;
use serde::Serialize;
use sqlx::SqlitePool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TrialRow {
    pub trial: String,
    pub sweep: String,
    pub backbone: String,
    pub lr: f64,
    pub epochs: i64,
    pub batch_size: i64,
    pub image_size: i64,
    pub seed: i64,
    pub status: TrialStatus,
    pub epochs_done: i64,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub device: Option<String>,
    pub attempts: i64,
    pub params: String,
}

/// Every sweep's name and the sweep file it was registered from (TOML text),
/// oldest first.
pub async fn sweep_files(pool: &SqlitePool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, toml FROM sweeps ORDER BY created_at, id")
        .fetch_all(pool)
        .await
}

/// Each trial of `sweep` with its status, in sweep order.
pub async fn trial_statuses(
    pool: &SqlitePool,
    sweep: &str,
) -> Result<Vec<(String, TrialStatus)>, sqlx::Error> {
    sqlx::query_as("SELECT t.id, t.status FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = ? ORDER BY t.ordinal")
        .bind(sweep)
        .fetch_all(pool)
        .await
}

/// Why a sweep or trial named on the command line could not be resolved. Every
/// variant but `Db` is the user's input (exit 2); `Db` is the database failing
/// (locked, corrupt, unreadable: exit 1), which must never read as "not found".
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "no sweep named {name:?} in the database; known sweeps: {}",
        list_or_none(known)
    )]
    NoSuchSweep { name: String, known: Vec<String> },
    #[error("the database holds no sweeps yet; run one with `sweep run FILE`")]
    NoSweeps,
    #[error(
        "{prefix:?} is not a trial id (ids are hex, e.g. 5fb60f28a7); list them with `sweep status`"
    )]
    NotATrialId { prefix: String },
    #[error(
        "no trial {prefix:?} in the database; list trials with `sweep status` or `sweep report`"
    )]
    NoSuchTrial { prefix: String },
    #[error("trial prefix {prefix:?} is ambiguous: {} …; give more digits", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        /// Up to five of the trials it matches.
        candidates: Vec<String>,
    },
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ResolveError {
    /// True when the user named something that is not there (or not one
    /// thing); false when the database itself failed.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ResolveError::Db(_))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// The named sweep, or the most recently updated one.
pub async fn resolve_sweep(pool: &SqlitePool, name: Option<&str>) -> Result<String, ResolveError> {
    match name {
        Some(n) => {
            let found: Option<String> =
                sqlx::query_scalar("SELECT name FROM sweeps WHERE name = ?")
                    .bind(n)
                    .fetch_optional(pool)
                    .await?;
            match found {
                Some(s) => Ok(s),
                None => Err(ResolveError::NoSuchSweep {
                    name: n.to_string(),
                    known: sqlx::query_scalar("SELECT name FROM sweeps ORDER BY updated_at DESC")
                        .fetch_all(pool)
                        .await?,
                }),
            }
        }
        None => {
            sqlx::query_scalar("SELECT name FROM sweeps ORDER BY updated_at DESC, id DESC LIMIT 1")
                .fetch_optional(pool)
                .await?
                .ok_or(ResolveError::NoSweeps)
        }
    }
}

pub async fn trials(pool: &SqlitePool, sweep: &str) -> Result<Vec<TrialRow>, sqlx::Error> {
    sqlx::query_as::<_, TrialRow>(
        "SELECT s.trial, s.sweep, s.backbone, s.lr, s.epochs, s.batch_size, s.image_size, s.seed, s.status, s.epochs_done,
                s.val_accuracy, s.val_loss, s.test_accuracy, s.test_loss, s.wall_s, s.images_per_s, s.device, s.attempts, s.params
         FROM trial_summary s JOIN trials t ON t.id = s.trial WHERE s.sweep = ? ORDER BY t.ordinal",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// A trial's resolved config, its sweep name and its class names (sorted, as ImageFolder orders them).
pub async fn trial_for_predict(
    pool: &SqlitePool,
    trial: &str,
) -> Result<(String, String, Vec<String>), ResolveError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT t.params, s.name FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = ?",
    )
    .bind(trial)
    .fetch_optional(pool)
    .await?;
    let Some((params, sweep)) = row else {
        return Err(ResolveError::NoSuchTrial {
            prefix: trial.to_string(),
        });
    };
    let classes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT class FROM class_accuracy WHERE trial_id = ? ORDER BY class",
    )
    .bind(trial)
    .fetch_all(pool)
    .await?;
    Ok((params, sweep, classes))
}

/// A typed value for `--where KEY=VALUE`, bound as a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl FilterValue {
    pub fn parse(v: &str) -> FilterValue {
        match v {
            "true" => FilterValue::Int(1),
            "false" => FilterValue::Int(0),
            _ => v
                .parse::<i64>()
                .map(FilterValue::Int)
                .or_else(|_| v.parse::<f64>().map(FilterValue::Float))
                .unwrap_or_else(|_| FilterValue::Text(v.to_string())),
        }
    }
}

/// Trials of a sweep, filtered by parameter values and status. `key` must be
/// validated by the caller against the known parameter names; it is still
/// bound (as a JSON path), never spliced.
pub async fn trials_filtered(
    pool: &SqlitePool,
    sweep: &str,
    filters: &[(String, FilterValue)],
    status: Option<TrialStatus>,
) -> Result<Vec<TrialRow>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT s.trial, s.sweep, s.backbone, s.lr, s.epochs, s.batch_size, s.image_size, s.seed, s.status, s.epochs_done,
                s.val_accuracy, s.val_loss, s.test_accuracy, s.test_loss, s.wall_s, s.images_per_s, s.device, s.attempts, s.params
         FROM trial_summary s JOIN trials t ON t.id = s.trial WHERE s.sweep = ?",
    );
    for _ in filters {
        sql.push_str(" AND json_extract(s.params, ?) = ?");
    }
    if status.is_some() {
        sql.push_str(" AND s.status = ?");
    }
    sql.push_str(" ORDER BY t.ordinal");
    let mut q = sqlx::query_as::<_, TrialRow>(&sql).bind(sweep);
    for (k, v) in filters {
        q = q.bind(format!("$.{k}"));
        q = match v {
            FilterValue::Int(i) => q.bind(*i),
            FilterValue::Float(f) => q.bind(*f),
            FilterValue::Text(s) => q.bind(s.clone()),
        };
    }
    if let Some(s) = status {
        q = q.bind(s.to_string());
    }
    q.fetch_all(pool).await
}

/// Resolves a trial id or unique prefix, preferring the given sweep's trials
/// (`show`, `plot` and `predict` all resolve ids here).
/// Returns (trial id, its sweep's name).
pub async fn resolve_trial(
    pool: &SqlitePool,
    prefer_sweep: Option<&str>,
    prefix: &str,
) -> Result<(String, String), ResolveError> {
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ResolveError::NotATrialId {
            prefix: prefix.to_string(),
        });
    }
    let q = "SELECT t.id, s.name FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id LIKE ? || '%' AND (? IS NULL OR s.name = ?) ORDER BY t.id LIMIT 6";
    let mut found: Vec<(String, String)> = sqlx::query_as(q)
        .bind(prefix)
        .bind(prefer_sweep)
        .bind(prefer_sweep)
        .fetch_all(pool)
        .await?;
    if found.is_empty() {
        found = sqlx::query_as(q)
            .bind(prefix)
            .bind(None::<String>)
            .bind(None::<String>)
            .fetch_all(pool)
            .await?;
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ResolveError::NoSuchTrial {
            prefix: prefix.to_string(),
        }),
        _ => Err(ResolveError::Ambiguous {
            prefix: prefix.to_string(),
            candidates: found.into_iter().take(5).map(|(id, _)| id).collect(),
        }),
    }
}

fn all_rows(limit: Option<usize>) -> i64 {
    // SQLite reads a negative LIMIT as "no limit".
    limit
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
        .unwrap_or(-1)
}

/// What a sweep's report header says about it (`sweeps` row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SweepMeta {
    pub dataset: String,
    pub description: Option<String>,
    pub status: String,
    /// `[sweep] metric`: what picked each trial's best checkpoint (val_accuracy
    /// or val_loss), or for a program sweep any name the program reports.
    pub metric: String,
    /// How `metric` ranks: 'max' or 'min' (NULL in sweeps made before the column).
    pub direction: Option<String>,
    /// `[program] command` as a JSON argv template; NULL for the built-in trainer.
    pub program: Option<String>,
}

pub async fn sweep_meta(pool: &SqlitePool, sweep: &str) -> Result<Option<SweepMeta>, sqlx::Error> {
    sqlx::query_as::<_, SweepMeta>(
        "SELECT dataset, description, status, metric, direction, program FROM sweeps WHERE name = ?",
    )
    .bind(sweep)
    .fetch_optional(pool)
    .await
}

/// One trial's head line for `show`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrialHeader {
    pub sweep: String,
    pub params: String,
    pub status: String,
    pub device: Option<String>,
    pub epochs_done: i64,
    pub epochs: i64,
}

pub async fn trial_header(pool: &SqlitePool, trial: &str) -> Result<TrialHeader, sqlx::Error> {
    sqlx::query_as::<_, TrialHeader>(
        "SELECT s.name AS sweep, t.params, t.status, t.device, t.epochs_done, t.epochs FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = ?",
    )
    .bind(trial)
    .fetch_one(pool)
    .await
}

/// One worker process of a trial (`attempts` row).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i64,
    pub pid: Option<i64>,
    pub device: Option<String>,
    pub batch_size: Option<i64>,
    pub node: Option<String>,
    pub slurm_job: Option<String>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub error_class: Option<String>,
    pub message: Option<String>,
    pub resumed_from_epoch: Option<i64>,
}

pub async fn attempts(pool: &SqlitePool, trial: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as::<_, AttemptRow>(
        "SELECT attempt, pid, device, batch_size, node, slurm_job, started_at, finished_at, exit_code, signal, error_class, message, resumed_from_epoch FROM attempts WHERE trial_id = ? ORDER BY attempt",
    )
    .bind(trial)
    .fetch_all(pool)
    .await
}

/// The last attempt that recorded an error class or message: (class, message).
pub async fn last_error(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Option<(Option<String>, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT error_class, message FROM attempts WHERE trial_id = ? AND (error_class IS NOT NULL OR message IS NOT NULL) ORDER BY attempt DESC LIMIT 1",
    )
    .bind(trial)
    .fetch_optional(pool)
    .await
}

/// One metric series of a trial (e.g. split `valid`, name `accuracy`), in epoch and step order.
pub async fn metric_series(
    pool: &SqlitePool,
    trial: &str,
    split: &str,
    name: &str,
) -> Result<Vec<f64>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM metrics WHERE trial_id = ? AND split = ? AND name = ? ORDER BY epoch, step")
        .bind(trial)
        .bind(split)
        .bind(name)
        .fetch_all(pool)
        .await
}

/// One point of a learning curve: which series (split, name), where (global step), what.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CurvePoint {
    pub split: String,
    pub name: String,
    pub step: i64,
    pub value: f64,
}

/// Loss and accuracy points of the training (per log step) and validation (per
/// epoch) splits, by step.
pub async fn learning_curves(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Vec<CurvePoint>, sqlx::Error> {
    sqlx::query_as::<_, CurvePoint>(
        "SELECT split, name, step, value FROM metrics
         WHERE trial_id = ? AND split IN (?, ?) AND name IN (?, ?) ORDER BY step, epoch",
    )
    .bind(trial)
    .bind("train")
    .bind("valid")
    .bind("loss")
    .bind("accuracy")
    .fetch_all(pool)
    .await
}

/// A trial's test result (`test_results` row): the best-validation checkpoint on the test split.
#[derive(Debug, Clone, Copy, Serialize, sqlx::FromRow)]
pub struct TestResult {
    pub accuracy: f64,
    pub loss: f64,
    pub n: i64,
    /// The epoch of the checkpoint that was tested.
    pub epoch: i64,
}

pub async fn test_result(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Option<TestResult>, sqlx::Error> {
    sqlx::query_as::<_, TestResult>(
        "SELECT accuracy, loss, n, epoch FROM test_results WHERE trial_id = ?",
    )
    .bind(trial)
    .fetch_optional(pool)
    .await
}

/// A trial of a sweep with its test result, if any (plan order).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrialWithTest {
    pub id: String,
    pub status: String,
    pub params: String,
    pub accuracy: Option<f64>,
    pub loss: Option<f64>,
    pub n: Option<i64>,
    pub epoch: Option<i64>,
}

impl TrialWithTest {
    pub fn test(&self) -> Option<TestResult> {
        match (self.accuracy, self.loss, self.n, self.epoch) {
            (Some(accuracy), Some(loss), Some(n), Some(epoch)) => Some(TestResult {
                accuracy,
                loss,
                n,
                epoch,
            }),
            _ => None,
        }
    }
}

pub async fn trials_with_test(
    pool: &SqlitePool,
    sweep: &str,
) -> Result<Vec<TrialWithTest>, sqlx::Error> {
    sqlx::query_as::<_, TrialWithTest>(
        "SELECT t.id, t.status, t.params, r.accuracy, r.loss, r.n, r.epoch
         FROM trials t JOIN sweeps s ON s.id = t.sweep_id LEFT JOIN test_results r ON r.trial_id = t.id
         WHERE s.name = ? ORDER BY t.ordinal",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// Per-class test accuracy of a trial (`class_accuracy` row).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ClassAccuracy {
    pub class: String,
    pub correct: i64,
    pub total: i64,
    pub accuracy: f64,
}

/// Sorted by class name.
pub async fn class_accuracy(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Vec<ClassAccuracy>, sqlx::Error> {
    sqlx::query_as::<_, ClassAccuracy>("SELECT class, correct, total, accuracy FROM class_accuracy WHERE trial_id = ? ORDER BY class")
        .bind(trial)
        .fetch_all(pool)
        .await
}

/// One cell of a trial's test confusion matrix.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ConfusionCell {
    pub true_class: String,
    pub pred_class: String,
    pub count: i64,
}

/// Sorted by true class, then predicted class.
pub async fn confusion(pool: &SqlitePool, trial: &str) -> Result<Vec<ConfusionCell>, sqlx::Error> {
    sqlx::query_as::<_, ConfusionCell>("SELECT true_class, pred_class, count FROM confusion WHERE trial_id = ? ORDER BY true_class, pred_class")
        .bind(trial)
        .fetch_all(pool)
        .await
}

/// A misclassified test image.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Misclassified {
    pub file: String,
    pub true_class: String,
    pub pred_class: String,
    pub prob: f64,
}

/// Most confident mistakes first (then by file); at most `limit` (all with `None`).
pub async fn misclassified(
    pool: &SqlitePool,
    trial: &str,
    limit: Option<usize>,
) -> Result<Vec<Misclassified>, sqlx::Error> {
    sqlx::query_as::<_, Misclassified>("SELECT file, true_class, pred_class, prob FROM misclassified WHERE trial_id = ? ORDER BY prob DESC, file LIMIT ?")
        .bind(trial)
        .bind(all_rows(limit))
        .fetch_all(pool)
        .await
}

/// Images per class and split of a sweep's dataset.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClassCount {
    pub split: String,
    pub class: String,
    pub count: i64,
}

/// Sorted by class name (callers order the splits).
pub async fn class_distribution(
    pool: &SqlitePool,
    sweep: &str,
) -> Result<Vec<ClassCount>, sqlx::Error> {
    sqlx::query_as::<_, ClassCount>(
        "SELECT d.split, d.class, d.count FROM class_distribution d JOIN sweeps s ON s.id = d.sweep_id WHERE s.name = ? ORDER BY d.class",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// Every stopping decision of a sweep, oldest first (to rebuild rung state on restart).
pub async fn decisions(
    pool: &SqlitePool,
    sweep: &str,
) -> Result<Vec<super::model::DecisionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.trial_id, d.epoch, d.method, d.rung, d.bracket, d.metric, d.value, d.cutoff, d.compared, d.action, d.time
         FROM decisions d JOIN trials t ON t.id = d.trial_id JOIN sweeps s ON s.id = t.sweep_id
         WHERE s.name = ? ORDER BY d.time, d.rowid",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// One trial's stopping decisions, by epoch.
pub async fn trial_decisions(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Vec<super::model::DecisionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT trial_id, epoch, method, rung, bracket, metric, value, cutoff, compared, action, time
         FROM decisions WHERE trial_id = ? ORDER BY epoch, method",
    )
    .bind(trial)
    .fetch_all(pool)
    .await
}

/// The values per (trial, epoch) of a sweep's metric `name` in `split` ("valid" and
/// "accuracy" or "loss" for the built-in trainer; "epoch" and its name for a program).
pub async fn validation_history(
    pool: &SqlitePool,
    sweep: &str,
    split: &str,
    name: &str,
) -> Result<Vec<(String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.trial_id, m.epoch, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN sweeps s ON s.id = t.sweep_id
         WHERE s.name = ? AND m.split = ? AND m.name = ? ORDER BY m.epoch",
    )
    .bind(sweep)
    .bind(split)
    .bind(name)
    .fetch_all(pool)
    .await
}

/// What a program trial reported under one (split, name), summed up:
/// `split` is 'epoch', 'step' or 'test' (see migrations/20261207000002_program.sql).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetricSummary {
    pub trial: String,
    pub split: String,
    pub name: String,
    pub min: f64,
    pub max: f64,
    /// The value of the latest record (highest epoch, then step).
    pub last: f64,
    /// The epoch of that record.
    pub last_epoch: i64,
    /// How many records carried it.
    pub n: i64,
}

/// Every (trial, split, name) a program sweep's trials reported, summed up,
/// by trial (plan order), split and name. The built-in trainer's splits
/// (`train`, `train_epoch`, `valid`) are left out.
pub async fn program_metric_summaries(
    pool: &SqlitePool,
    sweep: &str,
) -> Result<Vec<MetricSummary>, sqlx::Error> {
    sqlx::query_as::<_, MetricSummary>(
        "SELECT m.trial_id AS trial, m.split, m.name, MIN(m.value) AS min, MAX(m.value) AS max,
                (SELECT l.value FROM metrics l WHERE l.trial_id = m.trial_id AND l.split = m.split AND l.name = m.name
                  ORDER BY l.epoch DESC, l.step DESC LIMIT 1) AS last,
                MAX(m.epoch) AS last_epoch, COUNT(*) AS n
         FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN sweeps s ON s.id = t.sweep_id
         WHERE s.name = ? AND m.split IN ('epoch', 'step', 'test')
         GROUP BY m.trial_id, m.split, m.name
         ORDER BY t.ordinal, m.split, m.name",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// One record value of a program trial (`metrics` row of split 'epoch', 'step' or 'test').
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProgramPoint {
    pub split: String,
    pub name: String,
    pub epoch: i64,
    pub step: i64,
    pub value: f64,
}

/// Every value a program trial reported, by split, name, epoch and step.
pub async fn program_points(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Vec<ProgramPoint>, sqlx::Error> {
    sqlx::query_as::<_, ProgramPoint>(
        "SELECT split, name, epoch, step, value FROM metrics
         WHERE trial_id = ? AND split IN ('epoch', 'step', 'test') ORDER BY split, name, epoch, step",
    )
    .bind(trial)
    .fetch_all(pool)
    .await
}
