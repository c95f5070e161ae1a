//! The chart drawings, generic over the plotters backend so that one drawing
//! gives both the PNG and the SVG (and the HTML report's inline SVG).
use super::data::{SweepData, TrialData, accuracy_groups};
use super::{PlotError, font};
use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub type Area<DB> = DrawingArea<DB, Shift>;

/// Tableau-10, then a darker cycle of it for more series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Height of the accuracy chart's plot area (600 − title − margins − axis), for bar thickness.
const ACCURACY_PLOT_HEIGHT: f64 = 480.0;
/// The y range of accuracy curves: 0–100 % with room for markers at the ends.
const ACCURACY_RANGE: std::ops::Range<f64> = -0.015..1.015;
const GRID: RGBColor = RGBColor(225, 225, 225);
const TEXT: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(150, 150, 150);

pub fn color(i: usize) -> RGBColor {
    let c = PALETTE[i % PALETTE.len()];
    let round = (i / PALETTE.len()) % 3;
    // Later rounds are darker so that more than ten series stay distinguishable.
    let f = [1.0, 0.65, 0.4][round];
    RGBColor(
        (c.0 as f64 * f) as u8,
        (c.1 as f64 * f) as u8,
        (c.2 as f64 * f) as u8,
    )
}

pub fn de<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn text_style(size: f64) -> TextStyle<'static> {
    font(size).color(&TEXT)
}

/// Every chart's mesh: white minor lines, grey major lines, 13 px labels and
/// 14 px axis titles.
fn house_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.light_line_style(WHITE)
        .bold_line_style(GRID)
        .label_style(text_style(13.0))
        .axis_desc_style(text_style(14.0))
}

fn anchored(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    text_style(size).pos(Pos::new(h, v))
}

fn percent(v: &f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Text width in pixels as the embedded font lays it out.
fn text_width<DB: DrawingBackend>(root: &Area<DB>, text: &str, size: f64) -> u32 {
    root.estimate_text_size(text, &TextStyle::from(font(size)))
        .map(|(w, _)| w)
        .unwrap_or((text.chars().count() as f64 * size * 0.6) as u32)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        s.chars().take(max.saturating_sub(1)).chain(['…']).collect()
    } else {
        s.to_string()
    }
}

fn title<DB: DrawingBackend>(root: &Area<DB>, text: &str, size: f64) -> Result<(), PlotError> {
    let (w, _) = root.dim_in_pixel();
    let max_chars = (w as f64 / (size * 0.55)) as usize;
    root.draw_text(
        &truncate(text, max_chars),
        &anchored(size, HPos::Center, VPos::Center),
        (w as i32 / 2, 24),
    )
    .map_err(de)
}

#[derive(Clone, Copy)]
enum Mark {
    Line,
    LineDot,
    Block,
}

/// A one-line legend centred at height `y`, for charts whose plot area has no room for one.
fn legend_row<DB: DrawingBackend>(
    root: &Area<DB>,
    y: i32,
    items: &[(&str, RGBColor, Mark)],
) -> Result<(), PlotError> {
    let (w, _) = root.dim_in_pixel();
    let size = 13.0;
    let widths: Vec<i32> = items
        .iter()
        .map(|(t, _, _)| 30 + text_width(root, t, size) as i32)
        .collect();
    let total: i32 = widths.iter().sum::<i32>() + 24 * (items.len() as i32 - 1).max(0);
    let mut x = (w as i32 - total).max(0) / 2;
    for ((text, c, mark), width) in items.iter().zip(widths) {
        match mark {
            Mark::Line | Mark::LineDot => {
                root.draw(&PathElement::new(
                    vec![(x, y), (x + 22, y)],
                    c.stroke_width(2),
                ))
                .map_err(de)?;
                if matches!(mark, Mark::LineDot) {
                    root.draw(&Circle::new((x + 11, y), 4, c.filled()))
                        .map_err(de)?;
                }
            }
            Mark::Block => root
                .draw(&Rectangle::new(
                    [(x + 4, y - 6), (x + 18, y + 6)],
                    c.filled(),
                ))
                .map_err(de)?,
        }
        root.draw_text(text, &anchored(size, HPos::Left, VPos::Center), (x + 30, y))
            .map_err(de)?;
        x += width + 24;
    }
    Ok(())
}

