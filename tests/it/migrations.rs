//! Upgrading a database written by an older sweep keeps every row. The old
//! schema is made from the migration files themselves (up to 0.1.0's last),
//! filled with rows, then opened by the current `sweep`.
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

fn sqlite(db: &Path, sql: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3 (apt-get install sqlite3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_0_1_database_upgrades_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut applied = Vec::new();
    for name in [
        "20261129000001_init.sql",
        "20261129000002_attempt_batch_size.sql",
    ] {
        sqlite(&db, &std::fs::read_to_string(root.join(name)).unwrap());
        applied.push(name);
    }
    // What sqlx records for applied migrations (checksums as sqlx computes them: SHA-384 of the file).
    sqlite(
        &db,
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
           success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);",
    );
    for name in &applied {
        let (version, desc) = name.trim_end_matches(".sql").split_once('_').unwrap();
        let sum = Command::new("sha384sum")
            .arg(root.join(name))
            .output()
            .unwrap();
        let hex = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        sqlite(
            &db,
            &format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ({version}, '{}', 1, X'{hex}', 1)",
                desc.replace('_', " ")
            ),
        );
    }
    sqlite(
        &db,
        "PRAGMA foreign_keys = ON;
         INSERT INTO sweeps (id, name, file, toml, metric, dataset, status, created_at, updated_at) VALUES (1, 'old', 'f.toml', '', 'val_accuracy', 'data', 'done', 1, 1);
         INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, epochs_done, created_at)
           VALUES ('aaaaaaaaaa', 1, 0, '{}', 'resnet18', 0.1, 2, 32, 64, 0, 'done', 2, 1),
                  ('bbbbbbbbbb', 1, 1, '{}', 'resnet34', 0.1, 2, 32, 64, 0, 'failed', 1, 1);
         INSERT INTO attempts (trial_id, attempt, started_at, finished_at, exit_code, batch_size) VALUES ('aaaaaaaaaa', 1, 1, 2, 0, 32), ('bbbbbbbbbb', 1, 1, 2, 1, 32);
         INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time) VALUES ('aaaaaaaaaa', 1, 'valid', 1, 0, 10, 'accuracy', 0.5, 1);
         INSERT INTO test_results (trial_id, loss, accuracy, n, epoch, time) VALUES ('aaaaaaaaaa', 1.0, 0.6, 10, 2, 1);",
    );
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .arg("status")
        .env_remove("SWEEP_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done 1, pruned 0, failed 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM attempts"), "2");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM metrics"), "1");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM test_results"), "1");
    assert_eq!(sqlite(&db, "PRAGMA foreign_key_check"), "");
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok");
    // The new status is accepted, and the decisions table exists.
    sqlite(
        &db,
        "UPDATE trials SET status = 'pruned' WHERE id = 'bbbbbbbbbb'",
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM decisions"), "0");
    // Child rows still cascade from the new trials table.
    sqlite(
        &db,
        "PRAGMA foreign_keys = ON; DELETE FROM trials WHERE id = 'aaaaaaaaaa'",
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM attempts"), "1");
}
