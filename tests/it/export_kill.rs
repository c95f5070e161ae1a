//! A real `kill -9` of `sweep export tensorboard` and `sweep export mlflow`
//! while they write (a database large enough that they are still at it),
//! then the reader's view of what was left, and a rerun that completes it
//! with every value once; and `sweep export mlflow --follow` over a running
//! sweep, against the real MLflow server.
//!
//! Where the kill lands is up to the machine: some trials' files whole,
//! some not yet appended to, or (rarely: each file's missing records go out
//! in one `write`) one cut mid-record. The TensorBoard test prints what it
//! left; `export::tensorboard_reads_back_…` cuts a tail on purpose.
use super::export::{
    MlflowServer, Scalars, assert_equals_db, assert_mlflow_equals_db, expected, read_back,
    read_mlflow, scalars_of,
};
use crate::common::{Db, Running, Scratch, prerequisites};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// Sweep `big`: `trials` finished trials of `rows` train-loss rows each (and
/// one validation row an epoch), written by SQL.
fn big_db(path: &Path, trials: usize, rows: usize) -> Db {
    let db = Db::create_with_schema(path);
    db.execute(
        "INSERT INTO sweeps (id, name, file, toml, metric, dataset, status, created_at, updated_at)
         VALUES (1, 'big', 'big.toml', '', 'val_accuracy', 'data', 'done', 1700000000.0, 1700000100.0)",
    );
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})
         INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, device, epochs_done, created_at, started_at, finished_at)
         SELECT printf('%010x', i), 1, i, json_object('backbone', 'resnet18', 'lr', 0.001 * (i + 1)),
                'resnet18', 0.001 * (i + 1), 2, 8, 32, 0, 'done', 'cpu', 2, 1700000001.0, 1700000002.0, 1700000090.0
         FROM n",
        trials - 1
    ));
    db.execute(
        "INSERT INTO attempts (trial_id, attempt, started_at) SELECT id, 1, 1700000002.0 FROM trials",
    );
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time)
         SELECT t.id, 1, 'train', 1 + (n.i * 2 - 1) / {rows}, n.i, n.i, 'loss',
                1.0 / n.i + t.ordinal, 1700000003.0 + n.i / 1000.0
         FROM trials t, n"
    ));
    db.execute(&format!(
        "INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time)
         SELECT t.id, 1, 'valid', e.epoch, 0, e.epoch * {rows} / 2, 'accuracy', 0.5 + t.ordinal / 1000.0, 1700000050.0 + e.epoch
         FROM trials t, (SELECT 1 AS epoch UNION ALL SELECT 2) e"
    ));
    db
}

/// Kills `export` with SIGKILL once `started` says it is writing, and checks
/// that the kill, not its own end, stopped it.
fn kill_mid_export(mut export: Running, started: impl Fn() -> bool) {
    let start = Instant::now();
    while !started() {
        if let Some(out) = export.try_finish() {
            panic!(
                "the export ended before it was seen writing; {}",
                out.report()
            );
        }
        assert!(
            start.elapsed() < LIMIT,
            "the export wrote nothing within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = export.kill();
    assert_eq!(
        out.signal,
        Some(libc::SIGKILL),
        "the export had already ended when it was killed; make the database larger so that the kill lands mid-export. {}",
        out.report()
    );
}

/// Every file below `dir` with its length.
fn sizes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            out.extend(sizes(&e.path()));
        } else {
            out.insert(e.path(), meta.len());
        }
    }
    out
}

