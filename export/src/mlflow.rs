//! `sweep export mlflow --tracking-uri URI`: one MLflow experiment per sweep
//! (or `--experiment NAME`), one run per trial, through MLflow's REST API
//! (`/api/2.0/mlflow/…`; its file store is deprecated).
//!
//! Idempotent: a trial's run is found by its `sweep.trial_id` tag and
//! brought up to date, never created twice. Parameters are logged when the
//! run lacks them (MLflow's params are immutable), tags when they differ,
//! metric entries when the run's history for that key lacks the (step,
//! timestamp, value), and the run's status and end time when they differ; a
//! second export of a finished sweep sends no write at all. Writes go through
//! `runs/log-batch` in chunks within the server's limits (1000 metrics, 100
//! params, 100 tags a request).
//!
//! Connection errors, 429 and 5xx are retried with exponential backoff; any
//! other 4xx is an error naming the endpoint and the server's message. Auth:
//! `MLFLOW_TRACKING_TOKEN` (bearer), else `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic); neither a secret nor the URI's
//! user-info ever appears in a message.
use crate::tensorboard::{Point, points};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use sweep_store::TrialStatus;
use sweep_store::export_queries::{self, ExportSweep, ExportTrial};
use sweep_store::queries;

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error(
        "--tracking-uri {0:?} is not an http:// or https:// URL; pass the MLflow server's address, e.g. http://127.0.0.1:5000"
    )]
    BadUri(String),
    #[error(
        "cannot reach the MLflow server at {uri} ({tries} tries): {reason}; check that `mlflow server` runs there and the address is right"
    )]
    Unreachable {
        uri: String,
        tries: u32,
        reason: String,
    },
    #[error(
        "the MLflow server at {uri} refused the credentials (HTTP {status} on {endpoint}); set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )]
    Auth {
        uri: String,
        status: u16,
        endpoint: String,
    },
    #[error("the MLflow server at {uri} answered HTTP {status} on {endpoint}: {message}")]
    Rejected {
        uri: String,
        status: u16,
        endpoint: String,
        message: String,
    },
    #[error(
        "the MLflow server at {uri} sent an answer on {endpoint} that is not what MLflow's REST API sends: {reason}"
    )]
    BadResponse {
        uri: String,
        endpoint: String,
        reason: String,
    },
}

/// Tries of one request (connection errors, 429, 5xx), the first included.
const TRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// log-batch limits of the MLflow server.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
/// MLflow's limit on a parameter value (characters); longer ones are cut with a mark.
const MAX_PARAM_VALUE: usize = 6000;

/// A blocking REST client for one tracking server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The URI as messages show it: without user-info.
    shown: String,
    auth: Option<String>,
}

