//! Which parameters matter: two estimates over the trials that have a value.
//!
//! * **Spearman's rank correlation** of each numeric parameter with the
//!   metric (ties get their mean rank): the sign says which way to move it.
//!   Categorical parameters have no order, so no ρ.
//! * **PED-ANOVA** (Watanabe, Bansal, Hutter, 2023; the default of Optuna's
//!   dashboard): how far the distribution of a parameter among the top 10 %
//!   of trials is from its distribution among all trials, as the Pearson
//!   divergence `∫ (p_top(x) / p_all(x) − 1)² p_all(x) dx`. Numeric
//!   parameters use a Gaussian kernel density (Scott's bandwidth) on a
//!   50-point grid, in log space for log-scaled ones; categorical ones use
//!   their smoothed frequencies. The values are shown normalised to sum 1.
//!
//! Both are computed on each trial's best value, or on the values at one
//! epoch (intermediate results of running and pruned trials). A parameter
//! needs at least 4 trials with values; the top set has at least 2.
use crate::snapshot::{ParamKey, Scalar};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Importance {
    pub name: String,
    /// Spearman's ρ with the metric (numeric parameters only).
    pub spearman: Option<f64>,
    /// PED-ANOVA, normalised over the parameters (sums to 1 where any is non-zero).
    pub ped_anova: Option<f64>,
    /// Trials with both a value of this parameter and of the metric.
    pub trials: usize,
}

/// Ranks, 1-based, ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].partial_cmp(&v[b]).unwrap_or(std::cmp::Ordering::Equal));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 3 {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// Gaussian KDE of `v` on `grid`, normalised to sum 1 over the grid.
fn kde(v: &[f64], grid: &[f64], h: f64) -> Vec<f64> {
    let mut p: Vec<f64> = grid
        .iter()
        .map(|g| v.iter().map(|x| (-0.5 * ((g - x) / h).powi(2)).exp()).sum())
        .collect();
    let s: f64 = p.iter().sum();
    if s > 0.0 {
        p.iter_mut().for_each(|x| *x /= s);
    }
    p
}

fn pearson_divergence(top: &[f64], all: &[f64]) -> f64 {
    top.iter()
        .zip(all)
        .filter(|(_, a)| **a > 1e-300)
        .map(|(t, a)| a * (t / a - 1.0).powi(2))
        .sum()
}

fn ped_numeric(all: &[f64], top: &[f64]) -> f64 {
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return 0.0;
    }
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let sd = (all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    // Scott's rule, floored at 1/50 of the range so a few distinct values still overlap.
    let h = (1.06 * sd * n.powf(-0.2)).max((hi - lo) / 50.0);
    let grid: Vec<f64> = (0..50).map(|i| lo + (hi - lo) * i as f64 / 49.0).collect();
    pearson_divergence(&kde(top, &grid, h), &kde(all, &grid, h))
}

fn ped_categorical(all: &[String], top: &[String]) -> f64 {
    let mut cats: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for c in all {
        cats.entry(c).or_default().0 += 1.0;
    }
    for c in top {
        cats.entry(c).or_default().1 += 1.0;
    }
    // A prior of one observation per category, as Optuna's categorical estimator has.
    let k = cats.len() as f64;
    let (na, nt) = (all.len() as f64 + k, top.len() as f64 + k);
    let pa: Vec<f64> = cats.values().map(|c| (c.0 + 1.0) / na).collect();
    let pt: Vec<f64> = cats.values().map(|c| (c.1 + 1.0) / nt).collect();
    pearson_divergence(&pt, &pa)
}

