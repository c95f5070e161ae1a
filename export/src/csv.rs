//! `sweep export csv OUT`: two tidy files for pandas (docs/export.md lists
//! their columns and dtypes).
//!
//! * `OUT/metrics.csv`: one line per `metrics` row of every selected sweep
//!   (long format: `sweep, trial, attempt, split, epoch, batch, step, name,
//!   value, time`);
//! * `OUT/trials.csv`: one line per trial with its status, results and one
//!   `param_<key>` column per parameter (the union over the trials).
//!
//! Floats are written in their shortest form that parses back to the same
//! f64, so the files hold the database's values exactly; a NULL is an empty
//! cell. Each file is written to a temporary name and renamed, and is left
//! untouched when its bytes would not change.
use crate::ExportError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use sweep_store::export_queries::{self, ExportSweep};

/// The header of `metrics.csv`.
pub const METRICS_COLUMNS: [&str; 10] = [
    "sweep", "trial", "attempt", "split", "epoch", "batch", "step", "name", "value", "time",
];

/// The fixed columns of `trials.csv`, before the `param_<key>` ones.
pub const TRIAL_COLUMNS: [&str; 18] = [
    "sweep",
    "trial",
    "ordinal",
    "status",
    "device",
    "epochs",
    "epochs_done",
    "best_val_accuracy",
    "test_accuracy",
    "test_loss",
    "test_epoch",
    "wall_s",
    "images_per_s",
    "attempts",
    "failure_class",
    "created_at",
    "started_at",
    "finished_at",
];

/// What a CSV export did: for each file, whether it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub metrics_rows: usize,
    pub trials_rows: usize,
    pub metrics_written: bool,
    pub trials_written: bool,
}

fn f(v: f64) -> String {
    // Rust's `Debug` for f64 is the shortest text that reads back as the
    // same value, and keeps a `.0` on whole numbers so pandas reads float64.
    format!("{v:?}")
}

fn of<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn param_cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_error(path: &Path, e: csv::Error) -> ExportError {
    ExportError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

pub async fn export(
    pool: &sqlx::SqlitePool,
    out: &Path,
    sweeps: &[ExportSweep],
) -> Result<Written, ExportError> {
    let metrics_path = out.join("metrics.csv");
    let trials_path = out.join("trials.csv");
    let mut metrics = csv::Writer::from_writer(Vec::new());
    metrics
        .write_record(METRICS_COLUMNS)
        .map_err(|e| csv_error(&metrics_path, e))?;
    let mut metrics_rows = 0;
    let mut trial_rows: Vec<(Vec<String>, BTreeMap<String, serde_json::Value>)> = Vec::new();
    for sweep in sweeps {
        for m in export_queries::sweep_metrics(pool, sweep.id).await? {
            metrics
                .write_record([
                    sweep.name.clone(),
                    m.trial_id,
                    m.attempt.to_string(),
                    m.split,
                    m.epoch.to_string(),
                    m.batch.to_string(),
                    m.step.to_string(),
                    m.name,
                    f(m.value),
                    f(m.time),
                ])
                .map_err(|e| csv_error(&metrics_path, e))?;
            metrics_rows += 1;
        }
        for t in export_queries::trials(pool, sweep.id).await? {
            let test = export_queries::test_result(pool, &t.id).await?;
            let params = match serde_json::from_str(&t.params) {
                Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
                _ => BTreeMap::new(),
            };
            let row = vec![
                sweep.name.clone(),
                t.id.clone(),
                t.ordinal.to_string(),
                t.status.to_string(),
                t.device.unwrap_or_default(),
                t.epochs.to_string(),
                t.epochs_done.to_string(),
                of(t.best_val_accuracy.map(f)),
                of(test.as_ref().map(|r| f(r.accuracy))),
                of(test.as_ref().map(|r| f(r.loss))),
                of(test.as_ref().map(|r| r.epoch)),
                of(t.wall_s.map(f)),
                of(t.images_per_s.map(f)),
                t.attempts.to_string(),
                t.failure_class.unwrap_or_default(),
                f(t.created_at),
                of(t.started_at.map(f)),
                of(t.finished_at.map(f)),
            ];
            trial_rows.push((row, params));
        }
    }
    let keys: BTreeSet<String> = trial_rows
        .iter()
        .flat_map(|(_, p)| p.keys().cloned())
        .collect();
    let trials_rows = trial_rows.len();
    let mut trials = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = TRIAL_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(keys.iter().map(|k| format!("param_{k}")))
        .collect();
    trials
        .write_record(&header)
        .map_err(|e| csv_error(&trials_path, e))?;
    for (mut row, params) in trial_rows {
        row.extend(
            keys.iter()
                .map(|k| params.get(k).map(param_cell).unwrap_or_default()),
        );
        trials
            .write_record(&row)
            .map_err(|e| csv_error(&trials_path, e))?;
    }
    let metrics = metrics
        .into_inner()
        .map_err(|e| csv_error(&metrics_path, e.into_error().into()))?;
    let trials = trials
        .into_inner()
        .map_err(|e| csv_error(&trials_path, e.into_error().into()))?;
    Ok(Written {
        metrics_rows,
        trials_rows,
        metrics_written: write_if_changed(&metrics_path, &metrics)?,
        trials_written: write_if_changed(&trials_path, &trials)?,
    })
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, ExportError> {
    if std::fs::read(path).is_ok_and(|have| have == bytes) {
        return Ok(false);
    }
    crate::write_atomic(path, bytes)?;
    Ok(true)
}
