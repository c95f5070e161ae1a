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
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub epochs: i64,
    pub wall_s: Option<f64>,
    pub images_per_s: Option<f64>,
    pub status: crate::store::TrialStatus,
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
    let order: Vec<&str> = sweep_protocol::PARAM_KEYS.iter().copied().chain(["seed", "pretrained"]).collect();
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
            val_loss: r.val_loss,
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

pub fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_else(|| "-".into())
}

pub fn num(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

pub fn param_text(v: Option<&serde_json::Value>) -> String {
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
            v.extend([
                pct(row.val_accuracy),
                pct(row.test_accuracy),
                num(row.test_loss, 4),
                row.epochs.to_string(),
                num(row.wall_s, 1),
                num(row.images_per_s, 1),
                row.status.to_string(),
            ]);
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
        "json" => serde_json::to_string_pretty(r).map(|s| s + "\n").map_err(|e| e.to_string()),
        other => Err(format!("unknown format {other:?}; valid formats: {}", FORMATS.join(", "))),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Mean ± std and a 95 % confidence interval of the ranking metric per value of one key.
#[derive(Debug, Serialize)]
pub struct Group {
    pub value: serde_json::Value,
    pub n: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    pub trials: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub sweep: String,
    pub metric: String,
    pub key: String,
    pub groups: Vec<Group>,
    /// Whether the best group is really ahead of the runner-up (Welch's t-test).
    pub verdict: Option<String>,
    pub welch_p: Option<f64>,
}

fn metric_value(metric: &str, r: &ReportRow) -> Option<f64> {
    match metric {
        "accuracy" => r.test_accuracy,
        "loss" => r.test_loss,
        "val_accuracy" => r.val_accuracy,
        "val_loss" => r.val_loss,
        "time" => r.wall_s,
        "throughput" => r.images_per_s,
        _ => None,
    }
}

fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "accuracy" | "val_accuracy" | "throughput")
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

fn ci95(mean: f64, std: Option<f64>, n: usize) -> Option<(f64, f64)> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let std = std?;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?.inverse_cdf(0.975);
    let half = t * std / (n as f64).sqrt();
    Some((mean - half, mean + half))
}

pub fn group(report: &Report, key: &str, rows_params: &[serde_json::Map<String, serde_json::Value>]) -> GroupReport {
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
        if let Some(x) = metric_value(&report.metric, row) {
            groups[idx].1.push(x);
        }
        groups[idx].2.push(row.trial.clone());
    }
    let mut out: Vec<(Group, Vec<f64>)> = groups
        .into_iter()
        .map(|(value, xs, trials)| {
            let (mean, std) = if xs.is_empty() {
                (None, None)
            } else {
                let (m, s) = mean_std(&xs);
                (Some(m), s)
            };
            let ci = mean.and_then(|m| ci95(m, std, xs.len()));
            (Group { value, n: xs.len(), mean, std, ci95: ci, trials }, xs)
        })
        .collect();
    let up = higher_is_better(&report.metric);
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
    let (verdict, p) = match out.as_slice() {
        [(a, xa), (b, xb), ..] if a.mean.is_some() && b.mean.is_some() => match welch_p(xa, xb) {
            Some(p) => {
                // Below 0.05 the difference is called real; the p-value is shown either way.
                let (how, shown) = if p < 0.05 { ("is significantly better", format!("{p:.3}")) } else { ("is not significantly better", format!("{p:.2}")) };
                let text = format!("{key} = {} {how} than {} (Welch p = {shown}, n = {} vs {})", show_value(&a.value), show_value(&b.value), a.n, b.n);
                (Some(text), Some(p))
            }
            None => (
                Some(format!(
                    "cannot tell whether {key} = {} beats {}: need at least 2 trials (e.g. seeds) in each group",
                    show_value(&a.value),
                    show_value(&b.value)
                )),
                None,
            ),
        },
        _ => (None, None),
    };
    GroupReport {
        sweep: report.sweep.clone(),
        metric: report.metric.clone(),
        key: key.to_string(),
        groups: out.into_iter().map(|g| g.0).collect(),
        verdict,
        welch_p: p,
    }
}

