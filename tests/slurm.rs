//! The Slurm launcher against a real single-node Slurm (slurmctld, slurmd,
//! munge; two fake GPUs as gres), which `make test` starts from
//! `scripts/slurm/` and stops afterwards. Under CI a missing cluster fails
//! these tests (`common::prerequisites::slurm`).
//!
//! The stand-in worker (`tests/fake_worker.py`) runs where resume does not
//! matter; the real worker, on tiny data, where it does (scancel mid-epoch,
//! kill -9 of the coordinator). Tests that need the GPUs hold one lock, so
//! that they never compete for the two of them.
mod common;

use common::{Db, EXIT_BAD_INPUT, Scratch, SweepFile, prerequisites};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The cluster's two GPUs, for one test at a time.
static GPUS: Mutex<()> = Mutex::new(());

fn gpus() -> MutexGuard<'static, ()> {
    GPUS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ids and states of the jobs of `sweep` in `squeue` (named `sweep.<sweep>.<trial>`).
fn squeue(sweep: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i|%j|%T"])
        .stdin(Stdio::null())
        .output()
        .expect("run squeue");
    assert!(
        out.status.success(),
        "squeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("sweep.{sweep}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, name, state) = (f.next()?, f.next()?, f.next()?);
            name.starts_with(&prefix)
                .then(|| (id.to_string(), state.to_string()))
        })
        .collect()
}

/// Waits (polling, up to `limit`) for `cond`; fails the test naming `what`.
#[track_caller]
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A table's rows as JSON text, ordered: for comparing two databases.
fn rows(db: &Db, sql: &str) -> String {
    db.scalar::<String>(&format!(
        "SELECT COALESCE(json_group_array(json(r)), '[]') FROM ({sql})"
    ))
}

/// Every table a run writes, without the columns that differ by launcher or
/// by clock (times, pids, devices, where the job ran).
fn comparable(db: &Db) -> Vec<(&'static str, String)> {
    vec![
        (
            "trials",
            rows(
                db,
                "SELECT json_array(id, ordinal, params, status, epochs_done, best_val_accuracy, wall_s, images_per_s) AS r FROM trials ORDER BY id",
            ),
        ),
        (
            "attempts",
            rows(
                db,
                "SELECT json_array(trial_id, attempt, exit_code, signal, error_class, message, resumed_from_epoch, batch_size) AS r FROM attempts ORDER BY trial_id, attempt",
            ),
        ),
        (
            "metrics",
            rows(
                db,
                "SELECT json_array(trial_id, attempt, split, epoch, batch, step, name, value) AS r FROM metrics ORDER BY trial_id, split, epoch, step, name",
            ),
        ),
        (
            "test_results",
            rows(
                db,
                "SELECT json_array(trial_id, loss, accuracy, n, epoch) AS r FROM test_results ORDER BY trial_id",
            ),
        ),
        (
            "class_accuracy",
            rows(
                db,
                "SELECT json_array(trial_id, class, correct, total, accuracy) AS r FROM class_accuracy ORDER BY trial_id, class",
            ),
        ),
        (
            "confusion",
            rows(
                db,
                "SELECT json_array(trial_id, true_class, pred_class, count) AS r FROM confusion ORDER BY 1",
            ),
        ),
        (
            "misclassified",
            rows(
                db,
                "SELECT json_array(trial_id, file, true_class, pred_class, prob) AS r FROM misclassified ORDER BY 1",
            ),
        ),
        (
            "class_distribution",
            rows(
                db,
                "SELECT json_array(split, class, count) AS r FROM class_distribution ORDER BY 1",
            ),
        ),
    ]
}

/// A dataset the planner accepts (the fake worker reads no images).
fn fake_data() -> Scratch {
    Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"])
}

fn slurm_sweep(s: &Scratch, name: &str, slurm: &str) -> SweepFile {
    s.sweep_file(name)
        .resources("launcher = \"slurm\"")
        .table("slurm", slurm)
}

// ---------------------------------------------------------------- the sweep file

