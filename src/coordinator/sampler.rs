//! Proposals for `[random] sampler = "tpe"`: the next point of the search
//! space, from the results so far. Pure: no I/O, no clock, no shared RNG; a
//! proposal is a function of (the space, the observations, the proposal's
//! seed), so a resumed sweep that sees the same results proposes the same
//! point. The dispatcher owns when to propose and writes each proposal to the
//! database before its trial starts.
//!
//! TPE (Bergstra et al., NeurIPS 2011), univariate as Optuna's default
//! sampler: per dimension, the observations are split into the best
//! `⌈0.1·n⌉` ("below") and the rest; each group becomes a Parzen estimator
//! (a Gaussian per observation plus a prior at the middle of the range,
//! bandwidth = the larger gap to a neighbour, clipped to [width/min(100, n+1),
//! width], truncated to the range) or, for a categorical dimension, a
//! histogram with one pseudo-count per choice; 24 candidates are drawn from
//! "below" and the one maximising l(x)/g(x) wins. The estimators are the
//! `tpe` crate's (sile/tpe). Log-uniform dimensions are modelled in ln space;
//! integer dimensions on [low − ½, high + ½) and rounded.
use crate::spec::search::Dim;
use rand010::rngs::StdRng;
use rand010::{RngExt, SeedableRng};

/// A point of the space: per dimension, a choice index, a value (uniform,
/// log-uniform: as written, not its log) or an integer.
pub type Point = Vec<f64>;

/// One observation: a point and its value, oriented so that higher is better.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub point: Point,
    pub value: f64,
}

