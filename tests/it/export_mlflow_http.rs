//! `sweep export mlflow` against a scripted stand-in for an MLflow server (a
//! few lines of HTTP on a free port), for what a real server will not do on
//! demand: demand credentials, fail with 5xx, drop a connection, refuse a
//! request with 4xx. Every request it got is kept, to count the tries and
//! read the headers.
use super::export::hand_made_db;
use crate::common::{EXIT_BAD_INPUT, EXIT_FAILED, Out, Scratch, Sweep};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// The path without the query, less `/api/2.0/mlflow/`.
    endpoint: String,
    authorization: Option<String>,
}

/// What the stand-in does with a request.
enum Reply {
    /// An HTTP status and a JSON body.
    Json(u16, String),
    /// Closes the connection without an answer.
    Drop,
}

/// `answer` is given the request and every request before it.
type Answer = dyn Fn(&Request, &[Request]) -> Reply + Send + Sync;

struct Stub {
    uri: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Stub {
    /// Listens on a free port; one request a connection (`Connection: close`).
    /// The thread lives as long as the test binary.
    fn start(answer: Box<Answer>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Request>>> = Arc::default();
        let kept = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&conn) else {
                    continue;
                };
                let before = kept.lock().unwrap().clone();
                let reply = answer(&req, &before);
                kept.lock().unwrap().push(req);
                if let Reply::Json(status, body) = reply {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Stub { uri, got }
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, endpoint: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let endpoint = target
        .split('?')
        .next()?
        .trim_start_matches("/api/2.0/mlflow/")
        .to_string();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().ok()?,
            "authorization" => authorization = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        endpoint,
        authorization,
    })
}

/// What a working MLflow server answers an export of a new experiment,
/// with runs created earlier found again by `runs/search`.
fn mlflow(req: &Request, before: &[Request]) -> Reply {
    let ok = |body: &str| Reply::Json(200, body.to_string());
    let created = before
        .iter()
        .filter(|r| r.endpoint == "runs/create")
        .count();
    match (req.method.as_str(), req.endpoint.as_str()) {
        ("GET", "experiments/get-by-name") => Reply::Json(
            404,
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}"#.into(),
        ),
        ("POST", "experiments/create") => ok(r#"{"experiment_id": "1"}"#),
        // The stand-in keeps one run; `hand_made_db`'s trials get it in turn
        // only when the test drops its creation (see the retry test).
        ("POST", "runs/search")
            if created > 0 && before.last().is_some_and(|r| r.endpoint == "runs/create") =>
        {
            ok(
                r#"{"runs": [{"info": {"run_id": "r0", "status": "RUNNING"}, "data": {"tags": [{"key": "sweep.trial_id", "value": "a1b2c3d4e5"}]}}]}"#,
            )
        }
        ("POST", "runs/search") => ok("{}"),
        ("POST", "runs/create") => ok(&format!(
            r#"{{"run": {{"info": {{"run_id": "r{created}", "status": "RUNNING"}}, "data": {{}}}}}}"#
        )),
        ("POST", "runs/log-batch") => ok("{}"),
        ("POST", "runs/update") => ok(r#"{"run_info": {}}"#),
        _ => Reply::Json(
            404,
            r#"{"error_code": "ENDPOINT_NOT_FOUND", "message": "unknown endpoint"}"#.into(),
        ),
    }
}

/// `sweep export mlflow` to `stub`, with no MLflow variables of the test's own.
fn export(s: &Scratch, stub: &Stub) -> Sweep {
    s.sweep(&["export", "mlflow", "--tracking-uri", &stub.uri])
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
}

fn assert_never_shown(out: &Out, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !out.stderr.contains(secret) && !out.stdout.contains(secret),
            "{secret:?} shown: {}",
            out.report()
        );
    }
}

