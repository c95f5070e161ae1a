//! `sweep report`: trials of a sweep ranked by a metric, as a table, markdown,
//! csv or json. One data model (`Report`, built here), one small renderer per
//! format (`render`), and the `--group-by` statistics with their verdict
//! (`groups`).
use serde::Serialize;
use sweep_store::queries::TrialRow;

mod groups;
mod render;

pub use groups::{ALPHA, Group, GroupReport, group, holm, mean_std, welch_p};
pub use render::{render, render_groups};

/// What ranks the trials (`report --best`, else the sweep's `[sweep]
/// metric`). A clap value enum, so the CLI takes it as is; serialised (json
/// output) and displayed (titles, headers) by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Metric {
    /// Test accuracy (higher is better).
    Accuracy,
    /// Test loss (lower is better).
    Loss,
    /// Best validation accuracy.
    ValAccuracy,
    /// Validation loss of the last epoch.
    ValLoss,
    /// Wall time (shorter is better).
    Time,
    /// Training images per second.
    Throughput,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Accuracy,
        Metric::Loss,
        Metric::ValAccuracy,
        Metric::ValLoss,
        Metric::Time,
        Metric::Throughput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss",
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValLoss => "val_loss",
            Metric::Time => "time",
            Metric::Throughput => "throughput",
        }
    }

    /// The metric named `name` (as stored for `[sweep] metric`).
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// A ranking metric in words, with its direction.
    pub fn describe(self) -> &'static str {
        match self {
            Metric::Accuracy => "test accuracy, higher is better",
            Metric::Loss => "test loss, lower is better",
            Metric::ValAccuracy => "best validation accuracy, higher is better",
            // trial_summary.val_loss is the validation loss of the last epoch.
            Metric::ValLoss => "validation loss of the last epoch, lower is better",
            Metric::Time => "wall time, shorter is better",
            Metric::Throughput => "training images per second, higher is better",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Accuracy | Metric::ValAccuracy | Metric::Throughput
        )
    }

    fn is_fraction(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::ValAccuracy)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const FORMATS: [&str; 4] = ["table", "markdown", "csv", "json"];

#[derive(Debug, Serialize)]
pub struct Report {
    pub sweep: String,
    /// What ranks the trials (`--best`, by default the sweep's `[sweep] metric`).
    pub metric: Metric,
    /// The same in words, e.g. "test accuracy, higher is better".
    pub ranked_by: String,
    /// The sweep's `[sweep] metric`: what picked each trial's best checkpoint
    /// (the one tested). `None` when the caller does not know it.
    pub checkpoints_picked_by: Option<String>,
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
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub epochs: i64,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub status: sweep_store::TrialStatus,
}

fn key(metric: Metric, r: &TrialRow) -> Option<f64> {
    match metric {
        Metric::Accuracy => r.test_accuracy.map(|v| -v),
        Metric::Loss => r.test_loss,
        Metric::ValAccuracy => r.val_accuracy.map(|v| -v),
        Metric::ValLoss => r.val_loss,
        Metric::Time => r.wall_s,
        Metric::Throughput => r.images_per_s.map(|v| -v),
    }
}

/// An output format this version does not know (the user's input), or a
/// report that would not serialise.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error("unknown format {0:?}; valid formats: {valid}", valid = FORMATS.join(", "))]
    UnknownFormat(String),
    #[error("writing the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn build(sweep: &str, metric: Metric, rows: Vec<TrialRow>, top: Option<usize>) -> Report {
    let params: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.params)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        })
        .collect();
    let varying = sweep_protocol::config::varying_keys(&params.iter().collect::<Vec<_>>());
    let mut items: Vec<(TrialRow, serde_json::Map<String, serde_json::Value>)> =
        rows.into_iter().zip(params).collect();
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
            params: varying
                .iter()
                .filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            val_accuracy: r.val_accuracy,
            val_loss: r.val_loss,
            test_accuracy: r.test_accuracy,
            test_loss: r.test_loss,
            epochs: r.epochs_done,
            wall_s: r.wall_s,
            images_per_s: r.images_per_s,
            status: r.status,
        })
        .collect();
    Report {
        sweep: sweep.to_string(),
        metric,
        ranked_by: metric.describe().to_string(),
        checkpoints_picked_by: None,
        varying,
        rows: out,
    }
}

/// The ranking metric a sweep's `[sweep] metric` stands for (`val_accuracy`
/// unless it names another known metric).
pub fn default_metric(sweep_metric: Option<&str>) -> Metric {
    sweep_metric
        .and_then(Metric::parse)
        .unwrap_or(Metric::ValAccuracy)
}

pub fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

