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
//! - **Promotion-based ASHA** (`mode = "promote"`, the paper's Algorithm 2):
//!   a trial that completes a rung **pauses** (its checkpoint kept, its slot
//!   freed). Whenever a slot is free, the best paused trial that is in the
//!   top `⌊n/reduction⌋` of its rung's `n` records (top rung first) is
//!   **promoted** — resumed exactly from its checkpoint to the next rung; a
//!   new configuration starts only when nobody can be promoted. Nobody is
//!   stopped against a handful of early records: a paused trial can be
//!   promoted as long as the sweep runs, and the ones still paused when
//!   nothing else can run are pruned then.
//! - **Hyperband**: brackets `s = 0..=S`, `S = ⌊log_r(max_epochs/min_epochs)⌋`;
//!   bracket `s` is ASHA with a first rung at `min_epochs · r^s`; trials are
//!   assigned round-robin by their position in the plan.
//! - **Median** (Golovin et al., "Google Vizier", KDD 2017): from epoch
//!   `min_epochs` on, stop a trial at epoch `e` when its best value so far is
//!   worse than the median of the running means (mean of epochs 1..=e) of the
//!   other trials that reached `e`; at least `MEDIAN_MIN_TRIALS` of them are needed.
//! - **Patience**: stop a trial after `patience` epochs without improving its
//!   own best value.
//! - **PBT** (Jaderberg et al., "Population Based Training of Neural
//!   Networks", 2017), synchronous: every `interval` epochs a trial pauses
//!   (as in promotion mode). When the whole population has paused at the same
//!   epoch, [`Stopper::pbt_generation`] ranks it: each trial of the bottom
//!   `quantile` **exploits** a trial drawn from the top `quantile` (it will
//!   resume from that trial's checkpoint, with its parameters **explored**:
//!   each perturbed key multiplied by one of its factors, or drawn afresh with
//!   probability `resample`), the others are promoted as they are. The draws
//!   are seeded by (sweep, epoch, trial), and the ranking uses every record at
//!   that epoch, so a restarted coordinator decides the same.
use crate::spec::Objective;
use crate::spec::{Pbt, StopMethod, Stopping};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use sweep_protocol::TrialParams;

/// The median rule needs this many other trials at an epoch before it judges.
pub const MEDIAN_MIN_TRIALS: usize = 3;

/// What a decision does to its trial (`decisions.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Continue,
    Stop,
    /// Promotion mode: the trial ends its attempt at this rung, resumable.
    Pause,
    /// Promotion mode: a paused trial resumes towards its next rung.
    Promote,
    /// PBT: the trial resumes from a better trial's checkpoint, its
    /// parameters perturbed (the `lineage` row says from whom and how).
    Exploit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Promote => "promote",
            Action::Exploit => "exploit",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        [
            Action::Continue,
            Action::Stop,
            Action::Pause,
            Action::Promote,
            Action::Exploit,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

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
    pub action: Action,
}

impl Decision {
    pub fn stop(&self) -> bool {
        self.action == Action::Stop
    }
}

