//! `sweep show TRIAL`: one trial in depth, for a terminal. Read-only.
use sqlx::SqlitePool;
use std::fmt::Write;
use std::path::Path;
use sweep_store::queries;
use tabled::settings::Style;

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A terminal sparkline with its range, e.g. `▇▅▄▂▁ 2.48 → 1.20 (min 1.20, max 2.51)`.
pub fn sparkline(values: &[f64]) -> String {
    if values.is_empty() {
        return "(no data)".into();
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let span = hi - lo;
    let line: String = values
        .iter()
        .map(|v| {
            if span > 0.0 {
                SPARKS[(((v - lo) / span) * 7.0).round().clamp(0.0, 7.0) as usize]
            } else {
                SPARKS[3]
            }
        })
        .collect();
    let first = values.first().copied().unwrap_or(0.0);
    let last = values.last().copied().unwrap_or(0.0);
    format!(
        "{line}  {first:.4} → {last:.4} (min {lo:.4}, max {hi:.4}, n={})",
        values.len()
    )
}

/// `checkpoints: best.safetensors (23 MB, float16) in results/s/t`: the
/// weights files a trial holds now, with the floating-point dtype their
/// headers declare (float16 after `keep_precision = "half"`); `last` that is
/// a second name of `best` (the last epoch was the best) says so.
pub fn checkpoints_line(dir: &Path) -> String {
    use sweep_trialfiles::{precision, retention};
    let present: Vec<&str> = [retention::BEST, retention::LAST, retention::TRAIN_STATE]
        .into_iter()
        .filter(|n| dir.join(n).is_file())
        .collect();
    if present.is_empty() {
        let why = if dir.is_dir() {
            ""
        } else {
            " (no such folder; pass --results DIR if the sweep ran with another)"
        };
        return format!("checkpoints: none in {}{why}", dir.display());
    }
    let files: Vec<String> = present
        .iter()
        .map(|n| {
            let p = dir.join(n);
            if *n == retention::LAST && retention::same_files(&dir.join(retention::BEST), &p) {
                return format!("{n} (the same file as {})", retention::BEST);
            }
            let size = retention::human_bytes(retention::disk_use(&p));
            let dtype = match precision::float_dtypes(&p) {
                Ok(d) if d.is_empty() => "no float tensors".to_string(),
                Ok(d) => d.join(" + "),
                Err(e) => format!("unreadable: {e}"),
            };
            format!("{n} ({size}, {dtype})")
        })
        .collect();
    format!("checkpoints: {} in {}", files.join(", "), dir.display())
}

/// The trial is not there (or its prefix is not one trial): the user's input;
/// or the database failed while reading it.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Resolve(#[from] queries::ResolveError),
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The trial in depth; with `results` (the results directory the sweep ran
/// with) also the checkpoints it holds on disk and their precision.
pub async fn render(
    pool: &SqlitePool,
    prefix: &str,
    results: Option<&Path>,
) -> Result<String, ShowError> {
    let (trial, _) = queries::resolve_trial(pool, None, prefix).await?;
    let head = queries::trial_header(pool, &trial).await?;
    if let Some(meta) = queries::sweep_meta(pool, &head.sweep).await?
        && meta.program.is_some()
    {
        return program_trial(pool, &trial, head, meta, results).await;
    }
    let mut out = String::new();
    // What every worker sets on a CUDA device (sweep_protocol::config::CUDNN_BENCHMARK).
    let cudnn = match head.device.as_deref() {
        Some(d) if d.starts_with("cuda") => format!(
            ", cudnn.benchmark {}",
            if sweep_protocol::config::CUDNN_BENCHMARK {
                "on"
            } else {
                "off"
            }
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "trial {trial} (sweep {}) — {}, epoch {}/{}, device {}{cudnn}",
        head.sweep,
        head.status,
        head.epochs_done,
        head.epochs,
        head.device.unwrap_or_else(|| "-".into())
    );
    if let Some(results) = results {
        let _ = writeln!(
            out,
            "{}",
            checkpoints_line(&results.join(&head.sweep).join(&trial))
        );
    }
    let _ = writeln!(out, "\nparameters");
    if let Ok(serde_json::Value::Object(map)) =
        serde_json::from_str::<serde_json::Value>(&head.params)
    {
        for (k, v) in map {
            let _ = writeln!(out, "  {k:<18} {}", sweep_protocol::config::value_text(&v));
        }
    }

    let attempts = queries::attempts(pool, &trial).await?;
    attempts_table(&mut out, attempts);

    let _ = writeln!(out, "\nlearning curves");
    for (label, split, name) in [
        ("train loss", "train", "loss"),
        ("train accuracy", "train", "accuracy"),
        ("val loss", "valid", "loss"),
        ("val accuracy", "valid", "accuracy"),
    ] {
        let _ = writeln!(
            out,
            "  {label:<15} {}",
            sparkline(&queries::metric_series(pool, &trial, split, name).await?)
        );
    }

    let decisions = queries::trial_decisions(pool, &trial).await?;
    decisions_table(&mut out, &decisions);
    lineage_lines(
        &mut out,
        &sweep_store::lineage::of_trial(pool, &trial).await?,
    );

    let Some(test) = queries::test_result(pool, &trial).await? else {
        let pruned = decisions.iter().find(|d| d.action == "stop");
        let _ = match pruned {
            Some(d) => writeln!(
                out,
                "\npruned by {} at epoch {}: not tested (`test_pruned = true` in [stopping] tests pruned trials)",
                d.method, d.epoch
            ),
            None => writeln!(out, "\nno test results yet"),
        };
        return Ok(out);
    };
    let _ = writeln!(
        out,
        "\ntest (best-validation checkpoint, epoch {}): accuracy {:.2}% ({} images), loss {:.4}",
        test.epoch,
        test.accuracy * 100.0,
        test.n,
        test.loss
    );

    let per_class = queries::class_accuracy(pool, &trial).await?;
    per_class_table(&mut out, &per_class);

    let cells = queries::confusion(pool, &trial).await?;
    confusions(&mut out, &per_class, &cells);

    let mis = queries::misclassified(pool, &trial, None).await?;
    misclassified_list(&mut out, &mis, &trial);

    Ok(out)
}

/// A program trial (`[program]` sweeps) in depth: its folder, parameters,
/// attempts, every epoch metric per epoch (the sweep's metric first), its
/// step metrics, stopping decisions and `test_*` values.
async fn program_trial(
    pool: &SqlitePool,
    trial: &str,
    head: queries::TrialHeader,
    meta: queries::SweepMeta,
    results: Option<&Path>,
) -> Result<String, ShowError> {
    use crate::program::{display_name, fmt_value, higher_is_better};
    let mut out = String::new();
    let budget = if head.epochs > 0 {
        format!("/{}", head.epochs)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "trial {trial} (sweep {}) — {}, epoch {}{budget}, device {}",
        head.sweep,
        head.status,
        head.epochs_done,
        head.device.as_deref().unwrap_or("-")
    );
    if let Some(results) = results {
        let dir = results.join(&head.sweep).join(trial);
        let _ = if dir.is_dir() {
            let size = sweep_trialfiles::retention::disk_use(&dir);
            writeln!(
                out,
                "trial folder: {} ({})",
                dir.display(),
                sweep_trialfiles::retention::human_bytes(size)
            )
        } else {
            writeln!(
                out,
                "trial folder: none at {} (pass --results DIR if the sweep ran with another)",
                dir.display()
            )
        };
    }
    let _ = writeln!(out, "\nparameters");
    if let Ok(serde_json::Value::Object(map)) =
        serde_json::from_str::<serde_json::Value>(&head.params)
    {
        for (k, v) in map {
            let _ = writeln!(
                out,
                "  {:<18} {}",
                display_name(&k),
                sweep_protocol::config::value_text(&v)
            );
        }
    }
    attempts_table(&mut out, queries::attempts(pool, trial).await?);

    let points = queries::program_points(pool, trial).await?;
    let of = |split: &'static str| points.iter().filter(move |p| p.split == split);
    // The sweep's metric first, then the others by name.
    let mut names: Vec<&str> = of("epoch").map(|p| p.name.as_str()).collect();
    names.sort_by_key(|n| (*n != meta.metric, *n));
    names.dedup();
    let up = higher_is_better(&meta.metric, &meta.metric, meta.direction.as_deref());
    let _ = writeln!(
        out,
        "\nmetrics per epoch ({}: the sweep's metric, {} is better)",
        display_name(&meta.metric),
        if up { "higher" } else { "lower" }
    );
    if names.is_empty() {
        let _ = writeln!(out, "  none reported yet");
    } else {
        let mut rows: std::collections::BTreeMap<i64, Vec<Option<f64>>> = Default::default();
        let idx: std::collections::HashMap<&str, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        for p in of("epoch") {
            if let Some(&i) = idx.get(p.name.as_str()) {
                rows.entry(p.epoch)
                    .or_insert_with(|| vec![None; names.len()])[i] = Some(p.value);
            }
        }
        let mut b = tabled::builder::Builder::default();
        let mut h = vec!["epoch".to_string()];
        h.extend(names.iter().map(|n| display_name(n)));
        b.push_record(h);
        for (epoch, vals) in &rows {
            let mut r = vec![epoch.to_string()];
            r.extend(vals.iter().map(|v| fmt_value(*v)));
            b.push_record(r);
        }
        let mut t = b.build();
        t.with(Style::rounded());
        let _ = writeln!(out, "{t}");
    }
    let best = of("epoch")
        .filter(|p| p.name == meta.metric)
        .fold(None::<(f64, i64)>, |acc, p| match acc {
            Some((v, _)) if (up && v >= p.value) || (!up && v <= p.value) => acc,
            _ => Some((p.value, p.epoch)),
        });
    let _ = match best {
        Some((v, e)) => writeln!(
            out,
            "best {} {} at epoch {e}",
            display_name(&meta.metric),
            fmt_value(Some(v))
        ),
        None => writeln!(
            out,
            "{} (the sweep's metric) not reported: the trial is unranked",
            display_name(&meta.metric)
        ),
    };

    // Ordered by name, then epoch and step: one pass groups them.
    let mut steps: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for p in of("step") {
        steps.entry(&p.name).or_default().push(p.value);
    }
    if !steps.is_empty() {
        let _ = writeln!(out, "\nstep metrics");
        let w = steps
            .keys()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .min(30);
        for (n, vals) in &steps {
            let _ = writeln!(out, "  {:<w$} {}", display_name(n), sparkline(vals));
        }
    }

    decisions_table(&mut out, &queries::trial_decisions(pool, trial).await?);
    lineage_lines(
        &mut out,
        &sweep_store::lineage::of_trial(pool, trial).await?,
    );

    let _ = writeln!(out, "\ntest");
    // In epoch then step order: the last of each name is the latest.
    let mut tests: std::collections::BTreeMap<&str, &queries::ProgramPoint> = Default::default();
    for p in of("test") {
        tests.insert(&p.name, p);
    }
    let w = tests
        .keys()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(30);
    for (n, p) in &tests {
        let _ = writeln!(
            out,
            "  {:<w$} {} (epoch {})",
            display_name(n),
            fmt_value(Some(p.value)),
            p.epoch
        );
    }
    if tests.is_empty() {
        let _ = writeln!(out, "  no test_* values reported");
    }
    Ok(out)
}

/// Every attempt of the trial: how long, how it ended, where it resumed.
fn attempts_table(out: &mut String, attempts: Vec<queries::AttemptRow>) {
    let _ = writeln!(out, "\nattempts");
    let mut b = tabled::builder::Builder::default();
    b.push_record(["#", "seconds", "exit", "error", "message", "resumed from"].map(String::from));
    for a in attempts {
        let secs = match (a.started_at, a.finished_at) {
            (Some(s), Some(e)) => format!("{:.1}", e - s),
            _ => "running".into(),
        };
        let exit = match (a.exit_code, a.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            _ => "-".into(),
        };
        let msg: String = a
            .message
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        b.push_record([
            a.attempt.to_string(),
            secs,
            exit,
            a.error_class.unwrap_or_else(|| "-".into()),
            msg,
            a.resumed_from_epoch
                .map(|r| format!("epoch {r}"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    let _ = writeln!(out, "{t}");
}

/// The early-stopping decisions about the trial, when there are any.
fn decisions_table(out: &mut String, decisions: &[sweep_store::recorder::DecisionRow]) {
    if !decisions.is_empty() {
        let _ = writeln!(out, "\nearly-stopping decisions");
        let mut b = tabled::builder::Builder::default();
        b.push_record(
            [
                "epoch", "method", "rung", "metric", "value", "cutoff", "compared", "action",
            ]
            .map(String::from),
        );
        for d in decisions {
            b.push_record([
                d.epoch.to_string(),
                d.method.clone(),
                d.rung.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                d.metric.clone(),
                format!("{:.4}", d.value),
                d.cutoff
                    .map(|c| format!("{c:.4}"))
                    .unwrap_or_else(|| "-".into()),
                d.compared.to_string(),
                d.action.clone(),
            ]);
        }
        let mut t = b.build();
        t.with(tabled::settings::Style::rounded());
        let _ = writeln!(out, "{t}");
    }
}

/// PBT: each checkpoint this trial copied, from whom, and what changed.
fn lineage_lines(out: &mut String, rows: &[sweep_store::lineage::LineageRow]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\npbt lineage");
    for l in rows {
        let changes: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&l.changes).unwrap_or_default();
        let changed = changes
            .iter()
            .map(|(k, v)| match (v.get(0), v.get(1)) {
                (Some(a), Some(b)) => format!("{k} {a} → {b}"),
                _ => format!("{k} {v}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "  epoch {}: took the checkpoint of trial {} ({:.4}, this trial {:.4}); {}",
            l.epoch,
            l.donor_id,
            l.donor_value,
            l.value,
            if changed.is_empty() {
                "parameters unchanged".to_string()
            } else {
                changed
            }
        );
    }
}

/// Test accuracy of each class.
fn per_class_table(out: &mut String, per_class: &[queries::ClassAccuracy]) {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["class", "correct", "total", "accuracy"].map(String::from));
    for c in per_class {
        b.push_record([
            c.class.clone(),
            c.correct.to_string(),
            c.total.to_string(),
            format!("{:.1}%", c.accuracy * 100.0),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    let _ = writeln!(out, "\nper-class accuracy\n{t}");
}

/// The confusion matrix over the classes, then the ten largest confusions.
fn confusions(
    out: &mut String,
    per_class: &[queries::ClassAccuracy],
    cells: &[queries::ConfusionCell],
) {
    let classes: Vec<String> = per_class.iter().map(|p| p.class.clone()).collect();
    let mut b = tabled::builder::Builder::default();
    let mut header = vec!["true \\ pred".to_string()];
    header.extend(classes.iter().cloned());
    b.push_record(header);
    for tc in &classes {
        let mut row = vec![tc.clone()];
        for pc in &classes {
            let c = cells
                .iter()
                .find(|x| &x.true_class == tc && &x.pred_class == pc)
                .map(|x| x.count)
                .unwrap_or(0);
            row.push(if c == 0 { ".".into() } else { c.to_string() });
        }
        b.push_record(row);
    }
    let mut t = b.build();
    t.with(Style::psql());
    let _ = writeln!(
        out,
        "\nconfusion matrix (rows: true class, columns: predicted)\n{t}"
    );

    let mut off: Vec<&queries::ConfusionCell> = cells
        .iter()
        .filter(|c| c.true_class != c.pred_class && c.count > 0)
        .collect();
    off.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.true_class.cmp(&b.true_class))
            .then(a.pred_class.cmp(&b.pred_class))
    });
    let _ = writeln!(out, "\ntop confusions");
    if off.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in off.iter().take(10) {
        let _ = writeln!(out, "  {} → {}: {}", c.true_class, c.pred_class, c.count);
    }
}

/// The first twenty misclassified test images, and how to query the rest.
fn misclassified_list(out: &mut String, mis: &[queries::Misclassified], trial: &str) {
    let _ = writeln!(out, "\nmisclassified test images ({})", mis.len());
    for m in mis.iter().take(20) {
        let _ = writeln!(
            out,
            "  {}: {} → {} (p = {:.3})",
            m.file, m.true_class, m.pred_class, m.prob
        );
    }
    if mis.len() > 20 {
        let _ = writeln!(
            out,
            "  … {} more (SELECT * FROM misclassified WHERE trial_id = '{trial}')",
            mis.len() - 20
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `last` that is a second name of `best` is named as such, not listed
    /// as a second file of the same size.
    #[test]
    fn a_last_linked_to_best_is_named_as_the_same_file() {
        let d = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..4).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &bytes).unwrap();
        safetensors::serialize_to_file([("w", t)], &None, &d.path().join("best.safetensors"))
            .unwrap();
        std::fs::hard_link(
            d.path().join("best.safetensors"),
            d.path().join("last.safetensors"),
        )
        .unwrap();
        let line = checkpoints_line(d.path());
        assert!(
            line.starts_with("checkpoints: best.safetensors ("),
            "{line}"
        );
        assert!(
            line.contains("float32), last.safetensors (the same file as best.safetensors) in "),
            "{line}"
        );
        std::fs::copy(d.path().join("best.safetensors"), d.path().join("copy")).unwrap();
        std::fs::rename(d.path().join("copy"), d.path().join("last.safetensors")).unwrap();
        assert_eq!(
            checkpoints_line(d.path()).matches("float32)").count(),
            2,
            "two files"
        );
    }

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
    /// A program trial (`[program]` sweep), its rows as the recorder writes them.
    #[test]
    fn show_program_trial() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let pool = sweep_store::db::open(&dir.path().join("r.db"), true).await.unwrap();
            let stmts = [
                r#"INSERT INTO sweeps (id, name, file, toml, dataset, created_at, updated_at, metric, direction, program) VALUES (1, 'mylab', 's.toml', '', '', 0, 0, 'val_acc', 'max', '["python","train.py"]')"#,
                r#"INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, device, epochs_done, created_at)
                   VALUES ('5fb60f28a7', 1, 0, '{"dropout":0.1,"lr":0.001,"seed":0}', '', 0.001, 0, 0, 0, 0, 'done', 'cuda:0', 2, 0)"#,
                "INSERT INTO attempts (trial_id, attempt, started_at, finished_at, exit_code) VALUES ('5fb60f28a7', 1, 100, 160.5, 0)",
                "INSERT INTO metrics VALUES ('5fb60f28a7', 1, 'epoch', 1, 0, 0, 'val_acc', 0.71, 0), ('5fb60f28a7', 1, 'epoch', 1, 0, 0, 'val_loss', 0.9, 0),
                   ('5fb60f28a7', 1, 'epoch', 2, 0, 0, 'val_loss', 0.7, 0), ('5fb60f28a7', 1, 'epoch', 2, 0, 0, 'val_acc', 0.68, 0),
                   ('5fb60f28a7', 1, 'step', 1, 0, 100, 'loss', 2.1, 0), ('5fb60f28a7', 1, 'step', 2, 0, 200, 'loss', 1.4, 0),
                   ('5fb60f28a7', 1, 'test', 2, 0, 0, 'test_acc', 0.66, 0)",
            ];
            for s in stmts {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            super::render(&pool, "5fb6", None).await.unwrap()
        });
        insta::assert_snapshot!(out);
    }

    /// A database with one finished trial, written row by row, rendered by `show`.
    #[test]
    fn show_one_trial() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let pool = sweep_store::db::open(&dir.path().join("r.db"), true).await.unwrap();
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
            super::render(&pool, "5fb6", None).await.unwrap()
        });
        insta::assert_snapshot!(out);
    }
}
