//! The coordinator's process handling: as PID 1 (Docker without --init), with
//! a worker of another protocol version, and which device an attempt records.
//! Fake worker (tests/fake_worker.py), so these run in seconds.
use crate::common;
use common::prerequisites::missing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

fn fake_worker() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_worker.py")
}

/// A scratch dir with a tiny dataset and a sweep file of `trials` trials.
fn scratch(trials: usize, resources: &str) -> tempfile::TempDir {
    let dir = common::demo_dir();
    let lrs: Vec<String> = (0..trials)
        .map(|i| format!("{}", 0.01 + i as f64 * 0.001))
        .collect();
    std::fs::write(
        dir.path().join("s.toml"),
        format!("[sweep]\nname = \"ps\"\ndataset = \"data\"\n\n[grid]\nlr = [{}]\n\n[resources]\nretries = 0\n{resources}\n", lrs.join(", ")),
    )
    .unwrap();
    dir
}

fn sweep(dir: &Path, prefix: &[&str], env: &[(&str, &str)]) -> Output {
    let (program, mut args): (&str, Vec<String>) = match prefix.split_first() {
        Some((p, rest)) => (
            p,
            rest.iter()
                .map(|s| s.to_string())
                .chain([BIN.to_string()])
                .collect(),
        ),
        None => (BIN, vec![]),
    };
    args.extend(
        [
            "--db",
            "r.db",
            "run",
            "s.toml",
            "--results",
            "results",
            "--plain",
        ]
        .map(String::from),
    );
    let mut c = Command::new(program);
    c.args(&args)
        .current_dir(dir)
        .env("SWEEP_WORKER_CMD", fake_worker())
        .env("FAKE_STEPS", "1")
        .env_remove("SWEEP_DB")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn query(dir: &Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg(dir.join("r.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// `docker run image sweep run …` makes the coordinator PID 1. Workers used to
/// compare getppid() with 1 and kill themselves at birth.
#[test]
fn every_trial_succeeds_when_the_coordinator_is_pid_1() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        missing(
            &format!("unshare --pid --fork ({probe:?})"),
            "it needs root (CI runs as root) and util-linux",
        );
        return;
    }
    let dir = scratch(3, "");
    let out = sweep(
        dir.path(),
        &["unshare", "--pid", "--fork", "--mount-proc"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status"
        ),
        ["done|3"]
    );
}

/// A worker that speaks another protocol version is refused, not trusted.
#[test]
fn a_worker_of_another_protocol_version_fails_the_attempt_as_protocol() {
    let dir = scratch(1, "");
    let out = sweep(dir.path(), &[], &[("FAKE_PROTOCOL", "99")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = query(dir.path(), "SELECT error_class, message FROM attempts");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0]
            .starts_with("protocol|worker speaks protocol version 99, this coordinator speaks 2"),
        "{rows:?}"
    );
    assert_eq!(
        query(dir.path(), "SELECT count(*) FROM metrics"),
        ["0"],
        "nothing a mismatched worker says is recorded"
    );
}

/// The attempt keeps the physical GPU it was given (`cuda:1`), not the
/// worker's own view after CUDA_VISIBLE_DEVICES (`cuda:0`).
#[test]
fn attempts_record_the_physical_device() {
    let dir = scratch(2, "trials_per_gpu = 1");
    let fake = dir.path().join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let fake = fake.display().to_string();
    let out = sweep(
        dir.path(),
        &[],
        &[
            ("SWEEP_FAKE_GPUS", "2"),
            ("FAKE_DIR", &fake),
            ("FAKE_BARRIER", "2"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        query(dir.path(), "SELECT device FROM attempts ORDER BY device"),
        ["cuda:0", "cuda:1"]
    );
}

/// A deleted database with an old results/ left behind: a trial the database
/// never ran must not adopt the old checkpoints (it used to report "resumed
/// after epoch 2", 0.4 s and the old test accuracy as its own).
#[test]
fn checkpoints_unknown_to_the_database_are_set_aside() {
    let dir = scratch(1, "");
    assert_eq!(sweep(dir.path(), &[], &[]).status.code(), Some(0));
    let trial = query(dir.path(), "SELECT id FROM trials").remove(0);
    let tdir = dir.path().join("results/ps").join(&trial);
    std::fs::write(
        tdir.join("state.json"),
        r#"{"epoch":2,"step":10,"best_val_accuracy":0.9,"best_epoch":2}"#,
    )
    .unwrap();
    std::fs::write(tdir.join("last.safetensors"), b"old").unwrap();
    std::fs::remove_file(dir.path().join("r.db")).unwrap();
    let out = sweep(dir.path(), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("holds checkpoints of a run this database does not know"),
        "{stderr}"
    );
    assert!(
        !tdir.join("state.json").exists(),
        "the trial directory starts fresh"
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("results/ps"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{trial}.orphaned-"))
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(
        aside[0].path().join("state.json").exists(),
        "the old files are kept"
    );
}
