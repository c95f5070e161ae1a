//! `sweep export`: TensorBoard event files read back with TensorBoard's own
//! reader (tests/read_tensorboard.py, the PyPI `tensorboard` package in the
//! venv of `prerequisites::export_python`), idempotent re-export, a cut tail
//! repaired, `--follow` over a running sweep, and the CSV files parsed back
//! and snapshot.
use crate::common::{Db, EXIT_BAD_INPUT, Scratch, prerequisites, repo_path};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// (tag, step, value bits, wall-time bits), sorted: a multiset of scalars.
pub(crate) type Scalars = Vec<(String, i64, u64, u64)>;

/// Class names in three scripts, added to every trial's per-class test results.
const CLASSES: [&str; 3] = ["猫", "قطة", "кошка"];

pub(crate) fn finished_sweep(s: &Scratch, name: &str) -> PathBuf {
    let file = s
        .sweep_file(name)
        .tiny_training()
        .grid("lr = [0.01, 0.05]")
        .write();
    s.run(&file).fake_worker("ok").output().expect_success();
    let db = s.open_db();
    for (i, c) in CLASSES.iter().enumerate() {
        db.execute(&format!(
            "INSERT INTO class_accuracy (trial_id, class, correct, total, accuracy)
             SELECT id, '{c}', {i}, 3, {i} / 3.0 FROM trials"
        ));
    }
    file
}

/// What the database says each trial's run folder must show: its values
/// rounded to float32, as the export writes them for TensorBoard.
pub(crate) fn expected(db: &Db) -> BTreeMap<String, Scalars> {
    let mut out = expected_exact(db);
    for rows in out.values_mut() {
        for r in rows.iter_mut() {
            r.2 = f64::from(f64::from_bits(r.2) as f32).to_bits();
        }
        rows.sort();
    }
    out
}

