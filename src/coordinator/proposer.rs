//! The dispatcher's side of `[random] sampler = "tpe"`: which point comes
//! next, from which results. Owned by the dispatcher (no I/O here); every
//! proposal is handed back as a `ProposalRow` for the recorder to commit
//! before its trials start.
//!
//! Observations are validation values by epoch, from finished trials and from
//! the rungs of trials still running or pruned (BOHB-style, Falkner et al.,
//! ICML 2018): TPE models the results at the **highest epoch that at least
//! `startup` trials have reached**, so with ASHA it learns from the rungs long
//! before any trial finishes, and without stopping from the final epochs. With
//! fewer results than that anywhere (many slots, nothing reported yet) a
//! proposal is a random draw, as Optuna does before its startup trials end.
//! Proposal `k` draws from its own RNG seeded by (sweep, k): the sequence
//! depends only on the results seen, which is what makes a resume continue it.
use super::sampler::{self, Observation, Point};
use crate::spec::Objective;
use crate::spec::PlannedTrial;
use crate::spec::search::SearchSpace;
use crate::store::proposals::ProposalRow;
use std::collections::{HashMap, HashSet};

/// Redraws (random) before a point whose trials all exist already is given up on.
const DUPLICATE_REDRAWS: u64 = 64;

pub struct Proposer {
    space: SearchSpace,
    metric: Objective,
    /// Trials with a point, in the order they were proposed (observation order).
    order: Vec<(String, Point)>,
    /// trial → oriented validation value per epoch (index epoch − 1; NaN unknown).
    history: HashMap<String, Vec<f64>>,
    known: HashSet<String>,
    /// The next position in the sequence.
    next: usize,
    exhausted: bool,
}

/// A new point and its trials, ready to be written then queued.
pub struct Proposal {
    pub row: ProposalRow,
    pub trials: Vec<PlannedTrial>,
}

/// A TPE proposal recorded by an earlier run that the sweep file, edited
/// since, can no longer express (a parameter or range removed).
#[derive(Debug, thiserror::Error)]
#[error("proposal {k} of this sweep no longer fits its file: {reason}")]
pub struct ProposalMismatch {
    pub k: i64,
    pub reason: String,
}

impl Proposer {
    /// `planned`: the plan's trials (the startup draws); `recorded`: the
    /// proposals already in the database, in order, as (k, coords).
    pub fn new(
        space: SearchSpace,
        metric: Objective,
        planned: &[PlannedTrial],
        recorded: &[(i64, Vec<f64>)],
    ) -> Result<(Proposer, Vec<PlannedTrial>), ProposalMismatch> {
        let mut p = Proposer {
            space,
            metric,
            order: Vec::new(),
            history: HashMap::new(),
            known: HashSet::new(),
            next: 0,
            exhausted: false,
        };
        for t in planned {
            p.known.insert(t.id.clone());
            if let Some(point) = p.space.point_of(&t.config) {
                p.order.push((t.id.clone(), point));
            }
        }
        p.next = p.space.startup;
        let mut resumed = Vec::new();
        for (k, coords) in recorded
            .iter()
            .filter(|(k, _)| *k as usize >= p.space.startup)
        {
            let trials = p.space.trials(coords).map_err(|e| ProposalMismatch {
                k: *k,
                reason: e.to_string(),
            })?;
            for t in &trials {
                if p.known.insert(t.id.clone()) {
                    p.order.push((t.id.clone(), coords.clone()));
                    resumed.push(t.clone());
                }
            }
            p.next = p.next.max(*k as usize + 1);
        }
        Ok((p, resumed))
    }

    /// Points still to propose (each gives one trial per seed).
    pub fn remaining(&self) -> usize {
        if self.exhausted {
            0
        } else {
            self.space.samples.saturating_sub(self.next)
        }
    }

    /// Trials per point (one per `[sweep] seeds` entry).
    pub fn seeds(&self) -> usize {
        self.space.seed_count()
    }

    fn dims(&self) -> Vec<crate::spec::search::Dim> {
        self.space.dims.iter().map(|(_, d)| d.clone()).collect()
    }

    /// The metric TPE optimises (`[sweep] metric`).
    pub fn metric(&self) -> &Objective {
        &self.metric
    }

    /// A value of `[sweep] metric` as reported (oriented here: higher is better).
    pub fn observe_metric(&mut self, trial: &str, epoch: u32, value: f64) {
        let v = self.metric.orient(value);
        let h = self.history.entry(trial.to_string()).or_default();
        let i = epoch.saturating_sub(1) as usize;
        if h.len() <= i {
            h.resize(i + 1, f64::NAN);
        }
        h[i] = v;
    }