#[test]
fn bad_slurm_tables_are_located_and_nothing_is_written() {
    let s = fake_data();
    let cases: &[(&str, &str, &str)] = &[
        // (resources lines, slurm lines, expected file:line:col + words)
        (
            "launcher = \"slurm\"",
            "gres = \"gpu:a:b:c\"",
            ":9:8: invalid gres \"gpu:a:b:c\"",
        ),
        (
            "launcher = \"slurm\"",
            "time = \"20s\"",
            ":9:8: time \"20s\" is under a minute",
        ),
        (
            "launcher = \"slurm\"",
            "max_jobs = 0",
            ":9:12: `max_jobs` must be between 1 and 100000",
        ),
        (
            "launcher = \"slurm\"",
            "mem = \"lots\"",
            ":9:7: invalid mem \"lots\"",
        ),
        (
            "launcher = \"slurm\"",
            "extra = [\"--job-name=x\"]",
            ":9:10: `extra` item \"--job-name=x\" sets --job-name",
        ),
        (
            "launcher = \"slurm\"",
            "extra = [\"constraint=a100\"]",
            ":9:10: `extra` item \"constraint=a100\" is not an srun option",
        ),
        (
            "launcher = \"slurm\"",
            "partiton = \"gpu\"",
            ":9:1: unknown field `partiton`",
        ),
        (
            "launcher = \"slurmm\"",
            "gres = \"gpu:1\"",
            ":6:12: unknown launcher \"slurmm\"",
        ),
        (
            "retries = 1",
            "gres = \"gpu:1\"",
            "a [slurm] table, but the launcher is \"local\"",
        ),
        (
            "launcher = \"slurm\"\ngpus = [0, 1]",
            "gres = \"gpu:1\"",
            ":7:8: `gpus` lists local devices",
        ),
    ];
    for (resources, slurm, says) in cases {
        let file = s
            .sweep_file("bad")
            .resources(resources)
            .table("slurm", slurm)
            .write();
        let out = s.run(&file).fake_worker("ok").output();
        let expected = if says.starts_with(':') {
            format!("bad.toml{says}")
        } else {
            says.to_string()
        };
        out.expect_error(EXIT_BAD_INPUT, &[&expected]);
        assert!(
            !s.db().exists(),
            "{resources} / {slurm}: nothing may be written"
        );
    }
}

#[test]
fn missing_srun_is_a_clear_error_at_plan_time() {
    let s = fake_data();
    let file = slurm_sweep(&s, "nosrun", "gres = \"gpu:1\"").write();
    let empty = s.fresh_dir("empty-path");
    let out = s.run(&file).fake_worker("ok").env("PATH", &empty).output();
    out.expect_error(
        EXIT_BAD_INPUT,
        &[
            "nosrun.toml:6:12:",
            "launcher \"slurm\" needs Slurm's client commands",
            "srun",
            "sinfo",
            "launcher = \"local\"",
        ],
    );
    assert!(!s.db().exists(), "nothing may be written");
    // A dry run plans without Slurm.
    s.sweep(&["run"])
        .arg(&file)
        .arg("--dry-run")
        .env("PATH", &empty)
        .output()
        .expect_success();
}

// ---------------------------------------------------------------- on the cluster