fn no_data<DB: DrawingBackend>(root: &Area<DB>, text: &str) -> Result<(), PlotError> {
    let (w, h) = root.dim_in_pixel();
    root.draw_text(
        text,
        &anchored(18.0, HPos::Center, VPos::Center).color(&MUTED),
        (w as i32 / 2, h as i32 / 2),
    )
    .map_err(de)
}

/// The category index a label key point stands for (integers only; plotters
/// places key points at whole numbers when asked for one more label than categories).
fn category(v: f64, n: usize) -> Option<usize> {
    let i = v.round();
    ((v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n).then_some(i as usize)
}

fn step_range(series: &[&[(i64, f64)]]) -> std::ops::Range<i64> {
    let max = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1);
    // A little room right of the last point so its marker is not clipped.
    0..max + (max + 39) / 40
}

/// One trial's learning curves: loss (left) and accuracy (right) against the
/// global step; training per log step as a line, validation per epoch as a
/// line with markers.
pub fn trial_curves<DB: DrawingBackend>(root: &Area<DB>, t: &TrialData) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    let mut head = format!("trial {}", t.id);
    if !t.label.is_empty() {
        head.push_str(&format!(" — {}", t.label));
    }
    if let Some(test) = t.test {
        head.push_str(&format!(" — test accuracy {:.1}%", test.accuracy * 100.0));
    }
    title(root, &head, 20.0)?;
    legend_row(
        root,
        54,
        &[
            ("train (per log step)", PALETTE[0], Mark::Line),
            ("validation (per epoch)", PALETTE[1], Mark::LineDot),
        ],
    )?;
    let (_, body) = root.split_vertically(66);
    let panels = body.split_evenly((1, 2));
    let [left, right] = panels.as_slice() else {
        return Err(PlotError::Internal("chart panels"));
    };
    panel(left, "loss", &t.train_loss, &t.valid_loss, false)?;
    panel(right, "accuracy", &t.train_acc, &t.valid_acc, true)
}