/// The RNG of proposal `k` of a sweep seeded `seed`: independent of every
/// other proposal, so that none depends on how many draws came before it.
fn rng(seed: u64, k: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A uniform draw from the space (what TPE falls back on without enough results).
pub fn random_point(dims: &[Dim], seed: u64, k: u64) -> Point {
    let mut r = rng(seed, k);
    dims.iter()
        .map(|d| match d {
            Dim::Choice(c) => r.random_range(0..c.len()) as f64,
            Dim::Uniform(lo, hi) => r.random_range(*lo..*hi),
            Dim::LogUniform(lo, hi) => r.random_range(lo.ln()..hi.ln()).exp(),
            Dim::Int(lo, hi) => r.random_range(*lo..=*hi) as f64,
        })
        .collect()
}

/// The range a dimension is modelled on, and a point's coordinate there.
fn modelled(d: &Dim) -> (tpe::range::Range, bool) {
    let r = match d {
        Dim::Choice(c) => tpe::categorical_range(c.len()),
        Dim::Uniform(lo, hi) => tpe::range(*lo, *hi),
        Dim::LogUniform(lo, hi) => tpe::range(lo.ln(), hi.ln()),
        Dim::Int(lo, hi) => tpe::range(*lo as f64 - 0.5, *hi as f64 + 0.5),
    };
    // The spec refuses empty ranges and empty choice lists, so this cannot fail.
    (
        r.expect("the spec validated this range"),
        matches!(d, Dim::Choice(_)),
    )
}

fn to_model(d: &Dim, x: f64, range: &tpe::range::Range) -> f64 {
    let m = if matches!(d, Dim::LogUniform(..)) {
        x.ln()
    } else {
        x
    };
    // ln(exp(u)) may land one ulp past the end of a half-open range.
    m.clamp(range.start(), range.end().next_down())
}

fn from_model(d: &Dim, m: f64) -> f64 {
    match d {
        Dim::Choice(c) => (m.floor() as usize).min(c.len() - 1) as f64,
        Dim::Uniform(lo, hi) => m.clamp(*lo, *hi),
        Dim::LogUniform(lo, hi) => m.exp().clamp(*lo, *hi),
        Dim::Int(lo, hi) => (m.round() as i64).clamp(*lo, *hi) as f64,
    }
}

/// Proposal `k`: TPE over `observations` (at least one), one dimension at a time.
pub fn tpe_point(dims: &[Dim], observations: &[Observation], seed: u64, k: u64) -> Point {
    let mut r = rng(seed, k);
    dims.iter()
        .enumerate()
        .map(|(i, d)| {
            let (range, categorical) = modelled(d);
            let estimator = if categorical {
                tpe::histogram_estimator()
            } else {
                tpe::parzen_estimator()
            };
            let mut opt = tpe::TpeOptimizer::new(estimator, range);
            for o in observations.iter().filter(|o| o.value.is_finite()) {
                // The crate minimises; ours is higher-is-better.
                opt.tell(to_model(d, o.point[i], &range), -o.value)
                    .expect("clamped into the range, finite value");
            }
            let m = opt.ask(&mut r).expect("the estimators never fail");
            from_model(d, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Best value found after `budget` evaluations, with `startup` random
    /// draws first and TPE after (or random throughout).
    fn search(
        dims: &[Dim],
        f: &dyn Fn(&[f64]) -> f64,
        seed: u64,
        budget: u64,
        startup: u64,
        use_tpe: bool,
    ) -> f64 {
        let mut obs: Vec<Observation> = Vec::new();
        for k in 0..budget {
            let p = if use_tpe && k >= startup {
                tpe_point(dims, &obs, seed, k)
            } else {
                random_point(dims, seed, k)
            };
            for (d, x) in dims.iter().zip(&p) {
                assert!(match d {
                    Dim::Choice(c) => (*x as usize) < c.len() && x.fract() == 0.0,
                    Dim::Uniform(lo, hi) | Dim::LogUniform(lo, hi) => (*lo..=*hi).contains(x),
                    Dim::Int(lo, hi) => (*lo as f64..=*hi as f64).contains(x) && x.fract() == 0.0,
                });
            }
            obs.push(Observation {
                value: f(&p),
                point: p,
            });
        }
        obs.iter()
            .map(|o| o.value)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Mean regret (optimum − best found) over 20 seeds, TPE and random.
    fn mean_regrets(dims: &[Dim], f: &dyn Fn(&[f64]) -> f64, optimum: f64) -> (f64, f64) {
        let (budget, startup) = (40, 10);
        let mean = |use_tpe| {
            (0..20u64)
                .map(|s| optimum - search(dims, f, 1000 + s, budget, startup, use_tpe))
                .sum::<f64>()
                / 20.0
        };
        (mean(true), mean(false))
    }

    #[test]
    fn tpe_beats_random_search_on_a_1d_objective() {
        let dims = [Dim::Uniform(-5.0, 5.0)];
        let f = |p: &[f64]| -(p[0] - 1.3).powi(2);
        let (tpe, random) = mean_regrets(&dims, &f, 0.0);
        assert!(
            tpe < random * 0.5,
            "mean regret over 20 seeds: tpe {tpe:.5}, random {random:.5}"
        );
    }

    #[test]
    fn tpe_beats_random_search_on_a_2d_log_and_categorical_objective() {
        // A learning-rate-like log axis with a sharp optimum at 3e-3, and a
        // categorical axis where one choice of four is best.
        let dims = [
            Dim::LogUniform(1e-5, 1.0),
            Dim::Choice((0..4).map(toml::Value::Integer).collect()),
        ];
        let f = |p: &[f64]| {
            let lr = p[0].log10() - 3e-3f64.log10();
            let bonus = [0.0, 0.3, 0.0, 0.1][p[1] as usize];
            1.0 - lr * lr * 0.5 - (0.3 - bonus)
        };
        let (tpe, random) = mean_regrets(&dims, &f, 1.0);
        assert!(
            tpe < random,
            "mean regret over 20 seeds: tpe {tpe:.5}, random {random:.5}"
        );
    }

    #[test]
    fn tpe_handles_integer_dimensions_and_is_deterministic() {
        let dims = [Dim::Int(1, 9), Dim::Uniform(0.0, 1.0)];
        let f = |p: &[f64]| -(p[0] - 7.0).abs() - (p[1] - 0.2).abs();
        let (tpe, random) = mean_regrets(&dims, &f, 0.0);
        assert!(
            tpe < random,
            "mean regret over 20 seeds: tpe {tpe:.5}, random {random:.5}"
        );
        let obs: Vec<Observation> = (0..12)
            .map(|k| random_point(&dims, 5, k))
            .map(|p| Observation {
                value: f(&p),
                point: p,
            })
            .collect();
        // Same space, results, seed and index: the same proposal (what resume relies on).
        assert_eq!(tpe_point(&dims, &obs, 5, 12), tpe_point(&dims, &obs, 5, 12));
        assert_ne!(tpe_point(&dims, &obs, 5, 12), tpe_point(&dims, &obs, 5, 13));
    }
}
