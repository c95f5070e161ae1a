//! `sweep report`: trials of a sweep ranked by a metric, as a table, markdown,
//! csv or json. One data model (`Report`), one small renderer per format.
use serde::Serialize;
use sweep_store::queries::TrialRow;
use tabled::settings::Style;

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

/// The header line of the table and markdown formats: what ranks the trials
/// and what picked the checkpoints.
fn title(r: &Report) -> String {
    let mut t = format!(
        "sweep {} — {} trials, ranked by {} ({})",
        r.sweep,
        r.rows.len(),
        r.metric,
        r.ranked_by
    );
    if let Some(m) = &r.checkpoints_picked_by {
        t.push_str(&format!("; checkpoints picked by {m}"));
    }
    t
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

fn header(r: &Report) -> Vec<String> {
    let mut h = vec!["rank".to_string(), "trial".into()];
    h.extend(r.varying.iter().cloned());
    h.extend(
        [
            "val acc",
            "test acc",
            "test loss",
            "epochs",
            "wall s",
            "img/s",
            "status",
        ]
        .map(String::from),
    );
    h
}

fn human_rows(r: &Report) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| {
            let mut v = vec![row.rank.to_string(), row.trial.clone()];
            v.extend(r.varying.iter().map(|k| param_text(row.params.get(k))));
            v.extend([
                pct(row.val_accuracy),
                pct(row.test_accuracy),
                num(row.test_loss, 4),
                row.epochs.to_string(),
                num(row.wall_s, 1),
                num(row.images_per_s, 1),
                status_text(row),
            ]);
            v
        })
        .collect()
}

/// A pruned trial says where early stopping left it (its `val acc` is the
/// best it reached by then).
fn status_text(row: &ReportRow) -> String {
    match row.status {
        sweep_store::TrialStatus::Pruned => format!("pruned at epoch {}", row.epochs),
        s => s.to_string(),
    }
}

pub fn render(r: &Report, format: &str) -> Result<String, RankError> {
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
            let title = title(r);
            Ok(if format == "table" {
                format!("{title}\n{t}\n")
            } else {
                format!("**{title}**\n\n{t}\n")
            })
        }
        "csv" => {
            let mut out = String::new();
            let mut h = vec!["rank".to_string(), "trial".into()];
            h.extend(r.varying.iter().cloned());
            h.extend(
                [
                    "val_accuracy",
                    "test_accuracy",
                    "test_loss",
                    "epochs",
                    "wall_s",
                    "images_per_s",
                    "status",
                ]
                .map(String::from),
            );
            out.push_str(&h.join(","));
            out.push('\n');
            let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
            for row in &r.rows {
                let mut v = vec![row.rank.to_string(), row.trial.clone()];
                v.extend(
                    r.varying
                        .iter()
                        .map(|k| csv_field(&param_text(row.params.get(k)))),
                );
                v.extend([
                    raw(row.val_accuracy),
                    raw(row.test_accuracy),
                    raw(row.test_loss),
                    row.epochs.to_string(),
                    raw(row.wall_s),
                    raw(row.images_per_s),
                    row.status.to_string(),
                ]);
                out.push_str(&v.join(","));
                out.push('\n');
            }
            Ok(out)
        }
        "json" => Ok(serde_json::to_string_pretty(r)? + "\n"),
        other => Err(RankError::UnknownFormat(other.to_string())),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Mean ± std and a 95 % confidence interval of the ranking metric for one