fn panel<DB: DrawingBackend>(
    area: &Area<DB>,
    name: &str,
    train: &[(i64, f64)],
    valid: &[(i64, f64)],
    is_accuracy: bool,
) -> Result<(), PlotError> {
    let xs = step_range(&[train, valid]);
    let ys = if is_accuracy {
        ACCURACY_RANGE
    } else {
        let (lo, hi) = train
            .iter()
            .chain(valid)
            .map(|p| p.1)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        if lo.is_finite() && hi.is_finite() {
            let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(1e-3);
            (if lo >= 0.0 {
                (lo - pad).max(0.0)
            } else {
                lo - pad
            })..hi + pad
        } else {
            0.0..1.0
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(name, font(17.0))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(xs, ys)
        .map_err(de)?;
    let y_fmt = |v: &f64| {
        if is_accuracy {
            percent(v)
        } else {
            format!("{v:.2}")
        }
    };
    house_mesh(&mut chart.configure_mesh())
        .x_desc("global step")
        .y_desc(name)
        .y_label_formatter(&y_fmt)
        .draw()
        .map_err(de)?;
    chart
        .draw_series(LineSeries::new(
            train.iter().copied(),
            PALETTE[0].stroke_width(2),
        ))
        .map_err(de)?;
    chart
        .draw_series(LineSeries::new(
            valid.iter().copied(),
            PALETTE[1].stroke_width(2),
        ))
        .map_err(de)?;
    chart
        .draw_series(
            valid
                .iter()
                .map(|p| Circle::new(*p, 4, PALETTE[1].filled())),
        )
        .map_err(de)?;
    if train.is_empty() && valid.is_empty() {
        return no_data(area, "no data yet");
    }
    Ok(())
}

/// White → dark blue ("Blues"), `f` in 0..=1.
fn heat(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let lo = (247.0, 251.0, 255.0);
    let hi = (8.0, 48.0, 107.0);
    RGBColor(
        (lo.0 + (hi.0 - lo.0) * f) as u8,
        (lo.1 + (hi.1 - lo.1) * f) as u8,
        (lo.2 + (hi.2 - lo.2) * f) as u8,
    )
}

/// The test confusion matrix: true class down, predicted class across, counts in the cells.
pub fn confusion<DB: DrawingBackend>(root: &Area<DB>, t: &TrialData) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    let n = t.classes.len();
    let images: i64 = t.confusion.iter().flatten().sum();
    title(
        root,
        &format!("confusion matrix — trial {} (test, {images} images)", t.id),
        20.0,
    )?;
    if n == 0 {
        return no_data(root, "no test results yet");
    }
    let (w, h) = root.dim_in_pixel();
    let (top, right) = (60i32, 24i32);
    let mut label_size = 14.0;
    let widest = |size: f64| {
        t.classes
            .iter()
            .map(|c| text_width(root, &truncate(c, 24), size))
            .max()
            .unwrap_or(0) as i32
    };
    let mut margin = widest(label_size) + 44;
    let mut cell = ((w as i32 - margin - right).min(h as i32 - top - margin) / n as i32).max(1);
    if (cell as f64) < label_size * 1.3 {
        label_size = (cell as f64 * 0.75).max(5.0);
        margin = widest(label_size) + 44;
        cell = ((w as i32 - margin - right).min(h as i32 - top - margin) / n as i32).max(1);
    }
    let grid = cell * n as i32;
    let x0 = margin + ((w as i32 - margin - right) - grid).max(0) / 2;
    let y0 = top;
    let max = t
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let count_size = (cell as f64 * 0.38).clamp(8.0, 20.0);
    for (i, row) in t.confusion.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            let f = c as f64 / max;
            let (cx, cy) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
            root.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                heat(f).filled(),
            ))
            .map_err(de)?;
            if cell >= 14 {
                let color = if c == 0 {
                    RGBColor(190, 190, 190)
                } else if f > 0.5 {
                    WHITE
                } else {
                    TEXT
                };
                let style = font(count_size)
                    .color(&color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                root.draw_text(&c.to_string(), &style, (cx + cell / 2, cy + cell / 2))
                    .map_err(de)?;
            }
        }
    }
    // Thin cell borders, then the diagonal outlined.
    if cell >= 6 {
        for k in 0..=n as i32 {
            let p = k * cell;
            root.draw(&PathElement::new(
                vec![(x0, y0 + p), (x0 + grid, y0 + p)],
                WHITE.stroke_width(1),
            ))
            .map_err(de)?;
            root.draw(&PathElement::new(
                vec![(x0 + p, y0), (x0 + p, y0 + grid)],
                WHITE.stroke_width(1),
            ))
            .map_err(de)?;
        }
    }
    root.draw(&Rectangle::new(
        [(x0, y0), (x0 + grid, y0 + grid)],
        MUTED.stroke_width(1),
    ))
    .map_err(de)?;
    for (i, c) in t.classes.iter().enumerate() {
        let mid = i as i32 * cell + cell / 2;
        let c = truncate(c, 24);
        root.draw_text(
            &c,
            &anchored(label_size, HPos::Right, VPos::Center),
            (x0 - 6, y0 + mid),
        )
        .map_err(de)?;
        let rotated =
            anchored(label_size, HPos::Right, VPos::Center).transform(FontTransform::Rotate270);
        root.draw_text(&c, &rotated, (x0 + mid, y0 + grid + 6))
            .map_err(de)?;
    }
    let label_w = widest(label_size);
    root.draw_text(
        "predicted class",
        &anchored(15.0, HPos::Center, VPos::Top),
        (x0 + grid / 2, y0 + grid + label_w + 14),
    )
    .map_err(de)?;
    let side = anchored(15.0, HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
    root.draw_text(
        "true class",
        &side,
        ((x0 - label_w - 26).max(10), y0 + grid / 2),
    )
    .map_err(de)
}

