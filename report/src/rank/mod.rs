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

/// What ranks the trials: a metric of the built-in trainer, or a name a
/// user's program reported (`[program]` sweeps). Serialised and displayed
/// by its name.
#[derive(Debug, Clone, PartialEq)]
pub enum Ranking {
    Builtin(Metric),
    Reported(Reported),
}

/// A program's metric as a ranking: the best over a trial's epoch records,
/// or the last reported value of a `test_*` name.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub name: String,
    pub higher_is_better: bool,
}

impl Reported {
    pub fn is_test(&self) -> bool {
        crate::program::ProgramSweep::split_of(&self.name) == "test"
    }
}

impl From<Metric> for Ranking {
    fn from(m: Metric) -> Ranking {
        Ranking::Builtin(m)
    }
}

impl Ranking {
    pub fn name(&self) -> &str {
        match self {
            Ranking::Builtin(m) => m.as_str(),
            Ranking::Reported(r) => &r.name,
        }
    }

    /// The ranking in words, with its direction.
    pub fn describe(&self) -> String {
        match self {
            Ranking::Builtin(m) => m.describe().to_string(),
            Ranking::Reported(r) => {
                let (word, better) = if r.higher_is_better {
                    ("highest", "higher")
                } else {
                    ("lowest", "lower")
                };
                if r.is_test() {
                    format!("last reported value, {better} is better")
                } else {
                    format!("{word} over the epochs, {better} is better")
                }
            }
        }
    }

    pub fn higher_is_better(&self) -> bool {
        match self {
            Ranking::Builtin(m) => m.higher_is_better(),
            Ranking::Reported(r) => r.higher_is_better,
        }
    }

    pub fn is_fraction(&self) -> bool {
        matches!(self, Ranking::Builtin(m) if m.is_fraction())
    }

    /// The range the values live in: accuracies in [0, 1], the built-in
    /// trainer's other metrics (losses, seconds, images per second) in [0, ∞),
    /// a program's metric anywhere (it may be a negative log-likelihood).
    pub fn range(&self) -> (f64, f64) {
        match self {
            Ranking::Builtin(m) if m.is_fraction() => (0.0, 1.0),
            Ranking::Builtin(_) => (0.0, f64::INFINITY),
            Ranking::Reported(_) => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

impl std::fmt::Display for Ranking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Ranking {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

pub const FORMATS: [&str; 4] = ["table", "markdown", "csv", "json"];

#[derive(Debug, Serialize)]
pub struct Report {
    pub sweep: String,
    /// What ranks the trials (`--best`, by default the sweep's `[sweep] metric`).
    pub metric: Ranking,
    /// The same in words, e.g. "test accuracy, higher is better".
    pub ranked_by: String,
    /// The sweep's `[sweep] metric`: what picked each trial's best checkpoint
    /// (the one tested). `None` when the caller does not know it, and for a
    /// program sweep (the program keeps its own checkpoints).
    pub checkpoints_picked_by: Option<String>,
    /// Parameters that differ between the trials, in column order.
    pub varying: Vec<String>,
    pub rows: Vec<ReportRow>,
    /// A program sweep's report (`[program]`); absent for the built-in trainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramReport>,
}

/// What a program sweep's report adds: its metric, and the trials that
/// never reported the ranking metric (listed last, without a rank).
#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    /// `[sweep] metric`, and whether higher is better.
    pub sweep_metric: String,
    pub sweep_metric_higher_is_better: bool,
    /// The metric columns of each row, in order: the sweep's metric, then
    /// the ranking metric when it is another one.
    pub columns: Vec<String>,
    /// Matching trials (before `--top`) without a value of the ranking metric.
    pub unranked: usize,
}

/// One trial of a report. A built-in sweep's row carries the trainer's
/// metrics; a program sweep's row carries `metrics` (the program's names,
/// as `ProgramReport::columns` lists them) instead.
#[derive(Debug)]
pub struct ReportRow {
    /// None: the trial never reported the ranking metric (program sweeps).
    pub rank: Option<usize>,
    pub trial: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    /// A program trial's values of `ProgramReport::columns`; None for the built-in trainer.
    pub metrics: Option<Vec<(String, Option<f64>)>>,
    pub epochs: i64,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub status: sweep_store::TrialStatus,
}

impl ReportRow {
    /// The row's value of `ranking` (None when it has none).
    pub fn value(&self, ranking: &Ranking) -> Option<f64> {
        match ranking {
            Ranking::Builtin(m) => match m {
                Metric::Accuracy => self.test_accuracy,
                Metric::Loss => self.test_loss,
                Metric::ValAccuracy => self.val_accuracy,
                Metric::ValLoss => self.val_loss,
                Metric::Time => self.wall_s,
                Metric::Throughput => self.images_per_s,
            },
            Ranking::Reported(r) => self
                .metrics
                .as_ref()?
                .iter()
                .find(|(n, _)| *n == r.name)
                .and_then(|(_, v)| *v),
        }
    }

    /// `rank` as printed: the number, or `-` for an unranked trial.
    pub fn rank_text(&self) -> String {
        self.rank.map_or_else(|| "-".into(), |r| r.to_string())
    }
}

/// The json of a row: the built-in trainer's fields as they always were, or
/// for a program trial its `metrics` object in their place.
impl Serialize for ReportRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ReportRow", 11)?;
        st.serialize_field("rank", &self.rank)?;
        st.serialize_field("trial", &self.trial)?;
        st.serialize_field("params", &self.params)?;
        match &self.metrics {
            None => {
                st.serialize_field("val_accuracy", &self.val_accuracy)?;
                st.serialize_field("val_loss", &self.val_loss)?;
                st.serialize_field("test_accuracy", &self.test_accuracy)?;
                st.serialize_field("test_loss", &self.test_loss)?;
                st.serialize_field("epochs", &self.epochs)?;
                st.serialize_field("wall_s", &self.wall_s)?;
                st.serialize_field("images_per_s", &self.images_per_s)?;
            }
            Some(m) => {
                let map: serde_json::Map<String, serde_json::Value> = m
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                    .collect();
                st.serialize_field("metrics", &map)?;
                st.serialize_field("epochs", &self.epochs)?;
                st.serialize_field("wall_s", &self.wall_s)?;
            }
        }
        st.serialize_field("status", &self.status)?;
        st.end()
    }
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

/// An output format or a ranking metric this sweep does not have (the
/// user's input), or a report that would not serialise.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error("unknown format {0:?}; valid formats: {valid}", valid = FORMATS.join(", "))]
    UnknownFormat(String),
    #[error(
        "sweep {sweep} has no metric {name:?} to rank by{why}; its metrics: {}",
        known.join(", ")
    )]
    UnknownMetric {
        sweep: String,
        name: String,
        /// Why not, when there is more to say (e.g. reported per step only).
        why: String,
        known: Vec<String>,
    },
    #[error("writing the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `sweep report`'s ranked table of sweep `sweep` (every trial of `rows`,