/// value of the `--group-by` key, and how it compares with the best group.
#[derive(Debug, Serialize)]
pub struct Group {
    pub value: serde_json::Value,
    /// Trials of this group that have the metric.
    pub n: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// Student-t interval, clamped to the metric's range (see `GroupReport::ci_method`).
    pub ci95: Option<(f64, f64)>,
    /// Whether `ci95` was cut at a bound of the metric's range.
    pub ci95_clamped: bool,
    /// Two-sided Welch's t-test of the best group against this one (None for
    /// the best group itself, and when either group has fewer than 2 values).
    pub p_welch: Option<f64>,
    /// `p_welch` after the Holm correction over every comparison with the best group.
    pub p_holm: Option<f64>,
    pub trials: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub sweep: String,
    pub metric: Metric,
    pub ranked_by: String,
    pub checkpoints_picked_by: Option<String>,
    pub key: String,
    /// Trials grouped: every trial that passed the filters (`--where`,
    /// `--status`), whatever `--top` says.
    pub trials: usize,
    /// Groups before `--top` cut the list.
    pub groups_total: usize,
    /// Best first; at most `--top` of them.
    pub groups: Vec<Group>,
    /// The value of the best group (highest or lowest mean, as the metric wants).
    pub best: Option<serde_json::Value>,
    /// Comparisons with the best group that have a p-value: the Holm correction's m.
    pub comparisons: usize,
    pub test_method: String,
    pub ci_method: String,
    /// One sentence per finding: the best group, then one per comparison.
    pub verdict: Vec<String>,
}

/// Below this (Holm-adjusted) p-value a difference is called significant.
pub const ALPHA: f64 = 0.05;

fn metric_value(metric: Metric, r: &ReportRow) -> Option<f64> {
    match metric {
        Metric::Accuracy => r.test_accuracy,
        Metric::Loss => r.test_loss,
        Metric::ValAccuracy => r.val_accuracy,
        Metric::ValLoss => r.val_loss,
        Metric::Time => r.wall_s,
        Metric::Throughput => r.images_per_s,
    }
}

/// The range a metric's values live in: accuracies in [0, 1], every other
/// metric (losses, seconds, images per second) in [0, ∞).
fn metric_range(metric: Metric) -> (f64, f64) {
    if metric.is_fraction() {
        (0.0, 1.0)
    } else {
        (0.0, f64::INFINITY)
    }
}

pub fn mean_std(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

/// Two-sided Welch's t-test p-value; None when either side has fewer than 2 values.
pub fn welch_p(a: &[f64], b: &[f64]) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let (ma, sa) = mean_std(a);
    let (mb, sb) = mean_std(b);
    let (sa, sb) = (sa?, sb?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    if va + vb == 0.0 {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let t = (ma - mb) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0))
}

/// Holm's step-down correction of m p-values (family-wise error rate):
/// sorted ascending, the i-th (from 0) becomes max over j ≤ i of min(1, (m − j)·p(j)).
/// Returned in the input order.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut out = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// The Student-t 95 % interval of a mean, unclamped.
fn ci95(mean: f64, std: Option<f64>, n: usize) -> Option<(f64, f64)> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let std = std?;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .ok()?
        .inverse_cdf(0.975);
    let half = t * std / (n as f64).sqrt();
    Some((mean - half, mean + half))
}

/// `ci` cut to `range`; true when a bound moved.
fn clamp_ci(ci: (f64, f64), range: (f64, f64)) -> ((f64, f64), bool) {
    let out = (ci.0.clamp(range.0, range.1), ci.1.clamp(range.0, range.1));
    (out, out != ci)
}

