//! The JSON API under `/api/`. Every list is bounded (a `limit` with a
//! maximum, curves thinned to a number of points), so one request of a
//! 10,000-trial sweep stays small and quick; every query parameter is checked
//! by hand, and a malformed or unknown one is a 400 with a message saying
//! which and what is accepted, never a panic.
use crate::snapshot::{Lookup, Scalar, Snapshot, TrialSnap};
use crate::{AppState, importance};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use sweep_store::queries;
use sweep_store::serve_queries as q;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
    /// The sweep's first read is under way (see [`crate::snapshot::first_wait`]).
    #[error("reading sweep {0:?} for the first time; ask again shortly")]
    Loading(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Db(e) => {
                sweep_protocol::log!("serve: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            // 202 Accepted, not an error: the page asks again after a
            // moment (a 5xx would be logged as a failed load in the browser).
            ApiError::Loading(_) => {
                return (
                    StatusCode::ACCEPTED,
                    [
                        (header::RETRY_AFTER, "1"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    Json(json!({ "loading": true, "message": self.to_string() })),
                )
                    .into_response();
            }
        };
        (code, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok<T: Serialize>(v: T) -> ApiResult {
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response())
}

/// A request's query string, checked against the names an endpoint accepts.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Params, ApiError> {
        let raw = raw.unwrap_or_default();
        if raw.len() > 8192 {
            return Err(ApiError::BadRequest(
                "query string longer than 8192 bytes".into(),
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, _) in &pairs {
            // `token` is checked by the guard, and may ride along on any URL.
            if k != "token" && !allowed.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {k:?}; this endpoint takes: {}",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// An integer in `lo..=hi`, or `default` when absent.
    fn int(&self, k: &str, default: i64, lo: i64, hi: i64) -> Result<i64, ApiError> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "{k}={v:?} is not an integer from {lo} to {hi}"
                ))),
            },
        }
    }

    fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") | Some("") => Ok(true),
            Some(v) => Err(ApiError::BadRequest(format!(
                "{k}={v:?} is not a flag; use 1 or 0"
            ))),
        }
    }

    /// A comma-separated list of at most `max` trial ids (hex).
    fn ids(&self, k: &str, max: usize) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        for v in self.all(k) {
            for id in v.split(',').filter(|s| !s.is_empty()) {
                if !is_trial_id(id) {
                    return Err(ApiError::BadRequest(format!(
                        "{k}: {id:?} is not a trial id (hex digits)"
                    )));
                }
                out.push(id.to_string());
            }
        }
        if out.len() > max {
            return Err(ApiError::BadRequest(format!(
                "{k}: {} trials given, at most {max}",
                out.len()
            )));
        }
        Ok(out)
    }
}

