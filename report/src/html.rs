//! `sweep report --html FILE`: one self-contained HTML file — the ranked table
//! (the same columns as `report --format table`), the sweep's charts, and a
//! section per trial with its learning curves, confusion heatmap, per-class
//! accuracy, top confusions and most confident mistakes.
//!
//! Self-contained means: charts are inline SVG (drawn by `crate::plot`, the
//! same drawings as the PNG/SVG files of `sweep plot`), the CSS is inline,
//! there is no script, and nothing refers to the network (the SVG namespace
//! URI is dropped: HTML does not need it for inline SVG). Fonts come from the
//! reader's system (`system-ui`, `sans-serif`).
//!
//! Stable hooks for tests and styling: `<table id="report">`, one
//! `<section class="trial" id="trial-<id>">` per trial, `<section id="charts">`
//! with `<figure id="chart-accuracy|chart-curves|chart-class-distribution">`,
//! and in each trial section `figure.curves`, `figure.confusion`,
//! `table.class-accuracy`, `table.top-confusions`.
//!
//! A program sweep (`[program]`) shows its own metrics instead: the table's
//! columns are the sweep's metric and the ranking metric, `#charts` holds one
//! `<figure id="chart-<stem>">` per metric (`chart-curves` is the sweep's
//! metric; the stems are `sweep plot`'s file names), and each trial section
//! has its `figure.curves` (a panel per metric) and `table.test-values`.
//! The file is written atomically (temporary file + rename).
use crate::plot::data::{self, SweepData, TrialData};
use crate::plot::{Chart, PlotError, render_svg};
use crate::rank::Report;
use sqlx::SqlitePool;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use sweep_store::queries;

/// Why the HTML report could not be written: `--html` names a folder (the
/// user's input), or the charts, the database or the disk failed.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("--html {} is a directory; pass a file name such as report.html", .0.display())]
    IsDirectory(PathBuf),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5rem; color: #1e1e1e; background: #fff; line-height: 1.4; }
