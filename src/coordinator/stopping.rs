//! Early stopping across trials, decided at epoch boundaries: ASHA,
//! Hyperband, the median stopping rule, and patience (alone or with any of
//! them). Pure decision logic over (trial, epoch, value) reports: no I/O, no
//! clock; the dispatcher feeds it, records each decision as a row and stops
//! the trials it says to stop. Values are oriented so that higher is better
//! (a loss is negated), and every `Decision` carries the raw metric value.
//!
//! - **ASHA** (Li et al., "A System for Massively Parallel Hyperparameter
//!   Tuning", MLSys 2020): rungs at `min_epochs · reduction^k` below a trial's
//!   last epoch. When a trial completes a rung, its value is compared with
//!   every value recorded at that rung so far; it continues only if it is not
//!   below the `(1 − 1/reduction)` quantile of them (linear interpolation, as
//!   numpy's percentile), i.e. it is in the top `1/reduction`. The first trial
//!   at a rung always continues; no trial waits for others.
//! - **Hyperband**: brackets `s = 0..=S`, `S = ⌊log_r(max_epochs/min_epochs)⌋`;
//!   bracket `s` is ASHA with a first rung at `min_epochs · r^s`; trials are
//!   assigned round-robin by their position in the plan.
//! - **Median** (Golovin et al., "Google Vizier", KDD 2017): from epoch
//!   `min_epochs` on, stop a trial at epoch `e` when its best value so far is
//!   worse than the median of the running means (mean of epochs 1..=e) of the
//!   other trials that reached `e`; at least `MEDIAN_MIN_TRIALS` of them are needed.
//! - **Patience**: stop a trial after `patience` epochs without improving its
//!   own best value.
use crate::spec::Objective;
use crate::spec::{StopMethod, Stopping};
use std::collections::{BTreeMap, HashMap};

/// The median rule needs this many other trials at an epoch before it judges.
pub const MEDIAN_MIN_TRIALS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub trial: String,
    pub epoch: u32,
    /// ASHA/Hyperband rung index (0 = first rung).
    pub rung: Option<u32>,
    pub bracket: Option<u32>,
    /// "asha", "hyperband", "median" or "patience".
    pub method: &'static str,
    /// The metric as reported (not negated).
    pub value: f64,
    /// The value it had to reach (as reported), when there was one.
    pub cutoff: Option<f64>,
    /// How many records it was compared with (patience: epochs since the best).
    pub compared: usize,
    pub stop: bool,
}

pub struct Stopper {
    cfg: Stopping,
    /// (bracket, rung) → the records there.
    rungs: HashMap<(u32, u32), Rung>,
    /// trial → oriented value per epoch (index epoch-1); NaN where unknown.
    history: HashMap<String, Vec<f64>>,
    bracket_of: HashMap<String, u32>,
    /// (trial, epoch) already decided (a resumed worker replays its epochs).
    decided: std::collections::HashSet<(String, u32)>,
}

/// The records at one rung: by trial, and as a sorted list, so that a cutoff
/// is an index away (decision time stays flat at 10,000 trials).
#[derive(Default)]
struct Rung {
    by_trial: BTreeMap<String, f64>,
    sorted: Vec<f64>,
}

impl Rung {
    fn insert(&mut self, trial: &str, v: f64) {
        if let Some(old) = self.by_trial.insert(trial.to_string(), v)
            && let Ok(i) = self.sorted.binary_search_by(|x| x.total_cmp(&old))
        {
            self.sorted.remove(i);
        }
        let i = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.sorted.insert(i, v);
    }

    /// The records of every trial but `trial`, sorted.
    fn others(&self, trial: &str) -> std::borrow::Cow<'_, [f64]> {
        match self.by_trial.get(trial) {
            None => std::borrow::Cow::Borrowed(&self.sorted),
            Some(v) => {
                let mut o = self.sorted.clone();
                if let Ok(i) = o.binary_search_by(|x| x.total_cmp(v)) {
                    o.remove(i);
                }
                std::borrow::Cow::Owned(o)
            }
        }
    }
}

/// numpy.percentile (linear interpolation) of already sorted values.
fn percentile_sorted(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn orient(metric: &Objective, v: f64) -> f64 {
    metric.orient(v)
}

/// numpy.percentile with linear interpolation; `q` in [0, 100].
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, q)
}

fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

impl Stopper {
    pub fn new(cfg: Stopping) -> Stopper {
        Stopper {
            cfg,
            rungs: HashMap::new(),
            history: HashMap::new(),
            bracket_of: HashMap::new(),
            decided: Default::default(),
        }
    }

