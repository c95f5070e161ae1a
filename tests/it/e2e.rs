//! End to end with the real worker (real libtorch training on tiny data):
//! results land in SQLite, reports parse back to the same numbers, reruns skip
//! finished trials, a grown grid runs only the new trials, the same seed gives
//! identical metrics, and a kill -9 of the coordinator resumes from the
//! checkpoint epoch.
use crate::common;

use common::{Scratch, SweepFile, sweep};

/// Demo data (4 train images a class, 32 px) and a results database.
fn scratch() -> Scratch {
    Scratch::new().with_demo(4, 32)
}

/// The tiny training of sweep `name` over `grid`.
fn tiny(s: &Scratch, name: &str, grid: &str) -> SweepFile {
    s.sweep_file(name).tiny_training().grid(grid)
}

const DUPLICATE_METRIC_ROWS: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)";

#[test]
fn sweep_records_everything_and_reruns_only_what_is_new() {
    let s = scratch();
    let file = tiny(&s, "e2e", "lr = [0.01, 0.02]").write();
    let run = s.run(&file).output();
    assert!(
        run.expect_success().stderr.contains("2 to run"),
        "{}",
        run.stderr
    );

    let db = s.open_db();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        2
    );
    // log_every = 2 over 6 batches an epoch: 3 train records an epoch, 4 names each.
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'"),
        2 * 2 * 3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"),
        2 * 2
    );
    // 12 classes × 1 test image each.
    for (trial, n, acc) in
        db.query::<(String, i64, f64)>("SELECT trial_id, n, accuracy FROM test_results")
    {
        assert_eq!(n, 12);
        let sum: i64 = db.scalar_with(
            "SELECT SUM(count) FROM confusion WHERE trial_id = ?",
            &[&trial],
        );
        assert_eq!(sum, n, "confusion matrix sums to the test set size");
        let diag: i64 = db.scalar_with(
            "SELECT SUM(count) FROM confusion WHERE trial_id = ? AND true_class = pred_class",
            &[&trial],
        );
        assert!((diag as f64 / n as f64 - acc).abs() < 1e-12);
        // Per-class accuracy agrees with the matrix, class by class.
        let bad: i64 = db.scalar_with(
            "SELECT COUNT(*) FROM class_accuracy a WHERE a.trial_id = ?1 AND (
               a.correct != (SELECT count FROM confusion c WHERE c.trial_id = a.trial_id AND c.true_class = a.class AND c.pred_class = a.class)
            OR a.total != (SELECT SUM(count) FROM confusion c WHERE c.trial_id = a.trial_id AND c.true_class = a.class))",
            &[&trial],
        );
        assert_eq!(bad, 0);
        let mis: i64 = db.scalar_with(
            "SELECT COUNT(*) FROM misclassified WHERE trial_id = ?",
            &[&trial],
        );
        assert_eq!(mis, n - diag);
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM class_distribution WHERE split = 'train'"),
        12
    );

    // Where each attempt's time went: the worker's start-up until `hello`
    // (coordinator clock) and the worker's own phases (its `done`).
    assert_eq!(db.count("SELECT COUNT(*) FROM attempts WHERE NOT (hello_at >= started_at AND hello_at <= finished_at)"), 0);
    let timings: Vec<(String,)> = db.query("SELECT timings FROM attempts");
    assert_eq!(timings.len(), 2);
    for (json,) in timings {
        let t: serde_json::Value = serde_json::from_str(&json).unwrap();
        for phase in [
            "data_s",
            "model_s",
            "train_s",
            "batch_wait_s",
            "valid_s",
            "checkpoint_s",
            "test_s",
        ] {
            let v = t[phase].as_f64().unwrap_or(-1.0);
            assert!(v >= 0.0, "{phase} in {json}");
        }
        for phase in [
            "data_s",
            "model_s",
            "train_s",
            "valid_s",
            "checkpoint_s",
            "test_s",
        ] {
            assert!(
                t[phase].as_f64().unwrap() > 0.0,
                "{phase} was measured: {json}"
            );
        }
    }

    // JSON report agrees with the database to the last digit.
    let v = s
        .sweep(&["report", "--best", "accuracy", "--format", "json"])
        .output()
        .expect_success()
        .json();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let trial = r["trial"].as_str().unwrap();
        let acc: f64 = db.scalar_with(
            "SELECT accuracy FROM test_results WHERE trial_id = ?",
            &[trial],
        );
        assert_eq!(r["test_accuracy"].as_f64().unwrap(), acc);
        assert!(r["params"]["lr"].is_number(), "varying lr is a column: {r}");
    }
    assert!(rows[0]["test_accuracy"].as_f64() >= rows[1]["test_accuracy"].as_f64());
    // CSV parses back to the same numbers.
    let out = s
        .sweep(&["report", "--best", "accuracy", "--format", "csv"])
        .output();
    let mut lines = out.expect_success().stdout_utf8().lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let acc_col = header.iter().position(|h| *h == "test_accuracy").unwrap();
    for (line, r) in lines.zip(rows) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            f[acc_col].parse::<f64>().unwrap(),
            r["test_accuracy"].as_f64().unwrap()
        );
    }

    // Rerun: nothing starts.
    let attempts_before = db.count("SELECT COUNT(*) FROM attempts");
    let run = s.run(&file).output();
    assert!(
        run.expect_success().stderr.contains("0 to run"),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM attempts"), attempts_before);

    // Grow the grid by one value: only the new trial runs.
    let file = tiny(&s, "e2e", "lr = [0.01, 0.02, 0.005]").write();
    let run = s.run(&file).output();
    assert!(
        run.expect_success().stderr.contains("1 to run"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts"),
        attempts_before + 1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        3
    );
    assert_eq!(db.count(DUPLICATE_METRIC_ROWS), 0);

    // predict with the best trial's checkpoint (by id prefix): one JSON line per image, named classes.
    let best = rows[0]["trial"].as_str().unwrap().to_string();
    let img = std::fs::read_dir(s.path("data/test/goat"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let line = s
        .sweep(&["predict", "--trial", &best[..6], "--results"])
        .arg(s.results())
        .arg(&img)
        .output()
        .expect_success()
        .json();
    assert!(line["pred"].is_string(), "{line}");
    assert_eq!(line["logits"].as_array().unwrap().len(), 12);
    assert!(line["prob"].as_f64().unwrap() > 0.0);

    // The human table names the sweep and every trial.
    let out = s.sweep(&["report"]).output();
    let table = out.stdout_utf8();
    assert!(
        table.contains("sweep e2e — 3 trials, ranked by val_accuracy")
            && table.contains("checkpoints picked by val_accuracy"),
        "{table}"
    );
}

#[test]
fn same_seed_gives_identical_metrics() {
    let s = scratch();
    for name in ["a", "b"] {
        let file = tiny(&s, name, "lr = [0.01]").sweep("seeds = [3]").write();
        s.run(&file).output().expect_success();
    }
    let db = s.open_db();
    let rows = |sweep: &str| -> Vec<(String, i64, i64, String, f64)> {
        db.query_with(
            "SELECT m.split, m.epoch, m.step, m.name, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN sweeps s ON s.id = t.sweep_id
             WHERE s.name = ? AND m.name IN ('loss', 'accuracy') ORDER BY m.split, m.epoch, m.step, m.name",
            &[sweep],
        )
    };
    let a = rows("a");
    assert!(a.len() > 10);
    assert_eq!(a, rows("b"));
}

#[test]
fn kill_9_of_the_coordinator_resumes_from_the_checkpoint() {
    let s = scratch();
    let file = tiny(&s, "kill", "lr = [0.01]")
        .defaults("epochs = 3")
        .write();
    let mut run = s.run(&file).spawn();
    run.wait_for_stderr("epoch 1:");
    run.kill(); // SIGKILL
    let resumed = s.run(&file).output();
    assert!(
        resumed
            .expect_success()
            .stderr
            .contains("resumed after epoch"),
        "{}",
        resumed.stderr
    );
    let db = s.open_db();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done' AND epochs_done = 3"),
        1
    );
    let resumed_from = db.count("SELECT MAX(resumed_from_epoch) FROM attempts");
    assert!(resumed_from >= 1, "resumed from epoch {resumed_from}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts WHERE attempt = 1 AND error_class = 'crash'"),
        1
    );
    assert_eq!(db.count(DUPLICATE_METRIC_ROWS), 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"),
        3
    );
}

#[test]
fn doctor_runs_without_ld_library_path() {
    let out = sweep(&["doctor"]).env_remove("LD_LIBRARY_PATH").output();
    out.expect_success();
    assert!(
        out.stdout.contains("libtorch       2.11.0"),
        "{}",
        out.stdout
    );
}
