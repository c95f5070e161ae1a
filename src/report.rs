//! `sweep report`: trials of a sweep ranked by a metric, as a table, markdown,
//! csv or json. One data model (`Report`), one small renderer per format.
use crate::store::queries::TrialRow;
use serde::Serialize;
use std::collections::BTreeSet;
use tabled::settings::Style;

pub const METRICS: [&str; 6] = ["accuracy", "loss", "val_accuracy", "val_loss", "time", "throughput"];
pub const FORMATS: [&str; 4] = ["table", "markdown", "csv", "json"];

#[derive(Debug, Serialize)]
pub struct Report {
    pub sweep: String,
    pub metric: String,
    /// Parameters that differ between the trials, in column order.
    pub varying: Vec<String>,
    pub rows: Vec<ReportRow>,
}

#[derive(Debug, Serialize)]
pub struct ReportRow {
    pub rank: usize,
    pub trial: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub epochs: i64,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub status: String,
}

fn key(metric: &str, r: &TrialRow) -> Option<f64> {
    match metric {
        "accuracy" => r.test_accuracy.map(|v| -v),
        "loss" => r.test_loss,
        "val_accuracy" => r.val_accuracy.map(|v| -v),
        "val_loss" => r.val_loss,
        "time" => r.wall_s,
        "throughput" => r.images_per_s.map(|v| -v),
        _ => None,
    }
}

pub fn build(sweep: &str, metric: &str, rows: Vec<TrialRow>, top: Option<usize>) -> Result<Report, String> {
    if !METRICS.contains(&metric) {
        return Err(format!("unknown metric {metric:?}; valid metrics: {}", METRICS.join(", ")));
    }
    let params: Vec<serde_json::Map<String, serde_json::Value>> =
        rows.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.params).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()).collect();
    let keys: BTreeSet<&String> = params.iter().flat_map(|p| p.keys()).collect();
    let order: Vec<&str> = crate::plan::PARAM_KEYS.iter().copied().chain(["seed", "pretrained"]).collect();
    let mut varying: Vec<String> = keys.into_iter().filter(|k| params.iter().any(|p| p.get(*k) != params.first().and_then(|f| f.get(*k)))).cloned().collect();
    varying.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    let mut items: Vec<(TrialRow, serde_json::Map<String, serde_json::Value>)> = rows.into_iter().zip(params).collect();
    // Stable: ties keep plan order; trials without the metric go last.
    items.sort_by(|a, b| match (key(metric, &a.0), key(metric, &b.0)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let out: Vec<ReportRow> = items
        .into_iter()
        .take(top.unwrap_or(usize::MAX))
        .enumerate()
        .map(|(i, (r, p))| ReportRow {
            rank: i + 1,
            trial: r.trial,
            params: varying.iter().filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone()))).collect(),
            val_accuracy: r.val_accuracy,
            test_accuracy: r.test_accuracy,
            test_loss: r.test_loss,
            epochs: r.epochs_done,
            wall_s: r.wall_s,
            images_per_s: r.images_per_s,
            status: r.status,
        })
        .collect();
    Ok(Report { sweep: sweep.to_string(), metric: metric.to_string(), varying, rows: out })
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_else(|| "-".into())
}

fn num(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

fn param_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

fn header(r: &Report) -> Vec<String> {
    let mut h = vec!["rank".to_string(), "trial".into()];
    h.extend(r.varying.iter().cloned());
    h.extend(["val acc", "test acc", "test loss", "epochs", "wall s", "img/s", "status"].map(String::from));
    h
}

fn human_rows(r: &Report) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| {
            let mut v = vec![row.rank.to_string(), row.trial.clone()];
            v.extend(r.varying.iter().map(|k| param_text(row.params.get(k))));
            v.extend([pct(row.val_accuracy), pct(row.test_accuracy), num(row.test_loss, 4), row.epochs.to_string(), num(row.wall_s, 1), num(row.images_per_s, 1), row.status.clone()]);
            v
        })
        .collect()
}

pub fn render(r: &Report, format: &str) -> Result<String, String> {
    match format {
        "table" | "markdown" => {
            let mut b = tabled::builder::Builder::default();
            b.push_record(header(r));
            for row in human_rows(r) {
                b.push_record(row);
            }
            let mut t = b.build();
            if format == "markdown" {
                t.with(Style::markdown());
            } else {
                t.with(Style::rounded());
            }
            let title = format!("sweep {} — {} trials, ranked by {}", r.sweep, r.rows.len(), r.metric);
            Ok(if format == "table" { format!("{title}\n{t}\n") } else { format!("{t}\n") })
        }
        "csv" => {
            let mut out = String::new();
            let mut h = vec!["rank".to_string(), "trial".into()];
            h.extend(r.varying.iter().cloned());
            h.extend(["val_accuracy", "test_accuracy", "test_loss", "epochs", "wall_s", "images_per_s", "status"].map(String::from));
            out.push_str(&h.join(","));
            out.push('\n');
            let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
            for row in &r.rows {
                let mut v = vec![row.rank.to_string(), row.trial.clone()];
                v.extend(r.varying.iter().map(|k| csv_field(&param_text(row.params.get(k)))));
                v.extend([raw(row.val_accuracy), raw(row.test_accuracy), raw(row.test_loss), row.epochs.to_string(), raw(row.wall_s), raw(row.images_per_s), row.status.clone()]);
                out.push_str(&v.join(","));
                out.push('\n');
            }
            Ok(out)
        }
        "json" => serde_json::to_string_pretty(r).map(|s| s + "\n").map_err(|e| e.to_string()),
        other => Err(format!("unknown format {other:?}; valid formats: {}", FORMATS.join(", "))),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}
