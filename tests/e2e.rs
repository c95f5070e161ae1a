//! End to end with the real worker (real libtorch training on tiny data):
//! results land in SQLite, reports parse back to the same numbers, reruns skip
//! finished trials, a grown grid runs only the new trials, the same seed gives
//! identical metrics, and a kill -9 of the coordinator resumes from the
//! checkpoint epoch.
use sqlx::{Row, SqlitePool};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN).args(["data", "demo"]).arg(dir.path().join("data")).args(["--per-class", "4", "--image-size", "32"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Env { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn db(&self) -> PathBuf {
        self.path("results.db")
    }
    fn sweep_file(&self, file: &str, name: &str, grid: &str, extra: &str) -> PathBuf {
        let text = format!(
            "[sweep]\nname = \"{name}\"\ndataset = \"{}\"\n{extra}\n[defaults]\nbackbone = \"resnet18\"\nepochs = 2\nimage_size = 32\nbatch_size = 8\nlog_every = 2\nhead = {{ hidden = [16] }}\n[grid]\n{grid}\n",
            self.path("data").display()
        );
        let p = self.path(file);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn sweep(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("--db").arg(self.db()).args(args).arg("--results").arg(self.path("results")).arg("--plain").output().unwrap()
    }
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("--db").arg(self.db()).args(args).output().unwrap()
    }
    fn pool(&self) -> (tokio::runtime::Runtime, SqlitePool) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pool = rt.block_on(SqlitePool::connect(&format!("sqlite://{}", self.db().display()))).unwrap();
        (rt, pool)
    }
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{err}", o.status.code(), String::from_utf8_lossy(&o.stdout));
    err
}

fn scalar_i64(rt: &tokio::runtime::Runtime, pool: &SqlitePool, sql: &str) -> i64 {
    rt.block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(pool)).unwrap()
}

#[test]
fn sweep_records_everything_and_reruns_only_what_is_new() {
    let env = Env::new();
    let file = env.sweep_file("s.toml", "e2e", "lr = [0.01, 0.02]", "");
    let err = ok(&env.sweep(&["run", file.to_str().unwrap()]));
    assert!(err.contains("2 to run"), "{err}");

    let (rt, pool) = env.pool();
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM trials WHERE status = 'done'"), 2);
    // log_every = 2 over 6 batches an epoch: 3 train records an epoch, 4 names each.
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'"), 2 * 2 * 3);
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"), 2 * 2);
    // 12 classes × 1 test image each.
    for row in rt.block_on(sqlx::query("SELECT trial_id, n, accuracy FROM test_results").fetch_all(&pool)).unwrap() {
        let trial: String = row.get(0);
        let n: i64 = row.get(1);
        let acc: f64 = row.get(2);
        assert_eq!(n, 12);
        let sum: i64 = rt.block_on(sqlx::query_scalar("SELECT SUM(count) FROM confusion WHERE trial_id = ?").bind(&trial).fetch_one(&pool)).unwrap();
        assert_eq!(sum, n, "confusion matrix sums to the test set size");
        let diag: i64 = rt
            .block_on(sqlx::query_scalar("SELECT SUM(count) FROM confusion WHERE trial_id = ? AND true_class = pred_class").bind(&trial).fetch_one(&pool))
            .unwrap();
        assert!((diag as f64 / n as f64 - acc).abs() < 1e-12);
        // Per-class accuracy agrees with the matrix, class by class.
        let bad: i64 = rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM class_accuracy a WHERE a.trial_id = ?1 AND (
                       a.correct != (SELECT count FROM confusion c WHERE c.trial_id = a.trial_id AND c.true_class = a.class AND c.pred_class = a.class)
                    OR a.total != (SELECT SUM(count) FROM confusion c WHERE c.trial_id = a.trial_id AND c.true_class = a.class))",
                )
                .bind(&trial)
                .fetch_one(&pool),
            )
            .unwrap();
        assert_eq!(bad, 0);
        let mis: i64 = rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM misclassified WHERE trial_id = ?").bind(&trial).fetch_one(&pool)).unwrap();
        assert_eq!(mis, n - diag);
    }
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM class_distribution WHERE split = 'train'"), 12);

    // JSON report agrees with the database to the last digit.
    let out = env.cmd(&["report", "--best", "accuracy", "--format", "json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let trial = r["trial"].as_str().unwrap();
        let acc: f64 = rt.block_on(sqlx::query_scalar("SELECT accuracy FROM test_results WHERE trial_id = ?").bind(trial).fetch_one(&pool)).unwrap();
        assert_eq!(r["test_accuracy"].as_f64().unwrap(), acc);
        assert!(r["params"]["lr"].is_number(), "varying lr is a column: {r}");
    }
    assert!(rows[0]["test_accuracy"].as_f64() >= rows[1]["test_accuracy"].as_f64());
    // CSV parses back to the same numbers.
    let out = env.cmd(&["report", "--format", "csv"]);
    ok(&out);
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let acc_col = header.iter().position(|h| *h == "test_accuracy").unwrap();
    for (line, r) in lines.zip(rows) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[acc_col].parse::<f64>().unwrap(), r["test_accuracy"].as_f64().unwrap());
    }

    // Rerun: nothing starts.
    let attempts_before = scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM attempts");
    let err = ok(&env.sweep(&["run", file.to_str().unwrap()]));
    assert!(err.contains("0 to run"), "{err}");
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM attempts"), attempts_before);

    // Grow the grid by one value: only the new trial runs.
    let file = env.sweep_file("s.toml", "e2e", "lr = [0.01, 0.02, 0.005]", "");
    let err = ok(&env.sweep(&["run", file.to_str().unwrap()]));
    assert!(err.contains("1 to run"), "{err}");
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM attempts"), attempts_before + 1);
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM trials WHERE status = 'done'"), 3);
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)"), 0);

    // predict with the best trial's checkpoint (by id prefix): one JSON line per image, named classes.
    let best = rows[0]["trial"].as_str().unwrap().to_string();
    let img = std::fs::read_dir(env.path("data/test/goat")).unwrap().next().unwrap().unwrap().path();
    let out =
        Command::new(BIN).arg("--db").arg(env.db()).args(["predict", "--trial", &best[..6], "--results"]).arg(env.path("results")).arg(&img).output().unwrap();
    ok(&out);
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["pred"].is_string(), "{line}");
    assert_eq!(line["logits"].as_array().unwrap().len(), 12);
    assert!(line["prob"].as_f64().unwrap() > 0.0);

    // The human table names the sweep and every trial.
    let out = env.cmd(&["report"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("sweep e2e — 3 trials, ranked by accuracy"), "{table}");
}