pub fn is_trial_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `make`'s JSON for this snapshot, computed once per snapshot and key.
async fn memo<F, Fut>(s: &Snapshot, key: String, make: F) -> ApiResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let hit = s.memo.lock().ok().and_then(|m| m.get(&key).cloned());
    let body = match hit {
        Some(b) => b,
        None => {
            let v = make().await?;
            let b = axum::body::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            if let Ok(mut m) = s.memo.lock() {
                // Bounded: a few keys per endpoint are all the page asks for.
                if m.len() >= 64 {
                    m.clear();
                }
                m.insert(key, b.clone());
            }
            b
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

async fn snapshot(st: &AppState, name: &str) -> Result<Arc<Snapshot>, ApiError> {
    match st.cache.get(name).await? {
        Lookup::Ready(s) => Ok(s),
        Lookup::Missing => Err(ApiError::NotFound(format!(
            "no sweep named {name:?} in the database"
        ))),
        Lookup::Loading => Err(ApiError::Loading(name.to_string())),
    }
}

fn now() -> f64 {
    sweep_store::now()
}

/// What every `/api/sweeps/{name}/…` and `/api/trials/{id}…` handler starts
/// from: the state, the name or id in the path, and the raw query string.
/// [`Req::sweep`] and [`Req::trial`] check the query against what the
/// endpoint takes (400) before anything is read.
pub struct Req {
    st: AppState,
    key: String,
    raw: Option<String>,
}

impl axum::extract::FromRequestParts<AppState> for Req {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The first path segment after the endpoint's prefix (`{name}` or `{id}`).
        let key = Path::<Vec<(String, String)>>::from_request_parts(parts, st)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?
            .0
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default();
        let RawQuery(raw) = RawQuery::from_request_parts(parts, st)
            .await
            .unwrap_or(RawQuery(None));
        Ok(Req {
            st: st.clone(),
            key,
            raw,
        })
    }
}

impl Req {
    /// The query's parameters and the sweep's snapshot.
    async fn sweep(&self, allowed: &[&str]) -> Result<(Params, Arc<Snapshot>), ApiError> {
        let p = Params::parse(self.raw.clone(), allowed)?;
        Ok((p, snapshot(&self.st, &self.key).await?))
    }

    /// The query's parameters and the trial id, checked to be one (404).
    fn trial(&self, allowed: &[&str]) -> Result<(Params, &str), ApiError> {
        let p = Params::parse(self.raw.clone(), allowed)?;
        if !is_trial_id(&self.key) {
            return Err(ApiError::NotFound(format!(
                "{:?} is not a trial id",
                self.key
            )));
        }
        Ok((p, &self.key))
    }

    fn pool(&self) -> &sqlx::SqlitePool {
        self.st.cache.pool()
    }
}

/// The trial's row, or a 404 that says so.
async fn trial_row(pool: &sqlx::SqlitePool, id: &str) -> Result<q::TrialDetail, ApiError> {
    q::trial(pool, id)
        .await?
        .filter(|t| t.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no trial {id:?} in the database")))
}

// ---------------------------------------------------------------- sweeps

pub async fn sweeps(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    Params::parse(raw, &[])?;
    let rows = q::sweeps(st.cache.pool()).await?;
    // Bounded: the 200 newest sweeps (a database rarely holds more than a few).
    let rows: Vec<q::SweepRow> = rows.into_iter().take(200).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let bests = st.cache.bests(&names).await;
    let out: Vec<Value> = rows
        .iter()
        .zip(bests)
        .map(|(r, best)| json!({ "sweep": r, "best": best, "maximize": crate::snapshot::maximize_for(&r.metric, r.direction.as_deref()) }))
        .collect();
    ok(json!({ "now": now(), "sweeps": out }))
}

pub async fn sweep(r: Req) -> ApiResult {
    let (_, s) = r.sweep(&[]).await?;
    let best_trial = s
        .trials
        .iter()
        .filter(|t| t.best.is_some())
        .reduce(|a, b| {
            if s.better(b.best.unwrap_or(f64::NAN), a.best.unwrap_or(f64::NAN)) {
                b
            } else {
                a
            }
        })
        .map(|t| t.id.clone());
    ok(json!({
        "now": now(),
        "sweep": s.sweep,
        "maximize": s.maximize,
        "best": s.best,
        "best_trial": best_trial,
        "params": s.params,
    }))
}

const SORT_KEYS: &[&str] = &[
    "ordinal",
    "id",
    "status",
    "device",
    "epoch",
    "best",
    "last",
    "images_per_s",
    "wall_s",
    "attempts",
    "rung",
    "test_accuracy",
];

enum Filter {
    Range(String, Option<f64>, Option<f64>),
    Eq(String, String),
}

fn parse_num(k: &str, v: &str, what: &str) -> Result<Option<f64>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("{k}: {what} {v:?} is not a number")))
}

