//! `sweep data show`: a grid of sample training images per class (one row per
//! class, labelled) beside each class's image counts in train/valid/test, plus
//! totals. PNG or SVG by the output's extension; SVG embeds the thumbnails as
//! `data:` PNG images, so the file stands alone.
//!
//! Size (pixels): width = 20 + label column (120–320, fits the longest class
//! name) + columns × 70 + 24 + 3 × 72 + 20, where columns = min(`per_class`,
//! the most training images of any class); height = 96 + classes × 70 + 44.
//! Thumbnails are 64 × 64 (shorter side resized, centre crop). `per_class`
//! is 1–64.
use super::charts::de;
use super::{PlotError, font};
use base64::Engine;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use sweep_dataset::imagefolder::{self as data, Layout};

const THUMB: u32 = 64;
const PITCH: u32 = 70;
const COUNT_COL: u32 = 72;
const TOP: u32 = 96;
const MAX_PER_CLASS: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

/// One sample: its grid cell (class row, column), file and 64 × 64 RGB pixels.
struct Thumb {
    class: usize,
    col: usize,
    path: PathBuf,
    pixels: Result<Vec<u8>, String>,
}

struct Geometry {
    width: u32,
    height: u32,
    label_w: u32,
}

impl Geometry {
    fn thumb_x(&self, col: usize) -> u32 {
        20 + self.label_w + col as u32 * PITCH
    }
    fn row_y(&self, row: usize) -> u32 {
        TOP + row as u32 * PITCH
    }
    fn counts_x(&self, per_class: usize) -> u32 {
        20 + self.label_w + per_class as u32 * PITCH + 24
    }
}

/// A 64 × 64 RGB thumbnail: shorter side resized to 64, centre crop.
fn thumbnail(path: &Path) -> Result<Vec<u8>, String> {
    let img = data::decode_rgb(path).map_err(|e| e.to_string())?;
    let c = data::resize_shorter(&img, THUMB)?;
    let (x0, y0) = ((c.width - THUMB) / 2, (c.height - THUMB) / 2);
    let mut out = Vec::with_capacity((THUMB * THUMB * 3) as usize);
    for y in 0..THUMB {
        let start = (((y0 + y) * c.width + x0) * 3) as usize;
        out.extend_from_slice(
            c.pixels
                .get(start..start + (THUMB * 3) as usize)
                .ok_or("thumbnail crop out of bounds")?,
        );
    }
    Ok(out)
}

fn counts(layout: &Layout) -> Vec<[usize; 3]> {
    let mut c = vec![[0usize; 3]; layout.classes.len()];
    for (s, split) in [&layout.train, &layout.valid, &layout.test]
        .into_iter()
        .enumerate()
    {
        for (_, label) in &split.items {
            if let Some(row) = c.get_mut(*label as usize) {
                row[s] += 1;
            }
        }
    }
    c
}

pub fn write(dataset: &Path, out: &Path, per_class: usize) -> Result<PathBuf, PlotError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let format = match ext.as_str() {
        "png" => Format::Png,
        "svg" => Format::Svg,
        _ => {
            return Err(PlotError::UnsupportedOut {
                path: out.to_path_buf(),
                ext,
            });
        }
    };
    if per_class == 0 || per_class > MAX_PER_CLASS {
        return Err(PlotError::PerClass {
            got: per_class,
            max: MAX_PER_CLASS,
        });
    }
    let layout = data::scan(dataset)?;
    let counts = counts(&layout);
    // Columns actually filled: no wider than the largest class's training images.
    let per_class = counts
        .iter()
        .map(|c| c[0])
        .max()
        .unwrap_or(0)
        .min(per_class)
        .max(1);
    // The first `per_class` training images of each class (sorted file order: deterministic).
    let picks: Vec<(usize, usize, PathBuf)> = (0..layout.classes.len())
        .flat_map(|ci| {
            layout
                .train
                .items
                .iter()
                .filter(move |(_, l)| *l as usize == ci)
                .take(per_class)
                .enumerate()
                .map(move |(col, (p, _))| (ci, col, p.clone()))
        })
        .collect();
    let thumbs: Vec<Thumb> = picks
        .into_par_iter()
        .map(|(class, col, path)| Thumb {
            class,
            col,
            pixels: thumbnail(&path),
            path,
        })
        .collect();
    for t in &thumbs {
        if let Err(e) = &t.pixels {
            sweep_protocol::log!("note: {}: {e}", t.path.display());
        }
    }
    super::ensure_fonts()?;
    let name = dataset
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dataset.display().to_string());
    // Measured as the charts draw it (any script: see `fonts`).
    let label_w = layout
        .classes
        .iter()
        .map(|c| super::fonts::text_size(c, 15.0).0 + 12)
        .fold(120, u32::max)
        .min(320);
    let n = layout.classes.len();
    let mut g = Geometry {
        width: 0,
        height: 0,
        label_w,
    };
    g.width = g.counts_x(per_class) + 3 * COUNT_COL + 20;
    g.height = TOP + n as u32 * PITCH + 44;
    let size = (g.width, g.height);
    let bytes = match format {
        Format::Png => {
            let mut rgb = super::rgb_with(size, |root| {
                draw_frame(root, &g, &layout, &counts, &name, per_class, &thumbs)
            })?;
            for t in &thumbs {
                if let Ok(px) = &t.pixels {
                    blit(
                        &mut rgb,
                        g.width,
                        g.thumb_x(t.col),
                        g.row_y(t.class) + (PITCH - THUMB) / 2,
                        px,
                    );
                }
            }
            super::encode_png(size, &rgb)?
        }
        Format::Svg => {
            let mut svg = super::svg_with(size, |root| {
                draw_frame(root, &g, &layout, &counts, &name, per_class, &thumbs)
            })?;
            let mut images = String::new();
            for t in &thumbs {
                if let Ok(px) = &t.pixels {
                    let png = super::encode_png((THUMB, THUMB), px)?;
                    images.push_str(&format!(
                        "<image x=\"{}\" y=\"{}\" width=\"{THUMB}\" height=\"{THUMB}\" href=\"data:image/png;base64,{}\"/>\n",
                        g.thumb_x(t.col),
                        g.row_y(t.class) + (PITCH - THUMB) / 2,
                        base64::engine::general_purpose::STANDARD.encode(png)
                    ));
                }
            }
            let end = svg
                .rfind("</svg>")
                .ok_or(PlotError::Internal("SVG output has no closing tag"))?;
            svg.insert_str(end, &images);
            svg.into_bytes()
        }
    };
    super::write_atomic(out, &bytes)?;
    Ok(out.to_path_buf())
}

