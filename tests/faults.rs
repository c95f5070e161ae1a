//! Fault injection with the real binary and real SQLite: workers SIGKILLed at
//! random (seeded) points, the coordinator SIGKILLed five times in one sweep,
//! and a full disk under the checkpoints and under the database. The count of
//! randomised runs is small by default; `SWEEP_FAULT_RUNS=20` is the full run
//! whose figures README's "Reliability" section reports.
use rand::{Rng, SeedableRng};
use sqlx::{Connection, SqliteConnection};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sweep");
const EPOCHS: i64 = 3;
const BATCHES: i64 = 3;

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN).args(["data", "demo"]).arg(dir.path().join("data")).args(["--per-class", "2", "--image-size", "32"]).output().unwrap();
        assert!(out.status.success());
        Fx { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn sweep_file(&self, name: &str, epochs: i64, trials: usize, extra: &str) -> PathBuf {
        let lrs: Vec<String> = (0..trials).map(|i| format!("{}", 0.01 + i as f64 * 0.01)).collect();
        let text = format!(
            "[sweep]\nname = \"{name}\"\ndataset = \"{}\"\n[defaults]\nbackbone = \"resnet18\"\nepochs = {epochs}\nimage_size = 32\nbatch_size = 8\nmax_batches = {BATCHES}\nlog_every = 1\nhead = {{ hidden = [8] }}\n[grid]\nlr = [{}]\n[resources]\nretries = 5\n{extra}\n",
            self.p("data").display(),
            lrs.join(", ")
        );
        let f = self.p(&format!("{name}.toml"));
        std::fs::write(&f, text).unwrap();
        f
    }
    fn start(&self, file: &Path, db: &Path, results: &Path) -> Child {
        Command::new(BIN)
            .arg("--db")
            .arg(db)
            .arg("run")
            .arg(file)
            .arg("--results")
            .arg(results)
            .arg("--plain")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn q_i64(db: &Path, sql: &str) -> i64 {
    rt().block_on(async {
        let mut c = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await.unwrap()
    })
}

fn q_pids(db: &Path) -> Vec<i32> {
    rt().block_on(async {
        let mut c = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT pid FROM attempts WHERE finished_at IS NULL AND pid IS NOT NULL").fetch_all(&mut c).await.unwrap()
    })
    .into_iter()
    .map(|p| p as i32)
    .collect()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_dead(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        // A zombie still answers kill(0); reap-less check through /proc state.
        let state =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next().unwrap_or('?')));
        if !alive(pid) || state == Some('Z') || state.is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Checks what every run must leave behind: all trials done, every metric row
/// present exactly once, every attempt closed.
fn check_complete(db: &Path, trials: i64, epochs: i64) {
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM trials WHERE status = 'done'"), trials);
    assert_eq!(
        q_i64(db, "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)"),
        0,
        "duplicate metric rows"
    );
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'"), trials * epochs * BATCHES, "lost train rows");
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"), trials * epochs, "lost validation rows");
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM test_results"), trials);
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM metrics WHERE trial_id NOT IN (SELECT id FROM trials)"), 0, "orphan rows");
    assert_eq!(q_i64(db, "SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL"), 0, "open attempts");
    // Never two workers for one trial: attempts of a trial do not overlap in time.
    assert_eq!(
        q_i64(db, "SELECT COUNT(*) FROM attempts a JOIN attempts b ON a.trial_id = b.trial_id AND a.attempt < b.attempt WHERE b.started_at < a.finished_at"),
        0,
        "overlapping attempts"
    );
}

fn runs() -> u64 {
    std::env::var("SWEEP_FAULT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

#[test]
fn workers_sigkilled_at_random_points_lose_nothing() {
    let n = runs();
    let mut kills = 0;
    for seed in 0..n {
        let fx = Fx::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let file = fx.sweep_file("wk", EPOCHS, 2, "");
        let db = fx.p("r.db");
        let mut child = fx.start(&file, &db, &fx.p("results"));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Kill the running worker after a seeded number of progress lines, twice per run.
        let mut targets: Vec<usize> = (0..2).map(|_| rng.gen_range(2..14)).collect();
        targets.sort();
        let mut seen = 0;
        let mut log = Vec::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if line.contains("batch") || line.contains("epoch") {
                seen += 1;
                if targets.first() == Some(&seen) {
                    targets.remove(0);
                    for pid in q_pids(&db) {
                        // SAFETY: kill(2) on a worker's process group.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                        kills += 1;
                    }
                }
            }
            log.push(line);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "seed {seed}:\n{}", log.join("\n"));
        check_complete(&db, 2, EPOCHS);
        let killed = q_i64(&db, "SELECT COUNT(*) FROM attempts WHERE signal = 9 AND error_class = 'crash'");
        let retried = q_i64(&db, "SELECT COUNT(*) FROM attempts WHERE attempt > 1");
        assert_eq!(killed, retried, "seed {seed}: every SIGKILLed attempt is recorded with its signal and retried");
    }
    eprintln!("reliability: {n} runs, {kills} worker SIGKILLs, 0 rows lost, 0 duplicated");
}

#[test]
fn coordinator_sigkilled_five_times_completes_without_loss() {
    let fx = Fx::new();
    let epochs = 6;
    let file = fx.sweep_file("ck", epochs, 2, "");
    let db = fx.p("r.db");
    for round in 0..5 {
        let mut child = fx.start(&file, &db, &fx.p("results"));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = Vec::new();
        let mut hit = false;
        for line in stderr.lines() {
            let line = line.unwrap();
            let epoch_done = line.contains("] epoch ") && line.contains("val acc");
            log.push(line);
            if epoch_done {
                hit = true;
                break;
            }
        }
        assert!(hit, "round {round}: coordinator ended before an epoch completed:\n{}", log.join("\n"));
        let workers = q_pids(&db);
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in workers {
            assert!(wait_dead(pid, Duration::from_secs(10)), "round {round}: worker {pid} outlived its coordinator");
        }
    }
    let out = Command::new(BIN).arg("--db").arg(&db).arg("run").arg(&file).arg("--results").arg(fx.p("results")).arg("--plain").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_complete(&db, 2, epochs);
    assert!(q_i64(&db, "SELECT COUNT(*) FROM attempts WHERE error_class = 'crash' AND message LIKE 'coordinator died%'") >= 5);
    assert!(q_i64(&db, "SELECT MAX(resumed_from_epoch) FROM attempts") >= 1, "a trial resumed from its checkpoint, not epoch 0");
}

/// Mounts a small tmpfs, or says why it cannot.
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    fn new(path: PathBuf, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(&path).ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&path).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root and mount rights); the full-disk cases did not run");
            return None;
        }
        Some(SmallFs { path })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn integrity_ok(db: &Path) -> bool {
    rt().block_on(async {
        let mut c = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query_scalar::<_, String>("PRAGMA integrity_check").fetch_one(&mut c).await.unwrap() == "ok"
    })
}

#[test]
fn full_disk_under_checkpoints_is_a_clear_error() {
    let fx = Fx::new();
    let Some(fs) = SmallFs::new(fx.p("small"), "2m") else { return };
    let file = fx.sweep_file("disk", 1, 1, "");
    let text = std::fs::read_to_string(&file).unwrap().replace("retries = 5", "retries = 0");
    std::fs::write(&file, text).unwrap();
    let db = fx.p("r.db");
    let out = Command::new(BIN).arg("--db").arg(&db).arg("run").arg(&file).arg("--results").arg(&fs.path).arg("--plain").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let msg: String = rt().block_on(async {
        let mut c = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query_scalar("SELECT message FROM attempts").fetch_one(&mut c).await.unwrap()
    });
    assert!(msg.contains("No space left on device") && msg.contains("safetensors"), "{msg}");
    assert!(integrity_ok(&db));
}

#[test]
fn full_disk_under_the_database_is_a_clear_error_and_the_database_survives() {
    let fx = Fx::new();
    let Some(fs) = SmallFs::new(fx.p("small"), "1m") else { return };
    let file = fx.sweep_file("dbfull", 2, 2, "");
    let db = fs.path.join("r.db");
    // Fill the filesystem up to 200 KiB: room for the schema, not for the run's metrics.
    let filler = fs.path.join("filler");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=4k", "count=100000"]).stderr(Stdio::null()).status();
    let _ = Command::new("truncate").arg("-s").arg("-200K").arg(&filler).status();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .arg("run")
        .arg(&file)
        .arg("--results")
        .arg(fx.p("results"))
        .arg("--plain")
        .env("SWEEP_WORKER_CMD", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_worker.py"))
        .env("FAKE_MODE", "ok")
        .env("FAKE_STEPS", "3000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("database") && (err.contains("full") || err.contains("No space")), "{err}");
    std::fs::remove_file(&filler).unwrap();
    assert!(integrity_ok(&db), "database corrupt after ENOSPC");
    let out = Command::new(BIN).arg("--db").arg(&db).arg("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