/// Sorted, filtered, paged trial table.
pub async fn trials(r: Req) -> ApiResult {
    let (p, s) = r
        .sweep(&["offset", "limit", "sort", "desc", "status", "range", "eq"])
        .await?;
    let limit = p.int("limit", 50, 1, 500)? as usize;
    let offset = p.int("offset", 0, 0, 10_000_000)? as usize;
    let desc = p.flag("desc")?;
    let sort = p.get("sort").unwrap_or("ordinal").to_string();
    let sort_param = sort.strip_prefix("param:");
    if sort_param.is_none() && !SORT_KEYS.contains(&sort.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "sort={sort:?} is not a column; use one of {}, or param:NAME",
            SORT_KEYS.join(", ")
        )));
    }
    if let Some(k) = sort_param
        && !s.params.iter().any(|x| x.name == k)
    {
        return Err(unknown_param(&s, k));
    }
    let statuses: Vec<&str> = p
        .all("status")
        .flat_map(|v| v.split(','))
        .filter(|v| !v.is_empty())
        .collect();
    // Every status the store knows (paused included), named as it stores them.
    let known = sweep_store::TrialStatus::ALL.map(|t| t.as_str());
    for st in &statuses {
        if !known.contains(st) {
            return Err(ApiError::BadRequest(format!(
                "status={st:?} is not a trial status; use {}",
                known.join(", ")
            )));
        }
    }
    let mut filters = Vec::new();
    for v in p.all("range") {
        let parts: Vec<&str> = v.splitn(3, ':').collect();
        let [k, lo, hi] = parts[..] else {
            return Err(ApiError::BadRequest(format!(
                "range={v:?} is not NAME:MIN:MAX (either bound may be empty), e.g. range=lr:0.001:0.1"
            )));
        };
        if !s.params.iter().any(|x| x.name == k) && k != "best" && k != "last" {
            return Err(unknown_param(&s, k));
        }
        filters.push(Filter::Range(
            k.to_string(),
            parse_num("range", lo, "minimum")?,
            parse_num("range", hi, "maximum")?,
        ));
    }
    for v in p.all("eq") {
        let Some((k, val)) = v.split_once(':') else {
            return Err(ApiError::BadRequest(format!(
                "eq={v:?} is not NAME:VALUE, e.g. eq=backbone:resnet18"
            )));
        };
        if !s.params.iter().any(|x| x.name == k) {
            return Err(unknown_param(&s, k));
        }
        filters.push(Filter::Eq(k.to_string(), val.to_string()));
    }
    let keep = |t: &TrialSnap| -> bool {
        if !statuses.is_empty() && !statuses.contains(&t.status.as_str()) {
            return false;
        }
        filters.iter().all(|f| match f {
            Filter::Range(k, lo, hi) => {
                let x = match k.as_str() {
                    "best" => t.best,
                    "last" => t.last,
                    k => t.params.get(k).and_then(Scalar::as_f64),
                };
                x.is_some_and(|x| lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x <= hi))
            }
            Filter::Eq(k, v) => t.params.get(k).is_some_and(|x| x.text() == *v),
        })
    };
    let mut rows: Vec<&TrialSnap> = s.trials.iter().map(|t| &**t).filter(|t| keep(t)).collect();
    let matched = rows.len();
    sort_rows(&mut rows, &sort, s.maximize, desc);
    let page: Vec<_> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|t| s.row(t))
        .collect();
    ok(json!({
        "now": now(),
        "total": s.trials.len(),
        "matched": matched,
        "offset": offset,
        "limit": limit,
        "params": s.params,
        "rows": page,
    }))
}

fn unknown_param(s: &Snapshot, k: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{k:?} is not a parameter that varies in sweep {:?}; those are: {}",
        s.sweep.name,
        if s.params.is_empty() {
            "(none)".to_string()
        } else {
            s.params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ))
}

