//! Charts: `sweep plot` (PNG + SVG per chart), `sweep data show` (a dataset
//! overview) and the inline SVG of the HTML report (`crate::html`).
//!
//! Every chart is one drawing function generic over the plotters backend, so the
//! PNG (plotters' bitmap backend on an in-memory RGB buffer, encoded by the
//! `image` crate) and the SVG (plotters' SVG backend into a string) always show
//! the same thing. Files are written atomically (temporary file + rename).
//!
//! Charts and their fixed sizes (width × height, pixels):
//!
//! | file | size | what |
//! | --- | --- | --- |
//! | `<trial>-curves.png/.svg` | 1000 × 600 | loss (left) and accuracy (right) against the global step: training per log step, validation per epoch |
//! | `<trial>-confusion.png/.svg` | 800 × 800 | test confusion heatmap, true class down, predicted across, counts in cells |
//! | `accuracy.png/.svg` | 1000 × 600 | test accuracy per trial (horizontal bars); seed repeats of one config: mean, ±1 std error bar, single runs as dots |
//! | `curves.png/.svg` | 1000 × 600 | validation accuracy of every trial overlaid, with a legend |
//! | `class-distribution.png/.svg` | 1000 × 600 | images per class in each split |
//!
//! A program sweep (`[program]`: a user's own training program) has no test
//! confusions or class counts; its charts are the metrics it reported:
//!
//! | file | size | what |
//! | --- | --- | --- |
//! | `<trial>-curves.png/.svg` | 1000 × (50 + 280 per row of 3 panels) | one panel per metric, the sweep's metric first: epoch metrics by epoch, step metrics by step |
//! | `curves.png/.svg` | 1000 × 600 | the sweep's metric of every trial by epoch, overlaid, with a legend |
//! | `curves-<name>.png/.svg` | 1000 × 600 | the same for each other epoch metric (`<name>`: the metric's name with every character but ASCII letters, digits, `-` and `_` as `_`) |
//! | `curves-step-<name>.png/.svg` | 1000 × 600 | the same for each step metric, by step |
//!
//! At most `data::MAX_METRIC_CHARTS` (24) metrics are drawn, the sweep's metric first.
//!
//! The dataset overview (`sweep data show`) grows with the data: 64 × 64 px
//! thumbnails in a 70 px pitch, one row per class, `per_class` columns, plus a
//! class-label column and a train/valid/test count column (see `overview`).
//!
//! Fonts: plotters' default text path (`ttf` feature) needs fontconfig's
//! library and system fonts, which a clean CI machine may lack. This build uses
//! plotters' `ab_glyph` feature instead, with DejaVu Sans (Bitstream Vera /
//! DejaVu licence: free to embed and redistribute) compiled into the binary
//! from the `dejavu` crate on crates.io (no font file in this repository),
//! registered once as the `sans-serif` family for plotters' own measurements.
//! Class names can be in any script: characters DejaVu Sans lacks (Chinese,
//! Japanese, Korean, most emoji, …) are drawn with a system font that has them,
//! found per character with `fontdb`, and text is shaped (`rustybuzz`) and
//! ordered (`unicode-bidi`) so that Arabic joins and reads right to left; see
//! `fonts`. Without such fonts on the machine, those characters show as DejaVu
//! Sans's empty box; Latin text never touches the system's fonts. PNG text is
//! rasterised by `raster::Raster`. SVG `<text>` elements name the families
//! that draw them (`DejaVu Sans`, then e.g. `Noto Sans CJK SC`, then
//! `sans-serif`), and the layout was measured with the same fonts.
//! `SWEEP_FONT_FALLBACK=0` turns the system fonts off (the embedded font alone).
//! plotters' own PNG encoder (`bitmap_encoder`, which pulls a second `image`
//! version) is not used: the `image` crate this project already has encodes.
mod charts;
pub mod data;
pub mod fonts;
mod overview;
mod raster;

use data::{SweepData, TrialData};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontDesc, FontFamily, FontStyle};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use sweep_dataset::imagefolder::DataError;
use sweep_store::queries::ResolveError;