/// before `--top`): ranked by `best` (`--best NAME`), else by the sweep's
/// metric (`sweep_metric`, `[sweep] metric`). A built-in sweep ranks by a
/// built-in metric, and says which metric picked the checkpoints. A program
/// sweep (`program`) ranks by a name its trials reported per epoch or as
/// `test_*` (the sweep's own metric even before any did), or by `time`.
/// A name the sweep does not have is the user's error, listing those it has.
pub fn report(
    sweep: &str,
    best: Option<&str>,
    sweep_metric: Option<String>,
    program: Option<&crate::program::ProgramSweep>,
    rows: Vec<TrialRow>,
) -> Result<Report, RankError> {
    match program {
        Some(p) => Ok(build_program(
            sweep,
            p,
            program_ranking(sweep, best, p)?,
            rows,
        )),
        None => {
            let metric = match best {
                None => default_metric(sweep_metric.as_deref()),
                Some(name) => Metric::parse(name).ok_or_else(|| RankError::UnknownMetric {
                    sweep: sweep.to_string(),
                    name: crate::program::display_name(name),
                    why: String::new(),
                    known: Metric::ALL.iter().map(|m| m.as_str().to_string()).collect(),
                })?,
            };
            let mut r = build(sweep, metric, rows, None);
            r.checkpoints_picked_by = sweep_metric;
            Ok(r)
        }
    }
}

/// What `--best NAME` (or its absence) ranks a program sweep by.
pub fn program_ranking(
    sweep: &str,
    best: Option<&str>,
    p: &crate::program::ProgramSweep,
) -> Result<Ranking, RankError> {
    let name = best.unwrap_or(&p.metric);
    let rankable = p.rankable();
    if rankable.iter().any(|n| n == name) {
        return Ok(Ranking::Reported(Reported {
            name: name.to_string(),
            higher_is_better: p.higher_is_better(name),
        }));
    }
    if name == Metric::Time.as_str() {
        return Ok(Ranking::Builtin(Metric::Time));
    }
    let why = if p.step_names.iter().any(|n| n == name) {
        " (it is reported per step only; rank by a metric of the epoch records or a test_* one)"
    } else {
        ""
    };
    let mut known = rankable;
    known.push(Metric::Time.as_str().to_string());
    Err(RankError::UnknownMetric {
        sweep: sweep.to_string(),
        name: crate::program::display_name(name),
        why: why.to_string(),
        known: known
            .iter()
            .map(|n| crate::program::display_name(n))
            .collect(),
    })
}

/// A built-in sweep's report (a program sweep's: [`build_program`]).
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
            rank: Some(i + 1),
            trial: r.trial,
            params: varying
                .iter()
                .filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            val_accuracy: r.val_accuracy,
            val_loss: r.val_loss,
            test_accuracy: r.test_accuracy,
            test_loss: r.test_loss,
            metrics: None,
            epochs: r.epochs_done,
            wall_s: r.wall_s,
            images_per_s: r.images_per_s,
            status: r.status,
        })
        .collect();
    Report {
        sweep: sweep.to_string(),
        metric: Ranking::Builtin(metric),
        ranked_by: metric.describe().to_string(),
        checkpoints_picked_by: None,
        varying,
        rows: out,
        program: None,
    }
}

