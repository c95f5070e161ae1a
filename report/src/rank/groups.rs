//! `report --group-by`: the trials of each value of a parameter, their mean,
//! spread and 95 % interval of the ranking metric, the best group tested
//! against each other one (Welch, Holm-corrected), and the verdict in words.
//! Statistics only; `render` formats them.
use super::{Ranking, Report, param_text};
use serde::Serialize;

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
    pub metric: Ranking,
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

/// The range a metric's values live in (`Ranking::range`).
fn metric_range(metric: &Ranking) -> (f64, f64) {
    metric.range()
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
    let metric = &report.metric;
    let range = metric_range(metric);
    let mut out: Vec<(Group, Vec<f64>)> = collect(report, key, rows_params)
        .into_iter()
        .map(|(value, xs, trials)| summarise(value, xs, trials, range))
        .collect();
    sort_best_first(&mut out, metric.higher_is_better());
    let has_best = out.first().is_some_and(|g| g.0.mean.is_some());
    let raw = compare_with_best(&mut out, has_best);
    let verdict = verdict(key, metric, &out);
    let groups_total = out.len();
    let best = has_best.then(|| out[0].0.value.clone());
    GroupReport {
        sweep: report.sweep.clone(),
        metric: report.metric.clone(),
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
        ci_method: match range {
            (lo, hi) if lo.is_finite() || hi.is_finite() => format!(
                "mean ± t(0.975, n−1)·std/√n (Student t), clamped to the metric's range {}",
                if metric.is_fraction() {
                    "[0%, 100%]"
                } else {
                    "[0, ∞)"
                }
            ),
            _ => "mean ± t(0.975, n−1)·std/√n (Student t)".to_string(),
        },
        verdict,
    }
}

/// The rows of `report` by value of `key`, in order of first appearance:
/// (value, the metric of those that have it, every trial).
fn collect(
    report: &Report,
    key: &str,
    rows_params: &[serde_json::Map<String, serde_json::Value>],
) -> Vec<(serde_json::Value, Vec<f64>, Vec<String>)> {
    let metric = &report.metric;
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
        if let Some(x) = row.value(metric) {
            groups[idx].1.push(x);
        }
        groups[idx].2.push(row.trial.clone());
    }
    groups
}

/// One group's mean, std and interval (clamped to `range`), not yet compared.
fn summarise(
    value: serde_json::Value,
    xs: Vec<f64>,
    trials: Vec<String>,
    range: (f64, f64),
) -> (Group, Vec<f64>) {
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
}

/// Best mean first (highest when `up`); groups without one last.
fn sort_best_first(out: &mut [(Group, Vec<f64>)], up: bool) {
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
}

/// Sets `p_welch` and `p_holm` of every group compared with the first (the
/// best, when `has_best`); returns the raw p-values, one per comparison.
fn compare_with_best(out: &mut [(Group, Vec<f64>)], has_best: bool) -> Vec<f64> {
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
    raw
}

pub(super) fn fmt_p(p: f64) -> String {
    // 0 comes only from two groups without spread and different means.
    if p == 0.0 {
        "0".into()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn verdict(key: &str, metric: &Ranking, groups: &[(Group, Vec<f64>)]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{Metric, build, render_groups, snapshots};

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
        let (cut, moved) = clamp_ci(raw, metric_range(&Ranking::Builtin(Metric::Loss)));
        assert!(moved && cut.0 == 0.0 && cut.1 == raw.1);
    }

    #[test]
    fn ci_uses_student_t() {
        // n = 3, mean 2, std 1 → t(0.975, 2) = 4.303 → half-width 4.303 / √3 = 2.484
        let (lo, hi) = ci95(2.0, Some(1.0), 3).unwrap();
        assert!((hi - 2.0 - 2.4841).abs() < 1e-3 && (2.0 - lo - 2.4841).abs() < 1e-3);
    }
}