/// PBT: what an exploiting trial takes over.
#[derive(Debug, Clone, PartialEq)]
pub struct Exploit {
    /// The trial whose checkpoint it copies.
    pub donor: String,
    /// The donor's value at this epoch (as reported).
    pub donor_value: f64,
    /// Its parameters from now on: the donor's, perturbed.
    pub params: TrialParams,
    /// (key, the donor's value, the new value), for each perturbed key.
    pub changes: Vec<(String, f64, f64)>,
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
    /// Promotion mode: trial → the (bracket, rung, epoch) it is paused at.
    paused: BTreeMap<String, (u32, u32, u32)>,
    /// Promotion mode: (bracket, rung) → the trials promoted from it.
    promoted: HashMap<(u32, u32), HashSet<String>>,
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
            paused: BTreeMap::new(),
            promoted: HashMap::new(),
        }
    }

    /// Promotion mode (`mode = "promote"` with asha or hyperband).
    pub fn promotes(&self) -> bool {
        self.cfg.promote && matches!(self.cfg.method, StopMethod::Asha | StopMethod::Hyperband)
    }

    /// `method = "pbt"`: its settings.
    pub fn pbt(&self) -> Option<&Pbt> {
        self.cfg
            .pbt
            .as_ref()
            .filter(|_| self.cfg.method == StopMethod::Pbt)
    }

    /// Trials pause at rungs (promotion mode) or at PBT's intervals.
    pub fn pauses(&self) -> bool {
        self.promotes() || self.pbt().is_some()
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
        self.rungs_of(trial, epochs)
            .find(|&(_, e)| e == epoch)
            .map(|(k, _)| (b, k))
    }

    /// A trial's rungs: (index, epoch), below its last epoch.
    fn rungs_of(&self, trial: &str, epochs: u32) -> impl Iterator<Item = (u32, u32)> {
        let b = self.bracket_of.get(trial).copied().unwrap_or(0);
        let r = self.cfg.reduction.max(2) as u64;
        let first = self.cfg.min_epochs.max(1) as u64 * r.pow(b);
        // PBT: a "rung" every `interval` epochs.
        let step = self.pbt().map(|p| p.interval.max(1) as u64);
        let (first, r) = match step {
            Some(i) => (i, 1),
            None => (first, r),
        };
        std::iter::successors(Some(first), move |m| Some(step.map_or(m * r, |i| m + i)))
            .take_while(move |&m| m < epochs as u64)
            .enumerate()
            .map(|(k, m)| (k as u32, m as u32))
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
            match d.action {
                Action::Pause => {
                    self.paused
                        .insert(d.trial.clone(), (bracket, rung, d.epoch));
                }
                Action::Promote | Action::Exploit => {
                    self.promoted
                        .entry((bracket, rung))
                        .or_default()
                        .insert(d.trial.clone());
                }
                Action::Continue | Action::Stop => {}
            }
        }
    }

    /// Promotion mode: the trial waits at a rung.
    pub fn is_paused(&self, trial: &str) -> bool {
        self.paused.contains_key(trial)
    }

    /// Promotion mode: the trials waiting at a rung.
    pub fn paused(&self) -> impl Iterator<Item = &str> {
        self.paused.keys().map(String::as_str)
    }

    /// Promotion mode: the epoch after which a trial of `epochs` epochs
    /// pauses next: its first rung it has not been promoted from (`None`:
    /// it runs to its last epoch, or the mode is not promotion).
    pub fn pause_after(&self, trial: &str, epochs: u32) -> Option<u32> {
        if !self.pauses() {
            return None;
        }
        let b = self.bracket_of.get(trial).copied().unwrap_or(0);
        self.rungs_of(trial, epochs)
            .find(|(k, _)| {
                !self
                    .promoted
                    .get(&(b, *k))
                    .is_some_and(|p| p.contains(trial))
            })
            .map(|(_, e)| e)
    }

    /// The records at (bracket, rung), best first (ties: trial id), and how
    /// many of them make the top `1/reduction`.
    /// `ending`: the top `⌈n/reduction⌉` instead (see [`Stopper::next_promotion`]).
    fn ranked(&self, key: (u32, u32), ending: bool) -> (Vec<(&str, f64)>, usize) {
        let Some(rung) = self.rungs.get(&key) else {
            return (vec![], 0);
        };
        let mut v: Vec<(&str, f64)> = rung
            .by_trial
            .iter()
            .map(|(t, x)| (t.as_str(), *x))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let r = self.cfg.reduction.max(2) as usize;
        let top = if ending {
            v.len().div_ceil(r)
        } else {
            v.len() / r
        };
        (v, top)
    }

    /// The value a record had to reach to be in the top `1/reduction` of
    /// its rung now (as reported), if any record is.
    fn promotion_cutoff(&self, key: (u32, u32)) -> Option<f64> {
        let (v, top) = self.ranked(key, false);
        (top > 0).then(|| orient(&self.cfg.metric, v[top - 1].1))
    }

    /// Promotion mode, when a slot is free: the paused trial to resume, if
    /// any is in the top `⌊n/reduction⌋` of its rung's `n` records (highest
    /// rung first, then the best value; Algorithm 2 of Li et al. 2020), among
    /// those `ready` (whose paused attempt has ended). The decision is the
    /// trial's rung decision, now `promote`.
    ///
    /// `ending`: nothing runs and nothing new can start. A finite sweep then
    /// takes the top `⌈n/reduction⌉` (at least the best of a rung), so that
    /// the best of the highest rung still reaches the last epoch.
    pub fn next_promotion(
        &mut self,
        ready: impl Fn(&str) -> bool,
        ending: bool,
    ) -> Option<Decision> {
        if !self.promotes() || self.paused.is_empty() {
            return None;
        }
        let mut keys: Vec<(u32, u32)> = self.paused.values().map(|&(b, k, _)| (b, k)).collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        keys.dedup();
        for key in keys {
            let (ranked, top) = self.ranked(key, ending);
            let pick = ranked[..top]
                .iter()
                .find(|(t, _)| self.paused.get(*t).is_some_and(|p| (p.0, p.1) == key) && ready(t))
                .map(|(t, _)| t.to_string());
            let Some(trial) = pick else { continue };
            let at = self.paused.remove(&trial)?;
            self.promoted.entry(key).or_default().insert(trial.clone());
            return Some(self.rung_decision(trial, at, Action::Promote));
        }
        None
    }

    /// The decision row of a trial at its rung `(bracket, rung, epoch)`, with
    /// the rung's promotion cutoff and record count as they are now.
    fn rung_decision(
        &self,
        trial: String,
        (bracket, rung, epoch): (u32, u32, u32),
        action: Action,
    ) -> Decision {
        let records = &self.rungs[&(bracket, rung)].by_trial;
        Decision {
            value: orient(&self.cfg.metric, records[&trial]),
            cutoff: self.promotion_cutoff((bracket, rung)),
            compared: records.len() - 1,
            trial,
            epoch,
            rung: Some(rung),
            bracket: Some(bracket),
            method: self.method_name(),
            action,
        }
    }

    /// Promotion mode, when nothing runs and nobody can be promoted: every
    /// trial still paused is stopped for good (its rung decision, now `stop`).
    pub fn stop_paused(&mut self) -> Vec<Decision> {
        let paused = std::mem::take(&mut self.paused);
        paused
            .into_iter()
            .map(|(trial, at)| self.rung_decision(trial, at, Action::Stop))
            .collect()
    }

    fn method_name(&self) -> &'static str {
        match self.cfg.method {
            StopMethod::Hyperband => "hyperband",
            StopMethod::Pbt => "pbt",
            _ => "asha",
        }
    }

    /// PBT, when the whole population has paused (nothing runs or waits):
    /// the decisions for every trial paused at the lowest interval epoch,
    /// best first. A trial of the bottom `⌈n·quantile⌉` (at most `n/2`) of
    /// the `n` records at that epoch exploits a trial drawn from the top as
    /// many (a donor must be paused there too); the others are promoted.
    /// `params`: a trial's parameters now.
    pub fn pbt_generation(
        &mut self,
        params: impl Fn(&str) -> Option<TrialParams>,
    ) -> Vec<(Decision, Option<Exploit>)> {
        let Some(pbt) = self.pbt().cloned() else {
            return vec![];
        };
        let Some(key) = self
            .paused
            .values()
            .map(|&(b, k, _)| (b, k))
            .min_by_key(|k| k.1)
        else {
            return vec![];
        };
        let (ranked, _) = self.ranked(key, false);
        let ranked: Vec<(String, f64)> = ranked
            .into_iter()
            .map(|(t, v)| (t.to_string(), v))
            .collect();
        let n = ranked.len();
        let k = ((n as f64 * pbt.quantile).ceil() as usize).min(n / 2);
        let here = |t: &str, paused: &BTreeMap<String, (u32, u32, u32)>| {
            paused.get(t).is_some_and(|p| (p.0, p.1) == key)
        };
        let donors: Vec<&(String, f64)> = ranked[..k]
            .iter()
            .filter(|(t, _)| here(t, &self.paused))
            .collect();
        // The value a trial had to reach to keep its own weights.
        let cutoff = (k > 0 && n > k).then(|| orient(&self.cfg.metric, ranked[n - k - 1].1));
        let mut out = Vec::new();
        for (i, (trial, _)) in ranked.iter().enumerate() {
            if !here(trial, &self.paused) {
                continue;
            }
            let at = self.paused.remove(trial).unwrap_or((key.0, key.1, 0));
            self.promoted.entry(key).or_default().insert(trial.clone());
            let mut d = self.rung_decision(trial.clone(), at, Action::Promote);
            d.cutoff = cutoff;
            let exploit = if i >= n - k && !donors.is_empty() {
                let mut rng =
                    rand_chacha::ChaCha8Rng::seed_from_u64(pbt_seed(pbt.seed, at.2, trial));
                let (donor, dv) = donors[rng.gen_range(0..donors.len())];
                params(donor).map(|p| {
                    let (params, changes) = explore(&pbt, &p, &mut rng);
                    Exploit {
                        donor: donor.clone(),
                        donor_value: orient(&self.cfg.metric, *dv),
                        params,
                        changes,
                    }
                })
            } else {
                None
            };
            if exploit.is_some() {
                d.action = Action::Exploit;
            }
            out.push((d, exploit));
        }
        out
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
            StopMethod::Pbt => {
                if let Some(key) = self.rung_at(trial, epoch, epochs) {
                    out.push(self.pause_at_rung(trial, epoch, value, key));
                }
            }
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
        if self.promotes() {
            return Some(self.pause_at_rung(trial, epoch, value, (bracket, rung)));
        }
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
            method: self.method_name(),
            value,
            cutoff: cutoff.map(|c| orient(&metric, c)),
            compared,
            action: if stop { Action::Stop } else { Action::Continue },
        })
    }

    /// Promotion mode: a trial completed a rung: its record joins the rung
    /// and it pauses there (it is promoted, maybe at once, by
    /// [`Stopper::next_promotion`] when a slot is free).
    fn pause_at_rung(&mut self, trial: &str, epoch: u32, value: f64, key: (u32, u32)) -> Decision {
        let v = orient(&self.cfg.metric, value);
        self.rungs.entry(key).or_default().insert(trial, v);
        let at = (key.0, key.1, epoch);
        self.paused.insert(trial.to_string(), at);
        self.rung_decision(trial.to_string(), at, Action::Pause)
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
            action: if best < m {
                Action::Stop
            } else {
                Action::Continue
            },
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
            action: if since >= patience as usize {
                Action::Stop
            } else {
                Action::Continue
            },
        })
    }
}

