//! The read side: what `report`, `status` and `show` ask of the database.
//! Read-only; every user value is bound as a parameter, never spliced into SQL.
use serde::Serialize;
use super::model::TrialStatus;
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

/// The named sweep, or the most recently updated one.
pub async fn resolve_sweep(pool: &SqlitePool, name: Option<&str>) -> Result<String, String> {
    match name {
        Some(n) => {
            let found: Option<String> =
                sqlx::query_scalar("SELECT name FROM sweeps WHERE name = ?").bind(n).fetch_optional(pool).await.map_err(|e| e.to_string())?;
            match found {
                Some(s) => Ok(s),
                None => {
                    let all: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM sweeps ORDER BY updated_at DESC").fetch_all(pool).await.map_err(|e| e.to_string())?;
                    Err(format!("no sweep named {n:?} in the database; known sweeps: {}", if all.is_empty() { "(none)".into() } else { all.join(", ") }))
                }
            }
        }
        None => sqlx::query_scalar("SELECT name FROM sweeps ORDER BY updated_at DESC, id DESC LIMIT 1")
            .fetch_optional(pool)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the database holds no sweeps yet; run one with `sweep run FILE`".to_string()),
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
pub async fn trial_for_predict(pool: &SqlitePool, trial: &str) -> Result<(String, String, Vec<String>), String> {
    let row: Option<(String, String)> = sqlx::query_as("SELECT t.params, s.name FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = ?")
        .bind(trial)
        .fetch_optional(pool)
        .await
        .map_err(|e| e.to_string())?;
    let Some((params, sweep)) = row else {
        return Err(format!("no trial {trial:?} in the database; list trials with `sweep status` or `sweep report`"));
    };
    let classes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT class FROM class_accuracy WHERE trial_id = ? ORDER BY class")
        .bind(trial)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
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
pub async fn trials_filtered(pool: &SqlitePool, sweep: &str, filters: &[(String, FilterValue)], status: Option<TrialStatus>) -> Result<Vec<TrialRow>, sqlx::Error> {
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
pub async fn resolve_trial(pool: &SqlitePool, prefer_sweep: Option<&str>, prefix: &str) -> Result<(String, String), String> {
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{prefix:?} is not a trial id (ids are hex, e.g. 5fb60f28a7); list them with `sweep status`"));
    }
    let q = "SELECT t.id, s.name FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id LIKE ? || '%' AND (? IS NULL OR s.name = ?) ORDER BY t.id LIMIT 6";
    let mut found: Vec<(String, String)> =
        sqlx::query_as(q).bind(prefix).bind(prefer_sweep).bind(prefer_sweep).fetch_all(pool).await.map_err(|e| e.to_string())?;
    if found.is_empty() {
        found = sqlx::query_as(q).bind(prefix).bind(None::<String>).bind(None::<String>).fetch_all(pool).await.map_err(|e| e.to_string())?;
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no trial {prefix:?} in the database; list trials with `sweep status` or `sweep report`")),
        _ => Err(format!(
            "trial prefix {prefix:?} is ambiguous: {} …; give more digits",
            found.iter().take(5).map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}