/// Test accuracy per trial as horizontal bars; seed repeats of one config are
/// one bar at their mean with a ±1 std error bar and the single runs as dots.
pub fn accuracy<DB: DrawingBackend>(root: &Area<DB>, s: &SweepData) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    let groups = accuracy_groups(s);
    let repeated = groups.iter().any(|g| g.trials.len() > 1);
    let head = format!(
        "test accuracy per trial — sweep {}{}",
        s.name,
        if repeated {
            " (mean ± std over seeds)"
        } else {
            ""
        }
    );
    title(root, &head, 20.0)?;
    if groups.is_empty() {
        return no_data(root, "no test results yet");
    }
    let n = groups.len();
    let (w, _) = root.dim_in_pixel();
    let label_size = (420.0 / n as f64).clamp(8.0, 14.0);
    let labels: Vec<String> = groups.iter().map(|g| truncate(&g.label, 48)).collect();
    let label_w = labels
        .iter()
        .map(|l| text_width(root, l, label_size))
        .max()
        .unwrap_or(0)
        + 16;
    let label_w = label_w.min(w * 45 / 100);
    let (_, body) = root.split_vertically(44);
    let ys = -0.5..n as f64 - 0.5;
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0.0..1.0, ys)
        .map_err(de)?;
    let label_of = |v: &f64| match category(*v, n) {
        Some(i) => labels[n - 1 - i].clone(),
        None => String::new(),
    };
    house_mesh(chart.configure_mesh().disable_y_mesh().y_labels(n + 1))
        .y_label_style(text_style(label_size))
        .x_desc("test accuracy")
        .x_label_formatter(&percent)
        .y_label_formatter(&label_of)
        .draw()
        .map_err(de)?;
    // Bars at most ~52 px thick, however few the trials.
    let slot_px = (ACCURACY_PLOT_HEIGHT / n as f64).max(1.0);
    let half = (0.36f64).min(26.0 / slot_px);
    let value_size = label_size.min(13.0);
    for (i, g) in groups.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let (mean, std) = (g.mean(), g.std());
        let c = color(i);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y - half), (mean, y + half)],
                c.mix(0.85).filled(),
            )))
            .map_err(de)?;
        if g.trials.len() > 1 {
            let (a, b) = ((mean - std).max(0.0), (mean + std).min(1.0));
            let cap = half * 0.6;
            let lines = vec![
                PathElement::new(vec![(a, y), (b, y)], TEXT.stroke_width(2)),
                PathElement::new(vec![(a, y - cap), (a, y + cap)], TEXT.stroke_width(2)),
                PathElement::new(vec![(b, y - cap), (b, y + cap)], TEXT.stroke_width(2)),
            ];
            chart.draw_series(lines).map_err(de)?;
            chart
                .draw_series(
                    g.accuracies
                        .iter()
                        .map(|a| Circle::new((*a, y), 3, TEXT.filled())),
                )
                .map_err(de)?;
        }
        let text = if g.trials.len() > 1 {
            format!(
                "{:.1}% ± {:.1} (n={})",
                mean * 100.0,
                std * 100.0,
                g.trials.len()
            )
        } else {
            format!("{:.1}%", mean * 100.0)
        };
        let end = if g.trials.len() > 1 {
            (mean + std).min(1.0)
        } else {
            mean
        };
        let inside = end > 0.78;
        let style = if inside {
            font(value_size)
                .color(&WHITE)
                .pos(Pos::new(HPos::Right, VPos::Center))
        } else {
            anchored(value_size, HPos::Left, VPos::Center)
        };
        let x = if inside {
            (mean - 0.01).max(0.0)
        } else {
            end + 0.01
        };
        chart
            .draw_series(std::iter::once(Text::new(text, (x, y), style)))
            .map_err(de)?;
    }
    Ok(())
}