/// Missing values sort last whichever the direction.
fn sort_rows<'a>(rows: &mut [&'a TrialSnap], key: &str, maximize: bool, desc: bool) {
    use std::cmp::Ordering;
    enum K<'a> {
        N(Option<f64>),
        S(Option<&'a str>),
    }
    let k = |t: &'a TrialSnap| -> K<'a> {
        match key {
            "ordinal" => K::N(Some(t.ordinal as f64)),
            "id" => K::S(Some(t.id.as_str())),
            "status" => K::S(Some(t.status.as_str())),
            "device" => K::S(t.device.as_deref()),
            "epoch" => K::N(Some(t.epochs_done as f64)),
            // "best" sorts best first unless reversed.
            "best" => K::N(t.best.map(|v| if maximize { -v } else { v })),
            "last" => K::N(t.last),
            "images_per_s" => K::N(t.images_per_s),
            "wall_s" => K::N(t.wall_s),
            "attempts" => K::N(Some(t.attempts as f64)),
            "rung" => K::N(t.decision.as_ref().and_then(|d| d.rung).map(|r| r as f64)),
            "test_accuracy" => K::N(t.test_accuracy),
            other => match other.strip_prefix("param:").and_then(|p| t.params.get(p)) {
                Some(Scalar::Num(x)) => K::N(Some(*x)),
                Some(Scalar::Text(s)) => K::S(Some(s.as_str())),
                None => K::N(None),
            },
        }
    };
    let mut keyed: Vec<(K, &TrialSnap)> = rows.iter().map(|t| (k(t), *t)).collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        let o = match (ka, kb) {
            (K::N(Some(x)), K::N(Some(y))) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
            (K::S(Some(x)), K::S(Some(y))) => x.cmp(y),
            (K::N(None) | K::S(None), K::N(None) | K::S(None)) => Ordering::Equal,
            (K::N(None) | K::S(None), _) => return Ordering::Greater,
            (_, K::N(None) | K::S(None)) => return Ordering::Less,
            (K::N(_), K::S(_)) => Ordering::Less,
            (K::S(_), K::N(_)) => Ordering::Greater,
        };
        let o = if desc { o.reverse() } else { o };
        o.then(a.ordinal.cmp(&b.ordinal))
    });
    for (slot, (_, t)) in rows.iter_mut().zip(keyed) {
        *slot = t;
    }
}

/// Learning curves on the sweep's metric: the top K trials by best value,
/// every running trial (at most 200), and the ones asked for by id.
pub async fn curves(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["top", "trials"]).await?;
    let top = p.int("top", 30, 0, 1000)? as usize;
    let asked = p.ids("trials", 50)?;
    let mut ranked: Vec<&TrialSnap> = s
        .trials
        .iter()
        .map(|t| &**t)
        .filter(|t| t.best.is_some())
        .collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (a.best.unwrap_or(0.0), b.best.unwrap_or(0.0));
        let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        if s.maximize { o.reverse() } else { o }
    });
    let mut chosen: Vec<&TrialSnap> = ranked.into_iter().take(top).collect();
    let mut running = 0;
    for t in s.trials.iter().map(|t| &**t) {
        if t.status == "running" && running < 200 && !chosen.iter().any(|c| c.id == t.id) {
            chosen.push(t);
            running += 1;
        }
    }
    for id in &asked {
        if let Some(t) = s.trial(id)
            && !chosen.iter().any(|c| c.id == *id)
        {
            chosen.push(t);
        }
    }
    let series: Vec<Value> = chosen
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "status": t.status,
                "best": t.best,
                "epochs": t.epochs,
                "points": t.curve.iter().map(|c| [c.epoch as f64, c.value]).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({
        "now": now(),
        "metric": s.sweep.metric,
        "maximize": s.maximize,
        "with_values": s.trials.iter().filter(|t| t.best.is_some()).count(),
        "series": series,
    }))
}

/// Keeps at most `n` points, evenly spread, always the first and the last.
pub fn thin<T: Copy>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n || n < 2 {
        return v.to_vec();
    }
    (0..n).map(|i| v[i * (v.len() - 1) / (n - 1)]).collect()
}

