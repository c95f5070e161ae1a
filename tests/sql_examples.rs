//! Every ```sql block of README.md runs against a database made by a real
//! small sweep named `quickstart`, so the documented queries stay true.
mod common;

use common::{Scratch, repo_path};
use sqlx::Row;

fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
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
    assert!(
        queries.len() >= 5,
        "README documents at least five example queries, found {}",
        queries.len()
    );
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("quickstart")
        .tiny_training()
        .defaults("epochs = 1")
        .grid("backbone = [\"resnet18\"]\nlr = [0.01, 0.02]")
        .write();
    s.run(&file).output().expect_success();

    let db = s.open_db();
    for q in &queries {
        let rows = db
            .try_rows(q)
            .unwrap_or_else(|e| panic!("README query failed: {e}\n{q}"));
        let returns_rows = !q.contains("FROM attempts a"); // no attempt failed in this sweep
        if returns_rows {
            assert!(!rows.is_empty(), "README query returned nothing:\n{q}");
            assert!(rows[0].columns().len() >= 2);
        }
    }
}