/// Validation accuracy per epoch of every trial, overlaid, with a legend.
pub fn sweep_curves<DB: DrawingBackend>(root: &Area<DB>, s: &SweepData) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    title(
        root,
        &format!("validation accuracy — sweep {}", s.name),
        20.0,
    )?;
    let series: Vec<(usize, &TrialData)> = s
        .trials
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.valid_acc.is_empty())
        .collect();
    if series.is_empty() {
        return no_data(root, "no validation results yet");
    }
    let all: Vec<&[(i64, f64)]> = series.iter().map(|(_, t)| t.valid_acc.as_slice()).collect();
    let (_, body) = root.split_vertically(44);
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(step_range(&all), ACCURACY_RANGE)
        .map_err(de)?;
    house_mesh(&mut chart.configure_mesh())
        .x_desc("global step")
        .y_desc("validation accuracy")
        .y_label_formatter(&percent)
        .draw()
        .map_err(de)?;
    let legend_size = (360.0 / series.len() as f64).clamp(8.0, 13.0);
    for (i, t) in &series {
        let c = color(*i);
        let name = truncate(format!("{} {}", t.id, t.label).trim(), 48);
        chart
            .draw_series(LineSeries::new(
                t.valid_acc.iter().copied(),
                c.stroke_width(2),
            ))
            .map_err(de)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(t.valid_acc.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(de)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .label_font(text_style(legend_size))
        .draw()
        .map_err(de)
}

/// Images per class in each split, as grouped bars (`counts`: split, class, count).
pub fn class_counts<DB: DrawingBackend>(
    root: &Area<DB>,
    heading: &str,
    counts: &[(String, String, i64)],
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    title(root, heading, 20.0)?;
    let mut classes: Vec<&str> = counts.iter().map(|c| c.1.as_str()).collect();
    classes.sort();
    classes.dedup();
    let mut splits: Vec<&str> = Vec::new();
    for c in counts {
        if !splits.contains(&c.0.as_str()) {
            splits.push(c.0.as_str());
        }
    }
    if classes.is_empty() {
        return no_data(root, "no class counts recorded");
    }
    let (w, _) = root.dim_in_pixel();
    let n = classes.len();
    let labels: Vec<String> = classes.iter().map(|c| truncate(c, 20)).collect();
    let label_size = 13.0;
    let widest = labels
        .iter()
        .map(|l| text_width(root, l, label_size))
        .max()
        .unwrap_or(0);
    let slot = (w.saturating_sub(120)) / n as u32;
    let rotate = widest + 6 > slot;
    let label_size = if rotate {
        (slot as f64 * 0.8).clamp(6.0, 13.0)
    } else {
        label_size
    };
    let widest = labels
        .iter()
        .map(|l| text_width(root, l, label_size))
        .max()
        .unwrap_or(0);
    let max = counts.iter().map(|c| c.2).max().unwrap_or(1).max(1) as f64;
    let legend: Vec<(&str, RGBColor, Mark)> = splits
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, color(i), Mark::Block))
        .collect();
    legend_row(root, 54, &legend)?;
    let (_, body) = root.split_vertically(66);
    let xs = -0.5..n as f64 - 0.5;
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(if rotate { widest + 48 } else { 48 })
        .y_label_area_size(64)
        .build_cartesian_2d(xs, 0.0..max * 1.1)
        .map_err(de)?;
    let label_of = |v: &f64| match category(*v, n) {
        Some(i) if !rotate => labels[i].clone(),
        _ => String::new(),
    };
    house_mesh(chart.configure_mesh().disable_x_mesh().x_labels(n + 1))
        .x_label_style(text_style(label_size))
        .y_desc("images")
        .x_desc(if rotate { "" } else { "class" })
        .x_label_formatter(&label_of)
        .y_label_formatter(&|v: &f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(de)?;
    let k = splits.len().max(1) as f64;
    let width = 0.8 / k;
    let show_values = n * splits.len() <= 48;
    for (si, split) in splits.iter().enumerate() {
        let c = color(si);
        let bars: Vec<(usize, i64)> = counts
            .iter()
            .filter(|x| x.0 == *split)
            .filter_map(|x| classes.iter().position(|k| *k == x.1).map(|i| (i, x.2)))
            .collect();
        let lo = |i: usize| i as f64 - 0.4 + si as f64 * width;
        chart
            .draw_series(bars.iter().map(|(i, v)| {
                Rectangle::new(
                    [
                        (lo(*i) + width * 0.06, 0.0),
                        (lo(*i) + width * 0.94, *v as f64),
                    ],
                    c.filled(),
                )
            }))
            .map_err(de)?;
        if show_values {
            let style = anchored(11.0, HPos::Center, VPos::Bottom);
            chart
                .draw_series(bars.iter().map(|(i, v)| {
                    Text::new(
                        v.to_string(),
                        (lo(*i) + width / 2.0, *v as f64 + max * 0.01),
                        style.clone(),
                    )
                }))
                .map_err(de)?;
        }
    }
    if rotate {
        for (i, l) in labels.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64, 0.0));
            let style =
                anchored(label_size, HPos::Right, VPos::Center).transform(FontTransform::Rotate270);
            root.draw_text(l, &style, (px, py + 8)).map_err(de)?;
        }
    }
    Ok(())
}

/// Columns of panels in a program trial's chart, and the height of a row of them.
pub const PROGRAM_PANEL_COLUMNS: usize = 3;
pub const PROGRAM_PANEL_HEIGHT: u32 = 280;
/// Above the panels of a program trial's chart: the title.
const PROGRAM_TOP: u32 = 50;

/// The size of a program trial's chart with `panels` panels: 1000 wide, one
/// row of [`PROGRAM_PANEL_HEIGHT`] per [`PROGRAM_PANEL_COLUMNS`] panels.
pub fn program_curves_size(panels: usize) -> (u32, u32) {
    let rows = panels
        .clamp(1, super::data::MAX_METRIC_CHARTS)
        .div_ceil(PROGRAM_PANEL_COLUMNS);
    (1000, PROGRAM_TOP + rows as u32 * PROGRAM_PANEL_HEIGHT)
}

