//! A sweep as the dashboard sees it at one moment: its trials, each with its
//! flattened parameters and its curve on the sweep's metric, shared by every
//! request until the database moves.
//!
//! Why a snapshot: 50 open pages polling every second would otherwise each
//! run the same sweep-wide queries. The [`Cache`] refreshes a sweep at most
//! once per [`MIN_AGE`], and only when `PRAGMA data_version` says another
//! connection committed.
//!
//! Why incremental: a sweep of 10,000 trials × 30 epochs has 300,000 values
//! on its metric; reading them all again on every commit took seconds and
//! held two copies in memory. A refresh reads, in one read transaction, only
//! what was added since the last one ([`q::Marks`]: metric, attempt,
//! decision and test rows by rowid, new trials by rowid), plus every trial's
//! few changing columns, and shares every unchanged trial (an `Arc`) with
//! the snapshot before it. A trial that gained an attempt has its curve
//! read again whole, since a resumed attempt re-records epochs in place.
//! Curves are kept compactly: 16 bytes a point ([`Pt`]).
use serde::Serialize;
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sweep_store::serve_queries as q;
use tokio::sync::{Mutex, Notify};

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

/// One point of a learning curve: 16 bytes instead of three 8-byte numbers.
/// The value stays `f64` so that best values and rankings are exact; the
/// time is seconds after the sweep was created, which `f32` holds to
/// within 0.1 s for a sweep that runs a fortnight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    pub epoch: u32,
    pub t: f32,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialSnap {
    #[serde(skip)]
    pub rowid: i64,
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
    /// Every flattened parameter, varying or not; a response shows only the
    /// varying ones ([`Snapshot::row`]).
    #[serde(skip)]
    pub params: BTreeMap<String, Scalar>,
    pub best: Option<f64>,
    pub last: Option<f64>,
    /// The sweep's metric by epoch, in epoch order.
    #[serde(skip)]
    pub curve: Vec<Pt>,
}

impl TrialSnap {
    fn new(h: q::TrialHead) -> TrialSnap {
        let s = h.state;
        TrialSnap {
            rowid: h.rowid,
            id: h.id,
            ordinal: h.ordinal,
            status: s.status,
            device: s.device,
            epochs: h.epochs,
            epochs_done: s.epochs_done,
            images_per_s: s.images_per_s,
            wall_s: s.wall_s,
            started_at: s.started_at,
            finished_at: s.finished_at,
            attempts: h.attempts,
            test_accuracy: None,
            decision: None,
            params: flatten(&h.params),
            best: None,
            last: None,
            curve: Vec::new(),
        }
    }

    fn state_differs(&self, s: &q::TrialState) -> bool {
        self.status != s.status
            || self.device != s.device
            || self.epochs_done != s.epochs_done
            || self.images_per_s != s.images_per_s
            || self.wall_s != s.wall_s
            || self.started_at != s.started_at
            || self.finished_at != s.finished_at
    }

    fn set_state(&mut self, s: q::TrialState) {
        self.status = s.status;
        self.device = s.device;
        self.epochs_done = s.epochs_done;
        self.images_per_s = s.images_per_s;
        self.wall_s = s.wall_s;
        self.started_at = s.started_at;
        self.finished_at = s.finished_at;
    }

    /// Adds a value; an epoch recorded twice keeps the later record.
    fn put(&mut self, p: Pt) {
        put(&mut self.curve, p);
    }

    fn summarise(&mut self, maximize: bool) {
        self.best = None;
        for c in &self.curve {
            let v = c.value;
            if v.is_finite()
                && self
                    .best
                    .is_none_or(|b| if maximize { v > b } else { v < b })
            {
                self.best = Some(v);
            }
        }
        self.last = self.curve.last().map(|c| c.value);
    }
}

/// Adds `p` to a curve kept in epoch order; an epoch recorded twice keeps
/// the later record.
fn put(curve: &mut Vec<Pt>, p: Pt) {
    match curve.binary_search_by_key(&p.epoch, |c| c.epoch) {
        Ok(i) => {
            if p.t >= curve[i].t {
                curve[i] = p;
            }
        }
        Err(i) => curve.insert(i, p),
    }
}