/// Groups every row of `report` (pass the report of every matching trial,
/// before `--top`) by the value of `key`, compares the best group with each
/// other one (Welch's t-test, Holm-corrected), then keeps the first `top` groups.
/// `rows_params` are the full parameters of `report.rows`, in the same order.
pub fn group(
    report: &Report,
    key: &str,
    rows_params: &[serde_json::Map<String, serde_json::Value>],
    top: Option<usize>,
) -> GroupReport {
    let metric = report.metric;
    let mut groups: Vec<(serde_json::Value, Vec<f64>, Vec<String>)> = Vec::new();
    for (row, params) in report.rows.iter().zip(rows_params) {
        let v = params.get(key).cloned().unwrap_or(serde_json::Value::Null);
        let idx = match groups.iter().position(|g| g.0 == v) {
            Some(i) => i,
            None => {
                groups.push((v, vec![], vec![]));
                groups.len() - 1
            }
        };
        if let Some(x) = metric_value(metric, row) {
            groups[idx].1.push(x);
        }
        groups[idx].2.push(row.trial.clone());
    }
    let range = metric_range(metric);
    let mut out: Vec<(Group, Vec<f64>)> = groups
        .into_iter()
        .map(|(value, xs, trials)| {
            let (mean, std) = if xs.is_empty() {
                (None, None)
            } else {
                let (m, s) = mean_std(&xs);
                (Some(m), s)
            };
            let (ci, clamped) = match mean.and_then(|m| ci95(m, std, xs.len())) {
                Some(ci) => {
                    let (ci, c) = clamp_ci(ci, range);
                    (Some(ci), c)
                }
                None => (None, false),
            };
            (
                Group {
                    value,
                    n: xs.len(),
                    mean,
                    std,
                    ci95: ci,
                    ci95_clamped: clamped,
                    p_welch: None,
                    p_holm: None,
                    trials,
                },
                xs,
            )
        })
        .collect();
    let up = metric.higher_is_better();
    // Stable: ties keep the order of first appearance in the ranking.
    out.sort_by(|a, b| match (a.0.mean, b.0.mean) {
        (Some(x), Some(y)) => {
            if up {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let has_best = out.first().is_some_and(|g| g.0.mean.is_some());
    // Welch's test of the best group against every other group with values, then Holm over those tests.
    let mut tested: Vec<usize> = Vec::new();
    if has_best {
        let best = out[0].1.clone();
        for (i, (g, xs)) in out.iter_mut().enumerate().skip(1) {
            if g.mean.is_some() {
                g.p_welch = welch_p(&best, xs);
                if g.p_welch.is_some() {
                    tested.push(i);
                }
            }
        }
    }
    let raw: Vec<f64> = tested.iter().filter_map(|&i| out[i].0.p_welch).collect();
    for (&i, p) in tested.iter().zip(holm(&raw)) {
        out[i].0.p_holm = Some(p);
    }
    let verdict = verdict(key, metric, &out);
    let groups_total = out.len();
    let best = has_best.then(|| out[0].0.value.clone());
    GroupReport {
        sweep: report.sweep.clone(),
        metric: report.metric,
        ranked_by: report.ranked_by.clone(),
        checkpoints_picked_by: report.checkpoints_picked_by.clone(),
        key: key.to_string(),
        trials: report.rows.len(),
        groups_total,
        groups: out
            .into_iter()
            .map(|g| g.0)
            .take(top.unwrap_or(usize::MAX))
            .collect(),
        best,
        comparisons: raw.len(),
        test_method: format!(
            "two-sided Welch's t-test of the best group against each other group; p-values Holm-adjusted over the {} comparison(s); significant below {ALPHA}",
            raw.len()
        ),
        ci_method: format!(
            "mean ± t(0.975, n−1)·std/√n (Student t), clamped to the metric's range {}",
            if metric.is_fraction() {
                "[0%, 100%]"
            } else {
                "[0, ∞)"
            }
        ),
        verdict,
    }
}

fn fmt_p(p: f64) -> String {
    // 0 comes only from two groups without spread and different means.
    if p == 0.0 {
        "0".into()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn verdict(key: &str, metric: Metric, groups: &[(Group, Vec<f64>)]) -> Vec<String> {
    let Some((best, _)) = groups.first().filter(|g| g.0.mean.is_some()) else {
        return Vec::new();
    };
    let word = if metric.higher_is_better() {
        "highest"
    } else {
        "lowest"
    };
    let mut lines = vec![format!(
        "best: {key} = {} ({word} mean {metric}, n = {})",
        param_text(Some(&best.value)),
        best.n
    )];
    for (g, _) in groups.iter().skip(1).filter(|g| g.0.mean.is_some()) {
        let pair = format!(
            "{key} = {} vs {}",
            param_text(Some(&best.value)),
            param_text(Some(&g.value))
        );
        lines.push(match (g.p_welch, g.p_holm) {
            (Some(p), Some(adj)) => {
                let how = if adj < ALPHA { "significantly better" } else { "not significantly better" };
                format!("{pair}: {how} (Holm-adjusted p = {}, Welch p = {}, n = {} vs {})", fmt_p(adj), fmt_p(p), best.n, g.n)
            }
            _ => format!("{pair}: cannot test, need at least 2 trials (e.g. seeds) in each group (n = {} vs {})", best.n, g.n),
        });
    }
    lines
}

pub fn render_groups(g: &GroupReport, format: &str) -> Result<String, RankError> {
    let is_pct = g.metric.is_fraction();
    let f = |x: f64| {
        if is_pct {
            format!("{:.2}%", x * 100.0)
        } else {
            format!("{x:.4}")
        }
    };
    let is_best = |grp: &Group| g.best.as_ref() == Some(&grp.value);
    match format {
        "table" | "markdown" => {
            let mut b = tabled::builder::Builder::default();
            b.push_record([
                g.key.clone(),
                "n".into(),
                format!("mean {}", g.metric),
                "± std".into(),
                "95% CI".into(),
                "p vs best (Holm)".into(),
                "trials".into(),
            ]);
            for grp in &g.groups {
                let p = match grp.p_holm {
                    _ if is_best(grp) => "best".to_string(),
                    Some(p) => fmt_p(p),
                    None => "-".into(),
                };
                b.push_record([
                    param_text(Some(&grp.value)),
                    grp.n.to_string(),
                    grp.mean.map(f).unwrap_or_else(|| "-".into()),
                    grp.std.map(f).unwrap_or_else(|| "-".into()),
                    grp.ci95
                        .map(|(l, h)| {
                            format!(
                                "[{}, {}]{}",
                                f(l),
                                f(h),
                                if grp.ci95_clamped { "*" } else { "" }
                            )
                        })
                        .unwrap_or_else(|| "-".into()),
                    p,
                    grp.trials.join(" "),
                ]);
            }
            let mut t = b.build();
            if format == "markdown" {
                t.with(Style::markdown());
            } else {
                t.with(Style::rounded());
            }
            let mut head = format!(
                "sweep {} — {} by {} over {} trials ({})",
                g.sweep, g.metric, g.key, g.trials, g.ranked_by
            );
            if let Some(m) = &g.checkpoints_picked_by {
                head.push_str(&format!("; checkpoints picked by {m}"));
            }
            if g.groups.len() < g.groups_total {
                head.push_str(&format!(
                    "; top {} of {} groups shown",
                    g.groups.len(),
                    g.groups_total
                ));
            }
            let mut s = if format == "table" {
                format!("{head}\n{t}\n")
            } else {
                format!("**{head}**\n\n{t}\n")
            };
            let mut notes: Vec<String> = g.verdict.clone();
            if g.best.is_some() && g.groups_total > 1 {
                notes.push(format!("p: {}", g.test_method));
            }
            if g.groups.iter().any(|x| x.ci95.is_some()) {
                let clamped = if g.groups.iter().any(|x| x.ci95_clamped) {
                    " (* = clamped)"
                } else {
                    ""
                };
                notes.push(format!("95% CI: {}{clamped}", g.ci_method));
            }
            for n in notes {
                if format == "markdown" {
                    s.push('\n');
                }
                s.push_str(&n);
                s.push('\n');
            }
            Ok(s)
        }
        "csv" => {
            let mut s = format!(
                "{},n,mean,std,ci95_low,ci95_high,ci95_clamped,p_welch,p_holm\n",
                g.key
            );
            let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
            for grp in &g.groups {
                s.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    csv_field(&param_text(Some(&grp.value))),
                    grp.n,
                    raw(grp.mean),
                    raw(grp.std),
                    raw(grp.ci95.map(|c| c.0)),
                    raw(grp.ci95.map(|c| c.1)),
                    grp.ci95_clamped,
                    raw(grp.p_welch),
                    raw(grp.p_holm)
                ));
            }
            Ok(s)
        }
        "json" => Ok(serde_json::to_string_pretty(g)? + "\n"),
        other => Err(RankError::UnknownFormat(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind([0.905, 0.9, 0.91], [0.908, 0.902, 0.899], equal_var=False).pvalue = 0.63661324
        let p = welch_p(&[0.905, 0.9, 0.91], &[0.908, 0.902, 0.899]).unwrap();
        assert!((p - 0.636_613_24).abs() < 1e-6, "{p}");
        // Clearly apart: scipy gives 1.2777182e-05.
        let p = welch_p(&[0.90, 0.91, 0.905, 0.903], &[0.80, 0.81, 0.805, 0.79]).unwrap();
        assert!((p - 1.277_718e-5).abs() < 1e-9, "{p}");
        assert_eq!(welch_p(&[0.9], &[0.8, 0.7]), None);
    }

    #[test]
    fn holm_matches_statsmodels() {
        // statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.2], method="holm")[1]
        // = [0.04, 0.09, 0.09, 0.2]
        let adj = holm(&[0.01, 0.04, 0.03, 0.2]);
        for (a, want) in adj.iter().zip([0.04, 0.09, 0.09, 0.2]) {
            assert!((a - want).abs() < 1e-12, "{adj:?}");
        }
        assert!(holm(&[]).is_empty());
        assert_eq!(holm(&[0.7]), vec![0.7]);
    }

    fn report_of(
        groups: &[(&str, &[f64])],
    ) -> (Report, Vec<serde_json::Map<String, serde_json::Value>>) {
        let mut rows = Vec::new();
        let mut params = Vec::new();
        for (name, accs) in groups {
            for (i, a) in accs.iter().enumerate() {
                let mut r = snapshots::row(
                    &format!("{name}{i}"),
                    name,
                    0.01,
                    i as i64,
                    Some(*a),
                    "done",
                );
                r.params = format!(r#"{{"backbone":"{name}","seed":{i}}}"#);
                rows.push(r);
            }
        }
        let r = build("s", Metric::Accuracy, rows, None);
        for row in &r.rows {
            let name = row.trial.trim_end_matches(char::is_numeric);
            params.push(
                serde_json::json!({ "backbone": name })
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
        }
        (r, params)
    }

    #[test]
    fn best_against_each_other_group_holm_adjusted_like_scipy() {
        let a: &[f64] = &[0.91, 0.915, 0.905, 0.92];
        let b: &[f64] = &[0.90, 0.905, 0.899, 0.91];
        let c: &[f64] = &[0.85, 0.86, 0.855, 0.845];
        let d: &[f64] = &[0.912, 0.90, 0.918];
        let (r, params) = report_of(&[("b", b), ("c", c), ("a", a), ("d", d)]);
        let g = group(&r, "backbone", &params, None);
        assert_eq!(g.best, Some(serde_json::json!("a")));
        assert_eq!(g.comparisons, 3);
        // scipy.stats.ttest_ind(a, x, equal_var=False).pvalue for x = b, c, d:
        //   0.07326054470295239, 1.1960339186920772e-05, 0.7104340897050502
        // statsmodels multipletests(those, method="holm")[1]:
        //   0.146521089, 3.58810176e-05, 0.710434090
        let want = [
            ("b", 0.073_260_544_7, 0.146_521_089),
            ("c", 1.196_033_9e-5, 3.588_101_76e-5),
            ("d", 0.710_434_09, 0.710_434_09),
        ];
        for (name, raw, adj) in want {
            let grp = g
                .groups
                .iter()
                .find(|x| x.value == serde_json::json!(name))
                .unwrap();
            let (p, h) = (grp.p_welch.unwrap(), grp.p_holm.unwrap());
            assert!(
                (p - raw).abs() < 1e-6 * raw.max(1e-3),
                "{name}: welch {p} vs {raw}"
            );
            assert!(
                (h - adj).abs() < 1e-6 * adj.max(1e-3),
                "{name}: holm {h} vs {adj}"
            );
        }
        let best = &g.groups[0];
        assert_eq!((best.p_welch, best.p_holm), (None, None));
        let text = render_groups(&g, "table").unwrap();
        assert!(
            text.contains("best: backbone = a (highest mean accuracy, n = 4)"),
            "{text}"
        );
        assert!(
            text.contains("backbone = a vs c: significantly better (Holm-adjusted p = 3.6e-5"),
            "{text}"
        );
        assert!(text.contains("backbone = a vs b: not significantly better (Holm-adjusted p = 0.147, Welch p = 0.073"), "{text}");
        assert!(
            text.contains("Holm-adjusted over the 3 comparison(s)"),
            "{text}"
        );
    }

    #[test]
    fn groups_use_every_trial_and_top_only_limits_the_groups_shown() {
        // Ranked by accuracy, the first three rows are all of group "a": a
        // `--top 3` cut before grouping would have dropped group "b" entirely
        // and left "a" with 3 of its 4 trials.
        let (r, params) = report_of(&[("a", &[0.95, 0.94, 0.93, 0.50]), ("b", &[0.80, 0.81])]);
        let g = group(&r, "backbone", &params, Some(1));
        assert_eq!(g.trials, 6);
        assert_eq!(g.groups_total, 2);
        assert_eq!(g.groups.len(), 1);
        // Mean of a over all four: 0.83 (> b's 0.805), so a is still best, with n = 4.
        assert_eq!(g.groups[0].n, 4);
        assert!((g.groups[0].mean.unwrap() - 0.83).abs() < 1e-12);
        assert_eq!(
            g.comparisons, 1,
            "the comparison with b is made although b is not shown"
        );
        assert!(
            render_groups(&g, "table")
                .unwrap()
                .contains("top 1 of 2 groups shown")
        );
    }

    #[test]
    fn accuracy_ci_is_clamped_to_100_percent() {
        // scipy.stats.t.interval(0.95, df=2, loc=mean, scale=sem) of [0.99, 1.0, 1.0]
        // = (0.9823244909008352, 1.0110088424324983): above 100 %, so cut at 1.0.
        let (r, params) = report_of(&[("a", &[0.99, 1.0, 1.0])]);
        let g = group(&r, "backbone", &params, None);
        let (lo, hi) = g.groups[0].ci95.unwrap();
        assert!((lo - 0.982_324_490_9).abs() < 1e-9, "{lo}");
        assert_eq!(hi, 1.0);
        assert!(g.groups[0].ci95_clamped);
        let text = render_groups(&g, "table").unwrap();
        assert!(text.contains("[98.23%, 100.00%]*"), "{text}");
        assert!(
            text.contains("clamped to the metric's range [0%, 100%] (* = clamped)"),
            "{text}"
        );
        // Unclamped bounds stay as computed.
        let ((l, h), moved) = clamp_ci((0.2, 0.4), (0.0, 1.0));
        assert_eq!(((l, h), moved), ((0.2, 0.4), false));
        // A loss interval that crosses 0: scipy gives (-0.2989406786228028, 0.5189406786228028) for [0.01, 0.3, 0.02].
        let (m, s) = mean_std(&[0.01, 0.3, 0.02]);
        let raw = ci95(m, s, 3).unwrap();
        assert!(
            (raw.0 + 0.298_940_678_6).abs() < 1e-9 && (raw.1 - 0.518_940_678_6).abs() < 1e-9,
            "{raw:?}"
        );
        let (cut, moved) = clamp_ci(raw, metric_range(Metric::Loss));
        assert!(moved && cut.0 == 0.0 && cut.1 == raw.1);
    }

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

    #[test]
    fn ci_uses_student_t() {
        // n = 3, mean 2, std 1 → t(0.975, 2) = 4.303 → half-width 4.303 / √3 = 2.484
        let (lo, hi) = ci95(2.0, Some(1.0), 3).unwrap();
        assert!((hi - 2.0 - 2.4841).abs() < 1e-3 && (2.0 - lo - 2.4841).abs() < 1e-3);
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