    /// The observations TPE models: at the highest epoch that at least
    /// `startup` trials have reached. None when no epoch has that many.
    fn observations(&self) -> Option<(u32, Vec<Observation>)> {
        let need = self.space.startup.max(1);
        let max_epoch = self.history.values().map(Vec::len).max().unwrap_or(0);
        (1..=max_epoch).rev().find_map(|e| {
            let obs: Vec<Observation> = self
                .order
                .iter()
                .filter_map(|(t, point)| {
                    let v = *self.history.get(t)?.get(e - 1)?;
                    v.is_finite().then(|| Observation {
                        point: point.clone(),
                        value: v,
                    })
                })
                .collect();
            (obs.len() >= need).then_some((e as u32, obs))
        })
    }

    /// The next point, with trials no other point of this sweep has; None
    /// when the sequence is complete (or the space has no new point left).
    pub fn propose(&mut self, sweep_id: i64) -> Option<Proposal> {
        if self.remaining() == 0 {
            return None;
        }
        let k = self.next as u64;
        let dims = self.dims();
        let (mut point, mut sampler_name, budget, n_obs) = match self.observations() {
            Some((e, obs)) => (
                sampler::tpe_point(&dims, &obs, self.space.seed, k),
                "tpe",
                Some(e as i64),
                obs.len() as i64,
            ),
            None => (
                sampler::random_point(&dims, self.space.seed, k),
                "random",
                None,
                0,
            ),
        };
        let mut redraw = 0;
        let trials = loop {
            // A point whose trials exist (a categorical space revisited) is redrawn at random.
            match self.space.trials(&point) {
                Ok(ts) if ts.iter().all(|t| !self.known.contains(&t.id)) => break ts,
                Ok(_) if redraw < DUPLICATE_REDRAWS => {
                    redraw += 1;
                    point = sampler::random_point(&dims, self.space.seed, k | (redraw << 32));
                    sampler_name = "random";
                }
                Ok(_) => {
                    self.exhausted = true;
                    return None;
                }
                Err(e) => {
                    // The spec checked every choice and both ends of every range;
                    // a combination it could not foresee is skipped, not run.
                    sweep_protocol::log!("warning: TPE proposal {k} skipped: {e}");
                    redraw += 1;
                    if redraw > DUPLICATE_REDRAWS {
                        self.exhausted = true;
                        return None;
                    }
                    point = sampler::random_point(&dims, self.space.seed, k | (redraw << 32));
                    sampler_name = "random";
                }
            }
        };
        self.next += 1;
        let ordinal0 = self.order.len() as i64;
        for t in &trials {
            self.known.insert(t.id.clone());
            self.order.push((t.id.clone(), point.clone()));
        }
        let params: serde_json::Map<String, serde_json::Value> = self
            .space
            .dims
            .iter()
            .zip(&point)
            .map(|((key, d), x)| {
                (
                    key.clone(),
                    serde_json::to_value(d.value(*x)).unwrap_or_default(),
                )
            })
            .collect();
        let row = ProposalRow {
            sweep_id,
            k: k as i64,
            sampler: sampler_name.into(),
            budget: if sampler_name == "tpe" { budget } else { None },
            observations: if sampler_name == "tpe" { n_obs } else { 0 },
            params: serde_json::Value::Object(params),
            coords: point,
            trials: trials
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.clone(), ordinal0 + i as i64, t.config.clone()))
                .collect(),
            time: crate::store::now(),
        };
        Some(Proposal { row, trials })
    }

    /// The startup draws as proposal rows (random, k < startup), so that the
    /// table holds the whole sequence.
    pub fn startup_rows(&self, sweep_id: i64, planned: &[PlannedTrial]) -> Vec<ProposalRow> {
        let seeds = self.space.seed_count();
        planned
            .chunks(seeds)
            .enumerate()
            .filter_map(|(k, chunk)| {
                let point = self.space.point_of(&chunk.first()?.config)?;
                let params = self
                    .space
                    .dims
                    .iter()
                    .zip(&point)
                    .map(|((key, d), x)| {
                        (
                            key.clone(),
                            serde_json::to_value(d.value(*x)).unwrap_or_default(),
                        )
                    })
                    .collect();
                Some(ProposalRow {
                    sweep_id,
                    k: k as i64,
                    sampler: "random".into(),
                    budget: None,
                    observations: 0,
                    params: serde_json::Value::Object(params),
                    coords: point,
                    trials: chunk
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t.id.clone(), (k * seeds + i) as i64, t.config.clone()))
                        .collect(),
                    time: crate::store::now(),
                })
            })
            .collect()
    }
}