/// Importance of each of `params` for the values `ys` of trials whose
/// parameters are `xs` (same order).
pub fn compute(
    params: &[ParamKey],
    xs: &[BTreeMap<String, Scalar>],
    ys: &[f64],
    maximize: bool,
) -> Vec<Importance> {
    // The top 10 % (at least 2) by the metric.
    let mut order: Vec<usize> = (0..ys.len()).collect();
    order.sort_by(|&a, &b| {
        let o = ys[a]
            .partial_cmp(&ys[b])
            .unwrap_or(std::cmp::Ordering::Equal);
        if maximize { o.reverse() } else { o }
    });
    let n_top = ((ys.len() as f64 * 0.1).ceil() as usize).max(2);
    let mut is_top = vec![false; ys.len()];
    for &i in order.iter().take(n_top) {
        is_top[i] = true;
    }
    let mut out: Vec<Importance> = params
        .iter()
        .map(|p| {
            let idx: Vec<usize> = (0..ys.len())
                .filter(|&i| xs[i].contains_key(&p.name))
                .collect();
            let trials = idx.len();
            if trials < 4 {
                return Importance {
                    name: p.name.clone(),
                    spearman: None,
                    ped_anova: None,
                    trials,
                };
            }
            let y: Vec<f64> = idx.iter().map(|&i| ys[i]).collect();
            if p.numeric {
                let tr = |x: f64| if p.log { x.max(1e-300).ln() } else { x };
                let x: Vec<f64> = idx
                    .iter()
                    .map(|&i| tr(xs[i][&p.name].as_f64().unwrap_or(0.0)))
                    .collect();
                let top: Vec<f64> = idx
                    .iter()
                    .zip(&x)
                    .filter(|(i, _)| is_top[**i])
                    .map(|(_, v)| *v)
                    .collect();
                Importance {
                    name: p.name.clone(),
                    spearman: spearman(&x, &y),
                    ped_anova: (top.len() >= 2).then(|| ped_numeric(&x, &top)),
                    trials,
                }
            } else {
                let x: Vec<String> = idx.iter().map(|&i| xs[i][&p.name].text()).collect();
                let top: Vec<String> = idx
                    .iter()
                    .zip(&x)
                    .filter(|(i, _)| is_top[**i])
                    .map(|(_, v)| v.clone())
                    .collect();
                Importance {
                    name: p.name.clone(),
                    spearman: None,
                    ped_anova: (top.len() >= 2).then(|| ped_categorical(&x, &top)),
                    trials,
                }
            }
        })
        .collect();
    let total: f64 = out.iter().filter_map(|i| i.ped_anova).sum();
    if total > 0.0 {
        for i in &mut out {
            i.ped_anova = i.ped_anova.map(|v| v / total);
        }
    }
    out.sort_by(|a, b| {
        b.ped_anova
            .unwrap_or(-1.0)
            .partial_cmp(&a.ped_anova.unwrap_or(-1.0))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, numeric: bool) -> ParamKey {
        ParamKey {
            name: name.into(),
            numeric,
            log: false,
            values: vec![],
            min: None,
            max: None,
        }
    }

    #[test]
    fn spearman_of_a_monotone_relation_is_one_and_ties_share_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 8.0, 27.0, 64.0, 125.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let yr: Vec<f64> = y.iter().rev().copied().collect();
        assert!((spearman(&x, &yr).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_parameter_that_decides_the_metric_ranks_first() {
        // `lr` decides the value; `noise` and `kind` are unrelated to it.
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..200 {
            let lr = (i % 20) as f64;
            let noise = ((i * 7919) % 13) as f64;
            let kind = ["a", "b", "c"][(i * 31) % 3];
            let mut m = BTreeMap::new();
            m.insert("lr".to_string(), Scalar::Num(lr));
            m.insert("noise".to_string(), Scalar::Num(noise));
            m.insert("kind".to_string(), Scalar::Text(kind.into()));
            xs.push(m);
            ys.push(-(lr - 15.0).powi(2));
        }
        let r = compute(
            &[key("noise", true), key("kind", false), key("lr", true)],
            &xs,
            &ys,
            true,
        );
        assert_eq!(r[0].name, "lr", "{r:?}");
        assert!(r[0].ped_anova.unwrap() > 0.6, "{r:?}");
        let total: f64 = r.iter().filter_map(|i| i.ped_anova).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(r.iter().all(|i| i.trials == 200));
        let kind = r.iter().find(|i| i.name == "kind").unwrap();
        assert_eq!(kind.spearman, None);
    }
}