impl Client {
    /// The client for `uri`, with credentials from the usual MLflow variables.
    pub fn new(uri: &str) -> Result<Client, MlflowError> {
        let lower = uri.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(MlflowError::BadUri(redact(uri)));
        }
        let auth = match (
            std::env::var("MLFLOW_TRACKING_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            std::env::var("MLFLOW_TRACKING_USERNAME").ok(),
            std::env::var("MLFLOW_TRACKING_PASSWORD").ok(),
        ) {
            (Some(token), _, _) => Some(format!("Bearer {token}")),
            (None, Some(user), Some(password)) => {
                use base64::Engine;
                let pair = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            _ => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client {
            agent,
            base: uri.trim_end_matches('/').to_string(),
            shown: redact(uri),
            auth,
        })
    }

    /// One REST call (`GET` with `query`, else `POST` with `body`), retried as the module says.
    fn call(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, MlflowError> {
        let mut backoff = Backoff::default();
        while backoff.next() {
            match self.try_once(endpoint, query, body) {
                Try::Done(r) => return r,
                Try::Again(why) => backoff.last = why,
            }
        }
        Err(self.unreachable(backoff))
    }

    /// One request, once: its answer, or why it is worth another try
    /// (connection error, 429, 5xx).
    fn try_once(&self, endpoint: &str, query: &[(&str, &str)], body: Option<&Value>) -> Try {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let sent = match body {
            None => {
                let mut r = self.agent.get(&url);
                for (k, v) in query {
                    r = r.query(*k, *v);
                }
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.send(b.to_string())
            }
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Try::Again(e.to_string()),
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Try::Done(match status {
            200..=299 => serde_json::from_str(&text).map_err(|e| MlflowError::BadResponse {
                uri: self.shown.clone(),
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            }),
            401 | 403 => Err(MlflowError::Auth {
                uri: self.shown.clone(),
                status,
                endpoint: endpoint.to_string(),
            }),
            429 | 500..=599 => {
                return Try::Again(format!("HTTP {status}: {}", server_message(&text)));
            }
            _ => Err(MlflowError::Rejected {
                uri: self.shown.clone(),
                status,
                endpoint: endpoint.to_string(),
                message: server_message(&text),
            }),
        })
    }

    fn unreachable(&self, backoff: Backoff) -> MlflowError {
        MlflowError::Unreachable {
            uri: self.shown.clone(),
            tries: backoff.tries,
            reason: backoff.last,
        }
    }

    fn post(&self, endpoint: &str, body: Value) -> Result<Value, MlflowError> {
        self.call(endpoint, &[], Some(&body))
    }

    fn bad(&self, endpoint: &str, reason: &str) -> MlflowError {
        MlflowError::BadResponse {
            uri: self.shown.clone(),
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The experiment's id, created if missing.
    fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self.call(
            "experiments/get-by-name",
            &[("experiment_name", name)],
            None,
        ) {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.bad("experiments/get-by-name", "no experiment_id")),
            Err(MlflowError::Rejected { status: 404, .. }) => self
                .post("experiments/create", json!({ "name": name }))?["experiment_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.bad("experiments/create", "no experiment_id")),
            Err(e) => Err(e),
        }
    }
}

/// How one request went, when it may be tried again.
enum Try {
    Done(Result<Value, MlflowError>),
    /// A connection error, 429 or 5xx: why.
    Again(String),
}

/// [`TRIES`] tries with exponential backoff between them.
#[derive(Default)]
struct Backoff {
    tries: u32,
    /// Why the last try failed.
    last: String,
}

impl Backoff {
    /// Waits before every try but the first; false once [`TRIES`] are spent.
    fn next(&mut self) -> bool {
        if self.tries >= TRIES {
            return false;
        }
        if self.tries > 0 {
            std::thread::sleep(FIRST_BACKOFF * 2u32.pow(self.tries - 1));
        }
        self.tries += 1;
        true
    }
}

/// The server's own error message (`{"error_code", "message"}`), or its text.
fn server_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v["message"].is_string() => format!(
            "{} ({})",
            v["message"].as_str().unwrap_or_default(),
            v["error_code"].as_str().unwrap_or("no error code")
        ),
        _ => text.chars().take(300).collect(),
    }
}

/// `uri` without `user:password@`.
fn redact(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => uri.to_string(),
            }
        }
        None => uri.chars().take(100).collect(),
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub runs: usize,
    pub runs_created: usize,
    pub params: usize,
    pub tags: usize,
    pub metrics: usize,
    pub statuses: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} run(s), {} created: {} param(s), {} tag(s), {} metric value(s) logged, {} status(es) updated",
            self.runs, self.runs_created, self.params, self.tags, self.metrics, self.statuses
        )
    }
}

/// A trial as MLflow gets it, read from the database before any request.
struct TrialData {
    trial: ExportTrial,
    points: Vec<Point>,
}

/// MLflow's run status for a trial's.
fn run_status(s: TrialStatus) -> &'static str {
    match s {
        // Paused: waiting at a rung to be promoted (resumed) or pruned.
        TrialStatus::Queued | TrialStatus::Paused => "SCHEDULED",
        TrialStatus::Running => "RUNNING",
        TrialStatus::Done => "FINISHED",
        TrialStatus::Failed => "FAILED",
        TrialStatus::Pruned | TrialStatus::Interrupted => "KILLED",
    }
}

