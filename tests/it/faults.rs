//! Fault injection with the real binary and real SQLite: workers SIGKILLed at
//! random (seeded) points, the coordinator SIGKILLed five times in one sweep,
//! and a full disk under the checkpoints and under the database. The count of
//! randomised runs is small by default; `SWEEP_FAULT_RUNS=20` is the full run
//! whose figures docs/reliability.md reports.
//!
//! The full-disk cases mount a small tmpfs, which needs root: under CI they
//! fail where they cannot (see `common::prerequisites`).
use crate::common;

use common::prerequisites::Tmpfs;
use common::{Db, Scratch, SweepFile, assert_all_die};
use rand::{Rng, SeedableRng};
use std::process::{Command, Stdio};
use std::time::Duration;

const EPOCHS: i64 = 3;
const BATCHES: i64 = 3;

/// Demo data (2 train images a class, 32 px).
fn scratch() -> Scratch {
    Scratch::new().with_demo(2, 32)
}

/// `trials` trials (lr 0.01, 0.02, …) of `epochs` epochs of BATCHES batches,
/// a train record every batch, each retried up to 5 times.
fn sweep_file(s: &Scratch, name: &str, epochs: i64, trials: usize) -> SweepFile {
    let lrs: Vec<String> = (0..trials)
        .map(|i| format!("{}", 0.01 + i as f64 * 0.01))
        .collect();
    s.sweep_file(name)
        .tiny_training()
        .defaults(&format!(
            "epochs = {epochs}\nmax_batches = {BATCHES}\nlog_every = 1\nhead = {{ hidden = [8] }}"
        ))
        .grid(&format!("lr = [{}]", lrs.join(", ")))
        .resources("retries = 5")
}

/// The pids of the workers running now.
fn worker_pids(db: &Db) -> Vec<i32> {
    db.query::<(i64,)>("SELECT pid FROM attempts WHERE finished_at IS NULL AND pid IS NOT NULL")
        .into_iter()
        .map(|(p,)| p as i32)
        .collect()
}

/// Checks what every run must leave behind: all trials done, every metric row
/// present exactly once, every attempt closed.
/// The pids of the workers running now, waiting (10 s at most) for the
/// recorder to commit a started attempt's pid.
fn running_worker_pids(db: &Db) -> Vec<i32> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pids = worker_pids(db);
        if !pids.is_empty() || std::time::Instant::now() > until {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_complete(db: &Db, trials: i64, epochs: i64) {
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        trials
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)"),
        0,
        "duplicate metric rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'"),
        trials * epochs * BATCHES,
        "lost train rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"),
        trials * epochs,
        "lost validation rows"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM test_results"), trials);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE trial_id NOT IN (SELECT id FROM trials)"),
        0,
        "orphan rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL"),
        0,
        "open attempts"
    );
    // Never two workers for one trial: attempts of a trial do not overlap in time.
    assert_eq!(
        db.count("SELECT COUNT(*) FROM attempts a JOIN attempts b ON a.trial_id = b.trial_id AND a.attempt < b.attempt WHERE b.started_at < a.finished_at"),
        0,
        "overlapping attempts"
    );
}

