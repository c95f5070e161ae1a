//! The read side of `sweep export` (TensorBoard, CSV, MLflow): every row a
//! publisher needs, in a stable order so that an export of the same database
//! produces the same bytes. Read-only; values are bound, never spliced.
use super::model::TrialStatus;
use sqlx::SqlitePool;

/// A sweep as an exporter sees it (`sweeps` row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportSweep {
    pub id: i64,
    pub name: String,
    /// The sweep file's path when it was registered.
    pub file: String,
    /// The sweep file's text.
    pub toml: String,
    pub description: Option<String>,
    /// `[sweep] metric`: `val_accuracy` or `val_loss`.
    pub metric: String,
    pub dataset: String,
    /// running, done, failed, interrupted.
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
}

/// Every sweep (oldest first), or only `only`; an unknown name gives an empty list.
pub async fn sweeps(
    pool: &SqlitePool,
    only: Option<&str>,
) -> Result<Vec<ExportSweep>, sqlx::Error> {
    sqlx::query_as::<_, ExportSweep>(
        "SELECT id, name, file, toml, description, metric, dataset, status, created_at, updated_at
         FROM sweeps WHERE ?1 IS NULL OR name = ?1 ORDER BY created_at, id",
    )
    .bind(only)
    .fetch_all(pool)
    .await
}

/// A sweep's status now (`running` while `sweep run` works on it); None once deleted.
pub async fn sweep_status(pool: &SqlitePool, sweep_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM sweeps WHERE id = ?")
        .bind(sweep_id)
        .fetch_optional(pool)
        .await
}

/// A trial as an exporter sees it (`trials` row, its attempts counted and
/// its last failure class).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportTrial {
    pub id: String,
    pub ordinal: i64,
    /// JSON object of the resolved configuration.
    pub params: String,
    pub status: TrialStatus,
    pub device: Option<String>,
    pub epochs: i64,
    pub epochs_done: i64,
    pub best_val_accuracy: Option<f64>,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub attempts: i64,
    /// The error class of the last attempt that has one (oom, crash, …).
    pub failure_class: Option<String>,
}

/// A sweep's trials in plan order.
pub async fn trials(pool: &SqlitePool, sweep_id: i64) -> Result<Vec<ExportTrial>, sqlx::Error> {
    sqlx::query_as::<_, ExportTrial>(
        "SELECT t.id, t.ordinal, t.params, t.status, t.device, t.epochs, t.epochs_done, t.best_val_accuracy,
                t.wall_s, t.images_per_s, t.created_at, t.started_at, t.finished_at,
                (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id) AS attempts,
                (SELECT a.error_class FROM attempts a WHERE a.trial_id = t.id AND a.error_class IS NOT NULL
                  ORDER BY a.attempt DESC LIMIT 1) AS failure_class
         FROM trials t WHERE t.sweep_id = ? ORDER BY t.ordinal, t.id",
    )
    .bind(sweep_id)
    .fetch_all(pool)
    .await
}

/// One `metrics` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MetricRow {
    pub trial_id: String,
    pub attempt: i64,
    /// train (every `log_every` batches), train_epoch, valid.
    pub split: String,
    pub epoch: i64,
    pub batch: i64,
    /// The global step.
    pub step: i64,
    /// loss, accuracy, lr, images_per_s, seconds.
    pub name: String,
    pub value: f64,
    pub time: f64,
}

/// A trial's metric rows by global step, then split, name and epoch: the
/// order rows arrive in while a trial trains, so a live export appends.
pub async fn trial_metrics(pool: &SqlitePool, trial: &str) -> Result<Vec<MetricRow>, sqlx::Error> {
    sqlx::query_as::<_, MetricRow>(
        "SELECT trial_id, attempt, split, epoch, batch, step, name, value, time FROM metrics
         WHERE trial_id = ? ORDER BY step, split, name, epoch",
    )
    .bind(trial)
    .fetch_all(pool)
    .await
}

/// Every metric row of a sweep, trial by trial in plan order.
pub async fn sweep_metrics(
    pool: &SqlitePool,
    sweep_id: i64,
) -> Result<Vec<MetricRow>, sqlx::Error> {
    sqlx::query_as::<_, MetricRow>(
        "SELECT m.trial_id, m.attempt, m.split, m.epoch, m.batch, m.step, m.name, m.value, m.time
         FROM metrics m JOIN trials t ON t.id = m.trial_id
         WHERE t.sweep_id = ? ORDER BY t.ordinal, t.id, m.step, m.split, m.name, m.epoch",
    )
    .bind(sweep_id)
    .fetch_all(pool)
    .await
}

/// A trial's test result with the time it was recorded.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExportTest {
    pub loss: f64,
    pub accuracy: f64,
    pub n: i64,
    pub epoch: i64,
    pub time: f64,
}

pub async fn test_result(
    pool: &SqlitePool,
    trial: &str,
) -> Result<Option<ExportTest>, sqlx::Error> {
    sqlx::query_as::<_, ExportTest>(
        "SELECT loss, accuracy, n, epoch, time FROM test_results WHERE trial_id = ?",
    )
    .bind(trial)
    .fetch_optional(pool)
    .await
}