/// The seed of one trial's PBT draws at one epoch: the same on every run.
fn pbt_seed(seed: u64, epoch: u32, trial: &str) -> u64 {
    let mut h = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in trial.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// PBT's explore step on a donor's parameters: each perturbed key drawn
/// afresh from its space with probability `resample`, else multiplied by one
/// of its factors (integers stay integers). Returns the new parameters and
/// (key, old, new) for each key.
pub fn explore(
    pbt: &Pbt,
    donor: &TrialParams,
    rng: &mut impl Rng,
) -> (TrialParams, Vec<(String, f64, f64)>) {
    use crate::spec::search::Dim;
    let mut params = donor.clone();
    let mut changes = Vec::new();
    for p in &pbt.perturb {
        let Some(old) = params.number(&p.key) else {
            continue;
        };
        let resample = p.resample > 0.0 && rng.gen_bool(p.resample.min(1.0));
        let new = match (p.space.clone(), resample) {
            (Some(Dim::Uniform(lo, hi)), true) => rng.gen_range(lo..hi),
            (Some(Dim::LogUniform(lo, hi)), true) => rng.gen_range(lo.ln()..hi.ln()).exp(),
            (Some(Dim::Int(lo, hi)), true) => rng.gen_range(lo..=hi) as f64,
            _ => old * p.factors[rng.gen_range(0..p.factors.len())],
        };
        if let Some(next) = params.with_number(&p.key, new) {
            let new = next.number(&p.key).unwrap_or(new);
            params = next;
            changes.push((p.key.clone(), old, new));
        }
    }
    (params, changes)
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
            promote: false,
            auto: false,
            pbt: None,
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
                .map(|d| (d.rung, d.compared, d.cutoff, d.stop()))
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

    /// Promotion-based ASHA (Algorithm 2 of Li et al. 2020), reduction 3,
    /// rungs at epochs 1 and 3 of 9: every trial pauses at a rung; a paused
    /// trial is promoted once it is in the top ⌊n/3⌋ of the rung's n records
    /// (the top rung first, the best first); the rest are stopped at the end.
    /// Every step below is worked out by hand from that rule.
    #[test]
    fn promotion_asha_pauses_at_rungs_and_promotes_the_top_third() {
        let mut s = Stopper::new(Stopping {
            promote: true,
            ..cfg(StopMethod::Asha, 1, 3, None)
        });
        for (i, t) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            s.assign(t, i, 9);
        }
        assert_eq!(s.pause_after("a", 9), Some(1), "new trials pause at rung 0");
        let pause = |s: &mut Stopper, t: &str, e: u32, v: f64| {
            let d = s.report(t, e, 9, v);
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].action, Action::Pause, "{d:?}");
            d[0].clone()
        };
        // a, b: ⌊1/3⌋ = ⌊2/3⌋ = 0 records make the top: nobody can be promoted.
        assert_eq!(pause(&mut s, "a", 1, 0.30).cutoff, None);
        pause(&mut s, "b", 1, 0.20);
        assert_eq!(s.next_promotion(|_| true, false), None);
        // c: 3 records → the top 1 is c (0.50): promoted, cutoff its own value.
        let d = pause(&mut s, "c", 1, 0.50);
        assert_eq!((d.compared, d.cutoff), (2, Some(0.50)));
        let p = s.next_promotion(|_| true, false).unwrap();
        assert_eq!(
            (p.trial.as_str(), p.epoch, p.rung, p.action, p.compared),
            ("c", 1, Some(0), Action::Promote, 2)
        );
        assert_eq!(
            s.next_promotion(|_| true, false),
            None,
            "one promotion per third"
        );
        assert_eq!(s.pause_after("c", 9), Some(3), "c next pauses at rung 1");
        // d, e, f: 6 records → top 2 = c (promoted) and a (0.30 > 0.25 > 0.2…).
        pause(&mut s, "d", 1, 0.25);
        pause(&mut s, "e", 1, 0.10);
        assert_eq!(
            s.next_promotion(|_| true, false),
            None,
            "5 records: top 1 is c, already promoted"
        );
        pause(&mut s, "f", 1, 0.15);
        let p = s.next_promotion(|_| true, false).unwrap();
        assert_eq!((p.trial.as_str(), p.cutoff), ("a", Some(0.30)));
        // c reaches rung 1 (epoch 3): alone there, ⌊1/3⌋ = 0: it waits; a
        // higher-rung candidate would go first, but there is none.
        pause(&mut s, "c", 3, 0.60);
        assert_eq!(s.next_promotion(|_| true, false), None);
        // Nothing else can run: the paused ones end as stops, at their rung.
        let mut stops: Vec<(String, u32, Action)> = s
            .stop_paused()
            .into_iter()
            .map(|d| (d.trial, d.epoch, d.action))
            .collect();
        stops.sort();
        assert_eq!(
            stops,
            [
                ("b".to_string(), 1, Action::Stop),
                ("c".to_string(), 3, Action::Stop),
                ("d".to_string(), 1, Action::Stop),
                ("e".to_string(), 1, Action::Stop),
                ("f".to_string(), 1, Action::Stop),
            ]
        );
        assert!(!s.is_paused("c"));
    }

    /// The top rung goes first: a trial paused at rung 1 that can be promoted
    /// is resumed before one at rung 0; a promoted trial runs to its last
    /// epoch once no rung is left below it; restored rows rebuild the state.
    #[test]
    fn promotion_prefers_the_highest_rung_and_survives_a_restore() {
        let mut s = Stopper::new(Stopping {
            promote: true,
            ..cfg(StopMethod::Asha, 1, 2, None)
        });
        // reduction 2, 4 epochs: rungs at 1 and 2.
        for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
            s.assign(t, i, 4);
        }
        let mut rows = vec![];
        for (t, v) in [("a", 0.9), ("b", 0.8)] {
            rows.extend(s.report(t, 1, 4, v));
        }
        let p = s.next_promotion(|_| true, false).unwrap();
        assert_eq!(p.trial, "a");
        rows.push(p);
        rows.extend(s.report("a", 2, 4, 0.95));
        assert_eq!(
            s.next_promotion(|_| true, false),
            None,
            "a alone at rung 1, b alone below it"
        );
        rows.extend(s.report("c", 1, 4, 0.7));
        rows.extend(s.report("d", 1, 4, 0.6));
        // Rung 0: top ⌊4/2⌋ = a (promoted) and b → b.
        let p = s.next_promotion(|_| true, false).unwrap();
        assert_eq!((p.trial.as_str(), p.rung), ("b", Some(0)));
        rows.push(p);
        rows.extend(s.report("b", 2, 4, 0.1));
        // Rung 1 now has a (0.95) and b (0.1): ⌊2/2⌋ = 1 → a, from rung 1.
        let p = s.next_promotion(|_| true, false).unwrap();
        assert_eq!((p.trial.as_str(), p.rung), ("a", Some(1)));
        assert_eq!(s.pause_after("a", 4), None, "no rung left below epoch 4");
        rows.push(p);
        // A new stopper from the rows (the database after a restart) decides the same.
        let mut r = Stopper::new(Stopping {
            promote: true,
            ..cfg(StopMethod::Asha, 1, 2, None)
        });
        for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
            r.assign(t, i, 4);
        }
        // The database keeps one row per (trial, epoch, method): the last action.
        let mut last: BTreeMap<(String, u32), Decision> = BTreeMap::new();
        for d in rows {
            last.insert((d.trial.clone(), d.epoch), d);
        }
        for d in last.values() {
            r.restore(d);
        }
        let mut paused: Vec<&str> = r.paused().collect();
        paused.sort();
        let mut expected: Vec<&str> = s.paused().collect();
        expected.sort();
        assert_eq!(paused, expected);
        assert_eq!(
            r.next_promotion(|_| true, false),
            s.next_promotion(|_| true, false)
        );
        assert_eq!(r.pause_after("a", 4), None);
    }

    #[test]
    fn a_loss_is_judged_lower_is_better() {
        let mut s = Stopper::new(Stopping {
            metric: Objective::builtin(sweep_protocol::SelectMetric::ValLoss),
            ..cfg(StopMethod::Asha, 1, 2, None)
        });
        s.assign("a", 0, 4);
        s.assign("b", 1, 4);
        assert!(!s.report("a", 1, 4, 1.0)[0].stop());
        let d = &s.report("b", 1, 4, 2.0)[0];
        assert!(d.stop(), "{d:?}");
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
        assert_eq!(
            (d[0].method, d[0].compared, d[0].stop()),
            ("median", 3, true)
        );
        assert!((d[0].cutoff.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn patience_stops_after_n_epochs_without_improvement() {
        let mut s = Stopper::new(cfg(StopMethod::None, 1, 3, Some(2)));
        let stops: Vec<bool> = [0.5, 0.6, 0.55, 0.6, 0.59]
            .iter()
            .enumerate()
            .map(|(e, v)| s.report("a", e as u32 + 1, 10, *v)[0].stop())
            .collect();
        // best 0.6 at epoch 2 (0.6 at epoch 4 is not an improvement): epochs since best 0,0,1,2,3.
        assert_eq!(stops, [false, false, false, true, true]);
    }
    fn pbt_cfg(quantile: f64, perturb: Vec<crate::spec::Perturb>) -> Stopping {
        Stopping {
            pbt: Some(Pbt {
                interval: 2,
                quantile,
                perturb,
                seed: 7,
            }),
            ..cfg(StopMethod::Pbt, 1, 3, None)
        }
    }

    fn lr_factors() -> Vec<crate::spec::Perturb> {
        vec![crate::spec::Perturb {
            key: "lr".into(),
            factors: vec![0.8, 1.2],
            resample: 0.0,
            space: None,
        }]
    }

    fn program(lr: f64) -> TrialParams {
        let mut m = serde_json::Map::new();
        m.insert("lr".into(), serde_json::json!(lr));
        m.insert("epochs".into(), serde_json::json!(6));
        TrialParams::Program(m)
    }

    /// 8 trials of 6 epochs, interval 2: they pause at epochs 2 and 4. At
    /// epoch 2 (values 0.0 … 0.7), ⌈8 · 0.25⌉ = 2: t0 and t1 exploit t6 or
    /// t7 (lr ×0.8 or ×1.2), the rest are promoted; the cutoff is t2's 0.2.
    #[test]
    fn pbt_bottom_quantile_exploits_the_top_and_the_draws_repeat() {
        let trials: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        let fill = |s: &mut Stopper| {
            for (i, t) in trials.iter().enumerate() {
                s.assign(t, i, 6);
                assert!(
                    s.report(t, 1, 6, 0.5).is_empty(),
                    "no decision off the interval"
                );
                assert_eq!(s.pause_after(t, 6), Some(2));
            }
            trials
                .iter()
                .enumerate()
                .map(|(i, t)| s.report(t, 2, 6, i as f64 / 10.0).remove(0))
                .collect::<Vec<_>>()
        };
        let mut s = Stopper::new(pbt_cfg(0.25, lr_factors()));
        let pauses = fill(&mut s);
        assert!(
            pauses
                .iter()
                .all(|d| d.action == Action::Pause && d.method == "pbt")
        );
        let params = |t: &str| Some(program(0.01 * (t[1..].parse::<f64>().unwrap() + 1.0)));
        let g = s.pbt_generation(params);
        assert_eq!(g.len(), 8);
        let order: Vec<&str> = g.iter().map(|(d, _)| d.trial.as_str()).collect();
        assert_eq!(order, ["t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
        for (d, ex) in &g {
            assert_eq!(d.cutoff, Some(0.2));
            assert_eq!(d.compared, 7);
            match d.trial.as_str() {
                "t0" | "t1" => {
                    assert_eq!(d.action, Action::Exploit);
                    let ex = ex.as_ref().unwrap();
                    assert!(["t6", "t7"].contains(&ex.donor.as_str()), "{ex:?}");
                    let donor_lr = params(&ex.donor).unwrap().number("lr").unwrap();
                    let new = ex.params.number("lr").unwrap();
                    assert!(
                        [0.8, 1.2]
                            .iter()
                            .any(|f| (donor_lr * f - new).abs() < 1e-15)
                    );
                    assert_eq!(ex.changes, vec![("lr".to_string(), donor_lr, new)]);
                    assert_eq!(ex.donor_value, if ex.donor == "t7" { 0.7 } else { 0.6 });
                }
                _ => assert!(d.action == Action::Promote && ex.is_none()),
            }
        }
        // Everyone goes on to the next interval.
        assert_eq!(s.paused().count(), 0);
        assert!(trials.iter().all(|t| s.pause_after(t, 6) == Some(4)));
        // A restarted coordinator (pause rows restored) draws the same.
        let mut again = Stopper::new(pbt_cfg(0.25, lr_factors()));
        for (i, t) in trials.iter().enumerate() {
            again.assign(t, i, 6);
        }
        for d in &pauses {
            again.restore(d);
        }
        assert_eq!(again.pbt_generation(params), g);
        // Another seed may draw other donors and factors, never other roles.
        let mut other = Stopper::new(Stopping {
            pbt: Some(Pbt {
                seed: 8,
                ..pbt_cfg(0.25, lr_factors()).pbt.unwrap()
            }),
            ..pbt_cfg(0.25, lr_factors())
        });
        fill(&mut other);
        let roles = |g: &[(Decision, Option<Exploit>)]| {
            g.iter()
                .map(|(d, _)| (d.trial.clone(), d.action))
                .collect::<Vec<_>>()
        };
        assert_eq!(roles(&other.pbt_generation(params)), roles(&g));
    }

    /// Two trials, quantile 0.25: ⌈0.5⌉ = 1 ≤ 2/2, the worse copies the
    /// better. One trial alone: nobody to copy.
    #[test]
    fn pbt_small_populations() {
        let mut s = Stopper::new(pbt_cfg(0.25, lr_factors()));
        for (i, (t, v)) in [("a", 0.3), ("b", 0.6)].into_iter().enumerate() {
            s.assign(t, i, 6);
            s.report(t, 2, 6, v);
        }
        let g = s.pbt_generation(|_| Some(program(0.01)));
        let acts: Vec<(&str, Action)> = g
            .iter()
            .map(|(d, _)| (d.trial.as_str(), d.action))
            .collect();
        assert_eq!(acts, [("b", Action::Promote), ("a", Action::Exploit)]);
        let mut one = Stopper::new(pbt_cfg(0.5, lr_factors()));
        one.assign("a", 0, 6);
        one.report("a", 2, 6, 0.3);
        let g = one.pbt_generation(|_| Some(program(0.01)));
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0.action, Action::Promote);
    }

    /// Explore: resample draws from the space; an integer stays an integer.
    #[test]
    fn pbt_explore_resamples_and_rounds() {
        use crate::spec::search::Dim;
        let perturb = vec![
            crate::spec::Perturb {
                key: "lr".into(),
                factors: vec![0.8],
                resample: 1.0,
                space: Some(Dim::LogUniform(1e-4, 1e-3)),
            },
            crate::spec::Perturb {
                key: "layers".into(),
                factors: vec![1.5],
                resample: 0.0,
                space: None,
            },
        ];
        let cfg = pbt_cfg(0.25, perturb);
        let mut m = serde_json::Map::new();
        m.insert("lr".into(), serde_json::json!(0.5));
        m.insert("layers".into(), serde_json::json!(3));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (p, changes) = explore(
            cfg.pbt.as_ref().unwrap(),
            &TrialParams::Program(m),
            &mut rng,
        );
        let lr = p.number("lr").unwrap();
        assert!((1e-4..1e-3).contains(&lr), "{lr}");
        assert_eq!(p.to_json()["layers"], serde_json::json!(5));
        assert_eq!(changes[1], ("layers".to_string(), 3.0, 5.0));
        // The built-in trainer's config: lr is set through its own fields.
        let c = TrialParams::Builtin(sweep_protocol::TrialConfig::default());
        let (p, _) = explore(
            pbt_cfg(0.25, lr_factors()).pbt.as_ref().unwrap(),
            &c,
            &mut rng,
        );
        let (old, new) = (c.number("lr").unwrap(), p.number("lr").unwrap());
        assert!(
            [0.8, 1.2].iter().any(|f| (old * f - new).abs() < 1e-15),
            "{old} → {new}"
        );
    }
}