fn ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// One export pass: every trial of `sweeps` brought up to date on the server.
pub async fn export(
    pool: &sqlx::SqlitePool,
    client: &Client,
    experiment: Option<&str>,
    sweeps: &[ExportSweep],
) -> Result<Tally, crate::ExportError> {
    let mut tally = Tally::default();
    for sweep in sweeps {
        let mut data = Vec::new();
        for trial in export_queries::trials(pool, sweep.id).await? {
            let metrics = export_queries::trial_metrics(pool, &trial.id).await?;
            let test = export_queries::test_result(pool, &trial.id).await?;
            let classes = queries::class_accuracy(pool, &trial.id).await?;
            data.push(TrialData {
                points: points(&metrics, test.as_ref(), &classes),
                trial,
            });
        }
        let name = experiment.unwrap_or(&sweep.name);
        // The requests block; this runtime has other threads for the rest.
        tokio::task::block_in_place(|| sync_sweep(client, name, sweep, &data, &mut tally))?;
    }
    Ok(tally)
}

fn sync_sweep(
    client: &Client,
    experiment: &str,
    sweep: &ExportSweep,
    data: &[TrialData],
    tally: &mut Tally,
) -> Result<(), MlflowError> {
    let experiment_id = client.experiment(experiment)?;
    let file_hash = format!("{:x}", sha2::Sha256::digest(sweep.toml.as_bytes()));
    for d in data {
        sync_trial(client, &experiment_id, sweep, &file_hash, d, tally)?;
        tally.runs += 1;
    }
    Ok(())
}

fn param_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(if s.chars().count() > MAX_PARAM_VALUE {
        let cut: String = s.chars().take(MAX_PARAM_VALUE - 1).collect();
        format!("{cut}…")
    } else {
        s
    })
}