    pub fn metric(&self) -> &Objective {
        &self.cfg.metric
    }

    /// Number of Hyperband brackets for trials of up to `max_epochs` epochs.
    pub fn brackets(&self, max_epochs: u32) -> u32 {
        let r = self.cfg.reduction.max(2) as f64;
        let ratio = max_epochs as f64 / self.cfg.min_epochs.max(1) as f64;
        if ratio < 1.0 {
            1
        } else {
            (ratio.ln() / r.ln()).floor() as u32 + 1
        }
    }

    /// Puts a trial in its bracket (Hyperband: round-robin by plan position).
    pub fn assign(&mut self, trial: &str, ordinal: usize, max_epochs: u32) {
        let b = if self.cfg.method == StopMethod::Hyperband {
            (ordinal as u32) % self.brackets(max_epochs)
        } else {
            0
        };
        self.bracket_of.insert(trial.to_string(), b);
    }

    /// The rung index of `epoch` in this trial's bracket, if it is a rung
    /// (rungs stop below the trial's last epoch: the last epoch needs no verdict).
    fn rung_at(&self, trial: &str, epoch: u32, epochs: u32) -> Option<(u32, u32)> {
        let b = self.bracket_of.get(trial).copied().unwrap_or(0);
        let r = self.cfg.reduction.max(2) as u64;
        let mut milestone = self.cfg.min_epochs.max(1) as u64 * r.pow(b);
        let mut k = 0;
        while milestone < epochs as u64 {
            if milestone == epoch as u64 {
                return Some((b, k));
            }
            milestone *= r;
            k += 1;
        }
        None
    }

    /// Restores a decision recorded before a restart (rung records, and the
    /// fact that this (trial, epoch) is decided).
    pub fn restore(&mut self, d: &Decision) {
        self.decided.insert((d.trial.clone(), d.epoch));
        if let (Some(rung), Some(bracket)) = (d.rung, d.bracket) {
            self.rungs
                .entry((bracket, rung))
                .or_default()
                .insert(&d.trial, orient(&self.cfg.metric, d.value));
        }
    }

    /// Remembers a trial's validation value at an epoch without judging it
    /// (history from the database on restart).
    pub fn observe(&mut self, trial: &str, epoch: u32, value: f64) {
        let h = self.history.entry(trial.to_string()).or_default();
        let i = epoch.saturating_sub(1) as usize;
        if h.len() <= i {
            h.resize(i + 1, f64::NAN);
        }
        h[i] = orient(&self.cfg.metric, value);
    }

    pub fn is_decided(&self, trial: &str, epoch: u32) -> bool {
        self.decided.contains(&(trial.to_string(), epoch))
    }

    /// A trial finished `epoch` (of `epochs`) with validation `value`. Returns
    /// the decisions taken (none when no rule applies at this epoch); a trial
    /// stops when any of them says stop.
    pub fn report(&mut self, trial: &str, epoch: u32, epochs: u32, value: f64) -> Vec<Decision> {
        if !self.cfg.active() || self.is_decided(trial, epoch) {
            return vec![];
        }
        self.observe(trial, epoch, value);
        let mut out = Vec::new();
        match self.cfg.method {
            StopMethod::Asha | StopMethod::Hyperband => {
                out.extend(self.successive_halving(trial, epoch, epochs, value))
            }
            StopMethod::Median => out.extend(self.median_rule(trial, epoch, value)),
            StopMethod::None => {}
        }
        if let Some(d) = self.patience(trial, epoch, value) {
            out.push(d);
        }
        if !out.is_empty() {
            self.decided.insert((trial.to_string(), epoch));
        }
        out
    }

    fn successive_halving(
        &mut self,
        trial: &str,
        epoch: u32,
        epochs: u32,
        value: f64,
    ) -> Option<Decision> {
        let (bracket, rung) = self.rung_at(trial, epoch, epochs)?;
        let metric = self.cfg.metric.clone();
        let recorded = self.rungs.entry((bracket, rung)).or_default();
        let others = recorded.others(trial);
        let compared = others.len();
        let cutoff = percentile_sorted(&others, (1.0 - 1.0 / self.cfg.reduction as f64) * 100.0);
        let v = orient(&metric, value);
        let stop = cutoff.is_some_and(|c| v < c);
        recorded.insert(trial, v);
        Some(Decision {
            trial: trial.to_string(),
            epoch,
            rung: Some(rung),
            bracket: Some(bracket),
            method: if self.cfg.method == StopMethod::Hyperband {
                "hyperband"
            } else {
                "asha"
            },
            value,
            cutoff: cutoff.map(|c| orient(&metric, c)),
            compared,
            stop,
        })
    }