/// Train loss per step of a few trials (the ones selected on the page).
pub async fn train_loss(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["trials"]).await?;
    let mut out = Vec::new();
    for id in p.ids("trials", 10)? {
        if !s.index.contains_key(&id) {
            continue;
        }
        let pts = q::train_loss(r.pool(), &id, 200_000).await?;
        let pts: Vec<[f64; 2]> = thin(&pts, 1500)
            .into_iter()
            .map(|(step, v)| [step as f64, v])
            .collect();
        out.push(json!({ "id": id, "points": pts }));
    }
    ok(json!({ "series": out }))
}

/// The best value so far against wall time since the sweep's first start
/// and against epochs spent (every epoch of every trial counted once).
pub async fn best(r: Req) -> ApiResult {
    let (_, s) = r.sweep(&[]).await?;
    memo(&s, "best".into(), || async { Ok(best_json(&s)) }).await
}

fn best_json(s: &Snapshot) -> Value {
    let mut all: Vec<(f64, f64, &str)> = s
        .trials
        .iter()
        .flat_map(|t| {
            t.curve
                .iter()
                .map(move |c| (s.time(c), c.value, t.id.as_str()))
        })
        .filter(|c| c.1.is_finite())
        .collect();
    all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let start = s
        .sweep
        .first_start
        .unwrap_or(all.first().map_or(0.0, |c| c.0));
    let mut by_time = Vec::new();
    let mut by_epochs = Vec::new();
    let mut best: Option<f64> = None;
    for (i, (t, v, id)) in all.iter().enumerate() {
        if best.is_none_or(|b| s.better(*v, b)) {
            best = Some(*v);
            by_time.push(json!([t - start, v, id]));
            by_epochs.push(json!([i + 1, v, id]));
        }
    }
    // Where the curve ends: now (running) or the last record.
    let end = all.last().map(|c| c.0 - start);
    json!({
        "metric": s.sweep.metric,
        "maximize": s.maximize,
        "epochs_spent": all.len(),
        "end_s": end,
        "by_time": thin(&by_time.iter().collect::<Vec<_>>(), 2000),
        "by_epochs": thin(&by_epochs.iter().collect::<Vec<_>>(), 2000),
    })
}

/// Parameters and metric of every trial with a value, for parallel
/// coordinates and slice plots (at most `limit`, the best first).
pub async fn points(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["limit"]).await?;
    let limit = p.int("limit", 3000, 1, 10_000)? as usize;
    memo(&s, format!("points {limit}"), || async {
        Ok(points_json(&s, limit))
    })
    .await
}