#[test]
fn tensorboard_export_killed_mid_write_is_read_then_completed() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s = Scratch::new();
    let (trials, rows) = (60, 600);
    let db = big_db(&s.db(), trials, rows);
    let want = expected(&db);
    let out = s.path("tb");
    let logdir = out.join("big");

    // A first export of the first epoch's rows, so that the killed one
    // appends to existing files (where a cut record can be left).
    let first = s.path("first.db");
    std::fs::copy(s.db(), &first).unwrap();
    Db::open(&first).execute("DELETE FROM metrics WHERE epoch = 2");
    s.sweep(&["export", "tensorboard"])
        .arg(&out)
        .db(&first)
        .output()
        .expect_success();
    let before = sizes(&out);

    let export = s.sweep(&["export", "tensorboard"]).arg(&out).spawn();
    // Killed once a sixth of the trials' files have grown: some whole, some
    // maybe cut mid-record, the rest untouched.
    kill_mid_export(export, || {
        let now = sizes(&out);
        now.iter()
            .filter(|(f, n)| before.get(*f) != Some(n))
            .count()
            >= trials / 6
    });

    // TensorBoard reads what is whole: nothing that is not in the database, no step twice.
    let read = read_back(&python, &logdir);
    let mut complete = 0;
    for (trial, rows) in &want {
        let got: Scalars = scalars_of(&read, trial);
        let mut left = rows.clone();
        for r in &got {
            let i = left.iter().position(|w| w == r).unwrap_or_else(|| {
                panic!("trial {trial}: {r:?} is not in the database or read twice")
            });
            left.remove(i);
        }
        complete += usize::from(left.is_empty());
    }
    eprintln!(
        "after the kill: {complete} of {trials} trials complete, {} file(s) cut mid-record",
        sizes(&out)
            .keys()
            .filter(|f| f.to_string_lossy().contains("tfevents") && cut_mid_record(f))
            .count()
    );

    // The rerun completes every file, repairing a cut tail, and writes nothing twice.
    s.sweep(&["export", "tensorboard"])
        .arg(&out)
        .output()
        .expect_success();
    let read = read_back(&python, &logdir);
    assert_equals_db(&read, &want);
    let again = s.sweep(&["export", "tensorboard"]).arg(&out).output();
    again.expect_success();
    assert!(
        again.stderr.contains(" 0 record(s) written"),
        "{}",
        again.stderr
    );
}

#[test]
fn mlflow_export_killed_mid_write_is_completed_and_follow_is_live() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    let dir = s.fresh_dir("mlflow");
    let server = MlflowServer::start(&python, &dir);
    let backend = Db::open(dir.join("mlflow.db"));

    // kill -9 once the server holds a few of the runs, then a rerun.
    let big = s.path("big.db");
    let db = big_db(&big, 30, 400);
    let export = s
        .sweep(&["export", "mlflow", "--tracking-uri", &server.uri])
        .db(&big)
        .spawn();
    kill_mid_export(export, || {
        backend
            .try_rows("SELECT 1 FROM runs")
            .is_ok_and(|r| r.len() >= 3)
    });
    let out = s
        .sweep(&["export", "mlflow", "--tracking-uri", &server.uri])
        .db(&big)
        .output();
    out.expect_success();
    assert_mlflow_equals_db(&read_mlflow(&python, &server.uri, "big"), &db);

    // --follow: rows committed while it follows reach the server, and it
    // ends with the sweep.
    let file = s.sweep_file("live").tiny_training().write();
    let (run, db) = super::export::run_blocked_after_first_epoch(&s, &file, LIMIT);
    let start = Instant::now();
    let follow = s
        .sweep(&[
            "export",
            "mlflow",
            "--tracking-uri",
            &server.uri,
            "--sweep",
            "live",
            "--follow",
            "--interval",
            "0.1",
        ])
        .spawn();
    let trial: String = db.scalar("SELECT id FROM trials");
    let first_epoch: Vec<serde_json::Value> = super::export::expected_mlflow(&db)[&trial]
        .iter()
        .map(|(key, step, ms, bits)| serde_json::json!([key, step, ms, bits]))
        .collect();
    loop {
        let read = read_mlflow(&python, &server.uri, "live");
        if read[&trial]["metrics"]
            .as_array()
            .is_some_and(|m| m.len() >= first_epoch.len())
        {
            assert_eq!(read[&trial]["metrics"].as_array(), Some(&first_epoch));
            assert_eq!(read[&trial]["status"], "RUNNING", "{read}");
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the first epoch did not reach MLflow within {LIMIT:?}"
        );
    }
    std::fs::write(s.fake_dir().join("release"), b"").unwrap();
    run.finish_within(LIMIT).expect_success();
    follow.finish_within(LIMIT).expect_success();
    assert_mlflow_equals_db(&read_mlflow(&python, &server.uri, "live"), &db);
}

/// Whether the file ends inside a TFRecord (u64 length, u32 CRC, data, u32 CRC).
fn cut_mid_record(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 8) else {
            return true;
        };
        at += 16 + u64::from_le_bytes(len.try_into().unwrap()) as usize;
    }
    at > bytes.len()
}