h1 { margin: 0 0 .3rem; font-size: 1.7rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
h3 { margin-bottom: .4rem; }
.meta { color: #555; margin: .2rem 0; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d8d8d8; padding: .3rem .6rem; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
nav a { margin-right: .8rem; }
.status-done { color: #1a7f37; } .status-failed { color: #cf222e; } .status-running { color: #9a6700; }
.note { color: #777; font-style: italic; }
details summary { cursor: pointer; color: #444; }
code { font-size: .9em; }
"#;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use crate::program::fmt_value;
use crate::rank::{num, param_text, pct};

/// `[program] command` (a JSON argv template) as one line, e.g. `python train.py --lr {lr}`.
pub fn command_text(json: &str) -> String {
    match serde_json::from_str::<Vec<String>>(json) {
        Ok(argv) => argv.join(" "),
        Err(_) => json.to_string(),
    }
}

/// A plotters SVG document made fit for inlining: no namespace URI, labelled for screen readers.
fn inline_svg(svg: &str, label: &str) -> String {
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(label)),
        1,
    )
}

fn figure(
    out: &mut String,
    id: Option<&str>,
    class: &str,
    chart: &Chart,
    caption: &str,
) -> Result<(), HtmlError> {
    let svg = render_svg(chart)?;
    let id = id.map(|i| format!(" id=\"{i}\"")).unwrap_or_default();
    let _ = writeln!(
        out,
        "<figure{id} class=\"chart {class}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
        inline_svg(&svg, caption),
        esc(caption)
    );
    Ok(())
}

/// A program sweep's table: its metric columns, the last epoch, status and wall time.
fn program_table(out: &mut String, r: &Report, p: &crate::rank::ProgramReport) {
    out.push_str("<table id=\"report\">\n<thead><tr>");
    let mut header: Vec<String> = vec!["rank".into(), "trial".into()];
    header.extend(r.varying.iter().cloned());
    header.extend(p.columns.iter().cloned());
    header.extend(["epochs", "status", "wall s"].map(String::from));
    for h in &header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &r.rows {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td><a href=\"#trial-{id}\"><code>{id}</code></a></td>",
            row.rank_text(),
            id = esc(&row.trial)
        );
        for k in &r.varying {
            let _ = write!(out, "<td>{}</td>", esc(&param_text(row.params.get(k))));
        }
        for (_, v) in row.metrics.iter().flatten() {
            let _ = write!(out, "<td class=\"num\">{}</td>", esc(&fmt_value(*v)));
        }
        let _ = write!(out, "<td class=\"num\">{}</td>", row.epochs);
        let _ = writeln!(
            out,
            "<td class=\"status-{s}\">{s}</td><td class=\"num\">{}</td></tr>",
            esc(&num(row.wall_s, 1)),
            s = row.status
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if p.unranked > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"unranked\">{} trial(s) did not report {}: listed last, unranked</p>",
            p.unranked,
            esc(r.metric.name())
        );
    }
}

fn report_table(out: &mut String, r: &Report) {
    if let Some(p) = &r.program {
        return program_table(out, r, p);
    }
    out.push_str("<table id=\"report\">\n<thead><tr>");
    let mut header: Vec<String> = vec!["rank".into(), "trial".into()];
    header.extend(r.varying.iter().cloned());
    header.extend(
        [
            "val acc",
            "test acc",
            "test loss",
            "epochs",
            "wall s",
            "img/s",
            "status",
        ]
        .map(String::from),
    );
    for h in &header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &r.rows {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td><a href=\"#trial-{id}\"><code>{id}</code></a></td>",
            row.rank_text(),
            id = esc(&row.trial)
        );
        for k in &r.varying {
            let _ = write!(out, "<td>{}</td>", esc(&param_text(row.params.get(k))));
        }
        for v in [
            pct(row.val_accuracy),
            pct(row.test_accuracy),
            num(row.test_loss, 4),
            row.epochs.to_string(),
            num(row.wall_s, 1),
            num(row.images_per_s, 1),
        ] {
            let _ = write!(out, "<td class=\"num\">{}</td>", esc(&v));
        }
        let _ = writeln!(
            out,
            "<td class=\"status-{s}\">{s}</td></tr>",
            s = row.status
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

async fn last_error(pool: &SqlitePool, trial: &str) -> Result<Option<(String, String)>, HtmlError> {
    let row = queries::last_error(pool, trial).await?;
    Ok(row.map(|(c, m)| (c.unwrap_or_else(|| "error".into()), m.unwrap_or_default())))
}

async fn trial_section(
    out: &mut String,
    pool: &SqlitePool,
    rank: Option<usize>,
    t: &TrialData,
    program: bool,
) -> Result<(), HtmlError> {
    let rank = rank.map_or_else(|| "-".to_string(), |r| r.to_string());
    let id = esc(&t.id);
    let _ = writeln!(out, "<section class=\"trial\" id=\"trial-{id}\">");
    let _ = writeln!(
        out,
        "<h2>#{rank} trial <code>{id}</code> <span class=\"status-{s}\">{s}</span></h2>",
        s = esc(&t.status)
    );
    if !t.label.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", esc(&t.label));
    }
    match t.test {
        _ if program => test_values(out, t),
        Some(test) => {
            let _ = writeln!(
                out,
                "<p>test accuracy <strong>{:.2}%</strong> ({} images), loss {:.4} — best-validation checkpoint of epoch {}</p>",
                test.accuracy * 100.0,
                test.n,
                test.loss,
                test.epoch
            );
        }
        None => {
            let _ = writeln!(out, "<p class=\"note\">no test results yet</p>");
        }
    }
    let failed = t.status == "failed" || t.status == "interrupted";
    if let Some((class, message)) = if failed {
        last_error(pool, &t.id).await?
    } else {
        None
    } {
        let first = message.lines().next().unwrap_or("");
        let _ = writeln!(
            out,
            "<p class=\"status-failed\">last attempt: {} — {}</p>",
            esc(&class),
            esc(first)
        );
    }
    out.push_str("<details><summary>parameters</summary>\n<table class=\"params\"><tbody>\n");
    for (k, v) in &t.params {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(&param_text(Some(v)))
        );
    }
    out.push_str("</tbody></table>\n</details>\n");
    if t.has_curves() {
        figure(
            out,
            None,
            "curves",
            &Chart::TrialCurves(t),
            if program {
                "the metrics the program reported: epoch metrics by epoch, step metrics by step"
            } else {
                "learning curves: loss and accuracy per global step (train per log step, validation per epoch)"
            },
        )?;
    } else {
        let _ = writeln!(out, "<p class=\"note\">no metrics recorded yet</p>");
    }
    if t.has_confusion() {
        figure(
            out,
            None,
            "confusion",
            &Chart::Confusion(t),
            "test confusion matrix: true class down, predicted class across",
        )?;
    }
    if !t.class_accuracy.is_empty() {
        out.push_str("<h3>per-class accuracy (test)</h3>\n<table class=\"class-accuracy\">\n<thead><tr><th>class</th><th>correct</th><th>total</th><th>accuracy</th></tr></thead>\n<tbody>\n");
        for c in &t.class_accuracy {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td></tr>",
                esc(&c.class),
                c.correct,
                c.total,
                c.accuracy * 100.0
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    let top = t.top_confusions(10);
    if !top.is_empty() {
        out.push_str("<h3>top confusions</h3>\n<table class=\"top-confusions\">\n<thead><tr><th>true class</th><th>predicted as</th><th>count</th></tr></thead>\n<tbody>\n");
        for (a, b, c) in top {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{c}</td></tr>",
                esc(a),
                esc(b)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    } else if t.has_confusion() {
        let _ = writeln!(
            out,
            "<p class=\"note\">no confusions: every test image was classified correctly</p>"
        );
    }
    if !t.misclassified.is_empty() {
        out.push_str("<h3>most confident mistakes</h3>\n<table class=\"misclassified\">\n<thead><tr><th>file</th><th>true class</th><th>predicted</th><th>probability</th></tr></thead>\n<tbody>\n");
        for m in &t.misclassified {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td></tr>",
                esc(&m.file),
                esc(&m.true_class),
                esc(&m.pred_class),
                m.prob
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

/// A program trial's `test_*` values (the last it reported of each).
fn test_values(out: &mut String, t: &TrialData) {
    if t.test_values.is_empty() {
        let _ = writeln!(out, "<p class=\"note\">no test_* values reported</p>");
        return;
    }
    out.push_str("<table class=\"test-values\">\n<thead><tr><th>test metric</th><th>value</th><th>epoch</th></tr></thead>\n<tbody>\n");
    for (name, v, epoch) in &t.test_values {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{epoch}</td></tr>",
            esc(name),
            esc(&fmt_value(Some(*v)))
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Renders the whole document (no I/O but the database reads).
pub async fn render(pool: &SqlitePool, sweep: &str, report: &Report) -> Result<String, HtmlError> {
    let all = data::load_sweep(pool, sweep, None).await?;
    // The report decides which trials appear (filters, --top) and in which order.
    let trials: Vec<(Option<usize>, TrialData)> = report
        .rows
        .iter()
        .filter_map(|row| {
            all.trials
                .iter()
                .find(|t| t.id == row.trial)
                .map(|t| (row.rank, t.clone()))
        })
        .collect();
    let shown = SweepData {
        name: all.name.clone(),
        trials: trials.iter().map(|(_, t)| t.clone()).collect(),
        distribution: all.distribution.clone(),
        program: all.program.clone(),
        metric_charts: all.metric_charts.clone(),
    };
    let meta = queries::sweep_meta(pool, sweep).await?;

    let mut out = String::with_capacity(256 * 1024);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    let _ = writeln!(
        out,
        "<title>sweep {} — report</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        esc(sweep)
    );
    let _ = writeln!(out, "<header>\n<h1>sweep {}</h1>", esc(sweep));
    if let Some(m) = &meta {
        if let Some(d) = m.description.as_deref().filter(|d| !d.is_empty()) {
            let _ = writeln!(out, "<p class=\"meta\">{}</p>", esc(d));
        }
        match &all.program {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "<p class=\"meta\">program <code>{}</code> · sweep status {}</p>",
                    esc(&command_text(&p.command)),
                    esc(&m.status)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "<p class=\"meta\">dataset <code>{}</code> · sweep status {}</p>",
                    esc(&m.dataset),
                    esc(&m.status)
                );
            }
        }
    }
    let generated = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let picked = report
        .checkpoints_picked_by
        .as_deref()
        .map(|m| format!("; checkpoints picked by {}", esc(m)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} trials, ranked by {} ({}){picked} · generated {generated} by sweep {}</p>\n</header>",
        report.rows.len(),
        esc(report.metric.name()),
        esc(&report.ranked_by),
        env!("CARGO_PKG_VERSION")
    );
    if !trials.is_empty() {
        out.push_str("<nav>trials: ");
        for (_, t) in &trials {
            let _ = write!(
                out,
                "<a href=\"#trial-{id}\"><code>{id}</code></a>",
                id = esc(&t.id)
            );
        }
        out.push_str("</nav>\n");
    }
    out.push_str("<section id=\"summary\">\n<h2>trials</h2>\n");
    report_table(&mut out, report);
    out.push_str("</section>\n<section id=\"charts\">\n<h2>sweep charts</h2>\n");
    let mut any = false;
    for (i, mc) in shown.metric_charts.iter().enumerate() {
        if shown.trials.iter().any(|t| {
            t.series
                .iter()
                .any(|s| s.name == mc.name && s.per_step == mc.per_step)
        }) {
            figure(
                &mut out,
                Some(&format!("chart-{}", mc.stem)),
                "curves",
                &Chart::MetricCurves(&shown, i),
                &format!(
                    "{} of every trial, by {}",
                    mc.name,
                    if mc.per_step { "step" } else { "epoch" }
                ),
            )?;
            any = true;
        }
    }
    if shown.trials.iter().any(|t| t.test.is_some()) {
        figure(
            &mut out,
            Some("chart-accuracy"),
            "accuracy",
            &Chart::Accuracy(&shown),
            "test accuracy per trial (seed repeats: mean ± std)",
        )?;
        any = true;
    }
    if shown.trials.iter().any(|t| !t.valid_acc.is_empty()) {
        figure(
            &mut out,
            Some("chart-curves"),
            "curves",
            &Chart::SweepCurves(&shown),
            "validation accuracy of every trial",
        )?;
        any = true;
    }
    if !shown.distribution.is_empty() {
        figure(
            &mut out,
            Some("chart-class-distribution"),
            "class-distribution",
            &Chart::ClassDistribution(&shown),
            "images per class in each split",
        )?;
        any = true;
    }
    if !any {
        out.push_str("<p class=\"note\">no results to chart yet</p>\n");
    }
    out.push_str("</section>\n");
    for (rank, t) in &trials {
        trial_section(&mut out, pool, *rank, t, all.program.is_some()).await?;
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// Writes the report to `out` atomically (temporary file + rename).
pub async fn write_html(
    pool: &SqlitePool,
    sweep: &str,
    report: &Report,
    out: &Path,
) -> Result<(), HtmlError> {
    if out.is_dir() {
        return Err(HtmlError::IsDirectory(out.to_path_buf()));
    }
    let html = render(pool, sweep, report).await?;
    crate::plot::write_atomic(out, html.as_bytes())?;
    crate::plot::fonts::warn_missing_glyphs();
    Ok(())
}