/// Why a chart, a dataset overview or the HTML report's charts could not be
/// made. The first group is what the user asked for (a trial that is not
/// there, a sweep with nothing to draw yet, an `--out` that cannot be one);
/// the second is the machine failing (the database, the disk, the drawing).
/// The CLI decides the exit code by variant (`sweep::error`).
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("--out {} is a file; pass a directory", .0.display())]
    OutIsFile(PathBuf),
    #[error("--out {}: unsupported file type {ext:?}; use a .png or .svg file name", path.display())]
    UnsupportedOut { path: PathBuf, ext: String },
    #[error("--per-class must be between 1 and {max}, got {got}")]
    PerClass { got: usize, max: usize },
    #[error("{}: not a file name", .0.display())]
    NotAFileName(PathBuf),
    #[error(
        "trial {trial} has no metrics yet (status {status}); charts need at least one logged step"
    )]
    TrialHasNoMetrics { trial: String, status: String },
    #[error("sweep {0} has no trials")]
    NoTrials(String),
    #[error("sweep {0} has no metrics yet; run it (`sweep run FILE`) and plot again")]
    SweepHasNoMetrics(String),
    /// `sweep data show` on a folder that is not an ImageFolder.
    #[error(transparent)]
    Dataset(#[from] DataError),

    #[error("reading the database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("trial {0} vanished from the database while plotting")]
    Vanished(String),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding PNG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
    #[error("internal: {0}")]
    Internal(&'static str),
}

pub const TRIAL_CURVES_SIZE: (u32, u32) = (1000, 600);
pub const CONFUSION_SIZE: (u32, u32) = (800, 800);
pub const ACCURACY_SIZE: (u32, u32) = (1000, 600);
pub const SWEEP_CURVES_SIZE: (u32, u32) = (1000, 600);
pub const DISTRIBUTION_SIZE: (u32, u32) = (1000, 600);

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process).
fn ensure_fonts() -> Result<(), PlotError> {
    static INIT: OnceLock<bool> = OnceLock::new();
    let loaded = *INIT.get_or_init(|| {
        plotters::style::register_font(
            FontFamily::SansSerif.as_str(),
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok()
    });
    loaded.then_some(()).ok_or(PlotError::Font)
}

pub(crate) fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::SansSerif, size, FontStyle::Normal)
}