/// 4 trials with gres gpu:1 on 2 GPUs: 2 at a time, on different
/// CUDA_VISIBLE_DEVICES; the database holds what the local launcher writes.
#[test]
fn four_gpu_trials_run_two_at_a_time_and_record_like_local() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = fake_data();
    let grid = "lr = [0.01, 0.02, 0.03, 0.04]";
    let local = s
        .sweep_file("sl-rows")
        .grid(grid)
        .file_name("local.toml")
        .write();
    let on_slurm = slurm_sweep(&s, "sl-rows", "gres = \"gpu:1\"\nmax_jobs = 4")
        .grid(grid)
        .file_name("slurm.toml")
        .write();
    for (file, db, dir) in [
        (&local, "local.db", "fake-local"),
        (&on_slurm, "slurm.db", "fake-slurm"),
    ] {
        let fake = s.fresh_dir(dir);
        let mut run = s
            .run(file)
            .db(s.path(db))
            .results(s.path(format!("results-{db}")))
            .fake_worker("ok")
            .env("FAKE_DIR", &fake)
            .env("FAKE_BARRIER", "2");
        if db == "local.db" {
            run = run.env("SWEEP_FAKE_GPUS", "2");
        }
        run.output_within(Duration::from_secs(90)).expect_success();
    }
    // Two ran at once (the barrier of 2 passed), never more, each pair on different GPUs.
    let events = std::fs::read_to_string(s.path("fake-slurm/events")).expect("fake events");
    let mut spans: Vec<(f64, f64, String)> = Vec::new();
    for l in events.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f[0] {
            "start" => spans.push((f[4].parse().unwrap(), f64::MAX, f[3].to_string())),
            "end" => {
                let t: f64 = f[4].parse().unwrap();
                let i = spans.iter().position(|s| s.1 == f64::MAX).unwrap();
                spans[i].1 = t;
            }
            _ => {}
        }
    }
    assert_eq!(spans.len(), 4, "{events}");
    for (i, a) in spans.iter().enumerate() {
        assert!(
            a.2 == "0" || a.2 == "1",
            "CUDA_VISIBLE_DEVICES {:?} is not one GPU of the two",
            a.2
        );
        let overlapping: Vec<&(f64, f64, String)> = spans
            .iter()
            .enumerate()
            .filter(|(j, b)| *j != i && b.0 < a.1 && a.0 < b.1)
            .map(|(_, b)| b)
            .collect();
        assert!(
            overlapping.len() <= 1,
            "more than 2 trials at once: {events}"
        );
        for b in overlapping {
            assert_ne!(a.2, b.2, "two trials at once on the same GPU: {events}");
        }
    }
    let (local_db, slurm_db) = (Db::open(s.path("local.db")), Db::open(s.path("slurm.db")));
    for ((table, l), (_, r)) in comparable(&local_db).into_iter().zip(comparable(&slurm_db)) {
        assert_eq!(
            l, r,
            "table {table} differs between the local and the Slurm run"
        );
    }
    // Where each attempt ran is recorded: node, GPU, job id.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let placed: Vec<(String, String, String, String)> =
        slurm_db.query("SELECT node, gpus, slurm_job, device FROM attempts ORDER BY started_at");
    assert_eq!(placed.len(), 4);
    for (node, gpus, job, device) in &placed {
        assert_eq!(node.split('.').next(), host.split('.').next());
        assert!(gpus == "0" || gpus == "1", "gpus {gpus:?}");
        assert!(
            !job.is_empty() && job.chars().all(|c| c.is_ascii_digit()),
            "job id {job:?}: one job per trial outside an allocation"
        );
        assert_eq!(device, &format!("cuda:{gpus}"));
    }
    assert!(squeue("sl-rows").is_empty());
}