fn point(v: &q::EpochValue, origin: f64) -> Pt {
    Pt {
        epoch: v.epoch.clamp(0, u32::MAX as i64) as u32,
        t: (v.time - origin) as f32,
        value: v.value,
    }
}

/// One first read of a sweep at a time (see [`Snapshot::load`]).
static FIRST_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Every curve of a sweep on its metric, by trial rowid: a first read's
/// biggest query (223,000 values for 10,000 trials × 30 epochs), run on a
/// connection of its own while the trials are read on another, so that the
/// two take about as long as the longer of them on two cores.
///
/// Its read transaction starts after the other's, so it may see values
/// committed after the marks the snapshot keeps: harmless, since the next
/// refresh reads every value past those marks again and [`put`] keeps one
/// value an epoch (a value re-recorded in place comes with a new attempt,
/// which makes the refresh read that trial's curve again whole); values of
/// trials the snapshot does not have yet are dropped and read with them.
async fn first_curves(
    pool: SqlitePool,
    sweep_id: i64,
    metric: String,
    program: bool,
    origin: f64,
) -> Result<HashMap<i64, Vec<Pt>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut curves: HashMap<i64, Vec<Pt>> = HashMap::new();
    // Values come trial after trial: the current curve is kept at hand.
    let mut at: Option<(i64, Vec<Pt>)> = None;
    q::metric_values(
        &mut conn,
        sweep_id,
        &metric,
        program,
        q::Values::All,
        |v| match &mut at {
            Some((rowid, c)) if *rowid == v.trial_rowid => put(c, point(&v, origin)),
            _ => {
                if let Some((rowid, c)) = at.take() {
                    curves.insert(rowid, c);
                }
                let mut c = curves.remove(&v.trial_rowid).unwrap_or_default();
                put(&mut c, point(&v, origin));
                at = Some((v.trial_rowid, c));
            }
        },
    )
    .await?;
    if let Some((rowid, c)) = at {
        curves.insert(rowid, c);
    }
    Ok(curves)
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub method: String,
    pub rung: Option<i64>,
    pub epoch: Option<i64>,
    pub action: String,
    /// When it was made: of two at one epoch, the later is the latest.
    #[serde(skip)]
    pub time: f64,
}

/// A trial as the table shows it: its columns and its varying parameters.
#[derive(Serialize)]
pub struct Row<'a> {
    #[serde(flatten)]
    pub trial: &'a TrialSnap,
    pub params: BTreeMap<&'a str, &'a Scalar>,
}

pub struct Snapshot {
    pub sweep: q::SweepRow,
    pub maximize: bool,
    /// The parameters that vary between the trials.
    pub params: Vec<ParamKey>,
    pub trials: Vec<Arc<TrialSnap>>,
    /// Trial id → position in `trials`.
    pub index: Arc<HashMap<String, usize>>,
    by_rowid: Arc<HashMap<i64, usize>>,
    pub best: Option<f64>,
    pub built: Instant,
    /// Where the next refresh starts reading.
    marks: q::Marks,
    /// The sweep's `created_at`: curve times are seconds after it.
    origin: f64,
    /// Responses computed from this snapshot (by endpoint and parameters),
    /// served again until the database moves and a new snapshot replaces it.
    pub memo: std::sync::Mutex<HashMap<String, axum::body::Bytes>>,
}

