//! Scheduler and signal integration tests: the real `sweep` binary drives the
//! scripted fake worker `tests/fake_worker.py` (via `SWEEP_WORKER_CMD`), so no
//! libtorch training runs. Concurrency and device assignment are proved from
//! the events the fake workers append to `FAKE_DIR/events`, never from sleeps;
//! every wait polls with a deadline.
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SWEEP: &str = env!("CARGO_BIN_EXE_sweep");
/// Longest any single coordinator run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn fake_worker() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fake_worker.py")
}

/// A temp dir with an empty ImageFolder dataset, a database path, a results
/// dir and the FAKE_DIR the fake workers report to.
struct Fixture {
    dir: tempfile::TempDir,
    logs: AtomicUsize,
}

/// A finished coordinator run.
struct Finished {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// A coordinator started in the background; its output goes to files so that
/// a chatty run can never block on a full pipe.
struct Running {
    child: Child,
    stderr: PathBuf,
    started: Instant,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn try_finish(&mut self) -> Option<Finished> {
        let status = self.child.try_wait().expect("try_wait on the coordinator")?;
        Some(Finished { code: status.code(), stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(), elapsed: self.started.elapsed() })
    }

    /// Waits up to `limit`; kills the coordinator and panics past it.
    fn finish_within(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(f) = self.try_finish() {
                return f;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("coordinator still running after {limit:?}; stderr:\n{}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave a coordinator behind (its workers die with it).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Start {
    trial: String,
    pid: i32,
    cuda: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        for split in ["train", "valid", "test"] {
            std::fs::create_dir_all(dir.path().join("data").join(split).join("a")).expect("dataset dir");
        }
        std::fs::create_dir_all(dir.path().join("fake")).expect("fake dir");
        Fixture { dir, logs: AtomicUsize::new(0) }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn db(&self) -> PathBuf {
        self.root().join("r.db")
    }

    fn fake_dir(&self) -> PathBuf {
        self.root().join("fake")
    }

    /// Writes `<name>.toml` for sweep `name` on the fixture's dataset; `body`
    /// holds the remaining tables.
    fn sweep_file(&self, name: &str, body: &str) -> PathBuf {
        let dataset = toml::Value::String(self.root().join("data").display().to_string());
        let path = self.root().join(format!("{name}.toml"));
        std::fs::write(&path, format!("[sweep]\nname = \"{name}\"\ndataset = {dataset}\n\n{body}\n")).expect("write sweep file");
        path
    }

    fn log_paths(&self) -> (PathBuf, PathBuf) {
        let n = self.logs.fetch_add(1, Ordering::SeqCst);
        (self.root().join(format!("run-{n}.out")), self.root().join(format!("run-{n}.err")))
    }

    /// `sweep --db r.db <args…>` with the fake worker and no GPUs unless the
    /// caller sets `SWEEP_FAKE_GPUS`.
    fn sweep(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SWEEP);
        c.arg("--db").arg(self.db()).args(args).current_dir(self.root());
        for v in ["SWEEP_DB", "CUDA_VISIBLE_DEVICES", "FAKE_MODE", "FAKE_BARRIER", "FAKE_STEPS", "FAKE_TIMEOUT"] {
            c.env_remove(v);
        }
        c.env("SWEEP_WORKER_CMD", fake_worker()).env("FAKE_DIR", self.fake_dir()).env("SWEEP_FAKE_GPUS", "0").stdin(Stdio::null());
        c
    }

    /// `sweep run FILE` in FAKE_MODE `mode`, with extra env vars and run args.
    fn run_cmd(&self, file: &Path, mode: &str, env: &[(&str, &str)], extra: &[&str]) -> Command {
        let mut c = self.sweep(&["run"]);
        c.arg(file).arg("--results").arg(self.root().join("results")).arg("--plain").args(extra).env("FAKE_MODE", mode);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn spawn(&self, mut cmd: Command) -> Running {
        let (out, err) = self.log_paths();
        cmd.stdout(std::fs::File::create(&out).expect("stdout log")).stderr(std::fs::File::create(&err).expect("stderr log"));
        let started = Instant::now();
        let child = cmd.spawn().expect("start sweep");
        Running { child, stderr: err, started }
    }

    fn run(&self, file: &Path, mode: &str, env: &[(&str, &str)]) -> Finished {
        self.spawn(self.run_cmd(file, mode, env, &[])).finish_within(RUN_LIMIT)
    }

    /// Every line of FAKE_DIR/events, split on whitespace.
    fn events(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.fake_dir().join("events")).unwrap_or_default().lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
    }

    fn count_events(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e.first().map(String::as_str) == Some(kind)).count()
    }

    fn starts(&self) -> Vec<Start> {
        self.events()
            .into_iter()
            .filter(|e| e.first().map(String::as_str) == Some("start"))
            .map(|e| Start { trial: e[1].clone(), pid: e[2].parse().expect("pid"), cuda: e[3].clone() })
            .collect()
    }

    /// Polls until at least `n` `kind` events were written, or panics.
    fn wait_events(&self, kind: &str, n: usize, limit: Duration, run: &mut Running) {
        let deadline = Instant::now() + limit;
        while self.count_events(kind) < n {
            if let Some(f) = run.try_finish() {
                panic!("coordinator exited ({:?}) before {n} {kind} events; stderr:\n{}", f.code, f.stderr);
            }
            assert!(Instant::now() < deadline, "fewer than {n} {kind} events after {limit:?}: {:?}", self.events());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(async {
            let opts = SqliteConnectOptions::new().filename(self.db()).busy_timeout(Duration::from_secs(30));
            let mut conn = SqliteConnection::connect_with(&opts).await.expect("open the test database");
            let rows = sqlx::query_as::<_, T>(sql).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.expect("close the test database");
            rows
        })
    }

    fn trial_statuses(&self) -> BTreeMap<String, String> {
        self.query::<(String, String)>("SELECT id, status FROM trials").into_iter().collect()
    }
}

/// Whether `pid` is still a live process (a zombie awaiting its reaper counts as gone).
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "kill({pid}, 0): {err}");
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(true),
        Err(_) => false,
    }
}

