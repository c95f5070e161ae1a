//! `sweep serve`: a live, read-only web dashboard over a results database.
//!
//! It reads the SQLite file that `sweep run` writes (or a copy of it),
//! through a read-only connection (`mode=ro`, `query_only`): a running
//! sweep's recorder is never blocked (WAL readers), and the file's bytes are
//! never changed. Every asset (HTML, CSS, the charts' JavaScript, written
//! here, not vendored) is inside the binary; the page loads nothing from
//! anywhere else.
//!
//! **Why axum**: the coordinator already runs on tokio, and axum is the
//! tokio project's own HTTP framework (on hyper), so it adds a router and
//! typed extractors and no second runtime or executor. Built with
//! `default-features = false`: HTTP/1 only, no WebSocket, no multipart, no
//! tracing. The page follows a running sweep by polling small JSON
//! endpoints once a second instead of holding a socket open, which keeps the
//! server stateless and 50 open pages cheap: they share one snapshot per
//! sweep ([`snapshot::Cache`]), rebuilt only when the database has moved.
//!
//! Safety: binds 127.0.0.1 by default; a non-loopback host needs a token
//! (given, or generated and printed once), checked on every request (query
//! `token=`, a cookie set by the first page load, or `Authorization:
//! Bearer`). Without a token, requests whose `Host` is not a loopback name
//! are refused, so a web page cannot reach the server by DNS rebinding.
//!
//! Must never write to the database or import the spec or the coordinator.
#![deny(clippy::print_stderr)]
pub mod api;
pub mod importance;
pub mod snapshot;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use sweep_store::db::StoreError;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "--host {host} is not a loopback address: anyone who can reach it could read the database, so it needs --token TOKEN (or --token generate to have one made and printed)"
    )]
    TokenRequired { host: String },
    #[error("--token must be at least 16 characters of letters, digits, '-' or '_' (got {len})")]
    WeakToken { len: usize },
    #[error("--host {0:?} is not an IP address; use e.g. 127.0.0.1, ::1 or 0.0.0.0")]
    BadHost(String),
    #[error(
        "cannot listen on {addr}: {source}; pick another --port (0 picks a free one) or stop what uses it"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// True when the user's flags or files are wrong (exit 2), false when the machine failed.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ServeError::Store(_) => false,
            ServeError::TokenRequired { .. }
            | ServeError::WeakToken { .. }
            | ServeError::BadHost(_)
            | ServeError::Bind { .. } => true,
            ServeError::Io(_) => false,
        }
    }
}

/// What `sweep serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: PathBuf,
    /// Where the trials' folders (attempt logs) are: `<results>/<sweep>/<trial>/`.
    pub results: PathBuf,
    pub host: String,
    pub port: u16,
    /// `None`: none (loopback only); `Some("generate")`: make one.
    pub token: Option<String>,
    /// Open the page in the desktop's browser (`xdg-open`/`open`).
    pub open: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub cache: Arc<snapshot::Cache>,
    pub results: PathBuf,
    token: Option<Arc<str>>,
    loopback: bool,
}