/// A program sweep's report: trials ranked by `ranking` (see [`ranking`]),
/// best first; those without a value follow, unranked, in plan order. Each
/// row carries the sweep's metric (best over the epochs, or last for a
/// `test_*` one) and the ranking metric when it is another.
pub fn build_program(
    sweep: &str,
    program: &crate::program::ProgramSweep,
    ranking: Ranking,
    rows: Vec<TrialRow>,
) -> Report {
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
    let mut columns = vec![program.metric.clone()];
    if let Ranking::Reported(r) = &ranking
        && r.name != program.metric
    {
        columns.push(r.name.clone());
    }
    let mut items: Vec<ReportRow> = rows
        .into_iter()
        .zip(params)
        .map(|(r, p)| ReportRow {
            rank: None,
            params: varying
                .iter()
                .filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            val_accuracy: None,
            val_loss: None,
            test_accuracy: None,
            test_loss: None,
            metrics: Some(
                columns
                    .iter()
                    .map(|c| (c.clone(), program.value(&r.trial, c)))
                    .collect(),
            ),
            trial: r.trial,
            epochs: r.epochs_done,
            wall_s: r.wall_s,
            images_per_s: None,
            status: r.status,
        })
        .collect();
    let up = ranking.higher_is_better();
    // Stable: ties keep plan order; trials without the metric go last.
    items.sort_by(|a, b| match (a.value(&ranking), b.value(&ranking)) {
        (Some(x), Some(y)) if up => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let mut unranked = 0;
    for (i, row) in items.iter_mut().enumerate() {
        if row.value(&ranking).is_some() {
            row.rank = Some(i + 1);
        } else {
            unranked += 1;
        }
    }
    Report {
        sweep: sweep.to_string(),
        ranked_by: ranking.describe(),
        metric: ranking,
        checkpoints_picked_by: None,
        varying,
        rows: items,
        program: Some(ProgramReport {
            sweep_metric: program.metric.clone(),
            sweep_metric_higher_is_better: program.higher_is_better(&program.metric),
            columns,
            unranked,
        }),
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

    /// The json and csv of a built-in sweep's report, as they were before
    /// program sweeps (a program sweep's rows have another shape).
    #[test]
    fn report_json_and_csv_of_a_builtin_sweep() {
        let mut r = build("backbones", Metric::Accuracy, rows(), None);
        r.checkpoints_picked_by = Some("val_accuracy".into());
        insta::assert_snapshot!(format!(
            "{}\n{}",
            render(&r, "json").unwrap(),
            render(&r, "csv").unwrap()
        ));
    }

    #[test]
    fn report_markdown_top_2_by_loss() {
        let mut r = build("backbones", Metric::Loss, rows(), Some(2));
        r.checkpoints_picked_by = Some("val_loss".into());
        insta::assert_snapshot!(render(&r, "markdown").unwrap());
    }

    /// A program sweep: its metric and the ranking metric as columns, the
    /// trial that never reported the ranking metric last and unranked.
    #[test]
    fn report_program_sweep_by_another_metric() {
        use crate::program::ProgramSweep;
        use sweep_store::queries::MetricSummary;
        let summary = |trial: &str, name: &str, min: f64, max: f64, last: f64| MetricSummary {
            trial: trial.into(),
            split: if name.starts_with("test_") {
                "test"
            } else {
                "epoch"
            }
            .into(),
            name: name.into(),
            min,
            max,
            last,
            last_epoch: 3,
            n: 3,
        };
        let p = ProgramSweep::new(
            "val_acc".into(),
            Some("max".into()),
            r#"["python","train.py"]"#.into(),
            vec![
                summary("a1b2c3d4e5", "val_acc", 0.5, 0.8, 0.6),
                summary("a1b2c3d4e5", "val_loss", 0.3, 0.9, 0.62),
                summary("b2c3d4e5f6", "val_acc", 0.4, 0.75, 0.75),
                summary("b2c3d4e5f6", "val_loss", 0.5, 1.0, 0.5),
                summary("c3d4e5f6a7", "val_acc", 0.72, 0.72, 0.72),
            ],
        );
        let mut rows = rows();
        for (i, r) in rows.iter_mut().enumerate() {
            r.params = format!(r#"{{"lr":{},"dropout":0.{i}}}"#, r.lr);
            r.val_accuracy = None;
            r.test_accuracy = None;
        }
        rows.truncate(4);
        let ranking = program_ranking("mylab", Some("val_loss"), &p).unwrap();
        let r = build_program("mylab", &p, ranking, rows);
        insta::assert_snapshot!(render(&r, "table").unwrap());
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