fn wait_all_dead(pids: &[i32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &live {
                // SAFETY: clean up our own stray workers before failing.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            panic!("worker processes {live:?} still alive {limit:?} after they should have died");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(pid: i32, sig: i32) {
    // SAFETY: signals a child process this test started and has not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

const GRID4: &str = "[defaults]\nepochs = 2\n\n[grid]\nlr = [0.1, 0.2, 0.3, 0.4]\n";

/// 1. Two fake GPUs × two trials per GPU: all four trials run at once, two per device.
#[test]
fn four_trials_run_at_once_on_two_fake_gpus() {
    let f = Fixture::new();
    let file = f.sweep_file("gpus", &format!("{GRID4}\n[resources]\ntrials_per_gpu = 2\nretries = 0\n"));
    // Each worker waits until all four have started: only true concurrency gets past.
    let out = f.run(&file, "ok", &[("SWEEP_FAKE_GPUS", "2"), ("FAKE_BARRIER", "4"), ("FAKE_TIMEOUT", "15")]);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("warning:"), "the ok worker's messages must all parse:\n{}", out.stderr);

    let starts = f.starts();
    assert_eq!(starts.len(), 4, "{starts:?}");
    let mut per_device: BTreeMap<String, usize> = BTreeMap::new();
    for s in &starts {
        *per_device.entry(s.cuda.clone()).or_default() += 1;
    }
    assert_eq!(per_device, BTreeMap::from([("0".to_string(), 2), ("1".to_string(), 2)]), "{starts:?}");
    assert_eq!(starts.iter().map(|s| &s.trial).collect::<BTreeSet<_>>().len(), 4, "one worker per trial: {starts:?}");

    let statuses = f.trial_statuses();
    assert_eq!(statuses.len(), 4);
    assert!(statuses.values().all(|s| s == "done"), "{statuses:?}");
    let devices = f.query::<(String, i64)>("SELECT device, COUNT(*) FROM trials GROUP BY device ORDER BY device");
    assert_eq!(devices, vec![("cuda:0".to_string(), 2), ("cuda:1".to_string(), 2)]);
    let sweep = f.query::<(String,)>("SELECT status FROM sweeps");
    assert_eq!(sweep, vec![("done".to_string(),)]);

    // Every message kind of the ok worker landed where the recorder puts it.
    let counts = f.query::<(i64, i64, i64, i64, i64, i64)>(
        "SELECT (SELECT COUNT(*) FROM test_results), (SELECT COUNT(*) FROM class_accuracy), (SELECT COUNT(*) FROM confusion),
                (SELECT COUNT(*) FROM misclassified), (SELECT COUNT(*) FROM metrics WHERE split = 'train'),
                (SELECT COUNT(*) FROM metrics WHERE split = 'valid')",
    );
    // 4 trials: 2 classes each, a 2×2 matrix, 2 misclassified items, 2 epochs × 3 steps × 4 train metrics, 2 epochs × 2 valid metrics.
    assert_eq!(counts, vec![(4, 8, 16, 8, 4 * 2 * 3 * 4, 4 * 2 * 2)]);
    let trials = f.query::<(i64, Option<f64>, Option<f64>)>("SELECT epochs_done, best_val_accuracy, wall_s FROM trials");
    assert!(trials.iter().all(|(e, v, w)| *e == 2 && v.is_some() && w.is_some()), "{trials:?}");
    let attempts = f.query::<(i64, Option<i64>, Option<String>)>("SELECT attempt, exit_code, error_class FROM attempts");
    assert_eq!(attempts, vec![(1, Some(0), None); 4]);
}

/// 2. A finished sweep reruns nothing; a new grid value runs only its trials.
#[test]
fn rerun_skips_finished_and_extension_runs_only_new_trials() {
    let f = Fixture::new();
    let body = |lrs: &str| format!("[defaults]\nepochs = 1\n\n[grid]\nlr = [{lrs}]\n\n[resources]\ncpu_workers = 2\nretries = 0\n");
    let file = f.sweep_file("rerun", &body("0.1, 0.2"));
    let first = f.run(&file, "ok", &[]);
    assert_eq!(first.code, Some(0), "stderr:\n{}", first.stderr);
    let before: BTreeSet<String> = f.starts().into_iter().map(|s| s.trial).collect();
    assert_eq!(before.len(), 2);

    let again = f.run(&file, "ok", &[]);
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.stderr);
    assert_eq!(f.starts().len(), 2, "a finished sweep must start no worker: {:?}", f.events());
    assert!(again.stderr.contains("0 to run, 2 already finished"), "stderr:\n{}", again.stderr);

    let file = f.sweep_file("rerun", &body("0.1, 0.2, 0.3"));
    let extended = f.run(&file, "ok", &[]);
    assert_eq!(extended.code, Some(0), "stderr:\n{}", extended.stderr);
    let starts = f.starts();
    assert_eq!(starts.len(), 3, "exactly one new worker: {starts:?}");
    assert!(!before.contains(&starts[2].trial), "the new worker ran an old trial: {starts:?}");
    let statuses = f.trial_statuses();
    assert_eq!(statuses.len(), 3);
    assert!(statuses.values().all(|s| s == "done"), "{statuses:?}");
    let attempts = f.query::<(String, i64)>("SELECT trial_id, COUNT(*) FROM attempts GROUP BY trial_id");
    assert!(attempts.iter().all(|(_, n)| *n == 1), "no trial may run twice: {attempts:?}");
}

/// 3. Malformed worker output is warned about (naming the trial) and skipped.
#[test]
fn garbage_lines_are_warnings_not_failures() {
    let f = Fixture::new();
    let file = f.sweep_file("garbage", "[defaults]\nepochs = 1\n\n[resources]\nretries = 0\n");
    let out = f.run(&file, "garbage", &[]);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let starts = f.starts();
    assert_eq!(starts.len(), 1);
    let trial = &starts[0].trial;
    for want in [format!("warning: trial {trial}: malformed worker line ignored"), format!("warning: trial {trial}: worker line over")] {
        assert!(out.stderr.contains(&want), "missing {want:?} in stderr:\n{}", out.stderr);
    }
    assert_eq!(f.trial_statuses().get(trial).map(String::as_str), Some("done"));
    let test = f.query::<(f64,)>("SELECT accuracy FROM test_results");
    assert_eq!(test, vec![(0.75,)]);
}

/// 4. A hung worker is killed at the timeout and retried; then the trial fails.
#[test]
fn hung_worker_times_out_and_is_retried() {
    let f = Fixture::new();
    let file = f.sweep_file("hang", "[defaults]\nepochs = 1\n\n[resources]\ntimeout = \"2s\"\nretries = 1\n");
    let out = f.run(&file, "hang", &[("FAKE_TIMEOUT", "60")]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(20), "took {:?}", out.elapsed);
    let statuses = f.trial_statuses();
    assert_eq!(statuses.values().collect::<Vec<_>>(), vec!["failed"]);
    let attempts =
        f.query::<(i64, Option<String>, Option<i64>, Option<f64>)>("SELECT attempt, error_class, signal, finished_at FROM attempts ORDER BY attempt");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (i, (n, class, signal, finished)) in attempts.iter().enumerate() {
        assert_eq!(*n, i as i64 + 1);
        assert_eq!(class.as_deref(), Some("timeout"), "{attempts:?}");
        assert_eq!(*signal, Some(libc::SIGKILL as i64), "{attempts:?}");
        assert!(finished.is_some(), "{attempts:?}");
    }
    // Under load a worker may be killed before it wrote its start event: take the pids the coordinator recorded.
    let pids: Vec<i32> = f.query::<(i64,)>("SELECT pid FROM attempts WHERE pid IS NOT NULL").into_iter().map(|(p,)| p as i32).collect();
    assert_eq!(pids.len(), 2);
    wait_all_dead(&pids, Duration::from_secs(2));
}

/// 5. How a worker failed is classified from its messages and exit status.
fn failure_is_classified(mode: &str, class: &str, exit_code: i64) {
    let f = Fixture::new();
    let file = f.sweep_file(mode, "[defaults]\nepochs = 2\n\n[resources]\nretries = 0\n");
    let out = f.run(&file, mode, &[]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert_eq!(f.trial_statuses().values().collect::<Vec<_>>(), vec!["failed"]);
    let attempts = f.query::<(Option<String>, Option<i64>, Option<f64>)>("SELECT error_class, exit_code, finished_at FROM attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].0.as_deref(), Some(class), "{attempts:?}");
    assert_eq!(attempts[0].1, Some(exit_code), "{attempts:?}");
    assert!(attempts[0].2.is_some());
    assert!(out.stderr.contains(&format!("failed: {class}")), "stderr:\n{}", out.stderr);
    assert_eq!(f.query::<(String,)>("SELECT status FROM sweeps"), vec![("failed".to_string(),)]);
}

#[test]
fn exit_0_without_done_is_a_protocol_error() {
    failure_is_classified("exit0_no_done", "protocol", 0);
}

#[test]
fn nonzero_exit_is_a_crash() {
    failure_is_classified("crash", "crash", 3);
}

#[test]
fn worker_error_message_sets_the_class() {
    failure_is_classified("error_oom", "oom", 1);
}

/// 6. Ctrl-C: workers get SIGTERM, the coordinator exits 130, nothing is left behind.
fn ctrl_c(mode: &str, grace: u64, attempt_check: impl Fn(&[(Option<String>, Option<i64>, Option<i64>)])) {
    let f = Fixture::new();
    let file = f.sweep_file(mode, "[defaults]\nepochs = 1\n\n[grid]\nlr = [0.1, 0.2]\n\n[resources]\ncpu_workers = 2\nretries = 0\n");
    let grace_arg = grace.to_string();
    let mut run = f.spawn(f.run_cmd(&file, mode, &[("FAKE_TIMEOUT", "60")], &["--grace", &grace_arg]));
    // `ready` comes after the worker's signal disposition is set and its hello is out.
    f.wait_events("ready", 2, Duration::from_secs(20), &mut run);
    let pids: Vec<i32> = f.starts().iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 2);
    let t0 = Instant::now();
    send(run.pid(), libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(grace + 10));
    let took = t0.elapsed();
    assert_eq!(out.code, Some(130), "stderr:\n{}", out.stderr);
    assert!(took < Duration::from_secs(grace + 4), "coordinator took {took:?} to stop with grace {grace}s");
    wait_all_dead(&pids, Duration::from_secs(2));
    let statuses = f.trial_statuses();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.values().all(|s| s == "interrupted"), "{statuses:?}");
    let attempts = f.query::<(Option<String>, Option<i64>, Option<i64>)>("SELECT error_class, exit_code, signal FROM attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    attempt_check(&attempts);
    assert_eq!(f.query::<(String,)>("SELECT status FROM sweeps"), vec![("interrupted".to_string(),)]);
    assert!(out.stderr.contains("interrupted; run the same command again to resume"), "stderr:\n{}", out.stderr);
}

#[test]
fn ctrl_c_stops_workers_that_honour_sigterm() {
    ctrl_c("term_ok", 10, |attempts| {
        for a in attempts {
            assert_eq!((a.0.as_deref(), a.1), (Some("interrupted"), Some(130)), "{attempts:?}");
        }
    });
}

#[test]
fn ctrl_c_kills_workers_that_ignore_sigterm_after_grace() {
    ctrl_c("ignore_term", 1, |attempts| {
        for a in attempts {
            // Killed by the coordinator itself: an interruption, not a crash.
            assert_eq!((a.0.as_deref(), a.2), (Some("interrupted"), Some(libc::SIGKILL as i64)), "{attempts:?}");
        }
    });
}

/// Ctrl-C while a failed trial waits out its retry backoff: the retry must not
/// start a worker after the interrupt.
#[test]
fn ctrl_c_during_retry_backoff_starts_no_worker() {
    let f = Fixture::new();
    let file = f.sweep_file("backoff", "[defaults]\nepochs = 1\n\n[resources]\nretries = 1\n");
    let mut run = f.spawn(f.run_cmd(&file, "crash", &[], &["--grace", "1"]));
    // Attempt 1 crashed…
    f.wait_events("end", 1, Duration::from_secs(20), &mut run);
    // …and the dispatcher has closed it and re-dispatched the trial, whose retry
    // now sits out its 1 s backoff (trial 'running', no attempt 2 yet).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = f.query::<(String, i64, i64)>(
            "SELECT t.status, (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id),
                    (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id AND a.finished_at IS NOT NULL) FROM trials t",
        );
        if state == vec![("running".to_string(), 1, 1)] {
            break;
        }
        if let Some(out) = run.try_finish() {
            panic!("coordinator exited ({:?}) before the retry was queued:\n{}", out.code, out.stderr);
        }
        assert!(Instant::now() < deadline, "retry never queued: {state:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sigint_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    send(run.pid(), libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(10));
    assert_eq!(out.code, Some(130), "stderr:\n{}", out.stderr);
    // An attempt the recorder logged well after the interrupt was launched because of a stale retry.
    let late = f.query::<(i64, f64)>(&format!("SELECT attempt, started_at FROM attempts WHERE started_at > {}", sigint_at + 0.3));
    assert!(late.is_empty(), "worker started after Ctrl-C: {late:?}; stderr:\n{}", out.stderr);
    assert_eq!(f.trial_statuses().values().collect::<Vec<_>>(), vec!["interrupted"]);
    wait_all_dead(&f.starts().iter().map(|s| s.pid).collect::<Vec<_>>(), Duration::from_secs(2));
}

/// 7. `status` and `report` never see "database is locked" while the recorder writes hard.
#[test]
fn reads_during_a_run_never_fail() {
    let f = Fixture::new();
    let file = f.sweep_file("busy", &format!("{GRID4}\n[resources]\ncpu_workers = 2\nretries = 0\n"));
    // Each worker floods 2000 train steps, then (block mode) waits for the
    // release file: the first two hold the run open until reads saw them running.
    let mut run = f.spawn(f.run_cmd(&file, "block", &[("FAKE_STEPS", "2000"), ("FAKE_TIMEOUT", "60")], &[]));
    // The sweep is registered before any worker starts.
    f.wait_events("start", 1, Duration::from_secs(20), &mut run);
    let mut reads = 0;
    let mut released = false;
    let finished = loop {
        if let Some(done) = run.try_finish() {
            break done;
        }
        for args in [&["status"][..], &["report", "--format", "json"][..]] {
            let out = f.sweep(args).output().expect("run a reader");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "`sweep {}` failed during the run ({:?}):\n{stderr}", args.join(" "), out.status.code());
            assert!(!stderr.contains("locked"), "{stderr}");
            if args[0] == "report" {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report json: {e}"));
                assert!(v.is_object(), "{v}");
            }
            reads += 1;
        }
        // Once reads have run while two trials were mid-run (and their 2000
        // steps were being written), let the blocked workers finish.
        if !released && reads >= 4 && f.query::<(i64,)>("SELECT COUNT(*) FROM trials WHERE status = 'running'") == vec![(2,)] {
            std::fs::write(f.fake_dir().join("release"), b"").expect("release file");
            released = true;
        }
        assert!(run.started.elapsed() < RUN_LIMIT, "sweep still running after {RUN_LIMIT:?}");
    };
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    assert!(released, "the sweep ended before the release file was written");
    eprintln!("{reads} reads during the run");
    let train = f.query::<(i64,)>("SELECT COUNT(*) FROM metrics WHERE split = 'train'");
    assert_eq!(train, vec![(4 * 2 * 2000 * 4,)]);
    assert!(f.trial_statuses().values().all(|s| s == "done"));
}

/// 8. `kill -9` of the coordinator: workers die with it (PDEATHSIG), and the
///    next run finishes every trial without duplicating a metric row.
#[test]
fn coordinator_kill_9_takes_workers_along_and_resume_completes() {
    let f = Fixture::new();
    let file = f.sweep_file("kill9", "[defaults]\nepochs = 2\n\n[grid]\nlr = [0.1, 0.2]\n\n[resources]\ncpu_workers = 2\nretries = 0\n");
    let mut run = f.spawn(f.run_cmd(&file, "block", &[("FAKE_STEPS", "5"), ("FAKE_TIMEOUT", "60")], &[]));
    // Both workers finished epoch 1 and now wait for a release file that never comes…
    f.wait_events("ready", 2, Duration::from_secs(20), &mut run);
    // …and the coordinator has recorded their epoch-1 metrics.
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.query::<(i64,)>("SELECT COUNT(DISTINCT trial_id) FROM metrics WHERE split = 'valid'") != vec![(2,)] {
        assert!(Instant::now() < deadline, "epoch-1 metrics never reached the database");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids: Vec<i32> = f.starts().iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 2);
    send(run.pid(), libc::SIGKILL);
    let killed = run.finish_within(Duration::from_secs(10));
    assert_eq!(killed.code, None, "killed by a signal");
    wait_all_dead(&pids, Duration::from_secs(5));
    assert!(f.trial_statuses().values().all(|s| s == "running"), "{:?}", f.trial_statuses());

    let out = f.run(&file, "ok", &[("FAKE_STEPS", "5")]);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(f.starts().len(), 4, "{:?}", f.events());
    let statuses = f.trial_statuses();
    assert!(statuses.values().all(|s| s == "done"), "{statuses:?}");
    let dups = f.query::<(String, String, i64, i64, String, i64)>(
        "SELECT trial_id, split, epoch, step, name, COUNT(*) FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1",
    );
    assert!(dups.is_empty(), "duplicate metric rows: {dups:?}");
    let train = f.query::<(i64,)>("SELECT COUNT(*) FROM metrics WHERE split = 'train'");
    assert_eq!(train, vec![(2 * 2 * 5 * 4,)]);
    let attempts =
        f.query::<(String, i64, Option<String>, Option<f64>)>("SELECT trial_id, attempt, error_class, finished_at FROM attempts ORDER BY trial_id, attempt");
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    for (_, attempt, class, finished) in &attempts {
        assert!(finished.is_some(), "{attempts:?}");
        let want = if *attempt == 1 { Some("crash") } else { None };
        assert_eq!(class.as_deref(), want, "{attempts:?}");
    }
}

#[test]
fn oom_is_retried_with_half_the_batch_size() {
    let f = Fixture::new();
    let file = f.sweep_file("oom", "[defaults]\nepochs = 1\nbatch_size = 32\n\n[resources]\nretries = 2\n");
    let out = f.run(&file, "error_oom", &[]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    let attempts = f.query::<(i64, Option<String>, Option<i64>)>("SELECT attempt, error_class, batch_size FROM attempts ORDER BY attempt");
    let got: Vec<(i64, Option<&str>, Option<i64>)> = attempts.iter().map(|(a, c, b)| (*a, c.as_deref(), *b)).collect();
    assert_eq!(got, vec![(1, Some("oom"), Some(32)), (2, Some("oom"), Some(16)), (3, Some("oom"), Some(8))]);
    assert!(out.stderr.contains("retrying with batch_size 16"), "stderr:\n{}", out.stderr);
    // The trial keeps its identity: one trial row, whose params still say 32.
    assert_eq!(f.query::<(i64,)>("SELECT json_extract(params, '$.batch_size') FROM trials"), vec![(32,)]);
}

#[test]
fn a_second_coordinator_for_the_same_sweep_refuses() {
    let f = Fixture::new();
    let file = f.sweep_file("twice", "[defaults]\nepochs = 2\n\n[resources]\nretries = 0\n");
    let mut first = f.spawn(f.run_cmd(&file, "block", &[("FAKE_TIMEOUT", "60")], &[]));
    f.wait_events("ready", 1, Duration::from_secs(20), &mut first);
    let second = f.run(&file, "ok", &[]);
    assert_eq!(second.code, Some(2), "stderr:\n{}", second.stderr);
    assert!(second.stderr.contains("is already running (coordinator pid"), "stderr:\n{}", second.stderr);
    assert_eq!(f.starts().len(), 1, "the second coordinator started no worker");
    std::fs::write(f.fake_dir().join("release"), b"").expect("release file");
    let out = first.finish_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(f.query::<(i64,)>("SELECT COUNT(*) FROM attempts"), vec![(1,)]);
}