fn show_value(v: &serde_json::Value) -> String {
    v.as_str().map(String::from).unwrap_or_else(|| v.to_string())
}

pub fn render_groups(g: &GroupReport, format: &str) -> Result<String, String> {
    let is_pct = matches!(g.metric.as_str(), "accuracy" | "val_accuracy");
    let f = |x: f64| if is_pct { format!("{:.2}%", x * 100.0) } else { format!("{x:.4}") };
    match format {
        "table" | "markdown" => {
            let mut b = tabled::builder::Builder::default();
            b.push_record([g.key.clone(), "n".into(), format!("mean {}", g.metric), "± std".into(), "95% CI".into(), "trials".into()]);
            for grp in &g.groups {
                b.push_record([
                    show_value(&grp.value),
                    grp.n.to_string(),
                    grp.mean.map(f).unwrap_or_else(|| "-".into()),
                    grp.std.map(f).unwrap_or_else(|| "-".into()),
                    grp.ci95.map(|(l, h)| format!("[{}, {}]", f(l), f(h))).unwrap_or_else(|| "-".into()),
                    grp.trials.join(" "),
                ]);
            }
            let mut t = b.build();
            if format == "markdown" {
                t.with(Style::markdown());
            } else {
                t.with(Style::rounded());
            }
            let mut s = if format == "table" { format!("sweep {} — {} by {}\n{t}\n", g.sweep, g.metric, g.key) } else { format!("{t}\n") };
            if let Some(v) = &g.verdict {
                s.push_str(v);
                s.push('\n');
            }
            Ok(s)
        }
        "csv" => {
            let mut s = format!("{},n,mean,std,ci95_low,ci95_high\n", g.key);
            let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
            for grp in &g.groups {
                s.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    csv_field(&show_value(&grp.value)),
                    grp.n,
                    raw(grp.mean),
                    raw(grp.std),
                    raw(grp.ci95.map(|c| c.0)),
                    raw(grp.ci95.map(|c| c.1))
                ));
            }
            Ok(s)
        }
        "json" => serde_json::to_string_pretty(g).map(|s| s + "\n").map_err(|e| e.to_string()),
        other => Err(format!("unknown format {other:?}; valid formats: {}", FORMATS.join(", "))),
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
    fn ci_uses_student_t() {
        // n = 3, mean 2, std 1 → t(0.975, 2) = 4.303 → half-width 4.303 / √3 = 2.484
        let (lo, hi) = ci95(2.0, Some(1.0), 3).unwrap();
        assert!((hi - 2.0 - 2.4841).abs() < 1e-3 && (2.0 - lo - 2.4841).abs() < 1e-3);
    }
}

#[cfg(test)]
mod snapshots {
    use super::*;
    use crate::store::queries::TrialRow;

    fn row(trial: &str, backbone: &str, lr: f64, seed: i64, test: Option<f64>, status: &str) -> TrialRow {
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
        let r = build("backbones", "accuracy", rows(), None).unwrap();
        insta::assert_snapshot!(render(&r, "table").unwrap());
    }

    #[test]
    fn report_markdown_top_2_by_loss() {
        let r = build("backbones", "loss", rows(), Some(2)).unwrap();
        insta::assert_snapshot!(render(&r, "markdown").unwrap());
    }

    #[test]
    fn report_grouped_with_verdict() {
        let rs = rows();
        let params: Vec<_> = rs.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.params).unwrap().as_object().cloned().unwrap()).collect();
        let by_id: std::collections::HashMap<String, _> = rs.iter().map(|r| r.trial.clone()).zip(params).collect();
        let r = build("backbones", "accuracy", rs, None).unwrap();
        let ordered: Vec<_> = r.rows.iter().map(|row| by_id[&row.trial].clone()).collect();
        let g = group(&r, "backbone", &ordered);
        insta::assert_snapshot!(render_groups(&g, "table").unwrap());
    }
}
