//! Early stopping end to end through the real coordinator and database, with
//! the fake worker's `curve` mode (validation accuracy saturates at 10 × lr).
use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, curve_run as command, sqlite_rows as query};

fn scratch(stopping: &str) -> tempfile::TempDir {
    // Best first, one trial at a time: every later trial is judged against better records.
    let lrs: Vec<String> = (1..=9).rev().map(|i| format!("0.0{i}")).collect();
    scratch_with(&lrs, stopping)
}

/// Demo data and a sweep `st` of 9 epochs over `lrs`, one trial at a time.
pub(crate) fn scratch_with(lrs: &[String], stopping: &str) -> tempfile::TempDir {
    let dir = common::demo_dir();
    std::fs::write(
        dir.path().join("s.toml"),
        format!(
            "[sweep]\nname = \"st\"\ndataset = \"data\"\n[defaults]\nepochs = 9\n[grid]\nlr = [{}]\n[resources]\ncpu_workers = 1\n[stopping]\n{stopping}\n",
            lrs.join(", ")
        ),
    )
    .unwrap();
    dir
}

fn run(dir: &Path) -> Output {
    command(dir, "0.02").output().unwrap()
}

#[test]
fn asha_prunes_the_worse_trials_and_records_every_decision() {
    let dir = scratch("method = \"asha\"\nmin_epochs = 1\nreduction = 3");
    let out = run(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "pruned trials are a success: {stderr}"
    );
    // The best (lr 0.09) runs to the end; each later one is below the best at rung 0 (epoch 1).
    // (A pruned worker is stopped with SIGTERM without waiting: it may finish a
    // few more epochs before the signal lands, so only "not all 9" is asserted.)
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*), max(epochs_done) < 9 FROM trials GROUP BY status ORDER BY status"
        ),
        ["done|1|0", "pruned|8|1"]
    );
    assert_eq!(
        query(dir.path(), "SELECT lr FROM trials WHERE status = 'done'"),
        ["0.09"]
    );
    // Every decision is a row: rung 0 for all nine, rung 1 (epoch 3) for the survivor.
    assert_eq!(
        query(
            dir.path(),
            "SELECT method, rung, action, count(*) FROM decisions GROUP BY rung, action ORDER BY rung, action"
        ),
        ["asha|0|continue|1", "asha|0|stop|8", "asha|1|continue|1"]
    );
    // A stop is always a value below its cutoff, compared with the records before it.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM decisions WHERE action = 'stop' AND NOT (value < cutoff)"
        ),
        ["0"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT group_concat(compared) FROM (SELECT compared FROM decisions WHERE rung = 0 ORDER BY time)"
        ),
        ["0,1,2,3,4,5,6,7,8"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT DISTINCT error_class FROM attempts a JOIN trials t ON t.id = a.trial_id WHERE t.status = 'pruned'"
        ),
        ["pruned"]
    );
    assert!(
        stderr.contains("pruned by asha at epoch 1 (rung 0)"),
        "{stderr}"
    );
    // `sweep show` lists a pruned trial's decisions; `sweep status` counts it.
    let pruned = query(
        dir.path(),
        "SELECT id FROM trials WHERE status = 'pruned' LIMIT 1",
    )
    .remove(0);
    let show = common::show(dir.path(), &pruned);
    assert!(
        show.contains("early-stopping decisions") && show.contains("│ stop "),
        "{show}"
    );
    assert!(
        show.contains("pruned by asha at epoch 1: not tested"),
        "{show}"
    );
    let status = Command::new(BIN)
        .args(["--db", "r.db", "status"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("done 1, pruned 8, failed 0"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // A rerun starts nothing: pruned trials stay pruned.
    let again = run(dir.path());
    assert_eq!(again.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 to run, 9 already finished"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A coordinator that died between the stop decision and the trial's status
    // leaves it `interrupted`: the recorded decision still holds, nothing reruns.
    query(
        dir.path(),
        "UPDATE trials SET status = 'interrupted' WHERE status = 'pruned'",
    );
    let attempts = query(dir.path(), "SELECT count(*) FROM attempts");
    assert_eq!(run(dir.path()).status.code(), Some(0));
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status ORDER BY status"
        ),
        ["done|1", "pruned|8"]
    );
    assert_eq!(query(dir.path(), "SELECT count(*) FROM attempts"), attempts);
}

#[test]
fn patience_alone_stops_each_trial_two_epochs_after_it_stopped_improving() {
    let dir = scratch("patience = 2");
    let out = command(dir.path(), "0.02")
        .env("FAKE_PLATEAU", "3")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Flat from epoch 3 on: epochs 4 and 5 bring nothing, so every trial is stopped after epoch 5
    // (the worker is not waited for: it may finish another epoch before SIGTERM lands).
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*), min(epochs_done) >= 5, max(epochs_done) < 9 FROM trials GROUP BY status"
        ),
        ["pruned|9|1|1"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(DISTINCT trial_id) FROM decisions WHERE method = 'patience' AND action = 'stop' AND epoch = 5"
        ),
        ["9"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT epoch, action, compared FROM decisions WHERE method = 'patience' AND epoch <= 5 GROUP BY epoch ORDER BY epoch"
        ),
        [
            "1|continue|0",
            "2|continue|0",
            "3|continue|0",
            "4|continue|1",
            "5|stop|2"
        ]
    );
}

