//! The renderers of `sweep report`: a `Report` (and a `GroupReport`) as a
//! table, markdown, csv or json. Formatting only: every number comes computed.
use super::groups::fmt_p;
use super::{Group, GroupReport, RankError, Report, ReportRow, num, param_text, pct};
use crate::program::{display_name, fmt_value};
use tabled::settings::Style;

/// The header line of the table and markdown formats: what ranks the trials
/// and what picked the checkpoints.
fn title(r: &Report) -> String {
    let mut t = format!(
        "sweep {} — {} trials, ranked by {} ({})",
        r.sweep,
        r.rows.len(),
        display_name(r.metric.name()),
        r.ranked_by
    );
    if let Some(m) = &r.checkpoints_picked_by {
        t.push_str(&format!("; checkpoints picked by {m}"));
    }
    if let Some(p) = &r.program
        && p.sweep_metric != r.metric.name()
    {
        t.push_str(&format!(
            "; the sweep's metric is {}",
            display_name(&p.sweep_metric)
        ));
    }
    t
}

/// The column names after the parameters: a program sweep's metric
/// columns, the last epoch, status and wall time; the built-in trainer's
/// columns otherwise. `raw`: the csv names (a program's names as they are).
fn program_tail(r: &Report, raw: bool) -> Option<Vec<String>> {
    let p = r.program.as_ref()?;
    let mut h: Vec<String> = p
        .columns
        .iter()
        .map(|c| if raw { c.clone() } else { display_name(c) })
        .collect();
    h.extend(if raw {
        ["epochs", "status", "wall_s"].map(String::from)
    } else {
        ["epochs", "status", "wall s"].map(String::from)
    });
    Some(h)
}

fn header(r: &Report) -> Vec<String> {
    let mut h = vec!["rank".to_string(), "trial".into()];
    h.extend(r.varying.iter().map(|k| display_name(k)));
    if let Some(tail) = program_tail(r, false) {
        h.extend(tail);
        return h;
    }
    h.extend(
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
    h
}

fn human_rows(r: &Report) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| {
            let mut v = vec![row.rank_text(), row.trial.clone()];
            v.extend(r.varying.iter().map(|k| param_text(row.params.get(k))));
            if let Some(m) = &row.metrics {
                v.extend(m.iter().map(|(_, x)| fmt_value(*x)));
                v.extend([row.epochs.to_string(), status_text(row), num(row.wall_s, 1)]);
                return v;
            }
            v.extend([
                pct(row.val_accuracy),
                pct(row.test_accuracy),
                num(row.test_loss, 4),
                row.epochs.to_string(),
                num(row.wall_s, 1),
                num(row.images_per_s, 1),
                status_text(row),
            ]);
            v
        })
        .collect()
}

/// A pruned trial says where early stopping left it (its `val acc` is the
/// best it reached by then).
fn status_text(row: &ReportRow) -> String {
    match row.status {
        sweep_store::TrialStatus::Pruned => format!("pruned at epoch {}", row.epochs),
        s => s.to_string(),
    }
}

pub fn render(r: &Report, format: &str) -> Result<String, RankError> {
    match format {
        "table" | "markdown" => {
            let mut b = tabled::builder::Builder::default();
            b.push_record(header(r));
            for row in human_rows(r) {
                b.push_record(row);
            }
            let mut t = b.build();
            if format == "markdown" {
                t.with(Style::markdown());
            } else {
                t.with(Style::rounded());
            }
            let title = title(r);
            let mut out = if format == "table" {
                format!("{title}\n{t}\n")
            } else {
                format!("**{title}**\n\n{t}\n")
            };
            if let Some(line) = unranked_line(r) {
                if format == "markdown" {
                    out.push('\n');
                }
                out.push_str(&line);
                out.push('\n');
            }
            Ok(out)
        }
        "csv" => {
            let mut out = String::new();
            let mut h = vec!["rank".to_string(), "trial".into()];
            h.extend(r.varying.iter().map(|k| csv_field(k)));
            if let Some(tail) = program_tail(r, true) {
                h.extend(tail.iter().map(|c| csv_field(c)));
            } else {
                h.extend(
                    [
                        "val_accuracy",
                        "test_accuracy",
                        "test_loss",
                        "epochs",
                        "wall_s",
                        "images_per_s",
                        "status",
                    ]
                    .map(String::from),
                );
            }
            out.push_str(&h.join(","));
            out.push('\n');
            let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
            for row in &r.rows {
                let mut v = vec![
                    row.rank.map(|n| n.to_string()).unwrap_or_default(),
                    row.trial.clone(),
                ];
                v.extend(
                    r.varying
                        .iter()
                        .map(|k| csv_field(&param_text(row.params.get(k)))),
                );
                if let Some(m) = &row.metrics {
                    v.extend(m.iter().map(|(_, x)| raw(*x)));
                    v.extend([
                        row.epochs.to_string(),
                        row.status.to_string(),
                        raw(row.wall_s),
                    ]);
                    out.push_str(&v.join(","));
                    out.push('\n');
                    continue;
                }
                v.extend([
                    raw(row.val_accuracy),
                    raw(row.test_accuracy),
                    raw(row.test_loss),
                    row.epochs.to_string(),
                    raw(row.wall_s),
                    raw(row.images_per_s),
                    row.status.to_string(),
                ]);
                out.push_str(&v.join(","));
                out.push('\n');
            }
            Ok(out)
        }
        "json" => Ok(serde_json::to_string_pretty(r)? + "\n"),
        other => Err(RankError::UnknownFormat(other.to_string())),
    }
}

