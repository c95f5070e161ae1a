//! A sweep as the dashboard sees it at one moment: its trials, each with its
//! flattened parameters and its curve on the sweep's metric, built from a
//! handful of queries and shared by every request until the database moves.
//!
//! Why a snapshot: 50 open pages polling every second would otherwise each
//! run the same sweep-wide queries. The [`Cache`] rebuilds a sweep at most
//! once per [`MIN_AGE`], and only when `PRAGMA data_version` says another
//! connection committed; every request between reads the shared `Arc`.
use serde::Serialize;
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sweep_store::serve_queries as q;
use tokio::sync::Mutex;

/// A snapshot younger than this is served without asking the database.
pub const MIN_AGE: Duration = Duration::from_millis(400);

/// Whether bigger values of `metric` are better: the sweep's `direction`
/// when the database has it, else guessed from the name.
pub fn maximize_for(metric: &str, direction: Option<&str>) -> bool {
    match direction {
        Some("max") => true,
        Some("min") => false,
        _ => maximize(metric),
    }
}

/// Whether bigger values of `metric` are better: losses and errors go down,
/// everything else (accuracy, F1, AUC, a user program's score) goes up.
pub fn maximize(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    ![
        "loss",
        "err",
        "mse",
        "mae",
        "rmse",
        "perplexity",
        "wer",
        "cer",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// A parameter scalar: number, or anything else as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Num(f64),
    Text(String),
}

impl Scalar {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Num(x) => Some(*x),
            Scalar::Text(_) => None,
        }
    }
    pub fn text(&self) -> String {
        match self {
            Scalar::Num(x) => format!("{x}"),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// Flattens a trial's `params` JSON into dotted keys (`head.hidden`,
/// `augment.flip`); arrays become their JSON text, so `[512, 512]` is one
/// categorical value.
pub fn flatten(params: &str) -> BTreeMap<String, Scalar> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Scalar>, depth: usize) {
        match v {
            Value::Object(m) if depth < 4 => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out, depth + 1);
                }
            }
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_string(), Scalar::Num(x));
                }
            }
            Value::Bool(b) => {
                out.insert(prefix.to_string(), Scalar::Text(b.to_string()));
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), Scalar::Text(s.clone()));
            }
            Value::Null => {
                out.insert(prefix.to_string(), Scalar::Text("none".into()));
            }
            other => {
                out.insert(prefix.to_string(), Scalar::Text(other.to_string()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = serde_json::from_str::<Value>(params) {
        walk("", &v, &mut out, 0);
    }
    out
}

/// A parameter that differs between the sweep's trials.
#[derive(Debug, Clone, Serialize)]
pub struct ParamKey {
    pub name: String,
    /// Every value is a number.
    pub numeric: bool,
    /// Drawn on a log axis: positive numbers spanning at least two decades,
    /// as log-uniform learning rates and weight decays do (the database keeps
    /// the values, not the distribution they were drawn from).
    pub log: bool,
    /// Its distinct values (categorical: in first-seen order; at most 50).
    pub values: Vec<Scalar>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialSnap {
    pub id: String,
    pub ordinal: i64,
    pub status: String,
    pub device: Option<String>,
    pub epochs: i64,
    pub epochs_done: i64,
    pub images_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub attempts: i64,
    pub test_accuracy: Option<f64>,
    pub decision: Option<Decision>,
    /// The varying parameters only (see [`Snapshot::params`]).
    pub params: BTreeMap<String, Scalar>,
    pub best: Option<f64>,
    pub last: Option<f64>,
    /// (epoch, value, unix time) on the sweep's metric.
    #[serde(skip)]
    pub curve: Vec<(i64, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub method: String,
    pub rung: Option<i64>,
    pub epoch: Option<i64>,
    pub action: String,
}

pub struct Snapshot {
    pub sweep: q::SweepRow,
    pub maximize: bool,
    pub params: Vec<ParamKey>,
    pub trials: Vec<TrialSnap>,
    pub index: HashMap<String, usize>,
    pub best: Option<f64>,
    pub built: Instant,
    /// Responses computed from this snapshot (by endpoint and parameters),
    /// served again until the database moves and a new snapshot replaces it.
    pub memo: std::sync::Mutex<HashMap<String, axum::body::Bytes>>,
}

impl Snapshot {
    /// Is `a` better than `b` on the sweep's metric?
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }

    pub async fn build(pool: &SqlitePool, sweep: q::SweepRow) -> Result<Snapshot, sqlx::Error> {
        let lines = q::sweep_trials(pool, sweep.id).await?;
        let values =
            q::sweep_metric_values(pool, sweep.id, &sweep.metric, sweep.program.is_some()).await?;
        let maximize = maximize_for(&sweep.metric, sweep.direction.as_deref());
        let mut curves: HashMap<i64, Vec<(i64, f64, f64)>> = HashMap::with_capacity(lines.len());
        for v in values {
            curves
                .entry(v.trial_rowid)
                .or_default()
                .push((v.epoch, v.value, v.time));
        }
        for c in curves.values_mut() {
            // Epoch order; a split other than `valid` may record an epoch twice: keep the later.
            c.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
            c.dedup_by(|later, earlier| {
                if later.0 == earlier.0 {
                    *earlier = *later;
                    true
                } else {
                    false
                }
            });
            c.shrink_to_fit();
        }
        let flat: Vec<BTreeMap<String, Scalar>> =
            lines.iter().map(|l| flatten(&l.params)).collect();
        let params = varying(&flat);
        let keep: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let mut trials = Vec::with_capacity(lines.len());
        let mut index = HashMap::with_capacity(lines.len());
        let mut sweep_best: Option<f64> = None;
        for (l, mut f) in lines.into_iter().zip(flat) {
            f.retain(|k, _| keep.contains(&k.as_str()));
            let curve = curves.remove(&l.rowid).unwrap_or_default();
            let mut best: Option<f64> = None;
            for &(_, v, _) in &curve {
                if v.is_finite() && best.is_none_or(|b| if maximize { v > b } else { v < b }) {
                    best = Some(v);
                }
            }
            if let Some(b) = best
                && sweep_best.is_none_or(|s| if maximize { b > s } else { b < s })
            {
                sweep_best = Some(b);
            }
            let decision = l.decision_action.clone().map(|action| Decision {
                method: l.decision_method.clone().unwrap_or_default(),
                rung: l.decision_rung,
                epoch: l.decision_epoch,
                action,
            });
            index.insert(l.id.clone(), trials.len());
            trials.push(TrialSnap {
                id: l.id,
                ordinal: l.ordinal,
                status: l.status,
                device: l.device,
                epochs: l.epochs,
                epochs_done: l.epochs_done,
                images_per_s: l.images_per_s,
                wall_s: l.wall_s,
                started_at: l.started_at,
                finished_at: l.finished_at,
                attempts: l.attempts,
                test_accuracy: l.test_accuracy,
                decision,
                params: f,
                best,
                last: curve.last().map(|c| c.1),
                curve,
            });
        }
        Ok(Snapshot {
            sweep,
            maximize,
            params,
            trials,
            index,
            best: sweep_best,
            built: Instant::now(),
            memo: std::sync::Mutex::new(HashMap::new()),
        })
    }
}

/// The keys whose value is not the same in every trial.
fn varying(flat: &[BTreeMap<String, Scalar>]) -> Vec<ParamKey> {
    let mut keys: BTreeMap<&str, Vec<&Scalar>> = BTreeMap::new();
    for f in flat {
        for (k, v) in f {
            keys.entry(k.as_str()).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (name, vals) in keys {
        let missing = vals.len() < flat.len();
        let first = vals[0];
        if !missing && vals.iter().all(|v| *v == first) {
            continue;
        }
        let numeric = vals.iter().all(|v| v.as_f64().is_some());
        let nums: Vec<f64> = vals.iter().filter_map(|v| v.as_f64()).collect();
        let min = nums.iter().copied().reduce(f64::min);
        let max = nums.iter().copied().reduce(f64::max);
        let log =
            numeric && matches!((min, max), (Some(lo), Some(hi)) if lo > 0.0 && hi / lo >= 20.0);
        let mut values: Vec<Scalar> = Vec::new();
        for v in &vals {
            if values.len() >= 50 {
                break;
            }
            if !values.contains(v) {
                values.push((*v).clone());
            }
        }
        // A continuous parameter's values are its range; a grid's are worth listing.
        if numeric && values.len() > 20 {
            values.clear();
        }
        if numeric {
            values.sort_by(|a, b| {
                a.as_f64()
                    .partial_cmp(&b.as_f64())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        out.push(ParamKey {
            name: name.to_string(),
            numeric,
            log,
            values,
            min,
            max,
        });
    }
    out
}

/// One sweep's latest snapshot, the `data_version` it was built at, and
/// whether a newer one is being built.
#[derive(Default)]
struct SlotState {
    snap: Option<(Arc<Snapshot>, i64)>,
    building: bool,
}

type Slot = Arc<Mutex<SlotState>>;

/// The latest snapshot of each sweep asked for. When the database has moved
/// on, the next request starts a rebuild in the background and is answered
/// from the snapshot it has (stale while it revalidates): on a 10,000-trial
/// sweep a rebuild takes a second or more, and no request should wait for it.
/// Only the very first request of a sweep waits for its first build.
pub struct Cache {
    pool: SqlitePool,
    probe: Mutex<SqliteConnection>,
    sweeps: Mutex<HashMap<String, Slot>>,
}

impl Cache {
    pub fn new(pool: SqlitePool, probe: SqliteConnection) -> Cache {
        Cache {
            pool,
            probe: Mutex::new(probe),
            sweeps: Mutex::new(HashMap::new()),
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database's change counter as seen now.
    async fn version(&self) -> Result<i64, sqlx::Error> {
        let mut p = self.probe.lock().await;
        q::data_version(&mut p).await
    }

    async fn build(&self, name: &str) -> Result<Option<Snapshot>, sqlx::Error> {
        match q::sweep(&self.pool, name).await? {
            Some(row) => Ok(Some(Snapshot::build(&self.pool, row).await?)),
            None => Ok(None),
        }
    }

    /// The sweep named `name` (None: no such sweep).
    pub async fn get(self: &Arc<Self>, name: &str) -> Result<Option<Arc<Snapshot>>, sqlx::Error> {
        let slot = {
            let mut m = self.sweeps.lock().await;
            // Bounded: one slot per sweep that exists (names not found are removed).
            m.entry(name.to_string()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some((s, _)) = held.snap.as_ref()
            && s.built.elapsed() < MIN_AGE
        {
            return Ok(Some(s.clone()));
        }
        let version = self.version().await?;
        if let Some((s, at)) = held.snap.as_ref() {
            let s = s.clone();
            if *at != version && !held.building {
                held.building = true;
                let (me, slot, name) = (self.clone(), slot.clone(), name.to_string());
                tokio::spawn(async move {
                    let built = me.build(&name).await;
                    let mut h = slot.lock().await;
                    h.building = false;
                    match built {
                        Ok(Some(snap)) => h.snap = Some((Arc::new(snap), version)),
                        Ok(None) => h.snap = None,
                        Err(e) => sweep_protocol::log!("serve: rebuilding sweep {name}: {e}"),
                    }
                });
            }
            return Ok(Some(s));
        }
        // The first request of a sweep: nothing to answer with but a build.
        match self.build(name).await? {
            Some(snap) => {
                let snap = Arc::new(snap);
                held.snap = Some((snap.clone(), version));
                Ok(Some(snap))
            }
            None => {
                drop(held);
                self.sweeps.lock().await.remove(name);
                Ok(None)
            }
        }
    }
}
