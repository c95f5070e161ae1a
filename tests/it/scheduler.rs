//! Scheduler and signal integration tests: the real `sweep` binary drives the
//! scripted fake worker `tests/fake_worker.py` (via `SWEEP_WORKER_CMD`), so no
//! libtorch training runs. Concurrency and device assignment are proved from
//! the events the fake workers append to `FAKE_DIR/events`, never from sleeps;
//! every wait polls with a deadline.
use crate::common;

use common::{Db, Running, Scratch, SweepFile, assert_all_die};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Longest any single coordinator run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The least ImageFolder that plans (the fake worker reads no images).
fn scratch() -> Scratch {
    Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"])
}

/// Sweep `name` with `[defaults]` and `[resources]` given.
fn sweep_file(s: &Scratch, name: &str, defaults: &str, resources: &str) -> SweepFile {
    s.sweep_file(name).defaults(defaults).resources(resources)
}

const GRID4: &str = "lr = [0.1, 0.2, 0.3, 0.4]";

/// Every line of FAKE_DIR/events, split on whitespace.
fn events(s: &Scratch) -> Vec<Vec<String>> {
    std::fs::read_to_string(s.fake_dir().join("events"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn count_events(s: &Scratch, kind: &str) -> usize {
    events(s)
        .iter()
        .filter(|e| e.first().map(String::as_str) == Some(kind))
        .count()
}

/// A `start <trial> <pid> <CUDA_VISIBLE_DEVICES>` event.
#[derive(Debug, Clone)]
struct Start {
    trial: String,
    pid: i32,
    cuda: String,
}

fn starts(s: &Scratch) -> Vec<Start> {
    events(s)
        .into_iter()
        .filter(|e| e.first().map(String::as_str) == Some("start"))
        .map(|e| Start {
            trial: e[1].clone(),
            pid: e[2].parse().expect("pid"),
            cuda: e[3].clone(),
        })
        .collect()
}

fn start_pids(s: &Scratch) -> Vec<i32> {
    starts(s).iter().map(|st| st.pid).collect()
}

/// Polls until at least `n` `kind` events were written, or fails the test.
fn wait_events(s: &Scratch, kind: &str, n: usize, limit: Duration, run: &mut Running) {
    let deadline = Instant::now() + limit;
    while count_events(s, kind) < n {
        if let Some(f) = run.try_finish() {
            panic!(
                "coordinator exited ({:?}) before {n} {kind} events; stderr:\n{}",
                f.code, f.stderr
            );
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} {kind} events after {limit:?}: {:?}",
            events(s)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn trial_statuses(db: &Db) -> BTreeMap<String, String> {
    db.query::<(String, String)>("SELECT id, status FROM trials")
        .into_iter()
        .collect()
}

/// 1. Two fake GPUs × two trials per GPU: all four trials run at once, two per device.
#[test]
fn four_trials_run_at_once_on_two_fake_gpus() {
    let s = scratch();
    let file = sweep_file(&s, "gpus", "epochs = 2", "trials_per_gpu = 2\nretries = 0")
        .grid(GRID4)
        .write();
    // Each worker waits until all four have started: only true concurrency gets past.
    let out = s
        .run(&file)
        .fake_worker("ok")
        .envs(&[
            ("SWEEP_FAKE_GPUS", "2"),
            ("FAKE_BARRIER", "4"),
            ("FAKE_TIMEOUT", "15"),
        ])
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(
        !out.stderr.contains("warning:"),
        "the ok worker's messages must all parse:\n{}",
        out.stderr
    );

    let starts = starts(&s);
    assert_eq!(starts.len(), 4, "{starts:?}");
    let mut per_device: BTreeMap<String, usize> = BTreeMap::new();
    for st in &starts {
        *per_device.entry(st.cuda.clone()).or_default() += 1;
    }
    assert_eq!(
        per_device,
        BTreeMap::from([("0".to_string(), 2), ("1".to_string(), 2)]),
        "{starts:?}"
    );
    assert_eq!(
        starts
            .iter()
            .map(|st| &st.trial)
            .collect::<BTreeSet<_>>()
            .len(),
        4,
        "one worker per trial: {starts:?}"
    );

    let db = s.open_db();
    let statuses = trial_statuses(&db);
    assert_eq!(statuses.len(), 4);
    assert!(statuses.values().all(|st| st == "done"), "{statuses:?}");
    let devices = db.query::<(String, i64)>(
        "SELECT device, COUNT(*) FROM trials GROUP BY device ORDER BY device",
    );
    assert_eq!(
        devices,
        vec![("cuda:0".to_string(), 2), ("cuda:1".to_string(), 2)]
    );
    let sweep = db.query::<(String,)>("SELECT status FROM sweeps");
    assert_eq!(sweep, vec![("done".to_string(),)]);

    // Every message kind of the ok worker landed where the recorder puts it.
    let counts = db.query::<(i64, i64, i64, i64, i64, i64)>(
        "SELECT (SELECT COUNT(*) FROM test_results), (SELECT COUNT(*) FROM class_accuracy), (SELECT COUNT(*) FROM confusion),
                (SELECT COUNT(*) FROM misclassified), (SELECT COUNT(*) FROM metrics WHERE split = 'train'),
                (SELECT COUNT(*) FROM metrics WHERE split = 'valid')",
    );
    // 4 trials: 2 classes each, a 2×2 matrix, 2 misclassified items, 2 epochs × 3 steps × 4 train metrics, 2 epochs × 2 valid metrics.
    assert_eq!(counts, vec![(4, 8, 16, 8, 4 * 2 * 3 * 4, 4 * 2 * 2)]);
    let trials = db.query::<(i64, Option<f64>, Option<f64>)>(
        "SELECT epochs_done, best_val_accuracy, wall_s FROM trials",
    );
    assert!(
        trials
            .iter()
            .all(|(e, v, w)| *e == 2 && v.is_some() && w.is_some()),
        "{trials:?}"
    );
    let attempts = db.query::<(i64, Option<i64>, Option<String>)>(
        "SELECT attempt, exit_code, error_class FROM attempts",
    );
    assert_eq!(attempts, vec![(1, Some(0), None); 4]);
}

/// 2. A finished sweep reruns nothing; a new grid value runs only its trials.
#[test]
fn rerun_skips_finished_and_extension_runs_only_new_trials() {
    let s = scratch();
    let file = |lrs: &str| {
        sweep_file(&s, "rerun", "epochs = 1", "cpu_workers = 2\nretries = 0")
            .grid(&format!("lr = [{lrs}]"))
            .write()
    };
    let run = |file: &std::path::Path| s.run(file).fake_worker("ok").output_within(RUN_LIMIT);
    let first = run(&file("0.1, 0.2"));
    assert_eq!(first.code, Some(0), "stderr:\n{}", first.stderr);
    let before: BTreeSet<String> = starts(&s).into_iter().map(|st| st.trial).collect();
    assert_eq!(before.len(), 2);

    let again = run(&file("0.1, 0.2"));
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.stderr);
    assert_eq!(
        starts(&s).len(),
        2,
        "a finished sweep must start no worker: {:?}",
        events(&s)
    );
    assert!(
        again.stderr.contains("0 to run, 2 already finished"),
        "stderr:\n{}",
        again.stderr
    );

    let extended = run(&file("0.1, 0.2, 0.3"));
    assert_eq!(extended.code, Some(0), "stderr:\n{}", extended.stderr);
    let starts = starts(&s);
    assert_eq!(starts.len(), 3, "exactly one new worker: {starts:?}");
    assert!(
        !before.contains(&starts[2].trial),
        "the new worker ran an old trial: {starts:?}"
    );
    let db = s.open_db();
    let statuses = trial_statuses(&db);
    assert_eq!(statuses.len(), 3);
    assert!(statuses.values().all(|st| st == "done"), "{statuses:?}");
    let attempts =
        db.query::<(String, i64)>("SELECT trial_id, COUNT(*) FROM attempts GROUP BY trial_id");
    assert!(
        attempts.iter().all(|(_, n)| *n == 1),
        "no trial may run twice: {attempts:?}"
    );
}

/// 3. Malformed worker output is warned about (naming the trial) and skipped.
#[test]
fn garbage_lines_are_warnings_not_failures() {
    let s = scratch();
    let file = sweep_file(&s, "garbage", "epochs = 1", "retries = 0").write();
    let out = s.run(&file).fake_worker("garbage").output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let starts = starts(&s);
    assert_eq!(starts.len(), 1);
    let trial = &starts[0].trial;
    for want in [
        format!("warning: trial {trial}: malformed worker line ignored"),
        format!("warning: trial {trial}: worker line over"),
    ] {
        assert!(
            out.stderr.contains(&want),
            "missing {want:?} in stderr:\n{}",
            out.stderr
        );
    }
    let db = s.open_db();
    assert_eq!(
        trial_statuses(&db).get(trial).map(String::as_str),
        Some("done")
    );
    let test = db.query::<(f64,)>("SELECT accuracy FROM test_results");
    assert_eq!(test, vec![(0.75,)]);
}

/// 4. A hung worker is killed at the timeout and retried; then the trial fails.
#[test]
fn hung_worker_times_out_and_is_retried() {
    let s = scratch();
    let file = sweep_file(&s, "hang", "epochs = 1", "timeout = \"2s\"\nretries = 1").write();
    let out = s
        .run(&file)
        .fake_worker("hang")
        .env("FAKE_TIMEOUT", "60")
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    let db = s.open_db();
    let statuses = trial_statuses(&db);
    assert_eq!(statuses.values().collect::<Vec<_>>(), vec!["failed"]);
    let attempts = db.query::<(i64, Option<String>, Option<i64>, Option<f64>)>(
        "SELECT attempt, error_class, signal, finished_at FROM attempts ORDER BY attempt",
    );
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (i, (n, class, signal, finished)) in attempts.iter().enumerate() {
        assert_eq!(*n, i as i64 + 1);
        assert_eq!(class.as_deref(), Some("timeout"), "{attempts:?}");
        assert_eq!(*signal, Some(libc::SIGKILL as i64), "{attempts:?}");
        assert!(finished.is_some(), "{attempts:?}");
    }
    // Under load a worker may be killed before it wrote its start event: take the pids the coordinator recorded.
    let pids: Vec<i32> = db
        .query::<(i64,)>("SELECT pid FROM attempts WHERE pid IS NOT NULL")
        .into_iter()
        .map(|(p,)| p as i32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert_all_die(&pids, Duration::from_secs(2), "timed-out workers");
}

/// 5. How a worker failed is classified from its messages and exit status.
fn failure_is_classified(mode: &str, class: &str, exit_code: i64) {
    let s = scratch();
    let file = sweep_file(&s, mode, "epochs = 2", "retries = 0").write();
    let out = s.run(&file).fake_worker(mode).output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    let db = s.open_db();
    assert_eq!(
        trial_statuses(&db).values().collect::<Vec<_>>(),
        vec!["failed"]
    );
    let attempts = db.query::<(Option<String>, Option<i64>, Option<f64>)>(
        "SELECT error_class, exit_code, finished_at FROM attempts",
    );
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].0.as_deref(), Some(class), "{attempts:?}");
    assert_eq!(attempts[0].1, Some(exit_code), "{attempts:?}");
    assert!(attempts[0].2.is_some());
    assert!(
        out.stderr.contains(&format!("failed: {class}")),
        "stderr:\n{}",
        out.stderr
    );
    assert_eq!(
        db.query::<(String,)>("SELECT status FROM sweeps"),
        vec![("failed".to_string(),)]
    );
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
fn ctrl_c(
    mode: &str,
    grace: u64,
    attempt_check: impl Fn(&[(Option<String>, Option<i64>, Option<i64>)]),
) {
    let s = scratch();
    let file = sweep_file(&s, mode, "epochs = 1", "cpu_workers = 2\nretries = 0")
        .grid("lr = [0.1, 0.2]")
        .write();
    let mut run = s
        .run(&file)
        .fake_worker(mode)
        .env("FAKE_TIMEOUT", "60")
        .args(["--grace", &grace.to_string()])
        .spawn();
    // `ready` comes after the worker's signal disposition is set and its hello is out.
    wait_events(&s, "ready", 2, Duration::from_secs(20), &mut run);
    let pids = start_pids(&s);
    assert_eq!(pids.len(), 2);
    let t0 = Instant::now();
    run.signal(libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(grace + 10));
    let took = t0.elapsed();
    assert_eq!(out.code, Some(130), "stderr:\n{}", out.stderr);
    assert!(
        took < Duration::from_secs(grace + 4),
        "coordinator took {took:?} to stop with grace {grace}s"
    );
    assert_all_die(&pids, Duration::from_secs(2), "workers after Ctrl-C");
    let db = s.open_db();
    let statuses = trial_statuses(&db);
    assert_eq!(statuses.len(), 2);
    assert!(
        statuses.values().all(|st| st == "interrupted"),
        "{statuses:?}"
    );
    let attempts = db.query::<(Option<String>, Option<i64>, Option<i64>)>(
        "SELECT error_class, exit_code, signal FROM attempts",
    );
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    attempt_check(&attempts);
    assert_eq!(
        db.query::<(String,)>("SELECT status FROM sweeps"),
        vec![("interrupted".to_string(),)]
    );
    assert!(
        out.stderr
            .contains("interrupted; run the same command again to resume"),
        "stderr:\n{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_stops_workers_that_honour_sigterm() {
    ctrl_c("term_ok", 10, |attempts| {
        for a in attempts {
            assert_eq!(
                (a.0.as_deref(), a.1),
                (Some("interrupted"), Some(130)),
                "{attempts:?}"
            );
        }
    });
}

#[test]
fn ctrl_c_kills_workers_that_ignore_sigterm_after_grace() {
    ctrl_c("ignore_term", 1, |attempts| {
        for a in attempts {
            // Killed by the coordinator itself: an interruption, not a crash.
            assert_eq!(
                (a.0.as_deref(), a.2),
                (Some("interrupted"), Some(libc::SIGKILL as i64)),
                "{attempts:?}"
            );
        }
    });
}

/// Ctrl-C while a failed trial waits out its retry backoff: the retry must not
/// start a worker after the interrupt.
#[test]
fn ctrl_c_during_retry_backoff_starts_no_worker() {
    let s = scratch();
    let file = sweep_file(&s, "backoff", "epochs = 1", "retries = 1").write();
    let mut run = s
        .run(&file)
        .fake_worker("crash")
        .args(["--grace", "1"])
        .spawn();
    // Attempt 1 crashed…
    wait_events(&s, "end", 1, Duration::from_secs(20), &mut run);
    // …and the dispatcher has closed it and re-dispatched the trial, whose retry
    // now sits out its 1 s backoff (trial 'running', no attempt 2 yet).
    let db = s.open_db();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = db.query::<(String, i64, i64)>(
            "SELECT t.status, (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id),
                    (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id AND a.finished_at IS NOT NULL) FROM trials t",
        );
        if state == vec![("running".to_string(), 1, 1)] {
            break;
        }
        if let Some(out) = run.try_finish() {
            panic!(
                "coordinator exited ({:?}) before the retry was queued:\n{}",
                out.code, out.stderr
            );
        }
        assert!(Instant::now() < deadline, "retry never queued: {state:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sigint_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    run.signal(libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(10));
    assert_eq!(out.code, Some(130), "stderr:\n{}", out.stderr);
    // An attempt the recorder logged well after the interrupt was launched because of a stale retry.
    let late = db.query::<(i64, f64)>(&format!(
        "SELECT attempt, started_at FROM attempts WHERE started_at > {}",
        sigint_at + 0.3
    ));
    assert!(
        late.is_empty(),
        "worker started after Ctrl-C: {late:?}; stderr:\n{}",
        out.stderr
    );
    assert_eq!(
        trial_statuses(&db).values().collect::<Vec<_>>(),
        vec!["interrupted"]
    );
    assert_all_die(
        &start_pids(&s),
        Duration::from_secs(2),
        "workers after Ctrl-C",
    );
}

/// 7. `status` and `report` never see "database is locked" while the recorder writes hard.
#[test]
fn reads_during_a_run_never_fail() {
    let s = scratch();
    let file = sweep_file(&s, "busy", "epochs = 2", "cpu_workers = 2\nretries = 0")
        .grid(GRID4)
        .write();
    // Each worker floods 2000 train steps, then (block mode) waits for the
    // release file: the first two hold the run open until reads saw them running.
    let mut run = s
        .run(&file)
        .fake_worker("block")
        .envs(&[("FAKE_STEPS", "2000"), ("FAKE_TIMEOUT", "60")])
        .spawn();
    // The sweep is registered before any worker starts.
    wait_events(&s, "start", 1, Duration::from_secs(20), &mut run);
    let db = s.open_db();
    let mut reads = 0;
    let mut released = false;
    let finished = loop {
        if let Some(done) = run.try_finish() {
            break done;
        }
        for args in [&["status"][..], &["report", "--format", "json"][..]] {
            let out = s.sweep(args).output();
            assert!(
                out.succeeded(),
                "`sweep {}` failed during the run ({:?}):\n{}",
                args.join(" "),
                out.code,
                out.stderr
            );
            assert!(!out.stderr.contains("locked"), "{}", out.stderr);
            if args[0] == "report" {
                let v = out.json();
                assert!(v.is_object(), "{v}");
            }
            reads += 1;
        }
        // Once reads have run while two trials were mid-run (and their 2000
        // steps were being written), let the blocked workers finish.
        if !released
            && reads >= 4
            && db.query::<(i64,)>("SELECT COUNT(*) FROM trials WHERE status = 'running'")
                == vec![(2,)]
        {
            std::fs::write(s.fake_dir().join("release"), b"").expect("release file");
            released = true;
        }
        assert!(
            run.elapsed() < RUN_LIMIT,
            "sweep still running after {RUN_LIMIT:?}"
        );
    };
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    assert!(
        released,
        "the sweep ended before the release file was written"
    );
    eprintln!("{reads} reads during the run");
    let train = db.query::<(i64,)>("SELECT COUNT(*) FROM metrics WHERE split = 'train'");
    assert_eq!(train, vec![(4 * 2 * 2000 * 4,)]);
    assert!(trial_statuses(&db).values().all(|st| st == "done"));
}

/// 8. `kill -9` of the coordinator: workers die with it (PDEATHSIG), and the
///    next run finishes every trial without duplicating a metric row.
#[test]
fn coordinator_kill_9_takes_workers_along_and_resume_completes() {
    let s = scratch();
    let file = sweep_file(&s, "kill9", "epochs = 2", "cpu_workers = 2\nretries = 0")
        .grid("lr = [0.1, 0.2]")
        .write();
    let mut run = s
        .run(&file)
        .fake_worker("block")
        .envs(&[("FAKE_STEPS", "5"), ("FAKE_TIMEOUT", "60")])
        .spawn();
    // Both workers finished epoch 1 and now wait for a release file that never comes…
    wait_events(&s, "ready", 2, Duration::from_secs(20), &mut run);
    // …and the coordinator has recorded their epoch-1 metrics.
    let db = s.open_db();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.query::<(i64,)>("SELECT COUNT(DISTINCT trial_id) FROM metrics WHERE split = 'valid'")
        != vec![(2,)]
    {
        assert!(
            Instant::now() < deadline,
            "epoch-1 metrics never reached the database"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = start_pids(&s);
    assert_eq!(pids.len(), 2);
    run.signal(libc::SIGKILL);
    let killed = run.finish_within(Duration::from_secs(10));
    assert_eq!(killed.code, None, "killed by a signal");
    assert_all_die(
        &pids,
        Duration::from_secs(5),
        "workers of a SIGKILLed coordinator",
    );
    assert!(
        trial_statuses(&db).values().all(|st| st == "running"),
        "{:?}",
        trial_statuses(&db)
    );

    let out = s
        .run(&file)
        .fake_worker("ok")
        .env("FAKE_STEPS", "5")
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(starts(&s).len(), 4, "{:?}", events(&s));
    let statuses = trial_statuses(&db);
    assert!(statuses.values().all(|st| st == "done"), "{statuses:?}");
    let dups = db.query::<(String, String, i64, i64, String, i64)>(
        "SELECT trial_id, split, epoch, step, name, COUNT(*) FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1",
    );
    assert!(dups.is_empty(), "duplicate metric rows: {dups:?}");
    let train = db.query::<(i64,)>("SELECT COUNT(*) FROM metrics WHERE split = 'train'");
    assert_eq!(train, vec![(2 * 2 * 5 * 4,)]);
    let attempts =
        db.query::<(String, i64, Option<String>, Option<f64>)>("SELECT trial_id, attempt, error_class, finished_at FROM attempts ORDER BY trial_id, attempt");
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    for (_, attempt, class, finished) in &attempts {
        assert!(finished.is_some(), "{attempts:?}");
        let want = if *attempt == 1 { Some("crash") } else { None };
        assert_eq!(class.as_deref(), want, "{attempts:?}");
    }
}

#[test]
fn oom_is_retried_with_half_the_batch_size() {
    let s = scratch();
    let file = sweep_file(&s, "oom", "epochs = 1\nbatch_size = 32", "retries = 2").write();
    let out = s
        .run(&file)
        .fake_worker("error_oom")
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    let db = s.open_db();
    let attempts = db.query::<(i64, Option<String>, Option<i64>)>(
        "SELECT attempt, error_class, batch_size FROM attempts ORDER BY attempt",
    );
    let got: Vec<(i64, Option<&str>, Option<i64>)> = attempts
        .iter()
        .map(|(a, c, b)| (*a, c.as_deref(), *b))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("oom"), Some(32)),
            (2, Some("oom"), Some(16)),
            (3, Some("oom"), Some(8))
        ]
    );
    assert!(
        out.stderr.contains("retrying with batch_size 16"),
        "stderr:\n{}",
        out.stderr
    );
    // The trial keeps its identity: one trial row, whose params still say 32.
    assert_eq!(
        db.query::<(i64,)>("SELECT json_extract(params, '$.batch_size') FROM trials"),
        vec![(32,)]
    );
}

#[test]
fn a_second_coordinator_for_the_same_sweep_refuses() {
    let s = scratch();
    let file = sweep_file(&s, "twice", "epochs = 2", "retries = 0").write();
    let mut first = s
        .run(&file)
        .fake_worker("block")
        .env("FAKE_TIMEOUT", "60")
        .spawn();
    wait_events(&s, "ready", 1, Duration::from_secs(20), &mut first);
    let second = s.run(&file).fake_worker("ok").output_within(RUN_LIMIT);
    assert_eq!(second.code, Some(2), "stderr:\n{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("is already running (coordinator pid"),
        "stderr:\n{}",
        second.stderr
    );
    assert_eq!(
        starts(&s).len(),
        1,
        "the second coordinator started no worker"
    );
    std::fs::write(s.fake_dir().join("release"), b"").expect("release file");
    let out = first.finish_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(
        s.open_db().query::<(i64,)>("SELECT COUNT(*) FROM attempts"),
        vec![(1,)]
    );
}

/// `cpu_workers = "auto"` sizes itself on the whole sweep, not on the trials
/// left to run: a trial resumed alone after Ctrl-C trains with the torch
/// thread count it first had (metrics differ across thread counts, so
/// anything else would break "the same seed gives the same digits").
#[test]
fn auto_cpu_workers_gives_a_resumed_trial_the_threads_it_first_had() {
    let s = scratch();
    // Small images: the memory bound of "auto" plays no part.
    let file = sweep_file(
        &s,
        "auto-threads",
        "image_size = 32\nbatch_size = 4",
        "cpu_workers = \"auto\"\nretries = 0",
    )
    .grid("epochs = [1, 200]")
    .write();
    let mut run = s
        .run(&file)
        .fake_worker("curve")
        .env("FAKE_EPOCH_S", "0.1")
        .env("FAKE_TIMEOUT", "60")
        .spawn();
    // The one-epoch trial is recorded done; the other is still training.
    wait_events(&s, "end", 1, Duration::from_secs(30), &mut run);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s
        .open_db()
        .count("SELECT COUNT(*) FROM trials WHERE status = 'done'")
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "the one-epoch trial was not recorded done within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.signal(libc::SIGINT);
    assert_eq!(run.finish_within(Duration::from_secs(20)).code, Some(130));
    s.run(&file)
        .fake_worker("curve")
        .env("FAKE_EPOCH_S", "0")
        .output_within(RUN_LIMIT)
        .expect_success();
    let db = s.open_db();
    let rows: Vec<(i64, i64, Option<i64>)> =
        db.query("SELECT t.epochs, a.attempt, a.threads FROM attempts a JOIN trials t ON t.id = a.trial_id ORDER BY t.epochs, a.attempt");
    assert_eq!(
        rows.len(),
        3,
        "the short trial once, the long one twice: {rows:?}"
    );
    let first = rows[0].2.expect("the worker's hello recorded its threads");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    // Two trials share the cores at first (one thread each on 2 cores).
    assert_eq!(first, (cores / cores.min(2)).max(1), "{rows:?}");
    assert_eq!(rows[1].2, Some(first), "{rows:?}");
    assert_eq!(
        rows[2].2,
        Some(first),
        "the resumed trial, alone now, keeps its thread count: {rows:?}"
    );
}

/// `gpus` naming GPUs that are not there: none of them is an error (exit 2)
/// before anything is written, where the trials used to run on the CPU
/// without a word; some of them is a warning, and the trials run on the
/// ones that are there.
#[test]
fn gpus_that_are_not_there_are_an_error_or_a_warning() {
    let s = scratch();
    let file = sweep_file(&s, "absent", "epochs = 1", "gpus = [5, 7]\nretries = 0")
        .grid("lr = [0.1, 0.2]")
        .write();
    let out = s
        .run(&file)
        .fake_worker("ok")
        .envs(&[("SWEEP_FAKE_GPUS", "2")])
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains(
            "gpus = [5, 7], but none of these GPUs is here: the GPUs visible here are [0, 1]"
        ),
        "{}",
        out.stderr
    );
    assert!(starts(&s).is_empty(), "no worker started: {:?}", events(&s));
    if s.path("results.db").exists() {
        assert!(
            s.open_db()
                .query::<(String,)>("SELECT name FROM sweeps")
                .is_empty(),
            "nothing written"
        );
    }

    let file = sweep_file(&s, "some", "epochs = 1", "gpus = [1, 5]\nretries = 0")
        .grid("lr = [0.1, 0.2]")
        .write();
    let out = s
        .run(&file)
        .fake_worker("ok")
        .envs(&[("SWEEP_FAKE_GPUS", "2")])
        .output_within(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("warning: [resources] gpus = [1, 5]: only 1 of these GPUs is here (the GPUs visible here are [0, 1]); running on [1]"),
        "{}",
        out.stderr
    );
    assert!(
        starts(&s).iter().all(|st| st.cuda == "1") && starts(&s).len() == 2,
        "{:?}",
        starts(&s)
    );
}