/// Inside an `sbatch` allocation of 2 GPUs, a 4-trial sweep runs as
/// `srun --exact` steps of that one job, at most 2 at a time.
#[test]
fn inside_an_allocation_trials_are_steps() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-steps", "gres = \"gpu:1\"")
        .grid("lr = [0.01, 0.02, 0.03, 0.04]")
        .write();
    let fake = s.fresh_dir("fake");
    // The test's sweep command line, wrapped in a batch script.
    let cmd = s
        .run(&file)
        .fake_worker("ok")
        .env("FAKE_BARRIER", "2")
        .env("FAKE_DIR", &fake)
        .command();
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.push_str(&format!(
                "export {}='{}'\n",
                k.to_string_lossy(),
                v.to_string_lossy()
            ));
        }
    }
    script.push_str(&format!("cd '{}'\n", s.root().display()));
    script.push_str(&format!("exec '{}'", cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        script.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    script.push('\n');
    let script_path = s.write("job.sh", script);
    let out = Command::new("sbatch")
        .args([
            "--parsable",
            "--wait",
            "--job-name=sl-steps-alloc",
            "--gres=gpu:2",
            "--cpus-per-task=4",
            "--time=5",
        ])
        .arg(format!("--output={}", s.path("job.out").display()))
        .arg(&script_path)
        .stdin(Stdio::null())
        .output()
        .expect("run sbatch");
    let log = std::fs::read_to_string(s.path("job.out")).unwrap_or_default();
    assert!(
        out.status.success(),
        "sbatch job failed: {}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alloc = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let db = s.open_db();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        4,
        "{log}"
    );
    let steps: Vec<(String, String)> = db.query("SELECT slurm_job, gpus FROM attempts");
    let all: Vec<(String, String)> = db.query("SELECT trial_id || ' #' || attempt, COALESCE(error_class, '') || ' ' || COALESCE(message, '') || ' ' || COALESCE(slurm_job, '') FROM attempts ORDER BY started_at");
    assert_eq!(steps.len(), 4, "{all:?}\n{log}");
    for (step, gpus) in &steps {
        let (job, step_id) = step
            .split_once('.')
            .unwrap_or_else(|| panic!("{step:?} is not a step id JOB.STEP"));
        assert_eq!(job, alloc, "every attempt is a step of the allocation");
        assert!(step_id.parse::<u32>().is_ok());
        assert!(
            gpus == "0" || gpus == "1",
            "a step gets one of the allocation's GPUs, got {gpus:?}"
        );
    }
    let mut ids: Vec<&String> = steps.iter().map(|s| &s.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one step per attempt");
    assert!(
        log.contains("Slurm, up to 2 trial(s) in flight"),
        "the allocation holds 2 GPUs, so 2 trials at a time:\n{log}"
    );
}

/// `scancel` of a trial's job mid-epoch: the attempt is `cancelled`, the trial
/// resumes from its epoch checkpoint and finishes (the real worker).
#[test]
fn scancel_mid_epoch_is_cancelled_and_the_trial_resumes() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = Scratch::new().with_demo(4, 32);
    let file = slurm_sweep(&s, "sl-cancel", "cpus_per_trial = 1")
        .tiny_training()
        .defaults("epochs = 3\nmax_batches = 3\nlog_every = 1\nhead = { hidden = [8] }")
        .resources("retries = 2")
        .write();
    let mut run = s.run(&file).spawn();
    let db = s.db();
    let trial_dir = || {
        std::fs::read_dir(s.results().join("sl-cancel"))
            .ok()?
            .flatten()
            .find(|e| e.path().is_dir())
            .map(|e| e.path())
    };
    wait_until(
        "the first epoch's checkpoint",
        Duration::from_secs(120),
        || trial_dir().is_some_and(|d| d.join("train_state.safetensors").exists()),
    );
    let jobs = squeue("sl-cancel");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let st = Command::new("scancel")
        .arg(&jobs[0].0)
        .status()
        .expect("scancel");
    assert!(st.success());
    run.wait_for_stderr("cancelled");
    let out = run.finish_within(Duration::from_secs(180));
    out.expect_success();
    let db = Db::open(db);
    let attempts: Vec<(i64, Option<String>, Option<i64>)> =
        db.query("SELECT attempt, error_class, resumed_from_epoch FROM attempts ORDER BY attempt");
    assert_eq!(attempts[0].1.as_deref(), Some("cancelled"), "{attempts:?}");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1].1, None, "{attempts:?}");
    assert!(
        attempts[1].2.is_some_and(|e| e >= 1),
        "the retry resumes from a checkpoint: {attempts:?}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        1
    );
    check_metrics(&db, 1, 3);
}

/// `[slurm] time` too short: Slurm's warning before the limit stops the
/// worker at a clean batch; the attempt is `timeout`, and the retry (which
/// runs without the stand-in's sleeps and fits) finishes the trial. The retry
/// must fit even when the first attempt was stopped before its first epoch
/// (CI once started the worker ~30 s into the job's minute).
#[test]
fn a_too_short_time_limit_is_a_timeout_and_retried() {
    if !prerequisites::slurm() {
        return;
    }
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-time", "time = \"1m\"")
        .defaults("epochs = 100")
        .resources("retries = 1")
        .write();
    let out = s
        .run(&file)
        .fake_worker("curve")
        .env("FAKE_EPOCH_S", "1")
        .env("FAKE_FAST_RETRY", "1")
        .env("FAKE_TIMEOUT", "200")
        .output_within(Duration::from_secs(170));
    out.expect_success();
    let db = s.open_db();
    let attempts: Vec<(i64, Option<String>, Option<String>)> =
        db.query("SELECT attempt, error_class, message FROM attempts ORDER BY attempt");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].1.as_deref(), Some("timeout"), "{attempts:?}");
    assert!(
        attempts[0]
            .2
            .as_deref()
            .is_some_and(|m| m.contains("time limit")),
        "{attempts:?}"
    );
    assert_eq!(attempts[1].1, None);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        1
    );
}

