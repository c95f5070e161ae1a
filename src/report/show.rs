//! `sweep show TRIAL`: one trial in depth, for a terminal. Read-only.
use sqlx::SqlitePool;
use std::fmt::Write;
use tabled::settings::Style;

/// attempt, started, finished, exit code, signal, error class, message, resumed from.
type AttemptRow = (i64, Option<f64>, Option<f64>, Option<i64>, Option<i64>, Option<String>, Option<String>, Option<i64>);

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A terminal sparkline with its range, e.g. `▇▅▄▂▁ 2.48 → 1.20 (min 1.20, max 2.51)`.
pub fn sparkline(values: &[f64]) -> String {
    if values.is_empty() {
        return "(no data)".into();
    }
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    let span = hi - lo;
    let line: String = values.iter().map(|v| if span > 0.0 { SPARKS[(((v - lo) / span) * 7.0).round().clamp(0.0, 7.0) as usize] } else { SPARKS[3] }).collect();
    let first = values.first().copied().unwrap_or(0.0);
    let last = values.last().copied().unwrap_or(0.0);
    format!("{line}  {first:.4} → {last:.4} (min {lo:.4}, max {hi:.4}, n={})", values.len())
}

async fn series(pool: &SqlitePool, trial: &str, split: &str, name: &str) -> Result<Vec<f64>, String> {
    sqlx::query_scalar("SELECT value FROM metrics WHERE trial_id = ? AND split = ? AND name = ? ORDER BY epoch, step")
        .bind(trial)
        .bind(split)
        .bind(name)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())
}