/// Every scalar of the database as (tag, step, value bits, time bits), exactly.
pub(crate) fn expected_exact(db: &Db) -> BTreeMap<String, Scalars> {
    let mut out: BTreeMap<String, Scalars> = BTreeMap::new();
    for (trial, split, name, step, value, time) in db
        .query::<(String, String, String, i64, f64, f64)>(
            "SELECT trial_id, split, name, step, value, time FROM metrics",
        )
    {
        out.entry(trial).or_default().push((
            format!("{split}/{name}"),
            step,
            value.to_bits(),
            time.to_bits(),
        ));
    }
    for (trial, loss, acc, time, step) in db.query::<(String, f64, f64, f64, i64)>(
        "SELECT r.trial_id, r.loss, r.accuracy, r.time,
                (SELECT m.step FROM metrics m WHERE m.trial_id = r.trial_id AND m.split = 'valid' AND m.epoch = r.epoch LIMIT 1)
         FROM test_results r",
    ) {
        let rows = out.entry(trial.clone()).or_default();
        rows.push(("test/loss".into(), step, loss.to_bits(), time.to_bits()));
        rows.push(("test/accuracy".into(), step, acc.to_bits(), time.to_bits()));
        for (class, acc) in db.query_with::<(String, f64)>(
            "SELECT class, accuracy FROM class_accuracy WHERE trial_id = ?",
            &[&trial],
        ) {
            rows.push((format!("test/class_accuracy/{class}"), step, acc.to_bits(), time.to_bits()));
        }
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// TensorBoard's reading of LOGDIR (see tests/read_tensorboard.py).
pub(crate) fn read_back(python: &Path, logdir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .arg(repo_path("tests/read_tensorboard.py"))
        .arg(logdir)
        .output()
        .expect("run tests/read_tensorboard.py");
    assert!(
        out.status.success(),
        "read_tensorboard.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("read_tensorboard.py prints JSON")
}

pub(crate) fn scalars_of(read: &serde_json::Value, run: &str) -> Scalars {
    let mut rows: Scalars = read["runs"][run]["scalars"]
        .as_array()
        .unwrap_or_else(|| panic!("no run {run} in {read}"))
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_i64().unwrap(),
                r[2].as_u64().unwrap(),
                r[3].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Every file below `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            let meta = e.metadata().unwrap();
            out.insert(
                e.path(),
                (std::fs::read(e.path()).unwrap(), meta.modified().unwrap()),
            );
        }
    }
    out
}

fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("tfevents"))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one event file in {}: {files:?}",
        dir.display()
    );
    files.into_iter().next().unwrap()
}

pub(crate) fn assert_equals_db(read: &serde_json::Value, want: &BTreeMap<String, Scalars>) {
    for (trial, rows) in want {
        assert_eq!(
            &scalars_of(read, trial),
            rows,
            "trial {trial}: TensorBoard's scalars differ from the database"
        );
    }
}

#[test]
fn tensorboard_reads_back_the_database_exactly_and_reexport_writes_nothing() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    finished_sweep(&s, "tb");
    let db = s.open_db();
    let want = expected(&db);
    assert_eq!(want.len(), 2);
    assert!(want.values().all(|r| r.len() > 20), "{want:?}");

    let out = s.path("tb-out");
    s.sweep(&["export", "tensorboard"])
        .arg(&out)
        .output()
        .expect_success();
    let logdir = out.join("tb");
    let read = read_back(&python, &logdir);
    assert_equals_db(&read, &want);

    // HParams: the experiment (the sweep's metric first) and each session.
    let exp = &read["experiment"];
    assert_eq!(exp["metrics"][0], "valid/accuracy", "{exp}");
    // What the sweep varies comes first, flagged `differs` (TensorBoard
    // shows those columns first); the constant settings are not flagged.
    assert_eq!(exp["hparams"][0][0], "lr", "{exp}");
    let differs: Vec<&str> = exp["hparams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[2] == true)
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(
        differs.contains(&"lr") && !differs.contains(&"image_size"),
        "{exp}"
    );
    assert!(
        exp["hparams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "lr" && h[1] == "DATA_TYPE_FLOAT64"),
        "{exp}"
    );
    for (trial, params) in db.query::<(String, String)>("SELECT id, params FROM trials") {
        let params: serde_json::Value = serde_json::from_str(&params).unwrap();
        let run = &read["runs"][&trial];
        assert_eq!(run["hparams"]["lr"], params["lr"], "{run}");
        assert_eq!(run["hparams"]["backbone"], params["backbone"], "{run}");
        assert_eq!(run["session_end"], "STATUS_SUCCESS", "{run}");
    }

    // A second export of the finished sweep writes nothing.
    let before = snapshot(&out);
    let again = s.sweep(&["export", "tensorboard"]).arg(&out).output();
    again.expect_success();
    assert!(
        again.stderr.contains(" 0 record(s) written"),
        "{}",
        again.stderr
    );
    assert_eq!(snapshot(&out), before, "a second export changed files");

    // A tail cut mid-record (what a kill -9 mid-write leaves): TensorBoard
    // reads what is whole; the next export repairs the file and completes it.
    let trial = want.keys().next().unwrap();
    let file = event_file(&logdir.join(trial));
    let full = std::fs::read(&file).unwrap();
    // The last records are the session's end and the per-class test results.
    std::fs::write(&file, &full[..full.len() - 150]).unwrap();
    let cut = read_back(&python, &logdir);
    let cut_rows = scalars_of(&cut, trial);
    assert!(
        cut_rows.len() < want[trial].len() && cut_rows.iter().all(|r| want[trial].contains(r)),
        "{cut_rows:?}"
    );
    assert!(cut["runs"][trial]["session_end"].is_null());
    let repair = s.sweep(&["export", "tensorboard"]).arg(&out).output();
    repair.expect_success();
    assert!(repair.stderr.contains("1 repaired"), "{}", repair.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), full);
    assert_equals_db(&read_back(&python, &logdir), &want);

    // A resumed trial replaying a step with a new value: the file is
    // rewritten as the next generation, never holding the step twice.
    db.execute(&format!(
        "UPDATE metrics SET value = value + 1, time = time + 1 WHERE trial_id = '{trial}' AND split = 'train' AND step = 1"
    ));
    s.sweep(&["export", "tensorboard"])
        .arg(&out)
        .output()
        .expect_success();
    let rewritten = event_file(&logdir.join(trial));
    assert_ne!(
        rewritten, file,
        "a changed past must start a new generation"
    );
    assert_equals_db(&read_back(&python, &logdir), &expected(&db));
}

/// One HTTP/1.0 request to 127.0.0.1:`port`; the answer's body, if 200.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        c,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    c.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// `tensorboard --logdir` as users start it: its default (Rust) loader.
struct TensorboardServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for TensorboardServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tensorboard_with_its_default_loader_shows_the_scalars_and_hparams_metrics() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    finished_sweep(&s, "tb");
    let db = s.open_db();
    let want = expected(&db);
    let out = s.path("tb-out");
    s.sweep(&["export", "tensorboard"])
        .arg(&out)
        .output()
        .expect_success();
    let port = free_port();
    let server = TensorboardServer {
        child: std::process::Command::new(&python)
            .args(["-m", "tensorboard.main", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--logdir")
            .arg(out.join("tb"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(s.path("tensorboard.log")).unwrap())
            .spawn()
            .expect("start tensorboard"),
        port,
    };
    // Every trial's tags, once the server has loaded them.
    let start = Instant::now();
    let tags: serde_json::Value = loop {
        if let Some(body) = http(server.port, "GET", "/data/plugin/scalars/tags", "")
            && let Ok(tags) = serde_json::from_str::<serde_json::Value>(&body)
            && want.keys().all(|t| tags[t].get("valid/accuracy").is_some())
        {
            break tags;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "tensorboard did not list the scalars within 120 s:\n{}",
            std::fs::read_to_string(s.path("tensorboard.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (trial, rows) in &want {
        let mut names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        names.dedup();
        let mut listed: Vec<&str> = tags[trial]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        listed.sort();
        assert_eq!(listed, names, "trial {trial}");
    }
    // The HParams tab's table: each session with its last validation accuracy.
    let groups = http(
        server.port,
        "POST",
        "/data/plugin/hparams/session_groups",
        r#"{"experimentName": "", "includeMetrics": true, "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"], "colParams": [], "startIndex": 0, "sliceSize": 100}"#,
    )
    .expect("session_groups answers 200");
    let groups: serde_json::Value = serde_json::from_str(&groups).unwrap();
    let groups = groups["sessionGroups"].as_array().unwrap();
    assert_eq!(groups.len(), want.len(), "{groups:?}");
    for g in groups {
        let trial = g["name"].as_str().unwrap();
        let last = want[trial]
            .iter()
            .filter(|r| r.0 == "valid/accuracy")
            .max_by_key(|r| r.1)
            .unwrap();
        let shown = g["metricValues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"]["tag"] == "valid/accuracy")
            .unwrap_or_else(|| panic!("no valid/accuracy for {trial}: {g}"));
        assert_eq!(
            shown["value"].as_f64().map(f64::to_bits),
            Some(last.2),
            "{g}"
        );
    }
}

#[test]
fn tensorboard_follow_exports_while_the_sweep_runs_and_ends_with_it() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    let file = s.sweep_file("live").tiny_training().write();
    let limit = Duration::from_secs(120);
    let (run, db) = run_blocked_after_first_epoch(&s, &file, limit);
    let out = s.path("live-out");
    let follow = s
        .sweep(&[
            "export",
            "tensorboard",
            "--follow",
            "--interval",
            "0.1",
            "--sweep",
            "live",
        ])
        .arg(&out)
        .spawn();
    let trial: String = db.scalar("SELECT id FROM trials");
    wait_for_first_epoch_in_tensorboard(&python, &out.join("live"), &db, &trial, limit);
    std::fs::write(s.fake_dir().join("release"), b"").unwrap();
    run.finish_within(limit).expect_success();
    // --follow ends by itself once the sweep is done, with everything exported.
    follow.finish_within(limit).expect_success();
    let read = read_back(&python, &out.join("live"));
    assert_equals_db(&read, &expected(&db));
    assert_eq!(read["runs"][&trial]["session_end"], "STATUS_SUCCESS");
}

/// `sweep run FILE` with the stand-in worker in `block` mode (it records its
/// first epoch, then waits for FAKE_DIR/release), returned once that epoch is
/// in the database.
pub(crate) fn run_blocked_after_first_epoch(
    s: &Scratch,
    file: &Path,
    limit: Duration,
) -> (crate::common::Running, Db) {
    let run = s
        .run(file)
        .fake_worker("block")
        .env("FAKE_TIMEOUT", "120")
        .spawn();
    let start = Instant::now();
    // The worker says `ready` once its first epoch is out; then the coordinator records it.
    let events = s.fake_dir().join("events");
    while !std::fs::read_to_string(&events).is_ok_and(|e| e.contains("ready ")) {
        assert!(
            start.elapsed() < limit,
            "the worker was not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = s.open_db();
    while db
        .try_rows("SELECT 1 FROM metrics WHERE split = 'valid'")
        .map_or(true, |r| r.is_empty())
    {
        assert!(
            start.elapsed() < limit,
            "no epoch recorded within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (run, db)
}

/// Waits until TensorBoard reads from LOGDIR exactly `trial`'s rows so far
/// (its first epoch), with the trial not ended yet.
pub(crate) fn wait_for_first_epoch_in_tensorboard(
    python: &Path,
    logdir: &Path,
    db: &Db,
    trial: &str,
    limit: Duration,
) {
    let start = Instant::now();
    let first_epoch = expected(db)[trial].clone();
    loop {
        if event_file_if_any(&logdir.join(trial)).is_some() {
            let read = read_back(python, logdir);
            if read["runs"][trial]["scalars"]
                .as_array()
                .is_some_and(|r| r.len() >= first_epoch.len())
            {
                assert_eq!(scalars_of(&read, trial), first_epoch);
                assert!(
                    read["runs"][trial]["session_end"].is_null(),
                    "the trial has not ended yet"
                );
                return;
            }
        }
        assert!(
            start.elapsed() < limit,
            "the first epoch was not exported within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn event_file_if_any(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("tfevents"))
}

/// A database written by hand, so the CSV snapshot is the same on every run.
pub(crate) fn hand_made_db(s: &Scratch) -> Db {
    let db = Db::create_with_schema(&s.db());
    db.execute(
        "INSERT INTO sweeps (id, name, file, toml, metric, dataset, status, created_at, updated_at)
         VALUES (1, 'cats', 'cats.toml', '', 'val_loss', 'data', 'done', 1700000000.25, 1700000100.5)",
    );
    let trials = [
        (
            "a1b2c3d4e5",
            0,
            0.1,
            "done",
            r#"{"backbone":"resnet18","lr":0.1,"augment":["hflip"],"note":"a, \"quoted\" value","pretrained":null}"#,
        ),
        (
            "f6e5d4c3b2",
            1,
            0.30000000000000004,
            "failed",
            r#"{"backbone":"resnet18","lr":0.30000000000000004,"augment":[],"note":"猫 قطة"}"#,
        ),
    ];
    for (id, ord, lr, status, params) in trials {
        db.execute(&format!(
            "INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, device, epochs_done, created_at)
             VALUES ('{id}', 1, {ord}, '{}', 'resnet18', {lr}, 2, 8, 32, 0, '{status}', 'cpu', 1, 1700000001.0)",
            params.replace('\'', "''")
        ));
        db.execute(&format!(
            "INSERT INTO attempts (trial_id, attempt, started_at, error_class) VALUES ('{id}', 1, 1700000002.0, {})",
            if status == "failed" { "'oom'" } else { "NULL" }
        ));
        for (split, step, name, value) in [
            ("train", 2, "loss", 1.0 / 3.0),
            ("train", 2, "lr", lr),
            ("valid", 4, "accuracy", 0.1 + 0.2),
        ] {
            db.execute(&format!(
                "INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time)
                 VALUES ('{id}', 1, '{split}', 1, {}, {step}, '{name}', {value:?}, 1700000003.125)",
                if split == "train" { 2 } else { 0 }
            ));
        }
    }
    db.execute("INSERT INTO test_results (trial_id, loss, accuracy, n, epoch, time) VALUES ('a1b2c3d4e5', 0.5, 0.75, 8, 1, 1700000004.0)");
    db
}

#[test]
fn csv_files_parse_back_to_the_database() {
    let s = Scratch::new();
    let db = hand_made_db(&s);
    let out = s.path("csv");
    s.sweep(&["export", "csv"])
        .arg(&out)
        .output()
        .expect_success();
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let trials = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    insta::assert_snapshot!("metrics_csv", metrics);
    insta::assert_snapshot!("trials_csv", trials);

    // Parsed back (as pandas would), every value is the database's, bit for bit.
    let mut rows: Vec<(String, String, i64, u64)> = Vec::new();
    let mut lines = metrics.lines();
    assert_eq!(
        lines.next(),
        Some("sweep,trial,attempt,split,epoch,batch,step,name,value,time")
    );
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        rows.push((
            f[1].to_string(),
            format!("{}/{}", f[3], f[7]),
            f[6].parse().unwrap(),
            f[8].parse::<f64>().unwrap().to_bits(),
        ));
    }
    rows.sort();
    let mut want: Vec<(String, String, i64, u64)> = db
        .query::<(String, String, String, i64, f64)>(
            "SELECT trial_id, split, name, step, value FROM metrics",
        )
        .into_iter()
        .map(|(t, sp, n, st, v)| (t, format!("{sp}/{n}"), st, v.to_bits()))
        .collect();
    want.sort();
    assert_eq!(rows, want);

    // Unchanged data: the files are not written again.
    let before = snapshot(&out);
    let again = s.sweep(&["export", "csv"]).arg(&out).output();
    again.expect_success();
    assert!(again.stderr.contains("(unchanged)"), "{}", again.stderr);
    assert_eq!(snapshot(&out), before);
}

#[test]
fn export_refuses_a_file_as_out_and_an_unknown_sweep() {
    let s = Scratch::new();
    hand_made_db(&s);
    let file = s.write("not-a-folder", "x");
    s.sweep(&["export", "tensorboard"])
        .arg(&file)
        .output()
        .expect_error(EXIT_BAD_INPUT, &["is a file"]);
    s.sweep(&["export", "csv", "--sweep", "dogs"])
        .arg(s.path("o"))
        .output()
        .expect_error(EXIT_BAD_INPUT, &["no sweep named \"dogs\"", "cats"]);
}

/// `mlflow server` (SQLite backend) on a free port, started for one test and
/// stopped with its worker processes when dropped.
pub(crate) struct MlflowServer {
    child: std::process::Child,
    pub(crate) uri: String,
}

impl MlflowServer {
    pub(crate) fn start(python: &Path, dir: &Path) -> MlflowServer {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "mlflow",
                "server",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.join("artifacts"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.join("mlflow.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("mlflow.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while !health_ok(port) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "mlflow server did not answer /health within 120 s:\n{}",
                std::fs::read_to_string(dir.join("mlflow.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    if c.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

pub(crate) fn read_mlflow(python: &Path, uri: &str, experiment: &str) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .arg(repo_path("tests/read_mlflow.py"))
        .args([uri, experiment])
        .output()
        .expect("run tests/read_mlflow.py");
    assert!(
        out.status.success(),
        "read_mlflow.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v[experiment].clone()
}

/// What each trial's run must hold: (key, step, timestamp ms, value bits), sorted.
pub(crate) fn expected_mlflow(db: &Db) -> BTreeMap<String, Vec<(String, i64, i64, u64)>> {
    expected_exact(db)
        .into_iter()
        .map(|(trial, rows)| {
            let mut rows: Vec<_> = rows
                .into_iter()
                .map(|(tag, step, v, t)| {
                    (tag, step, (f64::from_bits(t) * 1000.0).round() as i64, v)
                })
                .collect();
            rows.sort();
            (trial, rows)
        })
        .collect()
}

pub(crate) fn assert_mlflow_equals_db(read: &serde_json::Value, db: &Db) {
    let want = expected_mlflow(db);
    assert_eq!(
        read.as_object().map(|o| o.len()),
        Some(want.len()),
        "{read}"
    );
    for (trial, rows) in &want {
        let run = &read[trial];
        let got: Vec<(String, i64, i64, u64)> = run["metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("no run for trial {trial}: {read}"))
            .iter()
            .map(|m| {
                (
                    m[0].as_str().unwrap().to_string(),
                    m[1].as_i64().unwrap(),
                    m[2].as_i64().unwrap(),
                    m[3].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            &got, rows,
            "trial {trial}: MLflow's metric history differs from the database"
        );
    }
    for (trial, params, status) in
        db.query::<(String, String, String)>("SELECT id, params, status FROM trials")
    {
        let run = &read[&trial];
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&params).unwrap();
        for (k, v) in params {
            let want = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            assert_eq!(run["params"][&k], want.as_str(), "trial {trial} param {k}");
        }
        assert_eq!(run["tags"]["sweep.status"], status.as_str());
        let mlflow_status = match status.as_str() {
            "done" => "FINISHED",
            "failed" => "FAILED",
            _ => "KILLED",
        };
        assert_eq!(run["status"], mlflow_status, "{run}");
    }
}

#[test]
fn mlflow_reads_back_the_database_and_reexport_changes_nothing() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    finished_sweep(&s, "ml");
    let db = s.open_db();
    let server = MlflowServer::start(&python, &s.fresh_dir("mlflow"));

    // An export that got only part of the way (as one killed mid-run would):
    // a copy of the database without the second epoch and the test results.
    let partial = s.path("partial.db");
    std::fs::copy(s.db(), &partial).unwrap();
    let p = Db::open(&partial);
    p.execute("DELETE FROM metrics WHERE epoch = 2");
    p.execute("DELETE FROM test_results");
    p.execute("UPDATE trials SET status = 'running', finished_at = NULL");
    s.sweep(&["export", "mlflow", "--tracking-uri", &server.uri])
        .db(&partial)
        .output()
        .expect_success();

    // The rerun over the whole database completes every run, duplicating nothing.
    let out = s
        .sweep(&["export", "mlflow", "--tracking-uri", &server.uri])
        .output();
    out.expect_success();
    assert!(out.stderr.contains("0 created"), "{}", out.stderr);
    let read = read_mlflow(&python, &server.uri, "ml");
    assert_mlflow_equals_db(&read, &db);

    // A second export of the finished sweep changes nothing.
    let again = s
        .sweep(&["export", "mlflow", "--tracking-uri", &server.uri])
        .output();
    again.expect_success();
    assert!(
        again
            .stderr
            .contains("0 param(s), 0 tag(s), 0 metric value(s) logged, 0 status(es) updated"),
        "{}",
        again.stderr
    );
    assert_eq!(read_mlflow(&python, &server.uri, "ml"), read);
}

#[test]
fn mlflow_unreachable_is_a_clear_error() {
    let s = Scratch::new();
    hand_made_db(&s);
    let uri = format!("http://127.0.0.1:{}", free_port());
    s.sweep(&["export", "mlflow", "--tracking-uri", &uri])
        .env("MLFLOW_TRACKING_USERNAME", "me")
        .env("MLFLOW_TRACKING_PASSWORD", "hunter2")
        .output()
        .expect_error(
            crate::common::EXIT_FAILED,
            &["cannot reach the MLflow server at", &uri],
        );
    let out = s
        .sweep(&[
            "export",
            "mlflow",
            "--tracking-uri",
            "http://me:hunter2@127.0.0.1:1",
        ])
        .output();
    out.expect_error(crate::common::EXIT_FAILED, &["http://***@127.0.0.1:1"]);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}