#[test]
fn mlflow_sends_a_token_or_basic_auth_and_never_shows_the_password() {
    let s = Scratch::new();
    hand_made_db(&s);
    // base64 of "me:hunter2"
    let basic = "Basic bWU6aHVudGVyMg==".to_string();
    let accepted = ["Bearer t0ken-xyz".to_string(), basic.clone()];
    let stub = Stub::start(Box::new(move |req, before| match &req.authorization {
        Some(a) if accepted.contains(a) => mlflow(req, before),
        _ => Reply::Json(
            401,
            r#"{"error_code": "UNAUTHENTICATED", "message": "credentials required"}"#.into(),
        ),
    }));
    let secrets = ["t0ken-xyz", "hunter2", "wrong-pw", &basic[6..]];

    let out = export(&s, &stub)
        .env("MLFLOW_TRACKING_TOKEN", "t0ken-xyz")
        .output();
    out.expect_success();
    assert_never_shown(&out, &secrets);
    let sent = stub.requests();
    assert!(sent.len() > 5, "{sent:?}");
    assert!(
        sent.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer t0ken-xyz")),
        "{sent:?}"
    );

    let before = sent.len();
    let out = export(&s, &stub)
        .env("MLFLOW_TRACKING_USERNAME", "me")
        .env("MLFLOW_TRACKING_PASSWORD", "hunter2")
        .output();
    out.expect_success();
    assert_never_shown(&out, &secrets);
    let sent = stub.requests();
    assert!(
        sent[before..]
            .iter()
            .all(|r| r.authorization.as_deref() == Some(basic.as_str())),
        "{sent:?}"
    );

    for creds in [
        &[
            ("MLFLOW_TRACKING_USERNAME", "me"),
            ("MLFLOW_TRACKING_PASSWORD", "wrong-pw"),
        ][..],
        &[],
    ] {
        let before = stub.requests().len();
        let out = export(&s, &stub).envs(creds).output();
        out.expect_error(
            EXIT_BAD_INPUT,
            &[
                "refused the credentials (HTTP 401 on experiments/get-by-name)",
                "MLFLOW_TRACKING_TOKEN",
                "MLFLOW_TRACKING_PASSWORD",
            ],
        );
        assert_never_shown(&out, &secrets);
        assert_eq!(stub.requests().len(), before + 1, "401 is not retried");
    }
}

#[test]
fn mlflow_retries_5xx_and_dropped_connections_and_creates_a_run_once() {
    let s = Scratch::new();
    hand_made_db(&s);
    // The first request fails with 503, the second loses its connection; the
    // first runs/create is made but its answer lost.
    let stub = Stub::start(Box::new(|req, before| match before.len() {
        0 => Reply::Json(
            503,
            r#"{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}"#.into(),
        ),
        1 => Reply::Drop,
        _ if req.endpoint == "runs/create"
            && !before.iter().any(|r| r.endpoint == "runs/create") =>
        {
            Reply::Drop
        }
        _ => mlflow(req, before),
    }));
    let out = export(&s, &stub).output();
    out.expect_success();
    let sent = stub.requests();
    assert_eq!(stub.count("experiments/get-by-name"), 3, "{sent:?}");
    // The lost creation was found by the search that follows it, not made twice:
    // one runs/create for each of the two trials.
    assert_eq!(stub.count("runs/create"), 2, "{sent:?}");
    assert!(out.stderr.contains("2 run(s), 1 created"), "{}", out.stderr);

    // A server that keeps failing: a clear error once the tries are spent, exit 1.
    let down = Stub::start(Box::new(|_, _| {
        Reply::Json(502, "<html>bad gateway</html>".into())
    }));
    let out = export(&s, &down).output();
    out.expect_error(
        EXIT_FAILED,
        &[
            "cannot reach the MLflow server at",
            "(5 tries): HTTP 502: <html>bad gateway</html>",
            "check that `mlflow server` runs there",
        ],
    );
    assert_eq!(down.count("experiments/get-by-name"), 5);
}

#[test]
fn mlflow_4xx_is_a_clear_error_and_not_retried() {
    let s = Scratch::new();
    hand_made_db(&s);
    let stub = Stub::start(Box::new(|req, before| {
        if req.endpoint == "runs/create" {
            Reply::Json(
                400,
                r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid value for run_name"}"#.into(),
            )
        } else {
            mlflow(req, before)
        }
    }));
    let out = export(&s, &stub).output();
    out.expect_error(
        EXIT_FAILED,
        &["answered HTTP 400 on runs/create: Invalid value for run_name (INVALID_PARAMETER_VALUE)"],
    );
    assert_eq!(stub.count("runs/create"), 1);
}