#[test]
fn same_seed_gives_identical_metrics() {
    let env = Env::new();
    for name in ["a", "b"] {
        let file = env.sweep_file(&format!("{name}.toml"), name, "lr = [0.01]", "seeds = [3]");
        ok(&env.sweep(&["run", file.to_str().unwrap()]));
    }
    let (rt, pool) = env.pool();
    let rows = |sweep: &str| -> Vec<(String, i64, i64, String, f64)> {
        rt.block_on(
            sqlx::query_as(
                "SELECT m.split, m.epoch, m.step, m.name, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN sweeps s ON s.id = t.sweep_id
                 WHERE s.name = ? AND m.name IN ('loss', 'accuracy') ORDER BY m.split, m.epoch, m.step, m.name",
            )
            .bind(sweep)
            .fetch_all(&pool),
        )
        .unwrap()
    };
    let a = rows("a");
    assert!(a.len() > 10);
    assert_eq!(a, rows("b"));
}

fn wait_for_line(child: &mut std::process::Child, needle: &str) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let hit = line.contains(needle);
        seen.push(line);
        if hit {
            return seen;
        }
    }
    panic!("coordinator ended before {needle:?}:\n{}", seen.join("\n"));
}

#[test]
fn kill_9_of_the_coordinator_resumes_from_the_checkpoint() {
    let env = Env::new();
    let file = env.sweep_file("k.toml", "kill", "lr = [0.01]", "");
    let text = std::fs::read_to_string(&file).unwrap().replace("epochs = 2", "epochs = 3");
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(env.db())
        .args(["run", file.to_str().unwrap(), "--plain", "--results"])
        .arg(env.path("results"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "epoch 1:");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let err = ok(&env.sweep(&["run", file.to_str().unwrap()]));
    assert!(err.contains("resumed after epoch"), "{err}");
    let (rt, pool) = env.pool();
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM trials WHERE status = 'done' AND epochs_done = 3"), 1);
    let resumed = scalar_i64(&rt, &pool, "SELECT MAX(resumed_from_epoch) FROM attempts");
    assert!(resumed >= 1, "resumed from epoch {resumed}");
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM attempts WHERE attempt = 1 AND error_class = 'crash'"), 1);
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, split, epoch, step, name HAVING COUNT(*) > 1)"), 0);
    assert_eq!(scalar_i64(&rt, &pool, "SELECT COUNT(*) FROM metrics WHERE split = 'valid' AND name = 'accuracy'"), 3);
}

#[test]
fn doctor_runs_without_ld_library_path() {
    let out = Command::new(BIN).arg("doctor").env_remove("LD_LIBRARY_PATH").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("libtorch       2.11.0"), "{text}");
    let _ = Path::new(BIN);
}