/// Under a program sweep's table: how many trials never reported the
/// ranking metric (they are listed last, without a rank).
fn unranked_line(r: &Report) -> Option<String> {
    let n = r.program.as_ref()?.unranked;
    (n > 0).then(|| {
        format!(
            "{n} trial(s) did not report {}: listed last, unranked",
            display_name(r.metric.name())
        )
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn render_groups(g: &GroupReport, format: &str) -> Result<String, RankError> {
    match format {
        "table" | "markdown" => Ok(groups_human(g, format)),
        "csv" => Ok(groups_csv(g)),
        "json" => Ok(serde_json::to_string_pretty(g)? + "\n"),
        other => Err(RankError::UnknownFormat(other.to_string())),
    }
}

/// `render_groups` as a table or markdown: the head line, the table, then
/// the verdict and the methods.
fn groups_human(g: &GroupReport, format: &str) -> String {
    let is_pct = g.metric.is_fraction();
    let f = |x: f64| {
        if is_pct {
            format!("{:.2}%", x * 100.0)
        } else {
            format!("{x:.4}")
        }
    };
    let is_best = |grp: &Group| g.best.as_ref() == Some(&grp.value);
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        g.key.clone(),
        "n".into(),
        format!("mean {}", g.metric),
        "± std".into(),
        "95% CI".into(),
        "p vs best (Holm)".into(),
        "trials".into(),
    ]);
    for grp in &g.groups {
        let p = match grp.p_holm {
            _ if is_best(grp) => "best".to_string(),
            Some(p) => fmt_p(p),
            None => "-".into(),
        };
        b.push_record([
            param_text(Some(&grp.value)),
            grp.n.to_string(),
            grp.mean.map(f).unwrap_or_else(|| "-".into()),
            grp.std.map(f).unwrap_or_else(|| "-".into()),
            grp.ci95
                .map(|(l, h)| {
                    format!(
                        "[{}, {}]{}",
                        f(l),
                        f(h),
                        if grp.ci95_clamped { "*" } else { "" }
                    )
                })
                .unwrap_or_else(|| "-".into()),
            p,
            grp.trials.join(" "),
        ]);
    }
    let mut t = b.build();
    if format == "markdown" {
        t.with(Style::markdown());
    } else {
        t.with(Style::rounded());
    }
    let head = groups_head(g);
    let mut s = if format == "table" {
        format!("{head}\n{t}\n")
    } else {
        format!("**{head}**\n\n{t}\n")
    };
    for n in groups_notes(g) {
        if format == "markdown" {
            s.push('\n');
        }
        s.push_str(&n);
        s.push('\n');
    }
    s
}

/// The head line of the grouped table: what, by which key, over how many trials.
fn groups_head(g: &GroupReport) -> String {
    let mut head = format!(
        "sweep {} — {} by {} over {} trials ({})",
        g.sweep, g.metric, g.key, g.trials, g.ranked_by
    );
    if let Some(m) = &g.checkpoints_picked_by {
        head.push_str(&format!("; checkpoints picked by {m}"));
    }
    if g.groups.len() < g.groups_total {
        head.push_str(&format!(
            "; top {} of {} groups shown",
            g.groups.len(),
            g.groups_total
        ));
    }
    head
}

/// The lines under the grouped table: the verdict, then how p and the
/// intervals were computed (each only when the table shows one).
fn groups_notes(g: &GroupReport) -> Vec<String> {
    let mut notes: Vec<String> = g.verdict.clone();
    if g.best.is_some() && g.groups_total > 1 {
        notes.push(format!("p: {}", g.test_method));
    }
    if g.groups.iter().any(|x| x.ci95.is_some()) {
        let clamped = if g.groups.iter().any(|x| x.ci95_clamped) {
            " (* = clamped)"
        } else {
            ""
        };
        notes.push(format!("95% CI: {}{clamped}", g.ci_method));
    }
    notes
}

/// `render_groups` as csv: full-precision numbers, empty where none.
fn groups_csv(g: &GroupReport) -> String {
    let mut s = format!(
        "{},n,mean,std,ci95_low,ci95_high,ci95_clamped,p_welch,p_holm\n",
        g.key
    );
    let raw = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
    for grp in &g.groups {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            csv_field(&param_text(Some(&grp.value))),
            grp.n,
            raw(grp.mean),
            raw(grp.std),
            raw(grp.ci95.map(|c| c.0)),
            raw(grp.ci95.map(|c| c.1)),
            grp.ci95_clamped,
            raw(grp.p_welch),
            raw(grp.p_holm)
        ));
    }
    s
}