pub fn num(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

pub fn param_text(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "-".into(), sweep_protocol::config::value_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `report --best` (clap), the json output (serde), titles (Display) and
    /// the stored `[sweep] metric` (`parse`) use one name per metric.
    #[test]
    fn a_metric_has_one_name() {
        use clap::ValueEnum;
        for m in Metric::ALL {
            let name = m.as_str();
            assert_eq!(Metric::from_str(name, false), Ok(m));
            assert_eq!(Metric::parse(name), Some(m));
            assert_eq!(m.to_string(), name);
            assert_eq!(serde_json::to_value(m).unwrap(), name);
        }
        assert_eq!(Metric::value_variants(), Metric::ALL);
    }

    #[test]
    fn default_ranking_is_the_sweeps_metric() {
        assert_eq!(default_metric(Some("val_loss")), Metric::ValLoss);
        assert_eq!(default_metric(Some("val_accuracy")), Metric::ValAccuracy);
        assert_eq!(default_metric(None), Metric::ValAccuracy);
        let mut r = build("s", Metric::ValLoss, vec![], None);
        r.checkpoints_picked_by = Some("val_loss".into());
        let t = render(&r, "table").unwrap();
        assert!(
            t.starts_with("sweep s — 0 trials, ranked by val_loss (validation loss of the last epoch, lower is better); checkpoints picked by val_loss\n"),
            "{t}"
        );
        let md = render(&r, "markdown").unwrap();
        assert!(
            md.starts_with("**sweep s — 0 trials, ranked by val_loss"),
            "{md}"
        );
        assert!(md.contains("checkpoints picked by val_loss"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&render(&r, "json").unwrap()).unwrap();
        assert_eq!(json["checkpoints_picked_by"], "val_loss");
        assert_eq!(json["metric"], "val_loss");
    }
}

#[cfg(test)]
mod snapshots {
    use super::*;
    use sweep_store::queries::TrialRow;

    pub(super) fn row(
        trial: &str,
        backbone: &str,
        lr: f64,
        seed: i64,
        test: Option<f64>,
        status: &str,
    ) -> TrialRow {
        TrialRow {
            trial: trial.into(),
            sweep: "backbones".into(),
            backbone: backbone.into(),
            lr,
            epochs: 10,
            batch_size: 32,
            image_size: 224,
            seed,
            status: serde_json::from_value(serde_json::Value::String(status.into())).unwrap(),
            epochs_done: if status == "done" { 10 } else { 3 },
            val_accuracy: test.map(|t| t - 0.004),
            val_loss: test.map(|t| 1.0 - t),
            test_accuracy: test,
            test_loss: test.map(|t| (1.0 - t) * 1.1),
            wall_s: Some(600.0 + lr * 1000.0),
            images_per_s: Some(250.5),
            device: Some("cuda:0".into()),
            attempts: 1,
            params: format!(r#"{{"backbone":"{backbone}","lr":{lr},"epochs":10,"seed":{seed}}}"#),
        }
    }

    fn rows() -> Vec<TrialRow> {
        vec![
            row("a1b2c3d4e5", "resnet50", 0.001, 0, Some(0.905), "done"),
            row("b2c3d4e5f6", "resnet50", 0.001, 1, Some(0.901), "done"),
            row("c3d4e5f6a7", "resnet101", 0.001, 0, Some(0.908), "done"),
            row("d4e5f6a7b8", "resnet101", 0.001, 1, Some(0.899), "done"),
            row("e5f6a7b8c9", "vgg19_bn", 0.003, 0, None, "failed"),
        ]
    }

    #[test]
    fn report_table() {
        let mut r = build("backbones", Metric::Accuracy, rows(), None);
        r.checkpoints_picked_by = Some("val_accuracy".into());
        insta::assert_snapshot!(render(&r, "table").unwrap());
    }

    #[test]
    fn report_markdown_top_2_by_loss() {
        let mut r = build("backbones", Metric::Loss, rows(), Some(2));
        r.checkpoints_picked_by = Some("val_loss".into());
        insta::assert_snapshot!(render(&r, "markdown").unwrap());
    }

    #[test]
    fn report_grouped_with_verdict() {
        let rs = rows();
        let params: Vec<_> = rs
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.params)
                    .unwrap()
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let by_id: std::collections::HashMap<String, _> =
            rs.iter().map(|r| r.trial.clone()).zip(params).collect();
        let mut r = build("backbones", Metric::Accuracy, rs, None);
        r.checkpoints_picked_by = Some("val_accuracy".into());
        let ordered: Vec<_> = r.rows.iter().map(|row| by_id[&row.trial].clone()).collect();
        let g = group(&r, "backbone", &ordered, None);
        insta::assert_snapshot!(render_groups(&g, "table").unwrap());
    }
}