/// kill -9 of the coordinator mid-ASHA, then the same command again: no
/// decision is lost (every rung epoch a trial reached has one) and none is
/// repeated (one row per trial and epoch), and the outcome is what an
/// uninterrupted run decides.
#[test]
fn a_coordinator_killed_mid_asha_loses_no_decision_and_repeats_none() {
    let dir = scratch("method = \"asha\"\nmin_epochs = 1\nreduction = 3");
    // Wait for a few decisions to be committed, then kill -9.
    common::kill_after_decisions(dir.path(), command(dir.path(), "0.3"), 3);
    let out = run(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status ORDER BY status"
        ),
        ["done|1", "pruned|8"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM (SELECT trial_id, epoch FROM decisions GROUP BY trial_id, epoch HAVING count(*) > 1)"
        ),
        ["0"]
    );
    // Every rung epoch (1, 3) that a trial's validation reached has its decision.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM metrics m WHERE m.split = 'valid' AND m.name = 'accuracy' AND m.epoch IN (1, 3)
               AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.trial_id = m.trial_id AND d.epoch = m.epoch)"
        ),
        ["0"]
    );
    assert_eq!(query(dir.path(), "SELECT count(*) FROM decisions"), ["10"]);
}

/// Protocol 2: a pruned worker is told so on its stdin while it trains on; it
/// stops at the next step boundary and exits 0 (no signal), and with
/// `test_pruned = true` it tests its best checkpoint first.
#[test]
fn pruned_workers_stop_on_a_stdin_line_and_test_pruned_tests_them() {
    let dir = scratch("method = \"asha\"\nmin_epochs = 1\nreduction = 3\ntest_pruned = true");
    let out = command(dir.path(), "0.02")
        .env("FAKE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status ORDER BY status"
        ),
        ["done|1", "pruned|8"]
    );
    // Stopped by the line, not by SIGTERM: a clean exit, classed pruned.
    assert_eq!(
        query(
            dir.path(),
            "SELECT DISTINCT a.exit_code, a.signal IS NULL, a.error_class FROM attempts a JOIN trials t ON t.id = a.trial_id WHERE t.status = 'pruned'"
        ),
        ["0|1|pruned"]
    );
    let events = std::fs::read_to_string(dir.path().join("events")).unwrap();
    let stoplines: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("stopline "))
        .collect();
    assert_eq!(stoplines.len(), 8, "{events}");
    // Each was asked to stop after epoch 1 (rung 0) and had trained at least that far.
    assert!(
        stoplines.iter().all(|l| l.split(' ').nth(2) == Some("1")
            && l.split(' ').nth(3).unwrap().parse::<u32>().unwrap() >= 1),
        "{events}"
    );
    assert!(
        !events.lines().any(|l| l.starts_with("term ")),
        "no worker needed SIGTERM: {events}"
    );
    // test_pruned: every trial has test results, the pruned ones included.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM trials t JOIN test_results r ON r.trial_id = t.id WHERE t.status = 'pruned'"
        ),
        ["8"]
    );
    let pruned = query(
        dir.path(),
        "SELECT id FROM trials WHERE status = 'pruned' LIMIT 1",
    )
    .remove(0);
    let show = common::show(dir.path(), &pruned);
    assert!(
        show.contains("test (best-validation checkpoint") && !show.contains("not tested"),
        "{show}"
    );
    // `sweep report` says where each pruned trial was stopped.
    let report = Command::new(BIN)
        .args(["--db", "r.db", "report"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.matches("pruned at epoch ").count(), 8, "{report}");
}

/// `[stopping] stop_grace`: a worker deaf to its stop line (it never reads
/// stdin) gets SIGTERM once the grace is over, and its trial still ends
/// `pruned`, not failed or interrupted.
#[test]
fn a_worker_that_ignores_its_stop_line_gets_sigterm_after_stop_grace() {
    // The best first: the two others are below it at rung 0 and told to stop.
    let lrs = ["0.09", "0.05", "0.01"].map(String::from);
    let dir = scratch_with(
        &lrs,
        "method = \"asha\"\nmin_epochs = 1\nreduction = 3\nstop_grace = 1",
    );
    // 1 s an epoch: a deaf worker would need 8 s more to finish by itself.
    let out = command(dir.path(), "1.0")
        .env("FAKE_DIR", dir.path())
        .env("FAKE_IGNORE_STDIN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status ORDER BY status"
        ),
        ["done|1", "pruned|2"]
    );
    let events = std::fs::read_to_string(dir.path().join("events")).unwrap();
    assert_eq!(
        events.lines().filter(|l| l.starts_with("term ")).count(),
        2,
        "each deaf pruned worker got SIGTERM: {events}"
    );
    assert_eq!(
        stderr
            .matches("no stop after 1s of the stop line; sending SIGTERM")
            .count(),
        2,
        "{stderr}"
    );
    assert!(
        query(
            dir.path(),
            "SELECT max(epochs_done) FROM trials WHERE status = 'pruned'"
        ) != ["9"],
        "a pruned worker ran to its end: the SIGTERM came too late"
    );
}