impl Snapshot {
    /// Is `a` better than `b` on the sweep's metric?
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }

    /// The unix time of a curve point.
    pub fn time(&self, p: &Pt) -> f64 {
        self.origin + p.t as f64
    }

    /// The trial with this id.
    pub fn trial(&self, id: &str) -> Option<&TrialSnap> {
        self.index.get(id).map(|&i| &*self.trials[i])
    }

    /// `t` as the table shows it, with the varying parameters only.
    pub fn row<'a>(&'a self, t: &'a TrialSnap) -> Row<'a> {
        Row {
            trial: t,
            params: self
                .params
                .iter()
                .filter_map(|k| t.params.get_key_value(&k.name))
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        }
    }

    /// The sweep named `name` as the database has it now: built from
    /// `prev` and the rows added since it when `prev` is given (and is of
    /// the same sweep), else from scratch. None: no such sweep.
    pub async fn load(
        pool: &SqlitePool,
        name: &str,
        prev: Option<&Snapshot>,
    ) -> Result<Option<Snapshot>, sqlx::Error> {
        // A first read takes two of the pool's connections (the curves are
        // read on one of their own): one first read at a time, so that
        // several (the sweeps list asks every sweep's best at once) can
        // never each hold one connection while waiting for another.
        let first = match prev {
            None => Some(
                FIRST_READS
                    .acquire()
                    .await
                    .map_err(|e| sqlx::Error::Protocol(format!("reading sweep {name}: {e}")))?,
            ),
            Some(_) => None,
        };
        // One read transaction: every query sees the same commit, and the
        // marks say exactly where that commit ends.
        let mut tx = pool.begin().await?;
        let Some(sweep) = q::sweep(&mut *tx, name).await? else {
            return Ok(None);
        };
        let prev = prev.filter(|p| p.sweep.id == sweep.id && sweep.trials >= p.trials.len() as i64);
        let marks = q::marks(&mut tx).await?;
        let maximize = maximize_for(&sweep.metric, sweep.direction.as_deref());
        let from = prev.map(|p| p.marks).unwrap_or_default();
        let origin = prev.map_or(sweep.created_at, |p| p.origin);
        let program = sweep.program.is_some();
        // A first read: every curve, read beside the rest.
        let curves = first.is_some().then(|| {
            tokio::spawn(first_curves(
                pool.clone(),
                sweep.id,
                sweep.metric.clone(),
                program,
                origin,
            ))
        });
        let (mut trials, mut index, mut by_rowid) = match prev {
            Some(p) => (p.trials.clone(), p.index.clone(), p.by_rowid.clone()),
            None => Default::default(),
        };
        let mut touched = vec![false; trials.len()];

        let added = q::trials_added(&mut tx, sweep.id, from.trials).await?;
        let new_trials = !added.is_empty();
        if new_trials {
            let (index, by_rowid) = (Arc::make_mut(&mut index), Arc::make_mut(&mut by_rowid));
            for h in added {
                // A trial planned again keeps its row: only ever appended.
                if by_rowid.contains_key(&h.rowid) {
                    continue;
                }
                index.insert(h.id.clone(), trials.len());
                by_rowid.insert(h.rowid, trials.len());
                trials.push(Arc::new(TrialSnap::new(h)));
                touched.push(true);
            }
        }
        // A first read has every trial's state from `trials_added`.
        if prev.is_some() {
            q::trial_states(&mut tx, sweep.id, |st| {
                if let Some(&i) = by_rowid.get(&st.rowid)
                    && trials[i].state_differs(&st)
                {
                    Arc::make_mut(&mut trials[i]).set_state(st);
                }
            })
            .await?;
        }
        let mut reload = Vec::new();
        // A first read has every trial's count from `trials_added`.
        let counted = match prev {
            Some(_) => q::attempt_counts(&mut tx, sweep.id, from.attempts).await?,
            None => Vec::new(),
        };
        for (rowid, n) in counted {
            if let Some(&i) = by_rowid.get(&rowid)
                && trials[i].attempts != n
            {
                // A later attempt may record an epoch again, in place.
                if prev.is_some() && trials[i].attempts > 0 {
                    reload.push(i);
                }
                Arc::make_mut(&mut trials[i]).attempts = n;
            }
        }
        for (rowid, acc) in q::tests_added(&mut tx, sweep.id, from.tests).await? {
            if let Some(&i) = by_rowid.get(&rowid) {
                Arc::make_mut(&mut trials[i]).test_accuracy = Some(acc);
            }
        }
        q::decisions_added(&mut tx, sweep.id, from.decisions, |d| {
            let Some(&i) = by_rowid.get(&d.trial_rowid) else {
                return;
            };
            let later = trials[i]
                .decision
                .as_ref()
                .is_none_or(|o| (d.epoch, d.time) >= (o.epoch.unwrap_or(0), o.time));
            if later {
                Arc::make_mut(&mut trials[i]).decision = Some(Decision {
                    method: d.method,
                    rung: d.rung,
                    epoch: Some(d.epoch),
                    action: d.action,
                    time: d.time,
                });
            }
        })
        .await?;

        let put = |trials: &mut Vec<Arc<TrialSnap>>, touched: &mut Vec<bool>, v: q::EpochValue| {
            if let Some(&i) = by_rowid.get(&v.trial_rowid) {
                Arc::make_mut(&mut trials[i]).put(point(&v, origin));
                touched[i] = true;
            }
        };
        match curves {
            Some(task) => {
                let curves = task.await.map_err(|e| {
                    sqlx::Error::Protocol(format!("reading the curves of sweep {name}: {e}"))
                })??;
                for (rowid, curve) in curves {
                    if let Some(&i) = by_rowid.get(&rowid) {
                        Arc::make_mut(&mut trials[i]).curve = curve;
                        touched[i] = true;
                    }
                }
            }
            None => {
                // A refresh; or a snapshot of a sweep recreated under the
                // same name, read from scratch on this connection.
                let which = match prev {
                    Some(_) => q::Values::Since(from.metrics),
                    None => q::Values::All,
                };
                q::metric_values(&mut tx, sweep.id, &sweep.metric, program, which, |v| {
                    put(&mut trials, &mut touched, v)
                })
                .await?
            }
        }
        for i in reload {
            // Marked touched by `put` if it has a value left; summarised again either way.
            let t = Arc::make_mut(&mut trials[i]);
            t.curve.clear();
            t.best = None;
            t.last = None;
            let rowid = trials[i].rowid;
            q::metric_values(
                &mut tx,
                sweep.id,
                &sweep.metric,
                program,
                q::Values::Trial(rowid),
                |v| put(&mut trials, &mut touched, v),
            )
            .await?;
        }
        drop(tx);

        let mut best: Option<f64> = None;
        for (t, touched) in trials.iter_mut().zip(&touched) {
            if *touched {
                let t = Arc::make_mut(t);
                t.summarise(maximize);
                if prev.is_none() {
                    t.curve.shrink_to_fit();
                }
            }
            if let Some(b) = t.best
                && best.is_none_or(|s| if maximize { b > s } else { b < s })
            {
                best = Some(b);
            }
        }
        let params = match prev {
            Some(p) if !new_trials => p.params.clone(),
            _ => varying(trials.iter().map(|t| &t.params), trials.len()),
        };
        Ok(Some(Snapshot {
            sweep,
            maximize,
            params,
            trials,
            index,
            by_rowid,
            best,
            built: Instant::now(),
            marks,
            origin,
            memo: std::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// The keys whose value is not the same in every trial.
fn varying<'a>(
    flat: impl Iterator<Item = &'a BTreeMap<String, Scalar>>,
    n: usize,
) -> Vec<ParamKey> {
    let mut keys: BTreeMap<&str, Vec<&Scalar>> = BTreeMap::new();
    for f in flat {
        for (k, v) in f {
            keys.entry(k.as_str()).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (name, vals) in keys {
        let missing = vals.len() < n;
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

/// One sweep's latest snapshot and the `data_version` it was built at, and
/// whether a refresh is under way.
#[derive(Default)]
struct SlotState {
    snap: Option<(Arc<Snapshot>, i64)>,
    /// A build (the first or a refresh) is under way.
    refreshing: bool,
    /// The last first build failed with this (a request that waited for
    /// it gets the error; the next request starts another build).
    failed: Option<String>,
    /// The last first build found no sweep of this name.
    missing: bool,
}

/// What a request for a sweep gets from the [`Cache`].
pub enum Lookup {
    Ready(Arc<Snapshot>),
    /// No sweep of that name.
    Missing,
    /// Its first read is under way and did not end within [`first_wait`]:
    /// the request is answered "loading, retry" instead of waiting for it.
    Loading,
}

/// How long the very first request of a sweep waits for the sweep's first
/// read (every trial and curve) before it is answered "loading" (HTTP 202):
/// the read of a 10,000-trial sweep takes 100–250 ms on a busy 2-core
/// machine, of a 100,000-trial one seconds, and no request may take that
/// long. `SWEEP_SERVE_FIRST_WAIT_MS` sets it (the tests set 0, so that every
/// sweep's first request is answered "loading").
pub fn first_wait() -> Duration {
    static WAIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *WAIT.get_or_init(|| {
        std::env::var("SWEEP_SERVE_FIRST_WAIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(50))
    })
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Wakes the requests waiting for a refresh.
    refreshed: Notify,
}

/// How long a request waits for a refresh before it is answered from the
/// snapshot it has (stale while it revalidates). A refresh of a 10,000-trial
/// sweep takes a few tens of milliseconds; one that takes longer (a burst
/// of rows after a long pause) never holds a request up for longer.
pub const REFRESH_WAIT: Duration = Duration::from_millis(60);

/// The latest snapshot of each sweep asked for. Only the very first request
/// of a sweep waits for its first build.
pub struct Cache {
    pool: SqlitePool,
    probe: Mutex<SqliteConnection>,
    sweeps: Mutex<HashMap<String, Arc<Slot>>>,
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

    /// The sweep named `name`: its snapshot, no such sweep, or (its first
    /// read under way for longer than [`first_wait`]) loading.
    pub async fn get(self: &Arc<Self>, name: &str) -> Result<Lookup, sqlx::Error> {
        let slot = {
            let mut m = self.sweeps.lock().await;
            // Bounded: one slot per sweep that exists (names not found are removed).
            m.entry(name.to_string()).or_default().clone()
        };
        let mut held = slot.state.lock().await;
        if let Some((s, _)) = held.snap.as_ref()
            && s.built.elapsed() < MIN_AGE
        {
            return Ok(Lookup::Ready(s.clone()));
        }
        let version = self.version().await?;
        if let Some((s, at)) = held.snap.as_ref()
            && *at == version
        {
            return Ok(Lookup::Ready(s.clone()));
        }
        // A refresh from the snapshot there is, or the first read: either
        // runs in a task of its own, so that a request that stops waiting
        // never cancels it.
        let prev = held.snap.as_ref().map(|(s, _)| s.clone());
        let wait = if prev.is_some() {
            REFRESH_WAIT
        } else {
            first_wait()
        };
        if !held.refreshing {
            held.refreshing = true;
            held.failed = None;
            held.missing = false;
            let (me, slot, name) = (self.clone(), slot.clone(), name.to_string());
            tokio::spawn(async move {
                let fresh = Snapshot::load(&me.pool, &name, prev.as_deref()).await;
                let mut h = slot.state.lock().await;
                h.refreshing = false;
                match fresh {
                    Ok(Some(snap)) => h.snap = Some((Arc::new(snap), version)),
                    Ok(None) => {
                        h.snap = None;
                        h.missing = true;
                    }
                    Err(e) => {
                        sweep_protocol::log!("serve: reading sweep {name}: {e}");
                        if h.snap.is_none() {
                            h.failed = Some(e.to_string());
                        }
                    }
                }
                let missing = h.missing;
                drop(h);
                slot.refreshed.notify_waiters();
                if missing {
                    me.sweeps.lock().await.remove(&name);
                }
            });
        }
        let refreshed = slot.refreshed.notified();
        drop(held);
        let _ = tokio::time::timeout(wait, refreshed).await;
        let held = slot.state.lock().await;
        Ok(match (&held.snap, &held.failed) {
            // Stale while it revalidates, or the first read done in time.
            (Some((s, _)), _) => Lookup::Ready(s.clone()),
            (None, _) if held.missing => Lookup::Missing,
            (None, Some(e)) if !held.refreshing => {
                return Err(sqlx::Error::Protocol(format!("reading sweep {name}: {e}")));
            }
            (None, _) => Lookup::Loading,
        })
    }

    /// The best value of each sweep whose snapshot is built or builds
    /// within a third of [`REFRESH_WAIT`] (all at once); None for the others, whose
    /// build goes on in the background, so that the sweeps list never waits
    /// for a big sweep.
    pub async fn bests(self: &Arc<Self>, names: &[&str]) -> Vec<Option<f64>> {
        // Shorter than a sweep page's wait: the list also runs a query over every trial.
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT / 3;
        let tasks: Vec<_> = names
            .iter()
            .map(|name| {
                let (me, name) = (self.clone(), name.to_string());
                tokio::spawn(async move { me.get(&name).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for mut task in tasks {
            out.push(match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(Lookup::Ready(s)))) => s.best,
                Ok(Ok(Ok(_))) => None,
                Ok(Ok(Err(e))) => {
                    sweep_protocol::log!("serve: {e}");
                    None
                }
                _ => None,
            });
        }
        out
    }
}