pub async fn render(pool: &SqlitePool, prefix: &str) -> Result<String, String> {
    let (trial, _) = crate::store::queries::resolve_trial(pool, None, prefix).await?;
    let e = |e: sqlx::Error| e.to_string();
    let (sweep, params, status, device, epochs_done, epochs): (String, String, String, Option<String>, i64, i64) =
        sqlx::query_as("SELECT s.name, t.params, t.status, t.device, t.epochs_done, t.epochs FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id = ?")
            .bind(&trial)
            .fetch_one(pool)
            .await
            .map_err(e)?;
    let mut out = String::new();
    let _ = writeln!(out, "trial {trial} (sweep {sweep}) — {status}, epoch {epochs_done}/{epochs}, device {}", device.unwrap_or_else(|| "-".into()));
    let _ = writeln!(out, "\nparameters");
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&params) {
        for (k, v) in map {
            let _ = writeln!(out, "  {k:<18} {}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
        }
    }

    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT attempt, started_at, finished_at, exit_code, signal, error_class, message, resumed_from_epoch FROM attempts WHERE trial_id = ? ORDER BY attempt",
    )
    .bind(&trial)
    .fetch_all(pool)
    .await
    .map_err(e)?;
    let _ = writeln!(out, "\nattempts");
    let mut b = tabled::builder::Builder::default();
    b.push_record(["#", "seconds", "exit", "error", "message", "resumed from"].map(String::from));
    for (n, start, end, code, sig, class, msg, resumed) in attempts {
        let secs = match (start, end) {
            (Some(s), Some(e)) => format!("{:.1}", e - s),
            _ => "running".into(),
        };
        let exit = match (code, sig) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            _ => "-".into(),
        };
        let msg: String = msg.unwrap_or_default().lines().next().unwrap_or("").chars().take(60).collect();
        b.push_record([
            n.to_string(),
            secs,
            exit,
            class.unwrap_or_else(|| "-".into()),
            msg,
            resumed.map(|r| format!("epoch {r}")).unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    let _ = writeln!(out, "{t}");

    let _ = writeln!(out, "\nlearning curves");
    for (label, split, name) in
        [("train loss", "train", "loss"), ("train accuracy", "train", "accuracy"), ("val loss", "valid", "loss"), ("val accuracy", "valid", "accuracy")]
    {
        let _ = writeln!(out, "  {label:<15} {}", sparkline(&series(pool, &trial, split, name).await?));
    }

    let test: Option<(f64, f64, i64, i64)> =
        sqlx::query_as("SELECT loss, accuracy, n, epoch FROM test_results WHERE trial_id = ?").bind(&trial).fetch_optional(pool).await.map_err(e)?;
    let Some((loss, acc, n, epoch)) = test else {
        let _ = writeln!(out, "\nno test results yet");
        return Ok(out);
    };
    let _ = writeln!(out, "\ntest (best-validation checkpoint, epoch {epoch}): accuracy {:.2}% ({n} images), loss {loss:.4}", acc * 100.0);

    let per_class: Vec<(String, i64, i64, f64)> =
        sqlx::query_as("SELECT class, correct, total, accuracy FROM class_accuracy WHERE trial_id = ? ORDER BY class")
            .bind(&trial)
            .fetch_all(pool)
            .await
            .map_err(e)?;
    let mut b = tabled::builder::Builder::default();
    b.push_record(["class", "correct", "total", "accuracy"].map(String::from));
    for (c, k, tot, a) in &per_class {
        b.push_record([c.clone(), k.to_string(), tot.to_string(), format!("{:.1}%", a * 100.0)]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    let _ = writeln!(out, "\nper-class accuracy\n{t}");

    let cells: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT true_class, pred_class, count FROM confusion WHERE trial_id = ? ORDER BY true_class, pred_class")
            .bind(&trial)
            .fetch_all(pool)
            .await
            .map_err(e)?;
    let classes: Vec<String> = per_class.iter().map(|p| p.0.clone()).collect();
    let mut b = tabled::builder::Builder::default();
    let mut header = vec!["true \\ pred".to_string()];
    header.extend(classes.iter().cloned());
    b.push_record(header);
    for tc in &classes {
        let mut row = vec![tc.clone()];
        for pc in &classes {
            let c = cells.iter().find(|(t, p, _)| t == tc && p == pc).map(|x| x.2).unwrap_or(0);
            row.push(if c == 0 { ".".into() } else { c.to_string() });
        }
        b.push_record(row);
    }
    let mut t = b.build();
    t.with(Style::psql());
    let _ = writeln!(out, "\nconfusion matrix (rows: true class, columns: predicted)\n{t}");

    let mut off: Vec<&(String, String, i64)> = cells.iter().filter(|(t, p, c)| t != p && *c > 0).collect();
    off.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let _ = writeln!(out, "\ntop confusions");
    if off.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (t, p, c) in off.iter().take(10) {
        let _ = writeln!(out, "  {t} → {p}: {c}");
    }

    let mis: Vec<(String, String, String, f64)> =
        sqlx::query_as("SELECT file, true_class, pred_class, prob FROM misclassified WHERE trial_id = ? ORDER BY prob DESC, file")
            .bind(&trial)
            .fetch_all(pool)
            .await
            .map_err(e)?;
    let _ = writeln!(out, "\nmisclassified test images ({})", mis.len());
    for (f, t, p, prob) in mis.iter().take(20) {
        let _ = writeln!(out, "  {f}: {t} → {p} (p = {prob:.3})");
    }
    if mis.len() > 20 {
        let _ = writeln!(out, "  … {} more (SELECT * FROM misclassified WHERE trial_id = '{trial}')", mis.len() - 20);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_the_range() {
        let s = sparkline(&[3.0, 2.0, 1.0]);
        assert!(s.starts_with("█▅▁"), "{s}");
        assert!(s.contains("n=3"));
        assert_eq!(sparkline(&[]), "(no data)");
        assert!(sparkline(&[1.0, 1.0]).starts_with("▄▄"));
    }
}

#[cfg(test)]
mod snapshots {
    /// A database with one finished trial, written row by row, rendered by `show`.
    #[test]
    fn show_one_trial() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async {
            let pool = crate::store::db::open(&dir.path().join("r.db"), true).await.unwrap();
            let stmts = [
                "INSERT INTO sweeps (id, name, file, toml, dataset, created_at, updated_at) VALUES (1, 'zodiac', 's.toml', '', 'data/zodiac', 0, 0)",
                r#"INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, device, epochs_done, created_at)
                   VALUES ('5fb60f28a7', 1, 0, '{"backbone":"resnet50","lr":0.001}', 'resnet50', 0.001, 2, 32, 224, 0, 'done', 'cuda:0', 2, 0)"#,
                "INSERT INTO attempts (trial_id, attempt, started_at, finished_at, signal, error_class, message) VALUES ('5fb60f28a7', 1, 100, 160.5, 9, 'crash', 'worker killed by signal 9')",
                "INSERT INTO attempts (trial_id, attempt, started_at, finished_at, exit_code, resumed_from_epoch) VALUES ('5fb60f28a7', 2, 170, 290, 0, 1)",
                "INSERT INTO metrics VALUES ('5fb60f28a7', 1, 'train', 1, 100, 100, 'loss', 2.1, 0), ('5fb60f28a7', 1, 'train', 1, 200, 200, 'loss', 1.4, 0),
                   ('5fb60f28a7', 2, 'train', 2, 100, 300, 'loss', 0.9, 0), ('5fb60f28a7', 1, 'valid', 1, 0, 200, 'accuracy', 0.71, 0),
                   ('5fb60f28a7', 2, 'valid', 2, 0, 300, 'accuracy', 0.88, 0)",
                "INSERT INTO test_results VALUES ('5fb60f28a7', 0.35, 0.9, 10, 2, 0)",
                "INSERT INTO class_accuracy VALUES ('5fb60f28a7', 'goat', 3, 4, 0.75), ('5fb60f28a7', 'ox', 3, 3, 1.0), ('5fb60f28a7', 'rat', 3, 3, 1.0)",
                "INSERT INTO confusion VALUES ('5fb60f28a7', 'goat', 'goat', 3), ('5fb60f28a7', 'goat', 'ox', 1), ('5fb60f28a7', 'goat', 'rat', 0),
                   ('5fb60f28a7', 'ox', 'ox', 3), ('5fb60f28a7', 'rat', 'rat', 3)",
                "INSERT INTO misclassified VALUES ('5fb60f28a7', 'data/zodiac/test/goat/goat_0007.jpg', 'goat', 'ox', 0.62)",
            ];
            for s in stmts {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            super::render(&pool, "5fb6").await.unwrap()
        });
        insta::assert_snapshot!(out);
    }
}
