//! Every ```sql block of README.md runs against a database made by a real
//! small sweep named `quickstart`, so the documented queries stay true.
use sqlx::Row;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in readme.lines() {
        match (&mut cur, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => cur = Some(String::new()),
            (Some(q), l) if l.starts_with("```") => {
                out.push(q.clone());
                cur = None;
            }
            (Some(q), _) => {
                q.push_str(line);
                q.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn readme_queries_run_against_a_real_sweep() {
    let queries = readme_queries();
    assert!(queries.len() >= 5, "README documents at least five example queries, found {}", queries.len());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(Command::new(BIN).args(["data", "demo"]).arg(&data).args(["--per-class", "4", "--image-size", "32"]).status().unwrap().success());
    let file = dir.path().join("q.toml");
    std::fs::write(
        &file,
        format!(
            "[sweep]\nname = \"quickstart\"\ndataset = \"{}\"\n[defaults]\nepochs = 1\nimage_size = 32\nbatch_size = 8\nlog_every = 2\nhead = {{ hidden = [16] }}\n[grid]\nbackbone = [\"resnet18\"]\nlr = [0.01, 0.02]\n",
            data.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("results.db");
    let out = Command::new(BIN).arg("--db").arg(&db).arg("run").arg(&file).arg("--results").arg(dir.path().join("results")).arg("--plain").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = rt.block_on(sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))).unwrap();
    for q in &queries {
        let rows = rt.block_on(sqlx::query(q).fetch_all(&pool)).unwrap_or_else(|e| panic!("README query failed: {e}\n{q}"));
        let returns_rows = !q.contains("FROM attempts a"); // no attempt failed in this sweep
        if returns_rows {
            assert!(!rows.is_empty(), "README query returned nothing:\n{q}");
            assert!(rows[0].columns().len() >= 2);
        }
    }
}