fn blit(rgb: &mut [u8], width: u32, x: u32, y: u32, px: &[u8]) {
    for row in 0..THUMB {
        let dst = (((y + row) * width + x) * 3) as usize;
        let src = (row * THUMB * 3) as usize;
        let len = (THUMB * 3) as usize;
        if let (Some(d), Some(s)) = (rgb.get_mut(dst..dst + len), px.get(src..src + len)) {
            d.copy_from_slice(s);
        }
    }
}

fn draw_frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    g: &Geometry,
    layout: &Layout,
    counts: &[[usize; 3]],
    name: &str,
    per_class: usize,
    thumbs: &[Thumb],
) -> Result<(), PlotError> {
    let text = RGBColor(30, 30, 30);
    let muted = RGBColor(120, 120, 120);
    let style = |size: f64, h: HPos| font(size).color(&text).pos(Pos::new(h, VPos::Center));
    root.fill(&WHITE).map_err(de)?;
    let totals: [usize; 3] = counts
        .iter()
        .fold([0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
    let title = format!(
        "dataset {name} — {} classes; train {}, valid {}, test {} images",
        layout.classes.len(),
        totals[0],
        totals[1],
        totals[2]
    );
    root.draw_text(&title, &style(20.0, HPos::Left), (20, 28))
        .map_err(de)?;
    let header_y = TOP as i32 - 16;
    root.draw_text(
        "class",
        &style(14.0, HPos::Left).color(&muted),
        (20, header_y),
    )
    .map_err(de)?;
    root.draw_text(
        &format!("first {per_class} training images"),
        &style(14.0, HPos::Left).color(&muted),
        (g.thumb_x(0) as i32, header_y),
    )
    .map_err(de)?;
    let cx = g.counts_x(per_class) as i32;
    for (k, split) in ["train", "valid", "test"].iter().enumerate() {
        root.draw_text(
            split,
            &style(14.0, HPos::Right).color(&muted),
            (cx + (k as i32 + 1) * COUNT_COL as i32 - 8, header_y),
        )
        .map_err(de)?;
    }
    for (ci, class) in layout.classes.iter().enumerate() {
        let y = g.row_y(ci) as i32;
        if ci % 2 == 1 {
            root.draw(&Rectangle::new(
                [(10, y), (g.width as i32 - 10, y + PITCH as i32)],
                RGBColor(244, 246, 248).filled(),
            ))
            .map_err(de)?;
        }
        let mid = y + PITCH as i32 / 2;
        root.draw_text(class, &style(15.0, HPos::Left), (20, mid))
            .map_err(de)?;
        for (k, c) in counts[ci].iter().enumerate() {
            root.draw_text(
                &c.to_string(),
                &style(15.0, HPos::Right),
                (cx + (k as i32 + 1) * COUNT_COL as i32 - 8, mid),
            )
            .map_err(de)?;
        }
    }
    for t in thumbs {
        if t.pixels.is_err() {
            let (x, y) = (
                g.thumb_x(t.col) as i32,
                (g.row_y(t.class) + (PITCH - THUMB) / 2) as i32,
            );
            root.draw(&Rectangle::new(
                [(x, y), (x + THUMB as i32, y + THUMB as i32)],
                RGBColor(230, 230, 230).filled(),
            ))
            .map_err(de)?;
            root.draw(&PathElement::new(
                vec![(x, y), (x + THUMB as i32, y + THUMB as i32)],
                RED.stroke_width(2),
            ))
            .map_err(de)?;
            root.draw(&PathElement::new(
                vec![(x + THUMB as i32, y), (x, y + THUMB as i32)],
                RED.stroke_width(2),
            ))
            .map_err(de)?;
        }
    }
    let y = (TOP + layout.classes.len() as u32 * PITCH) as i32;
    root.draw(&PathElement::new(
        vec![(10, y + 4), (g.width as i32 - 10, y + 4)],
        muted.stroke_width(1),
    ))
    .map_err(de)?;
    root.draw_text("total", &style(15.0, HPos::Left), (20, y + 24))
        .map_err(de)?;
    for (k, c) in totals.iter().enumerate() {
        root.draw_text(
            &c.to_string(),
            &style(15.0, HPos::Right),
            (cx + (k as i32 + 1) * COUNT_COL as i32 - 8, y + 24),
        )
        .map_err(de)?;
    }
    Ok(())
}