/// Slurm's warning before the time limit can reach a worker that has not
/// yet installed its SIGTERM handler (CI once started the worker ~30 s into
/// the job's minute): it dies of the signal, exit 143. That is the time
/// limit, not a crash (the stand-in in `hang` mode never installs one).
#[test]
fn a_worker_killed_by_the_time_limit_warning_is_a_timeout() {
    if !prerequisites::slurm() {
        return;
    }
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-term", "time = \"1m\"")
        .resources("retries = 0")
        .write();
    let out = s
        .run(&file)
        .fake_worker("hang")
        .output_within(Duration::from_secs(170));
    out.expect_exit(common::EXIT_FAILED);
    let db = s.open_db();
    let attempts: Vec<(i64, Option<String>, Option<String>)> =
        db.query("SELECT attempt, error_class, message FROM attempts ORDER BY attempt");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].1.as_deref(), Some("timeout"), "{attempts:?}");
    assert!(
        attempts[0]
            .2
            .as_deref()
            .is_some_and(|m| m.contains("time limit")),
        "{attempts:?}"
    );
}

/// Ctrl-C: exit 130, and nothing of the sweep left in `squeue` within 15 s.
#[test]
fn ctrl_c_cancels_every_job_of_the_sweep() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-int", "gres = \"gpu:1\"\nmax_jobs = 4")
        .grid("lr = [0.01, 0.02, 0.03, 0.04]")
        .defaults("epochs = 60")
        .write();
    let fake = s.fake_dir();
    let run = s
        .run(&file)
        .fake_worker("curve")
        .env("FAKE_EPOCH_S", "1")
        .env("FAKE_TIMEOUT", "120")
        .spawn();
    wait_until(
        "2 running trials and 2 queued jobs",
        Duration::from_secs(60),
        || {
            let started = std::fs::read_to_string(fake.join("events"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("start "))
                .count();
            started == 2
                && squeue("sl-int")
                    .iter()
                    .filter(|(_, st)| st == "PENDING")
                    .count()
                    == 2
        },
    );
    let t = Instant::now();
    run.signal(libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(30));
    out.expect_exit(130);
    wait_until(
        "squeue without the sweep's jobs",
        Duration::from_secs(15).saturating_sub(t.elapsed()),
        || squeue("sl-int").is_empty(),
    );
    let db = s.open_db();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'interrupted'"),
        4
    );
}

/// kill -9 of the coordinator and its sruns: the job still queued stays
/// behind (Slurm even allocates it, with no srun to run a step); the next
/// `sweep run` cancels it, resumes the trials, and no metric row is lost or
/// duplicated (the real worker).
#[test]
fn leftovers_of_a_killed_coordinator_are_cancelled_and_the_rerun_completes() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = Scratch::new().with_demo(4, 32);
    let file = slurm_sweep(&s, "sl-kill", "gres = \"gpu:1\"\nmax_jobs = 3")
        .tiny_training()
        .defaults("epochs = 2\nmax_batches = 3\nlog_every = 1\nhead = { hidden = [8] }")
        .grid("lr = [0.01, 0.02, 0.03]")
        .resources("retries = 3")
        .write();
    let run = s.run(&file).spawn();
    let results = s.results().join("sl-kill");
    wait_until(
        "an epoch checkpoint and a queued job",
        Duration::from_secs(120),
        || {
            let committed = std::fs::read_dir(&results)
                .map(|d| {
                    d.flatten()
                        .any(|e| e.path().join("train_state.safetensors").exists())
                })
                .unwrap_or(false);
            committed && squeue("sl-kill").iter().any(|(_, st)| st == "PENDING")
        },
    );
    // The submit host loses every process of the run at once.
    let db = s.open_db();
    let sruns: Vec<(i64,)> =
        db.query("SELECT pid FROM attempts WHERE finished_at IS NULL AND pid IS NOT NULL");
    for (pid,) in &sruns {
        // SAFETY: SIGKILL to an srun this test's coordinator started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    run.kill();
    std::thread::sleep(Duration::from_secs(2));
    let left = squeue("sl-kill");
    assert!(!left.is_empty(), "the queued job outlives its srun");
    let out = s.run(&file).output_within(Duration::from_secs(240));
    out.expect_success();
    assert!(
        out.stderr
            .contains("left by a coordinator that did not clean up"),
        "{}",
        out.stderr
    );
    for (id, _) in &left {
        assert!(
            out.stderr.contains(id.as_str()),
            "leftover {id} named: {}",
            out.stderr
        );
    }
    assert!(squeue("sl-kill").is_empty());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL"),
        0,
        "open attempts"
    );
    check_metrics(&db, 3, 2);
}