fn points_json(s: &Snapshot, limit: usize) -> Value {
    let mut rows: Vec<&TrialSnap> = s
        .trials
        .iter()
        .map(|t| &**t)
        .filter(|t| t.best.is_some())
        .collect();
    let with = rows.len();
    sort_rows(&mut rows, "best", s.maximize, false);
    let rows: Vec<Value> = rows
        .into_iter()
        .take(limit)
        .map(|t| {
            json!({
                "id": t.id,
                "status": t.status,
                "value": t.best,
                "p": s.params.iter().map(|k| t.params.get(&k.name)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "metric": s.sweep.metric,
        "maximize": s.maximize,
        "params": s.params,
        "with_values": with,
        "rows": rows,
    })
}

/// Parameter importance (Spearman and PED-ANOVA), on each trial's best value
/// or, with `epoch=N`, on the value at epoch N (intermediate results).
pub async fn importance(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["epoch"]).await?;
    let epoch = match p.get("epoch") {
        None | Some("") => None,
        Some(_) => Some(p.int("epoch", 1, 1, 100_000)?),
    };
    memo(&s, format!("importance {epoch:?}"), || async {
        Ok(importance_json(&s, epoch))
    })
    .await
}

fn importance_json(s: &Snapshot, epoch: Option<i64>) -> Value {
    let mut xs: Vec<BTreeMap<String, Scalar>> = Vec::new();
    let mut ys = Vec::new();
    for t in &s.trials {
        let y = match epoch {
            None => t.best,
            Some(e) => t
                .curve
                .iter()
                .find(|c| c.epoch as i64 == e)
                .map(|c| c.value),
        };
        if let Some(y) = y.filter(|y| y.is_finite()) {
            xs.push(t.params.clone());
            ys.push(y);
        }
    }
    let r = importance::compute(&s.params, &xs, &ys, s.maximize);
    json!({
        "metric": s.sweep.metric,
        "maximize": s.maximize,
        "epoch": epoch,
        "trials_used": ys.len(),
        "params": r,
    })
}

pub async fn timeline(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["limit"]).await?;
    let limit = p.int("limit", 3000, 1, 20_000)?;
    let pool = r.pool();
    memo(&s, format!("timeline {limit}"), || async {
        let bars = q::timeline(pool, s.sweep.id, limit).await?;
        Ok(json!({ "now": now(), "bars": bars }))
    })
    .await
}

/// Early stopping per rung: the decisions' values (at most `per_rung` a
/// rung), the cutoff, and how many were stopped, paused and promoted.
pub async fn decisions(r: Req) -> ApiResult {
    let (p, s) = r.sweep(&["limit", "per_rung"]).await?;
    let limit = p.int("limit", 20_000, 1, 50_000)? as usize;
    let per_rung = p.int("per_rung", 2000, 1, 5000)? as usize;
    let pool = r.pool();
    memo(&s, format!("decisions {limit} {per_rung}"), || async {
        let (total, rungs) = q::decisions_by_rung(pool, s.sweep.id, limit, per_rung).await?;
        Ok(decisions_json(total, &rungs))
    })
    .await
}

fn decisions_json(total: usize, rungs: &[q::RungDecisions]) -> Value {
    let out: Vec<Value> = rungs
        .iter()
        .map(|g| {
            json!({
                "method": g.method,
                "bracket": g.bracket,
                "rung": g.rung,
                "epochs": g.epochs,
                "metric": g.metric,
                "decisions": g.decisions,
                "stopped": g.stopped,
                "paused": g.paused,
                "promoted": g.promoted,
                "exploited": g.exploited,
                "cutoff": g.cutoff,
                // [value, action, trial, cutoff]: the action as recorded
                // (continue, stop, pause, promote, exploit).
                "values": g.values.iter().map(|d| json!([d.value, d.action, d.trial_id, d.cutoff])).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "total": total, "rungs": out })
}

// ---------------------------------------------------------------- trials

pub async fn trial(r: Req) -> ApiResult {
    let (_, id) = r.trial(&[])?;
    let pool = r.pool();
    let t = trial_row(pool, id).await?;
    let attempts = queries::attempts(pool, id).await?;
    let test = queries::test_result(pool, id).await?;
    let classes = q::trial_classes(pool, id, 1000).await?;
    let confusion = q::trial_confusion(pool, id, 40_000).await?;
    let misclassified = queries::misclassified(pool, id, Some(200)).await?;
    let lineage = sweep_store::lineage::of_trial(pool, id).await?;
    let params = crate::snapshot::flatten(&t.params);
    ok(json!({
        "now": now(),
        "trial": t,
        "maximize": crate::snapshot::maximize_for(&t.metric, t.direction.as_deref()),
        "params": params,
        "attempts": attempts,
        "test": test,
        "classes": classes,
        "confusion": confusion,
        "misclassified": misclassified,
        "lineage": lineage,
    }))
}

/// Every metric series of one trial, each thinned to at most 1,500 points.
pub async fn trial_metrics(r: Req) -> ApiResult {
    let (_, id) = r.trial(&[])?;
    let rows = q::trial_metrics(r.pool(), id, 300_000).await?;
    let mut series: BTreeMap<(String, String), Vec<[f64; 3]>> = BTreeMap::new();
    for r in rows {
        series
            .entry((r.split, r.name))
            .or_default()
            .push([r.step as f64, r.epoch as f64, r.value]);
    }
    let out: Vec<Value> = series
        .into_iter()
        .map(|((split, name), pts)| json!({ "split": split, "name": name, "points": thin(&pts, 1500) }))
        .collect();
    ok(json!({ "series": out }))
}

/// The last `bytes` (default 16 KiB, at most 1 MiB) of an attempt's log.
pub async fn trial_log(
    State(st): State<AppState>,
    Path((id, attempt)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let p = Params::parse(raw, &["bytes"])?;
    let bytes = p.int("bytes", 16 * 1024, 1, 1 << 20)? as u64;
    let Ok(attempt) = attempt.parse::<u32>() else {
        return Err(ApiError::BadRequest(format!(
            "attempt {attempt:?} is not a number"
        )));
    };
    if !is_trial_id(&id) {
        return Err(ApiError::NotFound(format!("{id:?} is not a trial id")));
    }
    let t = trial_row(st.cache.pool(), &id).await?;
    let sweep_dir = std::path::Path::new(&t.sweep);
    // The sweep's name comes from the database, not the request; it still
    // must be one plain folder name.
    if sweep_dir.components().count() != 1
        || !matches!(
            sweep_dir.components().next(),
            Some(std::path::Component::Normal(_))
        )
    {
        return Err(ApiError::NotFound("no log for this trial".into()));
    }
    let dir = st.results.join(sweep_dir).join(&t.id);
    let path = sweep_protocol::trial_dir::attempt_log(&dir, attempt);
    let tail = tokio::task::spawn_blocking(move || tail(&path, bytes))
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    // A log that is not there is an answer, not an error: a database copied
    // to a laptop comes without its trial folders.
    match tail {
        Some((text, truncated, size)) => {
            ok(json!({ "text": text, "truncated": truncated, "size": size }))
        }
        None => ok(json!({
            "text": null,
            "missing": format!(
                "no log for attempt {attempt} of trial {id} under {} (serve with --results DIR where the sweep ran)",
                st.results.display()
            ),
        })),
    }
}

fn tail(path: &std::path::Path, bytes: u64) -> Option<(String, bool, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    let from = size.saturating_sub(bytes);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::with_capacity(bytes as usize);
    f.take(bytes).read_to_end(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf).into_owned(), from > 0, size))
}

/// A misclassified test image: only a file the database lists for this
/// trial, whose canonical path (symlinks resolved) lies under the sweep's
/// dataset root. Anything else is a 404, saying nothing about what exists.
pub async fn trial_image(r: Req) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such image".into());
    let (p, id) = r.trial(&["file"]).map_err(|e| match e {
        ApiError::NotFound(_) => not_found(),
        e => e,
    })?;
    let Some(file) = p.get("file") else {
        return Err(ApiError::BadRequest("file=PATH is required".into()));
    };
    let Some(root) = q::misclassified_file(r.pool(), id, file).await? else {
        return Err(not_found());
    };
    let file = file.to_string();
    let found = tokio::task::spawn_blocking(move || read_under(&root, &file))
        .await
        .map_err(|_| not_found())?;
    let Some((bytes, mime)) = found else {
        return Err(not_found());
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

/// The bytes of `root/file` when it is an image file inside `root`.
fn read_under(root: &str, file: &str) -> Option<(Vec<u8>, &'static str)> {
    let rel = std::path::Path::new(file);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let root = std::fs::canonicalize(root).ok()?;
    let path = std::fs::canonicalize(root.join(rel)).ok()?;
    if !path.starts_with(&root) || !path.is_file() {
        return None;
    }
    let mime = match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        _ => return None,
    };
    if path.metadata().ok()?.len() > 32 << 20 {
        return None;
    }
    Some((std::fs::read(&path).ok()?, mime))
}