/// One chart and the data it shows.
pub enum Chart<'a> {
    TrialCurves(&'a TrialData),
    Confusion(&'a TrialData),
    Accuracy(&'a SweepData),
    SweepCurves(&'a SweepData),
    ClassDistribution(&'a SweepData),
    /// One metric of a program sweep, every trial's curve of it (an index into `SweepData::metric_charts`).
    MetricCurves(&'a SweepData, usize),
}

impl Chart<'_> {
    pub fn size(&self) -> (u32, u32) {
        match self {
            Chart::TrialCurves(t) if !t.series.is_empty() => {
                charts::program_curves_size(t.series.len())
            }
            Chart::TrialCurves(_) => TRIAL_CURVES_SIZE,
            Chart::Confusion(_) => CONFUSION_SIZE,
            Chart::Accuracy(_) => ACCURACY_SIZE,
            Chart::SweepCurves(_) => SWEEP_CURVES_SIZE,
            Chart::ClassDistribution(_) => DISTRIBUTION_SIZE,
            Chart::MetricCurves(..) => SWEEP_CURVES_SIZE,
        }
    }

    /// The file name without extension.
    pub fn stem(&self) -> String {
        match self {
            Chart::TrialCurves(t) => format!("{}-curves", t.id),
            Chart::Confusion(t) => format!("{}-confusion", t.id),
            Chart::Accuracy(_) => "accuracy".into(),
            Chart::SweepCurves(_) => "curves".into(),
            Chart::ClassDistribution(_) => "class-distribution".into(),
            Chart::MetricCurves(s, i) => s
                .metric_charts
                .get(*i)
                .map_or_else(|| "curves".into(), |c| c.stem.clone()),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        match self {
            Chart::TrialCurves(t) if !t.series.is_empty() => charts::program_trial_curves(root, t),
            Chart::TrialCurves(t) => charts::trial_curves(root, t),
            Chart::Confusion(t) => charts::confusion(root, t),
            Chart::Accuracy(s) => charts::accuracy(root, s),
            Chart::SweepCurves(s) => charts::sweep_curves(root, s),
            Chart::ClassDistribution(s) => charts::class_counts(
                root,
                &format!("images per class and split — sweep {}", s.name),
                &s.distribution,
            ),
            Chart::MetricCurves(s, i) => charts::metric_curves(root, s, *i),
        }
    }
}

/// Draws onto an SVG document held in memory.
pub(crate) fn svg_with<F>(size: (u32, u32), draw: F) -> Result<String, PlotError>
where
    F: FnOnce(&DrawingArea<raster::Vector, Shift>) -> Result<(), PlotError>,
{
    ensure_fonts()?;
    let mut out = String::new();
    {
        let root = raster::Vector(SVGBackend::with_string(&mut out, size)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(charts::de)?;
    }
    Ok(out)
}

/// Draws onto a white RGB buffer; returns the pixels (RGB8, row-major).
pub(crate) fn rgb_with<F>(size: (u32, u32), draw: F) -> Result<Vec<u8>, PlotError>
where
    F: FnOnce(&DrawingArea<raster::Raster, Shift>) -> Result<(), PlotError>,
{
    ensure_fonts()?;
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = raster::Raster(BitMapBackend::with_buffer(&mut buf, size)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(charts::de)?;
    }
    Ok(buf)
}

pub(crate) fn encode_png(size: (u32, u32), rgb: &[u8]) -> Result<Vec<u8>, PlotError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(
        rgb,
        size.0,
        size.1,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

pub fn render_svg(chart: &Chart) -> Result<String, PlotError> {
    svg_with(chart.size(), |root| chart.draw(root))
}

pub fn render_png(chart: &Chart) -> Result<Vec<u8>, PlotError> {
    let rgb = rgb_with(chart.size(), |root| chart.draw(root))?;
    encode_png(chart.size(), &rgb)
}

/// Writes through a temporary file in the same folder and renames it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PlotError::NotAFileName(path.to_path_buf()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    sweep_trialfiles::write_atomic(&tmp, path, bytes).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_chart(dir: &Path, chart: &Chart, written: &mut Vec<PathBuf>) -> Result<(), PlotError> {
    let stem = chart.stem();
    let png = dir.join(format!("{stem}.png"));
    write_atomic(&png, &render_png(chart)?)?;
    written.push(png);
    let svg = dir.join(format!("{stem}.svg"));
    write_atomic(&svg, render_svg(chart)?.as_bytes())?;
    written.push(svg);
    Ok(())
}

/// `sweep plot`: every chart of the sweep (or of one trial, by id or unique
/// prefix) as PNG and SVG under `out`. Returns the written paths.
pub async fn write_all(
    pool: &SqlitePool,
    sweep: &str,
    trial: Option<&str>,
    out: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if out.exists() && !out.is_dir() {
        return Err(PlotError::OutIsFile(out.to_path_buf()));
    }
    let mut written = Vec::new();
    if let Some(prefix) = trial {
        let (id, sweep_of_trial) =
            sweep_store::queries::resolve_trial(pool, Some(sweep), prefix).await?;
        let s = data::load_sweep(pool, &sweep_of_trial, Some(&id)).await?;
        let t = s
            .trials
            .first()
            .ok_or_else(|| PlotError::Vanished(id.clone()))?;
        if !t.has_curves() {
            return Err(PlotError::TrialHasNoMetrics {
                trial: id,
                status: t.status.clone(),
            });
        }
        create_dir(out)?;
        write_chart(out, &Chart::TrialCurves(t), &mut written)?;
        if t.has_confusion() {
            write_chart(out, &Chart::Confusion(t), &mut written)?;
        } else if s.program.is_none() {
            sweep_protocol::log!("note: trial {id} has no test results yet; no confusion heatmap");
        }
        fonts::warn_missing_glyphs();
        return Ok(written);
    }
    let s = data::load_sweep(pool, sweep, None).await?;
    if s.trials.is_empty() {
        return Err(PlotError::NoTrials(sweep.to_string()));
    }
    if !s.trials.iter().any(|t| t.has_curves()) {
        return Err(PlotError::SweepHasNoMetrics(sweep.to_string()));
    }
    create_dir(out)?;
    let mut skipped = Vec::new();
    for t in &s.trials {
        if t.has_curves() {
            write_chart(out, &Chart::TrialCurves(t), &mut written)?;
        } else {
            skipped.push(format!("{} ({}: no metrics)", t.id, t.status));
            continue;
        }
        if t.has_confusion() {
            write_chart(out, &Chart::Confusion(t), &mut written)?;
        }
    }
    if s.program.is_some() {
        program_charts(&s, out, &mut written)?;
    } else if s.trials.iter().any(|t| t.test.is_some()) {
        write_chart(out, &Chart::Accuracy(&s), &mut written)?;
    } else {
        sweep_protocol::log!(
            "note: no trial of sweep {sweep} has test results yet; no accuracy chart"
        );
    }
    if s.trials.iter().any(|t| !t.valid_acc.is_empty()) {
        write_chart(out, &Chart::SweepCurves(&s), &mut written)?;
    }
    if !s.distribution.is_empty() {
        write_chart(out, &Chart::ClassDistribution(&s), &mut written)?;
    }
    if !skipped.is_empty() {
        sweep_protocol::log!("note: no charts for {}", skipped.join(", "));
    }
    fonts::warn_missing_glyphs();
    Ok(written)
}

/// A program sweep's sweep-wide charts: one per metric, the sweep's metric first.
fn program_charts(s: &SweepData, out: &Path, written: &mut Vec<PathBuf>) -> Result<(), PlotError> {
    for i in 0..s.metric_charts.len() {
        write_chart(out, &Chart::MetricCurves(s, i), written)?;
    }
    if let Some(p) = &s.program {
        let total = p.epoch_names.len() + p.step_names.len();
        if total > s.metric_charts.len() {
            sweep_protocol::log!(
                "note: sweep {} has {total} metrics; charts for the first {} (the sweep's metric first)",
                s.name,
                s.metric_charts.len()
            );
        }
    }
    Ok(())
}

/// `sweep data show`: sample images per class and the class counts of each
/// split of an ImageFolder, as PNG or SVG (by the extension of `out`).
pub fn dataset_overview(
    dataset: &Path,
    out: &Path,
    per_class: usize,
) -> Result<PathBuf, PlotError> {
    let written = overview::write(dataset, out, per_class)?;
    fonts::warn_missing_glyphs();
    Ok(written)
}