fn is_loopback_host(h: &str) -> bool {
    let host = match h.rsplit_once(':') {
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost:8080`
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "sweep_token")
        .map(|(_, v)| v.to_string())
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The token rule, and headers every response carries.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mut set_cookie = None;
    match &st.token {
        Some(token) => {
            let from_query = query_token(req.uri());
            let given = from_query
                .clone()
                .or_else(|| cookie_token(req.headers()))
                .or_else(|| {
                    req.headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::to_string)
                });
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return (
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: open the URL `sweep serve` printed (…?token=…)\n",
                )
                    .into_response();
            }
            if from_query.is_some() {
                set_cookie = Some(format!(
                    "sweep_token={token}; Path=/; HttpOnly; SameSite=Strict"
                ));
            }
        }
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if st.loopback && !is_loopback_host(host) {
                return (
                    StatusCode::FORBIDDEN,
                    "this dashboard answers only to localhost, 127.0.0.1 or [::1]; to reach it from another machine, forward a port (ssh -L 8080:127.0.0.1:8080 HOST) or serve with --host and --token\n",
                )
                    .into_response();
            }
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The page runs only its own script; no inline script, nothing from elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

fn asset(body: &'static str, mime: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "not found"})),
    )
        .into_response()
}

/// The router, for the server and for tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/sweep/{name}", get(index))
        .route("/trial/{id}", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
        )
        .route("/api/sweeps", get(api::sweeps))
        .route("/api/sweeps/{name}", get(api::sweep))
        .route("/api/sweeps/{name}/trials", get(api::trials))
        .route("/api/sweeps/{name}/curves", get(api::curves))
        .route("/api/sweeps/{name}/train_loss", get(api::train_loss))
        .route("/api/sweeps/{name}/best", get(api::best))
        .route("/api/sweeps/{name}/points", get(api::points))
        .route("/api/sweeps/{name}/importance", get(api::importance))
        .route("/api/sweeps/{name}/timeline", get(api::timeline))
        .route("/api/sweeps/{name}/decisions", get(api::decisions))
        .route("/api/trials/{id}", get(api::trial))
        .route("/api/trials/{id}/metrics", get(api::trial_metrics))
        .route("/api/trials/{id}/log/{attempt}", get(api::trial_log))
        .route("/api/trials/{id}/image", get(api::trial_image))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn generate_token() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..32)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// How many of the newest sweeps are read at start, before anyone asks.
const WARM_SWEEPS: usize = 3;

/// Opens the database, binds, prints the URL on stdout, and serves until
/// Ctrl-C (or SIGTERM).
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let ip: IpAddr = opts
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| ServeError::BadHost(opts.host.clone()))?;
    let token: Option<String> = match opts.token.as_deref() {
        Some("generate") => Some(generate_token()),
        Some(t) => {
            if t.len() < 16
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ServeError::WeakToken { len: t.len() });
            }
            Some(t.to_string())
        }
        None if ip.is_loopback() => None,
        None => {
            return Err(ServeError::TokenRequired {
                host: opts.host.clone(),
            });
        }
    };
    let pool = sweep_store::serve_queries::open_read_only(&opts.db).await?;
    let probe = sweep_store::serve_queries::change_probe(&opts.db).await?;
    let state = AppState {
        cache: Arc::new(snapshot::Cache::new(pool, probe)),
        results: opts.results.clone(),
        token: token.as_deref().map(Arc::from),
        loopback: ip.is_loopback(),
    };
    // Build the newest sweeps' snapshots now, in the background: by the
    // time a person opens the page (seconds later), a 10,000-trial sweep's
    // first build (a few hundred milliseconds) is done.
    {
        let cache = state.cache.clone();
        tokio::spawn(async move {
            match sweep_store::serve_queries::sweeps(cache.pool()).await {
                Ok(rows) => {
                    for r in rows.iter().take(WARM_SWEEPS) {
                        if let Err(e) = cache.get(&r.name).await {
                            sweep_protocol::log!("serve: reading sweep {}: {e}", r.name);
                        }
                    }
                }
                Err(e) => sweep_protocol::log!("serve: listing the sweeps: {e}"),
            }
        });
    }
    let addr = SocketAddr::new(ip, opts.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    let shown_host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let url = match &token {
        Some(t) => format!("http://{shown_host}:{}/?token={t}", bound.port()),
        None => format!("http://{shown_host}:{}/", bound.port()),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sweep serve: {} (read-only) at {url}",
            opts.db.display()
        );
        let _ = writeln!(out, "press Ctrl-C to stop");
        let _ = out.flush();
    }
    if opts.open {
        open_browser(&url);
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => {}
        Err(e) => sweep_protocol::log!("--open: cannot run {opener} ({e}); open {url} by hand"),
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `sweep report --importance`: the importance table of a sweep, as text.
pub async fn importance_table(
    pool: &sqlx::SqlitePool,
    sweep: &str,
) -> Result<Option<String>, sqlx::Error> {
    let Some(s) = snapshot::Snapshot::load(pool, sweep, None).await? else {
        return Ok(None);
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for t in &s.trials {
        if let Some(y) = t.best.filter(|y| y.is_finite()) {
            xs.push(t.params.clone());
            ys.push(y);
        }
    }
    let r = importance::compute(&s.params, &xs, &ys, s.maximize);
    let mut out = format!(
        "parameter importance for {} ({}, {} better), from {} trials with a value:\n",
        s.sweep.name,
        s.sweep.metric,
        if s.maximize { "higher" } else { "lower" },
        ys.len()
    );
    if r.is_empty() {
        out.push_str("  no parameter varies between the trials\n");
        return Ok(Some(out));
    }
    let w = r
        .iter()
        .map(|i| i.name.chars().count())
        .max()
        .unwrap_or(9)
        .max(9);
    out.push_str(&format!(
        "  {:<w$}  {:>9}  {:>10}  {:>6}\n",
        "parameter", "PED-ANOVA", "Spearman ρ", "trials"
    ));
    for i in &r {
        let ped = i.ped_anova.map_or("—".to_string(), |v| format!("{v:.3}"));
        let rho = i.spearman.map_or("—".to_string(), |v| format!("{v:+.3}"));
        out.push_str(&format!(
            "  {:<w$}  {ped:>9}  {rho:>10}  {:>6}\n",
            i.name, i.trials
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_and_others_not() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