fn key_values(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|kv| {
                    Some((
                        kv["key"].as_str()?.to_string(),
                        kv["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sync_trial(
    client: &Client,
    experiment_id: &str,
    sweep: &ExportSweep,
    file_hash: &str,
    d: &TrialData,
    tally: &mut Tally,
) -> Result<(), MlflowError> {
    let t = &d.trial;
    if !t.id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(client.bad(
            "runs/search",
            "a trial id that is not alphanumeric cannot be searched for",
        ));
    }
    let mut tags: BTreeMap<String, String> = BTreeMap::from([
        ("sweep.trial_id".into(), t.id.clone()),
        ("sweep.sweep".into(), sweep.name.clone()),
        ("sweep.status".into(), t.status.to_string()),
        ("sweep.file_sha256".into(), file_hash.to_string()),
        ("sweep.metric".into(), sweep.metric.clone()),
        ("mlflow.runName".into(), t.id.clone()),
    ]);
    if let Some(dev) = &t.device {
        tags.insert("sweep.device".into(), dev.clone());
    }
    if let Some(fc) = &t.failure_class {
        tags.insert("sweep.failure_class".into(), fc.clone());
    }
    let (run, created) = find_or_create(client, experiment_id, t)?;
    tally.runs_created += usize::from(created);
    let run_id = run["info"]["run_id"]
        .as_str()
        .ok_or_else(|| client.bad("runs/search", "a run without run_id"))?
        .to_string();
    let have_params = key_values(&run["data"]["params"]);
    let have_tags = key_values(&run["data"]["tags"]);

    let params: Vec<Value> = match serde_json::from_str::<Value>(&t.params) {
        Ok(Value::Object(m)) => m
            .iter()
            .filter(|(k, _)| !have_params.contains_key(*k))
            .filter_map(|(k, v)| Some(json!({"key": k, "value": param_value(v)?})))
            .collect(),
        _ => Vec::new(),
    };
    let tag_list: Vec<Value> = tags
        .iter()
        .filter(|(k, v)| have_tags.get(*k) != Some(v))
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();

    // Metric entries the run's history lacks.
    let mut by_key: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
    for p in &d.points {
        by_key.entry(p.tag.as_str()).or_default().push(p);
    }
    let logged_keys: BTreeSet<String> = run["data"]["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut metrics: Vec<Value> = Vec::new();
    for (key, pts) in by_key {
        let have = if !created && logged_keys.contains(key) {
            history(client, &run_id, key)?
        } else {
            BTreeSet::new()
        };
        for p in pts {
            if !have.contains(&(p.step, ms(p.time), p.value.to_bits())) {
                metrics.push(
                    json!({"key": key, "value": p.value, "timestamp": ms(p.time), "step": p.step}),
                );
            }
        }
    }
    tally.params += params.len();
    tally.tags += tag_list.len();
    tally.metrics += metrics.len();
    for chunk in params.chunks(MAX_PARAMS) {
        client.post("runs/log-batch", json!({"run_id": run_id, "params": chunk}))?;
    }
    for chunk in tag_list.chunks(MAX_TAGS) {
        client.post("runs/log-batch", json!({"run_id": run_id, "tags": chunk}))?;
    }
    for chunk in metrics.chunks(MAX_METRICS) {
        client.post(
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": chunk}),
        )?;
    }
    let status = run_status(t.status);
    let end = t
        .finished_at
        .filter(|_| !matches!(t.status, TrialStatus::Queued | TrialStatus::Running))
        .map(ms);
    let have_end = run["info"]["end_time"].as_i64().or_else(|| {
        run["info"]["end_time"]
            .as_str()
            .and_then(|s| s.parse().ok())
    });
    if run["info"]["status"].as_str() != Some(status) || (end.is_some() && have_end != end) {
        let mut body = json!({"run_id": run_id, "status": status});
        if let Some(e) = end {
            body["end_time"] = json!(e);
        }
        client.post("runs/update", body)?;
        tally.statuses += 1;
    }
    Ok(())
}

/// The trial's run, found by its tag, else created (and true). A
/// `runs/create` whose answer was lost (a dropped connection, a 5xx) may
/// have made the run all the same, so it is never simply sent again: the
/// search runs first on every try.
fn find_or_create(
    client: &Client,
    experiment_id: &str,
    t: &ExportTrial,
) -> Result<(Value, bool), MlflowError> {
    let mut backoff = Backoff::default();
    while backoff.next() {
        let found = client.post(
            "runs/search",
            json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`sweep.trial_id` = '{}'", t.id),
                "max_results": 2,
            }),
        )?;
        if let Some(run) = found["runs"].as_array().and_then(|r| r.first()) {
            return Ok((run.clone(), false));
        }
        let create = json!({
            "experiment_id": experiment_id,
            "run_name": t.id,
            "start_time": ms(t.started_at.unwrap_or(t.created_at)),
            "tags": [{"key": "sweep.trial_id", "value": t.id}],
        });
        match client.try_once("runs/create", &[], Some(&create)) {
            Try::Done(r) => return r.map(|v| (v["run"].clone(), true)),
            Try::Again(why) => backoff.last = why,
        }
    }
    Err(client.unreachable(backoff))
}

/// (step, timestamp, value bits) of every entry of a run's history for `key`.
fn history(
    client: &Client,
    run_id: &str,
    key: &str,
) -> Result<BTreeSet<(i64, i64, u64)>, MlflowError> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let mut q = vec![
            ("run_id", run_id),
            ("metric_key", key),
            ("max_results", "25000"),
        ];
        if !token.is_empty() {
            q.push(("page_token", token.as_str()));
        }
        let v = client.call("metrics/get-history", &q, None)?;
        for m in v["metrics"].as_array().into_iter().flatten() {
            let num = |f: &str| {
                m[f].as_i64()
                    .or_else(|| m[f].as_str().and_then(|s| s.parse().ok()))
            };
            let (Some(step), Some(ts)) = (num("step").or(Some(0)), num("timestamp")) else {
                continue;
            };
            let Some(value) = m["value"].as_f64() else {
                continue;
            };
            out.insert((step, ts, value.to_bits()));
        }
        match v["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_messages() {
        assert_eq!(
            redact("https://me:hunter2@mlflow.example/x"),
            "https://***@mlflow.example/x"
        );
        assert_eq!(redact("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        let e = Client::new("ftp://me:hunter2@x").err().unwrap().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