    fn median_rule(&self, trial: &str, epoch: u32, value: f64) -> Option<Decision> {
        if epoch < self.cfg.min_epochs {
            return None;
        }
        let running_mean = |h: &Vec<f64>| -> Option<f64> {
            let window = h.get(..epoch as usize)?;
            if window.iter().any(|x| x.is_nan()) {
                return None;
            }
            Some(window.iter().sum::<f64>() / window.len() as f64)
        };
        let means: Vec<f64> = self
            .history
            .iter()
            .filter(|(t, _)| t.as_str() != trial)
            .filter_map(|(_, h)| running_mean(h))
            .collect();
        if means.len() < MEDIAN_MIN_TRIALS {
            return None;
        }
        let best = self
            .history
            .get(trial)?
            .iter()
            .take(epoch as usize)
            .copied()
            .filter(|x| !x.is_nan())
            .fold(f64::NEG_INFINITY, f64::max);
        let m = median(&means)?;
        let metric = self.cfg.metric.clone();
        Some(Decision {
            trial: trial.to_string(),
            epoch,
            rung: None,
            bracket: None,
            method: "median",
            value,
            cutoff: Some(orient(&metric, m)),
            compared: means.len(),
            stop: best < m,
        })
    }

    fn patience(&self, trial: &str, epoch: u32, value: f64) -> Option<Decision> {
        let patience = self.cfg.patience?;
        let h = self.history.get(trial)?;
        let upto = &h[..(epoch as usize).min(h.len())];
        let (best_i, best) = upto.iter().enumerate().filter(|(_, x)| !x.is_nan()).fold(
            (0, f64::NEG_INFINITY),
            |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc },
        );
        let since = upto.len() - 1 - best_i;
        Some(Decision {
            trial: trial.to_string(),
            epoch,
            rung: None,
            bracket: None,
            method: "patience",
            value,
            cutoff: Some(orient(&self.cfg.metric, best)),
            compared: since,
            stop: since >= patience as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(method: StopMethod, min_epochs: u32, reduction: u32, patience: Option<u32>) -> Stopping {
        Stopping {
            method,
            metric: Objective::builtin(sweep_protocol::SelectMetric::ValAccuracy),
            min_epochs,
            reduction,
            patience,
            test_pruned: false,
            stop_grace: 120,
        }
    }

    #[test]
    fn percentile_is_numpys_linear() {
        // numpy.percentile([1, 2, 3, 4], 66.666…) = 3.0; ([0.5, 0.7], 66.67) = 0.6333…
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 200.0 / 3.0).unwrap() - 3.0).abs() < 1e-12);
        assert!(
            (percentile(&[0.5, 0.7], 200.0 / 3.0).unwrap() - 0.633_333_333_333_333_3).abs() < 1e-12
        );
        assert_eq!(percentile(&[], 50.0), None);
    }

    /// ASHA, reduction 3, min_epochs 1, trials of 9 epochs: rungs at epochs 1 and 3.
    /// The sequence and every verdict below are computed by hand from the rule.
    #[test]
    fn asha_decisions_match_the_rule_by_hand() {
        let mut s = Stopper::new(cfg(StopMethod::Asha, 1, 3, None));
        for (i, t) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            s.assign(t, i, 9);
        }
        let mut verdict = |t: &str, e: u32, v: f64| {
            let d = s.report(t, e, 9, v);
            assert!(d.len() <= 1);
            d.into_iter()
                .next()
                .map(|d| (d.rung, d.compared, d.cutoff, d.stop))
        };
        // rung 0 (epoch 1): first record continues (no cutoff).
        assert_eq!(verdict("a", 1, 0.30), Some((Some(0), 0, None, false)));
        // b: others [0.30]; 66.7th percentile = 0.30; 0.20 < 0.30 → stop.
        assert_eq!(verdict("b", 1, 0.20), Some((Some(0), 1, Some(0.30), true)));
        // c: others [0.30, 0.20] → 0.20 + 0.10·(2/3) = 0.2666…; 0.50 ≥ → continue.
        let (r, n, cut, stop) = verdict("c", 1, 0.50).unwrap();
        assert_eq!((r, n, stop), (Some(0), 2, false));
        assert!((cut.unwrap() - (0.20 + 0.10 * 2.0 / 3.0)).abs() < 1e-12);
        // d: others [0.2, 0.3, 0.5] → pos 1.333 → 0.3 + 0.2·0.333 = 0.3666…; 0.35 < → stop.
        let (_, n, cut, stop) = verdict("d", 1, 0.35).unwrap();
        assert_eq!((n, stop), (3, true));
        assert!((cut.unwrap() - (0.30 + 0.20 / 3.0)).abs() < 1e-12);
        // epoch 2 is not a rung: no decision.
        assert_eq!(verdict("a", 2, 0.40), None);
        // rung 1 (epoch 3): a is first there → continue; c beats a → continue; e at rung 0 is judged against 4 records.
        assert_eq!(verdict("a", 3, 0.45), Some((Some(1), 0, None, false)));
        assert_eq!(verdict("c", 3, 0.60).map(|x| x.3), Some(false));
        // e: others [0.2, 0.3, 0.35, 0.5] → pos 2.0 → 0.35; 0.36 ≥ → continue.
        let (_, n, cut, stop) = verdict("e", 1, 0.36).unwrap();
        assert_eq!((n, stop), (4, false));
        assert!((cut.unwrap() - 0.35).abs() < 1e-12);
        // The same (trial, epoch) reported again (a journal replay) is not decided twice.
        assert_eq!(verdict("e", 1, 0.36), None);
    }

    #[test]
    fn a_loss_is_judged_lower_is_better() {
        let mut s = Stopper::new(Stopping {
            metric: Objective::builtin(sweep_protocol::SelectMetric::ValLoss),
            ..cfg(StopMethod::Asha, 1, 2, None)
        });
        s.assign("a", 0, 4);
        s.assign("b", 1, 4);
        assert!(!s.report("a", 1, 4, 1.0)[0].stop);
        let d = &s.report("b", 1, 4, 2.0)[0];
        assert!(d.stop, "{d:?}");
        assert_eq!(d.cutoff, Some(1.0));
    }

    #[test]
    fn hyperband_assigns_brackets_round_robin_with_growing_first_rungs() {
        let mut s = Stopper::new(cfg(StopMethod::Hyperband, 1, 3, None));
        // 9 epochs, min 1, r 3 → brackets with first rungs 1, 3, 9 → 3 brackets (9 is the last epoch: no rung).
        assert_eq!(s.brackets(9), 3);
        for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
            s.assign(t, i, 9);
        }
        assert_eq!(s.rung_at("a", 1, 9), Some((0, 0)));
        assert_eq!(s.rung_at("a", 3, 9), Some((0, 1)));
        assert_eq!(s.rung_at("b", 1, 9), None);
        assert_eq!(s.rung_at("b", 3, 9), Some((1, 0)));
        assert_eq!(
            s.rung_at("c", 3, 9),
            None,
            "bracket 2 has no rung below 9 epochs"
        );
        assert_eq!(s.rung_at("d", 1, 9), Some((0, 0)), "round-robin wraps");
    }

    #[test]
    fn median_rule_needs_enough_trials_then_compares_best_with_median_of_running_means() {
        let mut s = Stopper::new(cfg(StopMethod::Median, 2, 3, None));
        for (t, vals) in [("a", [0.5, 0.7]), ("b", [0.4, 0.6]), ("c", [0.3, 0.5])] {
            for (e, v) in vals.iter().enumerate() {
                s.report(t, e as u32 + 1, 10, *v);
            }
        }
        // d at epoch 1: below min_epochs → nothing.
        assert!(s.report("d", 1, 10, 0.1).is_empty());
        // d at epoch 2: running means of a, b, c = 0.6, 0.5, 0.4 → median 0.5; d's best 0.45 < 0.5 → stop.
        let d = s.report("d", 2, 10, 0.45);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].method, d[0].compared, d[0].stop), ("median", 3, true));
        assert!((d[0].cutoff.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn patience_stops_after_n_epochs_without_improvement() {
        let mut s = Stopper::new(cfg(StopMethod::None, 1, 3, Some(2)));
        let stops: Vec<bool> = [0.5, 0.6, 0.55, 0.6, 0.59]
            .iter()
            .enumerate()
            .map(|(e, v)| s.report("a", e as u32 + 1, 10, *v)[0].stop)
            .collect();
        // best 0.6 at epoch 2 (0.6 at epoch 4 is not an improvement): epochs since best 0,0,1,2,3.
        assert_eq!(stops, [false, false, false, true, true]);
    }
}