/// A partition that does not exist: srun's own error, class `config`, no retry.
#[test]
fn an_invalid_partition_fails_the_trial_at_once_with_sruns_reason() {
    if !prerequisites::slurm() {
        return;
    }
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-part", "partition = \"no-such-partition\"")
        .resources("retries = 3")
        .write();
    let out = s
        .run(&file)
        .fake_worker("ok")
        .output_within(Duration::from_secs(60));
    out.expect_exit(common::EXIT_FAILED);
    let attempts: Vec<(Option<String>, Option<String>)> = s
        .open_db()
        .query("SELECT error_class, message FROM attempts");
    assert_eq!(
        attempts.len(),
        1,
        "a config error is not retried: {attempts:?}"
    );
    assert_eq!(attempts[0].0.as_deref(), Some("config"));
    assert!(
        attempts[0]
            .1
            .as_deref()
            .is_some_and(|m| m.contains("Invalid partition") && m.contains("[slurm]")),
        "{attempts:?}"
    );
}

/// The compute node must see results/: a trial directory it cannot write
/// (here: the job runs as `nobody`) ends the attempt with a `config` error
/// that says what to fix, before the worker starts.
#[test]
fn a_trial_directory_the_compute_node_cannot_write_is_a_clear_error() {
    if !prerequisites::slurm() {
        return;
    }
    if !prerequisites::is_root() {
        prerequisites::missing(
            "root (srun --uid=nobody stands in for a node without the shared filesystem)",
            "CI runs `make test` as root",
        );
        return;
    }
    let s = fake_data();
    let file = slurm_sweep(&s, "sl-shared", "extra = [\"--uid=nobody\"]").write();
    let out = s
        .run(&file)
        .fake_worker("ok")
        .output_within(Duration::from_secs(60));
    out.expect_exit(common::EXIT_FAILED);
    let attempts: Vec<(Option<String>, Option<String>)> = s
        .open_db()
        .query("SELECT error_class, message FROM attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].0.as_deref(), Some("config"));
    let m = attempts[0].1.clone().unwrap_or_default();
    assert!(
        m.contains("not visible or not writable on the compute node") && m.contains("shared"),
        "{m}"
    );
    assert!(
        !s.fake_dir().join("events").exists(),
        "the worker never started"
    );
}

/// Every metric row of `trials` trials of `epochs` epochs of 3 batches is there exactly once.
fn check_metrics(db: &Db, trials: i64, epochs: i64) {
    assert_eq!(
        db.count("SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)"),
        0,
        "duplicate metric rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'"),
        trials * epochs * 3,
        "lost train rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"),
        trials * epochs,
        "lost validation rows"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM test_results"), trials);
}

/// `[program]` through the Slurm launcher: srun passes the environment, the
/// program's records and the stop signal, so the shell example is swept with
/// ASHA exactly as on one machine.
#[test]
fn a_program_is_swept_through_slurm_with_asha() {
    if !prerequisites::slurm() {
        return;
    }
    let _gpus = gpus();
    let s = Scratch::new();
    let file = s.write(
        "shell-slurm.toml",
        common::shell_example("[resources]\nlauncher = \"slurm\"\n[slurm]\ncpus_per_trial = 1"),
    );
    let out = s
        .run(&file)
        .env("TRAIN_SLEEP", "0.2")
        .output_within(Duration::from_secs(300));
    out.expect_success();
    let db = s.open_db();
    // The best learning rate is best at every epoch: ASHA never stops it.
    let best: (String, i64) = db.query::<(String, i64)>(
        "SELECT status, epochs_done FROM trials WHERE json_extract(params, '$.lr') = 0.01",
    )[0]
    .clone();
    assert_eq!(best, ("done".to_string(), 9), "{}", out.report());
    assert!(db.count("SELECT COUNT(*) FROM trials WHERE status = 'pruned'") >= 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status NOT IN ('done', 'pruned')"),
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts WHERE slurm_job IS NULL OR slurm_job = ''"),
        0,
        "every attempt ran as a Slurm job"
    );
    // Every epoch a program reported is one row, and its last is epochs_done.
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM trials t WHERE t.epochs_done != (SELECT COUNT(*) FROM metrics m WHERE m.trial_id = t.id AND m.split = 'epoch' AND m.name = 'val_acc')"
        ),
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM decisions WHERE metric = 'val_acc' AND action = 'stop'"),
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'pruned'")
    );
}