/// A y range around `values` with a little room above and below.
fn value_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.1)
        .max(hi.abs().max(lo.abs()) * 0.02)
        .max(1e-6);
    lo - pad..hi + pad
}

/// A number on a program metric's axis: few digits, scientific when large or tiny.
fn axis_number(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A program trial's curves: one panel per metric (the sweep's metric
/// first), epoch metrics by epoch with a marker per record, step metrics by
/// step; at most [`super::data::MAX_METRIC_CHARTS`] panels.
pub fn program_trial_curves<DB: DrawingBackend>(
    root: &Area<DB>,
    t: &TrialData,
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    let mut head = format!("trial {}", t.id);
    if !t.label.is_empty() {
        head.push_str(&format!(" — {}", t.label));
    }
    let shown = &t.series[..t.series.len().min(super::data::MAX_METRIC_CHARTS)];
    if shown.len() < t.series.len() {
        head.push_str(&format!(
            " — first {} of {} metrics",
            shown.len(),
            t.series.len()
        ));
    }
    title(root, &head, 20.0)?;
    if shown.is_empty() {
        return no_data(root, "no metrics reported yet");
    }
    let (_, body) = root.split_vertically(PROGRAM_TOP);
    let rows = shown.len().div_ceil(PROGRAM_PANEL_COLUMNS);
    let panels = body.split_evenly((rows, PROGRAM_PANEL_COLUMNS));
    for (i, (s, area)) in shown.iter().zip(panels.iter()).enumerate() {
        let name = crate::program::display_name(&s.name);
        let caption = if s.per_step {
            format!("{} (per step)", truncate(&name, 30))
        } else {
            truncate(&name, 40)
        };
        let xs = step_range(&[s.points.as_slice()]);
        let ys = value_range(s.points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .caption(caption, font(15.0))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(58)
            .build_cartesian_2d(xs, ys)
            .map_err(de)?;
        house_mesh(&mut chart.configure_mesh())
            .x_desc(if s.per_step { "step" } else { "epoch" })
            .x_labels(6)
            .y_labels(6)
            .y_label_formatter(&axis_number)
            .draw()
            .map_err(de)?;
        let c = color(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(de)?;
        if !s.per_step {
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(de)?;
        }
    }
    Ok(())
}

/// One program metric of every trial, overlaid (by epoch, or by step for a
/// step metric), with a legend.
pub fn metric_curves<DB: DrawingBackend>(
    root: &Area<DB>,
    s: &SweepData,
    chart_index: usize,
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(de)?;
    let Some(mc) = s.metric_charts.get(chart_index) else {
        return Err(PlotError::Internal("metric chart index"));
    };
    let name = crate::program::display_name(&mc.name);
    let what = match &s.program {
        Some(p) if !mc.per_step && mc.name == p.metric => format!(
            " (the sweep's metric, {} is better)",
            if p.higher_is_better(&mc.name) {
                "higher"
            } else {
                "lower"
            }
        ),
        _ if mc.per_step => " per step".to_string(),
        _ => String::new(),
    };
    title(root, &format!("{name}{what} — sweep {}", s.name), 20.0)?;
    // (colour index, trial, its points of this metric)
    type Curve<'t> = (usize, &'t TrialData, &'t [(i64, f64)]);
    let series: Vec<Curve> = s
        .trials
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.series
                .iter()
                .find(|x| x.name == mc.name && x.per_step == mc.per_step)
                .map(|x| (i, t, x.points.as_slice()))
        })
        .collect();
    if series.is_empty() {
        return no_data(root, "no trial reported it yet");
    }
    let all: Vec<&[(i64, f64)]> = series.iter().map(|x| x.2).collect();
    let ys = value_range(all.iter().flat_map(|p| p.iter().map(|x| x.1)));
    let (_, body) = root.split_vertically(44);
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(step_range(&all), ys)
        .map_err(de)?;
    house_mesh(&mut chart.configure_mesh())
        .x_desc(if mc.per_step { "step" } else { "epoch" })
        .y_desc(truncate(&name, 40))
        .y_label_formatter(&axis_number)
        .draw()
        .map_err(de)?;
    let legend_size = (360.0 / series.len() as f64).clamp(8.0, 13.0);
    for (i, t, points) in &series {
        let c = color(*i);
        let label = truncate(format!("{} {}", t.id, t.label).trim(), 48);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(de)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        if !mc.per_step {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(de)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .label_font(text_style(legend_size))
        .draw()
        .map_err(de)
}
