//! Every ```sql block of docs/database.md runs against a database made by a
//! real small sweep named `quickstart`, so the documented queries stay true.
use crate::common;

use common::{Scratch, repo_path};
use sqlx::Row;

/// The body of every ```sql block of docs/database.md, in order.
fn documented_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(repo_path("docs/database.md")).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in doc.lines() {
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
fn documented_queries_run_against_a_real_sweep() {
    let queries = documented_queries();
    assert!(
        queries.len() >= 5,
        "docs/database.md documents at least five example queries, found {}",
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
            .unwrap_or_else(|e| panic!("docs/database.md query failed: {e}\n{q}"));
        let returns_rows = !q.contains("FROM attempts a"); // no attempt failed in this sweep
        if returns_rows {
            assert!(
                !rows.is_empty(),
                "docs/database.md query returned nothing:\n{q}"
            );
            assert!(rows[0].columns().len() >= 2);
        }
    }
}