fn runs() -> u64 {
    std::env::var("SWEEP_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn workers_sigkilled_at_random_points_lose_nothing() {
    let n = runs();
    let mut kills = 0;
    for seed in 0..n {
        let s = scratch();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let file = sweep_file(&s, "wk", EPOCHS, 2).write();
        let db = s.open_db();
        let mut run = s.run(&file).spawn();
        // Kill the running worker after a seeded number of progress lines, twice per run.
        let mut targets: Vec<usize> = (0..2).map(|_| rng.gen_range(2..14)).collect();
        targets.sort();
        let mut seen = 0;
        let mut sent = 0;
        while let Some(line) = run.next_stderr_line() {
            if line.contains("batch") || line.contains("epoch") {
                seen += 1;
                if targets.first() == Some(&seen) {
                    targets.remove(0);
                    // A progress line means a worker runs; its pid reaches
                    // the database with the recorder's next batch.
                    for pid in running_worker_pids(&db) {
                        // SAFETY: kill(2) on a worker's process group.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                        sent += 1;
                    }
                }
            }
        }
        let out = run.wait();
        assert_eq!(out.code, Some(0), "seed {seed}:\n{}", out.stderr);
        assert!(
            sent >= 1,
            "seed {seed}: no worker was killed, so nothing was tested"
        );
        kills += sent;
        check_complete(&db, 2, EPOCHS);
        let killed =
            db.count("SELECT COUNT(*) FROM attempts WHERE signal = 9 AND error_class = 'crash'");
        let retried = db.count("SELECT COUNT(*) FROM attempts WHERE attempt > 1");
        assert_eq!(
            killed, sent,
            "seed {seed}: every SIGKILLed attempt is recorded with its signal"
        );
        assert_eq!(
            killed, retried,
            "seed {seed}: every SIGKILLed attempt is retried"
        );
    }
    eprintln!("reliability: {n} runs, {kills} worker SIGKILLs, 0 rows lost, 0 duplicated");
}

#[test]
fn coordinator_sigkilled_five_times_completes_without_loss() {
    let s = scratch();
    let epochs = 6;
    let file = sweep_file(&s, "ck", epochs, 2).write();
    let db = s.open_db();
    for round in 0..5 {
        let mut run = s.run(&file).spawn();
        run.wait_for_stderr_line(&format!("round {round}: an epoch completed"), |l| {
            l.contains("] epoch ") && l.contains("val acc")
        });
        let workers = worker_pids(&db);
        run.kill();
        assert_all_die(
            &workers,
            Duration::from_secs(10),
            &format!("round {round}: workers outliving their coordinator"),
        );
    }
    s.run(&file).output().expect_success();
    check_complete(&db, 2, epochs);
    assert!(db.count("SELECT COUNT(*) FROM attempts WHERE error_class = 'crash' AND message LIKE 'coordinator died%'") >= 5);
    assert!(
        db.count("SELECT MAX(resumed_from_epoch) FROM attempts") >= 1,
        "a trial resumed from its checkpoint, not epoch 0"
    );
}

#[test]
fn full_disk_under_checkpoints_is_a_clear_error() {
    let s = scratch();
    let Some(fs) = Tmpfs::mount(s.path("small"), "2m") else {
        return;
    };
    let file = sweep_file(&s, "disk", 1, 1)
        .resources("retries = 0")
        .write();
    let out = s.run(&file).results(&fs.path).output();
    out.expect_exit(1).expect_no_panic();
    let db = s.open_db();
    let msg: String = db.scalar("SELECT message FROM attempts");
    assert!(
        msg.contains("No space left on device") && msg.contains("safetensors"),
        "{msg}"
    );
    assert!(db.integrity_ok());
}

#[test]
fn full_disk_under_the_database_is_a_clear_error_and_the_database_survives() {
    let s = scratch();
    let Some(fs) = Tmpfs::mount(s.path("small"), "1m") else {
        return;
    };
    let file = sweep_file(&s, "dbfull", 2, 2).write();
    let db = fs.path.join("r.db");
    // Fill the filesystem up to 800 KiB: room for the schema (its migrations
    // peak at about 500 KiB with the WAL since the lineage table), not for the
    // run's 48 000 metric rows (several MB).
    let filler = fs.path.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=4k", "count=100000"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("truncate")
        .arg("-s")
        .arg("-800K")
        .arg(&filler)
        .status();
    let out = s
        .run(&file)
        .db(&db)
        .fake_worker("ok")
        .env("FAKE_STEPS", "3000")
        .output();
    out.expect_exit(1).expect_no_panic();
    assert!(
        out.stderr.contains(&format!(
            "results can no longer be written to {}",
            db.display()
        )) && (out.stderr.contains("full") || out.stderr.contains("No space"))
            && out.stderr.contains("free on its filesystem"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .matches("results can no longer be written")
            .count(),
        1,
        "one error, said once:\n{}",
        out.stderr
    );
    std::fs::remove_file(&filler).unwrap();
    assert!(
        Db::open(&db).integrity_ok(),
        "database corrupt after ENOSPC"
    );
    s.sweep(&["status"]).db(&db).output().expect_success();
}
