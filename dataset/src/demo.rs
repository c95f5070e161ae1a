//! Synthetic "zodiac" demo dataset.
//!
//! This module owns the deterministic generation of the embedded demo
//! dataset: a 12-class ImageFolder tree (`train/`, `valid/`, `test/`, one
//! folder per class named after a Chinese zodiac animal) of procedurally
//! drawn RGB PNGs. Every class is its own family of shapes, drawn with a
//! random colour, scale, rotation, mirror and position on a cluttered, noisy
//! background, so the task is learnable but not trivial (ox and goat are
//! deliberately similar).
//!
//! Each image gets its own ChaCha8 RNG seeded from `(seed, split, class,
//! index)`, so output is byte-identical for the same options no matter how
//! rayon schedules the work. Everything is written into a sibling
//! `OUT.partial-<pid>` directory first and renamed into place at the end, so
//! a half-written dataset never appears at `OUT`.

use std::f32::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};

/// Why the demo dataset could not be written: the request (exit 2) or the
/// machine (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options or the output path are wrong.
    #[error("{0}")]
    Request(String),
    /// A file or folder could not be read, written or moved.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A PNG could not be encoded.
    #[error("{what}: {source}")]
    Encode {
        what: String,
        source: image::ImageError,
    },
}

type Result<T> = std::result::Result<T, DemoError>;

/// `.with_context(..)` for I/O errors: the error with what was being done.
trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| DemoError::Io {
            what: what(),
            source,
        })
    }
}

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(DemoError::Request(format!($($arg)*)))
    };
}
use image::ExtendedColorType;
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Class (and folder) names, in label order.
pub const CLASSES: [&str; 12] = [
    "rat", "ox", "tiger", "rabbit", "dragon", "snake", "horse", "goat", "monkey", "rooster", "dog",
    "pig",
];

/// Split folder names, in the order used for seeding.
const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// Smallest accepted image side, in pixels.
const MIN_IMAGE_SIZE: u32 = 8;
/// Largest accepted image side, in pixels (guards against absurd allocations).
const MAX_IMAGE_SIZE: u32 = 4096;

/// Options for [`generate`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Training images per class (valid/test sizes derive from it, see [`split_sizes`]).
    pub per_class: usize,
    /// Side length of the square images, in pixels.
    pub image_size: u32,
    /// Master seed; the same options always produce byte-identical files.
    pub seed: u64,
}

/// Total number of images written per split (summed over all classes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
}

/// Split sizes per class: train = per_class, valid = max(1, per_class/4), test = max(1, per_class/4).
pub fn split_sizes(per_class: usize) -> (usize, usize, usize) {
    let held_out = (per_class / 4).max(1);
    (per_class, held_out, held_out)
}

/// Generate the demo dataset into `out` (which must not exist or be an empty
/// directory). Parent directories are created as needed. Prints nothing.
///
/// Layout: `out/{train,valid,test}/<class>/<class>_<index:04>.png`, RGB8,
/// `image_size` × `image_size`, indices starting at 0 within each split.
pub fn generate(out: &Path, opts: &DemoOptions) -> Result<DemoSummary> {
    validate(opts)?;

    if out.exists() {
        if !out.is_dir() {
            bail!(
                "output path {} already exists and is not a directory; remove it or choose another path",
                out.display()
            );
        }
        let mut entries = fs::read_dir(out)
            .with_context(|| format!("reading existing output directory {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "output directory {} already exists and is not empty; remove it or choose another path",
                out.display()
            );
        }
    }

    let Some(name) = out.file_name() else {
        bail!(
            "output path {} has no final directory name; choose a path like ./demo-data",
            out.display()
        );
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .with_context(|| format!("creating parent directory {}", parent.display()))?;

    let mut partial_name = name.to_os_string();
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = parent.join(partial_name);
    if partial.exists() {
        // Left over from an earlier, crashed process that had the same pid.
        fs::remove_dir_all(&partial)
            .with_context(|| format!("removing stale partial directory {}", partial.display()))?;
    }

    let result = write_dataset(&partial, opts).and_then(|summary| {
        move_into_place(&partial, out)?;
        Ok(summary)
    });
    if result.is_err() {
        // Best effort: never leave a half-written tree behind.
        let _ = fs::remove_dir_all(&partial);
    }
    result
}

fn validate(opts: &DemoOptions) -> Result<()> {
    if opts.per_class < 1 {
        bail!(
            "demo dataset: per_class must be at least 1 (got {})",
            opts.per_class
        );
    }
    if opts.image_size < MIN_IMAGE_SIZE {
        bail!(
            "demo dataset: image_size must be at least {MIN_IMAGE_SIZE} pixels (got {})",
            opts.image_size
        );
    }
    if opts.image_size > MAX_IMAGE_SIZE {
        bail!(
            "demo dataset: image_size must be at most {MAX_IMAGE_SIZE} pixels (got {})",
            opts.image_size
        );
    }
    Ok(())
}

fn move_into_place(partial: &Path, out: &Path) -> Result<()> {
    if out.is_dir() {
        // Checked empty above; remove_dir refuses if anything appeared since.
        fs::remove_dir(out)
            .with_context(|| format!("replacing empty output directory {}", out.display()))?;
    }
    fs::rename(partial, out).with_context(|| {
        format!(
            "moving finished dataset {} into place at {}",
            partial.display(),
            out.display()
        )
    })
}

/// One image to produce.
struct Job {
    split: usize,
    class: usize,
    index: usize,
    path: PathBuf,
}

fn write_dataset(root: &Path, opts: &DemoOptions) -> Result<DemoSummary> {
    let (n_train, n_valid, n_test) = split_sizes(opts.per_class);
    let counts = [n_train, n_valid, n_test];

    let mut jobs = Vec::with_capacity(CLASSES.len() * (n_train + n_valid + n_test));
    for (split, split_name) in SPLITS.iter().enumerate() {
        for (class, class_name) in CLASSES.iter().enumerate() {
            let dir = root.join(split_name).join(class_name);
            fs::create_dir_all(&dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
            for index in 0..counts[split] {
                jobs.push(Job {
                    split,
                    class,
                    index,
                    path: dir.join(format!("{class_name}_{index:04}.png")),
                });
            }
        }
    }

    jobs.par_iter().try_for_each(|job| -> Result<()> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(image_seed(opts.seed, job.split, job.class, job.index));
        let pixels = render_image(job.class, opts.image_size, &mut rng);
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(
                &pixels,
                opts.image_size,
                opts.image_size,
                ExtendedColorType::Rgb8,
            )
            .map_err(|source| DemoError::Encode {
                what: format!("encoding PNG {}", job.path.display()),
                source,
            })?;
        fs::write(&job.path, &png).with_context(|| format!("writing {}", job.path.display()))
    })?;

    Ok(DemoSummary {
        train: n_train * CLASSES.len(),
        valid: n_valid * CLASSES.len(),
        test: n_test * CLASSES.len(),
    })
}

// ---------------------------------------------------------------------------
// Seeding

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-image seed: a splitmix64 chain over (seed, split, class, index).
fn image_seed(seed: u64, split: usize, class: usize, index: usize) -> u64 {
    let mut h = splitmix64(seed ^ 0x5A0D_1AC0_DA7A_5E7D);
    for part in [split as u64, class as u64, index as u64] {
        h = splitmix64(h ^ splitmix64(part.wrapping_add(0x1234_5678)));
    }
    h
}

// ---------------------------------------------------------------------------
// Geometry
//
// Image space is normalised to [-1, 1] on both axes (y pointing down). Shapes
// are described in a local frame where they fit roughly in [-1, 1]², and a
// per-layer transform places them in the image.

#[derive(Debug, Clone, Copy)]
enum Prim {
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
    /// Rotated ellipse; `cos`/`sin` of its own tilt.
    Ellipse {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
        cos: f32,
        sin: f32,
    },
    Ring {
        cx: f32,
        cy: f32,
        r_in: f32,
        r_out: f32,
    },
    Rect {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    },
    Tri {
        p: [(f32, f32); 3],
    },
    /// Thick line segment with round caps (a capsule).
    Segment {
        ax: f32,
        ay: f32,
        bx: f32,
        by: f32,
        hw: f32,
    },
    /// Thick curve y = amp * sin(freq * x + phase) for x in [x0, x1].
    SineBand {
        amp: f32,
        freq: f32,
        phase: f32,
        hw: f32,
        x0: f32,
        x1: f32,
    },
}

impl Prim {
    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Prim::Circle { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Prim::Ellipse {
                cx,
                cy,
                rx,
                ry,
                cos,
                sin,
            } => {
                let (dx, dy) = (x - cx, y - cy);
                let u = (dx * cos + dy * sin) / rx;
                let v = (-dx * sin + dy * cos) / ry;
                u * u + v * v <= 1.0
            }
            Prim::Ring {
                cx,
                cy,
                r_in,
                r_out,
            } => {
                let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                d2 <= r_out * r_out && d2 >= r_in * r_in
            }
            Prim::Rect { x0, y0, x1, y1 } => x >= x0 && x <= x1 && y >= y0 && y <= y1,
            Prim::Tri { p } => {
                let edge = |a: (f32, f32), b: (f32, f32)| {
                    (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
                };
                let d0 = edge(p[0], p[1]);
                let d1 = edge(p[1], p[2]);
                let d2 = edge(p[2], p[0]);
                (d0 >= 0.0 && d1 >= 0.0 && d2 >= 0.0) || (d0 <= 0.0 && d1 <= 0.0 && d2 <= 0.0)
            }
            Prim::Segment { ax, ay, bx, by, hw } => {
                let (vx, vy) = (bx - ax, by - ay);
                let len2 = vx * vx + vy * vy;
                let t = if len2 > 0.0 {
                    (((x - ax) * vx + (y - ay) * vy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (px, py) = (ax + t * vx - x, ay + t * vy - y);
                px * px + py * py <= hw * hw
            }
            Prim::SineBand {
                amp,
                freq,
                phase,
                hw,
                x0,
                x1,
            } => {
                if x < x0 || x > x1 {
                    return false;
                }
                let arg = freq * x + phase;
                let slope = amp * freq * arg.cos();
                // Vertical distance scaled to approximate the normal distance.
                (y - amp * arg.sin()).abs() <= hw * (1.0 + slope * slope).sqrt()
            }
        }
    }

    /// Axis-aligned bounding box in the primitive's own frame: (x0, y0, x1, y1).
    fn bbox(&self) -> (f32, f32, f32, f32) {
        match *self {
            Prim::Circle { cx, cy, r } => (cx - r, cy - r, cx + r, cy + r),
            Prim::Ellipse { cx, cy, rx, ry, .. } => {
                let r = rx.max(ry);
                (cx - r, cy - r, cx + r, cy + r)
            }
            Prim::Ring { cx, cy, r_out, .. } => (cx - r_out, cy - r_out, cx + r_out, cy + r_out),
            Prim::Rect { x0, y0, x1, y1 } => (x0, y0, x1, y1),
            Prim::Tri { p } => {
                let xs = [p[0].0, p[1].0, p[2].0];
                let ys = [p[0].1, p[1].1, p[2].1];
                (
                    xs.iter().copied().fold(f32::INFINITY, f32::min),
                    ys.iter().copied().fold(f32::INFINITY, f32::min),
                    xs.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    ys.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                )
            }
            Prim::Segment { ax, ay, bx, by, hw } => (
                ax.min(bx) - hw,
                ay.min(by) - hw,
                ax.max(bx) + hw,
                ay.max(by) + hw,
            ),
            Prim::SineBand {
                amp,
                freq,
                hw,
                x0,
                x1,
                ..
            } => {
                // The slope-corrected vertical half-width is at most this.
                let pad = hw * (1.0 + (amp * freq).powi(2)).sqrt();
                (x0, -amp.abs() - pad, x1, amp.abs() + pad)
            }
        }
    }
}

/// Similarity transform placing a local frame in the image:
/// image = centre + scale * R(angle) * (flip * x, y).
#[derive(Debug, Clone, Copy)]
struct Xf {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
    scale: f32,
    flip: f32,
}

impl Xf {
    const IDENTITY: Xf = Xf {
        cx: 0.0,
        cy: 0.0,
        cos: 1.0,
        sin: 0.0,
        scale: 1.0,
        flip: 1.0,
    };

    fn to_local(self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = ((x - self.cx) / self.scale, (y - self.cy) / self.scale);
        let lx = self.cos * dx + self.sin * dy;
        let ly = -self.sin * dx + self.cos * dy;
        (lx * self.flip, ly)
    }

    fn to_image(self, x: f32, y: f32) -> (f32, f32) {
        let x = x * self.flip;
        (
            self.cx + self.scale * (self.cos * x - self.sin * y),
            self.cy + self.scale * (self.sin * x + self.cos * y),
        )
    }
}

/// A set of primitives drawn in one colour under one transform.
struct Layer {
    prims: Vec<Prim>,
    colour: [f32; 3],
    xf: Xf,
}

impl Layer {
    /// Bounding box in normalised image coordinates.
    fn image_bbox(&self) -> Option<(f32, f32, f32, f32)> {
        let mut b = (
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        );
        for prim in &self.prims {
            let (x0, y0, x1, y1) = prim.bbox();
            for (lx, ly) in [(x0, y0), (x1, y0), (x0, y1), (x1, y1)] {
                let (ix, iy) = self.xf.to_image(lx, ly);
                b = (b.0.min(ix), b.1.min(iy), b.2.max(ix), b.3.max(iy));
            }
        }
        (b.0 <= b.2 && b.1 <= b.3).then_some(b)
    }

    fn contains(&self, x: f32, y: f32) -> bool {
        let (lx, ly) = self.xf.to_local(x, y);
        self.prims.iter().any(|p| p.contains(lx, ly))
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// 2×2 supersampling offsets, in pixels.
const SUBSAMPLES: [(f32, f32); 4] = [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)];

fn random_colour(rng: &mut ChaCha8Rng) -> [f32; 3] {
    [rng.r#gen::<f32>(), rng.r#gen::<f32>(), rng.r#gen::<f32>()]
}

fn colour_dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// A random colour at least `min_dist` away from `avoid` (best of a few tries).
fn contrasting_colour(rng: &mut ChaCha8Rng, avoid: [f32; 3], min_dist: f32) -> [f32; 3] {
    let mut best = random_colour(rng);
    for _ in 0..16 {
        if colour_dist(best, avoid) >= min_dist {
            break;
        }
        let c = random_colour(rng);
        if colour_dist(c, avoid) > colour_dist(best, avoid) {
            best = c;
        }
    }
    best
}

/// One piece of clutter (a short line, a blob or a small shard) in image coordinates.
fn clutter_layer(rng: &mut ChaCha8Rng, line_only: bool) -> Layer {
    let cx = rng.gen_range(-1.0f32..1.0);
    let cy = rng.gen_range(-1.0f32..1.0);
    let kind = if line_only { 0.0 } else { rng.r#gen::<f32>() };
    let prim = if kind < 0.45 {
        let len = rng.gen_range(0.12f32..0.5);
        let a = rng.gen_range(0.0f32..PI);
        let (dx, dy) = (0.5 * len * a.cos(), 0.5 * len * a.sin());
        Prim::Segment {
            ax: cx - dx,
            ay: cy - dy,
            bx: cx + dx,
            by: cy + dy,
            hw: rng.gen_range(0.012f32..0.035),
        }
    } else if kind < 0.8 {
        let a = rng.gen_range(0.0f32..PI);
        Prim::Ellipse {
            cx,
            cy,
            rx: rng.gen_range(0.03f32..0.1),
            ry: rng.gen_range(0.03f32..0.1),
            cos: a.cos(),
            sin: a.sin(),
        }
    } else {
        // Small random triangle: a shard that looks like part of a shape.
        let mut p = [(0.0f32, 0.0f32); 3];
        for v in &mut p {
            let a = rng.gen_range(0.0f32..2.0 * PI);
            let r = rng.gen_range(0.04f32..0.12);
            *v = (cx + r * a.cos(), cy + r * a.sin());
        }
        Prim::Tri { p }
    };
    Layer {
        prims: vec![prim],
        colour: random_colour(rng),
        xf: Xf::IDENTITY,
    }
}

/// Shape of `class` in its local frame: (main-colour prims, accent-colour prims).
fn class_shape(class: usize, rng: &mut ChaCha8Rng) -> (Vec<Prim>, Vec<Prim>) {
    let mut main = Vec::new();
    let mut accent = Vec::new();
    match CLASSES[class] {
        "rat" => {
            // Cluster of small filled circles.
            let n = rng.gen_range(5..=9);
            for _ in 0..n {
                let a = rng.gen_range(0.0f32..2.0 * PI);
                let d = 0.6 * rng.r#gen::<f32>().sqrt();
                main.push(Prim::Circle {
                    cx: d * a.cos(),
                    cy: d * a.sin(),
                    r: rng.gen_range(0.12f32..0.22),
                });
            }
        }
        "ox" | "goat" => {
            // Body rectangle with two horn triangles; the goat is narrower and
            // has a beard, otherwise the same family (deliberately confusable).
            let goat = CLASSES[class] == "goat";
            let w = if goat {
                rng.gen_range(0.48f32..0.68)
            } else {
                rng.gen_range(0.72f32..0.95)
            };
            let top = rng.gen_range(-0.3f32..-0.15);
            let bottom = rng.gen_range(0.35f32..0.5);
            main.push(Prim::Rect {
                x0: -w,
                y0: top,
                x1: w,
                y1: bottom,
            });
            let horn_w = rng.gen_range(0.2f32..0.3);
            let horn_h = rng.gen_range(0.5f32..0.7);
            let lean = rng.gen_range(0.0f32..0.2);
            let inset = if goat { 0.08 } else { 0.05 };
            for s in [-1.0f32, 1.0] {
                let outer = s * (w - inset);
                let inner = s * (w - inset - horn_w);
                let tip = s * (w - inset + lean);
                main.push(Prim::Tri {
                    p: [
                        (outer, top + 0.01),
                        (inner, top + 0.01),
                        (tip, top - horn_h),
                    ],
                });
            }
            if goat {
                let bw = rng.gen_range(0.12f32..0.2);
                let bl = rng.gen_range(0.35f32..0.5);
                main.push(Prim::Tri {
                    p: [
                        (-bw, bottom - 0.01),
                        (bw, bottom - 0.01),
                        (0.0, bottom + bl),
                    ],
                });
            }
        }
        "tiger" => {
            // Parallel, slightly slanted stripes.
            let n = rng.gen_range(4..=6);
            let spacing = 1.8 / n as f32;
            let hw = spacing * rng.gen_range(0.22f32..0.32);
            let tilt = rng.gen_range(-0.25f32..0.25);
            for i in 0..n {
                let x = -0.9 + spacing * (i as f32 + 0.5);
                main.push(Prim::Segment {
                    ax: x - tilt,
                    ay: -rng.gen_range(0.7f32..0.9),
                    bx: x + tilt,
                    by: rng.gen_range(0.7f32..0.9),
                    hw,
                });
            }
        }
        "rabbit" => {
            // Round head with two tall ears.
            let r = rng.gen_range(0.4f32..0.5);
            main.push(Prim::Circle {
                cx: 0.0,
                cy: 0.4,
                r,
            });
            let rx = rng.gen_range(0.1f32..0.15);
            let ry = rng.gen_range(0.38f32..0.5);
            let spread = rng.gen_range(0.15f32..0.25);
            for s in [-1.0f32, 1.0] {
                let tilt = s * rng.gen_range(0.05f32..0.3);
                main.push(Prim::Ellipse {
                    cx: s * spread,
                    cy: 0.4 - r - ry * 0.75,
                    rx,
                    ry,
                    cos: tilt.cos(),
                    sin: tilt.sin(),
                });
            }
        }
        "dragon" => {
            // Thick zig-zag band.
            let n = rng.gen_range(5..=7);
            let amp = rng.gen_range(0.3f32..0.5);
            let hw = rng.gen_range(0.08f32..0.13);
            let mut sign = if rng.gen_bool(0.5) { 1.0f32 } else { -1.0 };
            let mut prev = (-0.9f32, sign * amp);
            for i in 1..n {
                sign = -sign;
                let next = (-0.9 + 1.8 * i as f32 / (n - 1) as f32, sign * amp);
                main.push(Prim::Segment {
                    ax: prev.0,
                    ay: prev.1,
                    bx: next.0,
                    by: next.1,
                    hw,
                });
                prev = next;
            }
        }
        "snake" => {
            // Thick sine curve with a head.
            let amp = rng.gen_range(0.22f32..0.42);
            let cycles = rng.gen_range(1.0f32..2.0);
            let freq = cycles * 2.0 * PI / 1.8;
            let phase = rng.gen_range(0.0f32..2.0 * PI);
            let hw = rng.gen_range(0.07f32..0.11);
            main.push(Prim::SineBand {
                amp,
                freq,
                phase,
                hw,
                x0: -0.85,
                x1: 0.85,
            });
            main.push(Prim::Circle {
                cx: 0.85,
                cy: amp * (freq * 0.85 + phase).sin(),
                r: hw * 1.8,
            });
        }
        "horse" => {
            // Rectangle body, triangle neck/head, two legs.
            let bt = rng.gen_range(-0.2f32..-0.1);
            let bb = rng.gen_range(0.25f32..0.35);
            main.push(Prim::Rect {
                x0: -0.75,
                y0: bt,
                x1: 0.4,
                y1: bb,
            });
            let tip = (rng.gen_range(0.6f32..0.85), rng.gen_range(-0.9f32..-0.7));
            main.push(Prim::Tri {
                p: [(0.05, bt + 0.01), (0.4, bt + 0.01), tip],
            });
            let lw = rng.gen_range(0.06f32..0.1);
            let ll = rng.gen_range(0.8f32..0.95);
            for x in [-0.62f32, 0.22] {
                main.push(Prim::Rect {
                    x0: x,
                    y0: bb - 0.01,
                    x1: x + 2.0 * lw,
                    y1: ll,
                });
            }
        }
        "monkey" => {
            // Ring (annulus).
            let r_out = rng.gen_range(0.65f32..0.9);
            let r_in = r_out * rng.gen_range(0.45f32..0.7);
            main.push(Prim::Ring {
                cx: 0.0,
                cy: 0.0,
                r_in,
                r_out,
            });
        }
        "rooster" => {
            // Fan of thin triangles from a common pivot.
            let n = rng.gen_range(5..=7);
            let pivot = (0.0f32, 0.7f32);
            let spread = rng.gen_range(1.0f32..1.4);
            let half = rng.gen_range(0.06f32..0.1);
            for i in 0..n {
                let a = -PI / 2.0 - spread + 2.0 * spread * i as f32 / (n - 1) as f32;
                let len = rng.gen_range(1.25f32..1.5);
                let p1 = (
                    pivot.0 + len * (a - half).cos(),
                    pivot.1 + len * (a - half).sin(),
                );
                let p2 = (
                    pivot.0 + len * (a + half).cos(),
                    pivot.1 + len * (a + half).sin(),
                );
                main.push(Prim::Tri { p: [pivot, p1, p2] });
            }
        }
        "dog" => {
            // Plus / cross shape.
            let t = rng.gen_range(0.17f32..0.26);
            let lx = rng.gen_range(0.75f32..0.9);
            let ly = rng.gen_range(0.75f32..0.9);
            main.push(Prim::Rect {
                x0: -lx,
                y0: -t,
                x1: lx,
                y1: t,
            });
            main.push(Prim::Rect {
                x0: -t,
                y0: -ly,
                x1: t,
                y1: ly,
            });
        }
        _ => {
            // pig: big ellipse with two small dots (nostrils) in an accent colour.
            main.push(Prim::Ellipse {
                cx: 0.0,
                cy: 0.0,
                rx: rng.gen_range(0.82f32..0.95),
                ry: rng.gen_range(0.52f32..0.7),
                cos: 1.0,
                sin: 0.0,
            });
            let dx = rng.gen_range(0.18f32..0.3);
            let dy = rng.gen_range(-0.05f32..0.15);
            let r = rng.gen_range(0.08f32..0.13);
            for s in [-1.0f32, 1.0] {
                accent.push(Prim::Circle {
                    cx: s * dx,
                    cy: dy,
                    r,
                });
            }
        }
    }
    (main, accent)
}

/// Render one image of `class` as packed RGB8 bytes.
fn render_image(class: usize, size: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = size as usize;
    let inv = 2.0 / size as f32;

    // Background: random colour with a mild linear brightness gradient.
    let bg = random_colour(rng);
    let gx = rng.gen_range(-0.12f32..0.12);
    let gy = rng.gen_range(-0.12f32..0.12);
    let mut canvas = vec![[0.0f32; 3]; n * n];
    for py in 0..n {
        let v = (py as f32 + 0.5) * inv - 1.0;
        for px in 0..n {
            let u = (px as f32 + 0.5) * inv - 1.0;
            let g = gx * u + gy * v;
            canvas[py * n + px] = [bg[0] + g, bg[1] + g, bg[2] + g];
        }
    }

    let mut layers = Vec::new();
    for _ in 0..rng.gen_range(1..=4) {
        layers.push(clutter_layer(rng, false));
    }

    // The class shape: random scale (fraction of the image), rotation, mirror
    // and position jitter.
    let scale = rng.gen_range(0.6f32..1.0);
    let angle = rng.gen_range(-PI / 3.0..PI / 3.0);
    let slack = (1.0 - scale) * 0.6 + 0.08;
    let xf = Xf {
        cx: rng.gen_range(-slack..slack),
        cy: rng.gen_range(-slack..slack),
        cos: angle.cos(),
        sin: angle.sin(),
        scale,
        flip: if rng.gen_bool(0.5) { 1.0 } else { -1.0 },
    };
    let colour = contrasting_colour(rng, bg, 0.35);
    let (main, accent) = class_shape(class, rng);
    layers.push(Layer {
        prims: main,
        colour,
        xf,
    });
    if !accent.is_empty() {
        let accent_colour = contrasting_colour(rng, colour, 0.45);
        layers.push(Layer {
            prims: accent,
            colour: accent_colour,
            xf,
        });
    }

    // Often a stray line or two over the shape.
    if rng.gen_bool(0.25) {
        for _ in 0..rng.gen_range(1..=2) {
            layers.push(clutter_layer(rng, true));
        }
    }

    for layer in &layers {
        paint(&mut canvas, n, layer);
    }

    // Mild per-pixel noise, then quantise.
    let noise = rng.gen_range(2.0f32..10.0);
    let mut out = Vec::with_capacity(n * n * 3);
    for px in &canvas {
        for &c in px {
            let v = c * 255.0 + rng.gen_range(-noise..noise);
            out.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Composite one layer onto the canvas with 2×2 supersampled coverage.
fn paint(canvas: &mut [[f32; 3]], n: usize, layer: &Layer) {
    let Some((bx0, by0, bx1, by1)) = layer.image_bbox() else {
        return;
    };
    let size = n as f32;
    // Normalised coordinate -> pixel index range (inclusive), clamped.
    let to_px = |c: f32| (c + 1.0) * 0.5 * size;
    let lo = |c: f32| (to_px(c).floor() - 1.0).clamp(0.0, size) as usize;
    let hi = |c: f32| (to_px(c).ceil() + 1.0).clamp(0.0, size) as usize;
    let (x0, x1, y0, y1) = (lo(bx0), hi(bx1), lo(by0), hi(by1));
    let inv = 2.0 / size;
    for py in y0..y1 {
        for px in x0..x1 {
            let hits = SUBSAMPLES
                .iter()
                .filter(|(ox, oy)| {
                    let u = (px as f32 + 0.5 + ox) * inv - 1.0;
                    let v = (py as f32 + 0.5 + oy) * inv - 1.0;
                    layer.contains(u, v)
                })
                .count();
            if hits > 0 {
                let a = hits as f32 / SUBSAMPLES.len() as f32;
                let dst = &mut canvas[py * n + px];
                for (d, c) in dst.iter_mut().zip(layer.colour) {
                    *d = *d * (1.0 - a) + c * a;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(per_class: usize, image_size: u32, seed: u64) -> DemoOptions {
        DemoOptions {
            per_class,
            image_size,
            seed,
        }
    }

    /// All files under `root`, as (relative path, bytes), sorted.
    fn read_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, acc: &mut Vec<(PathBuf, Vec<u8>)>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, acc);
                } else {
                    let rel = path.strip_prefix(root).unwrap().to_path_buf();
                    acc.push((rel, fs::read(&path).unwrap()));
                }
            }
        }
        let mut acc = Vec::new();
        walk(root, root, &mut acc);
        acc.sort_by(|a, b| a.0.cmp(&b.0));
        acc
    }

    #[test]
    fn split_sizes_follow_rule() {
        assert_eq!(split_sizes(1), (1, 1, 1));
        assert_eq!(split_sizes(3), (3, 1, 1));
        assert_eq!(split_sizes(8), (8, 2, 2));
        assert_eq!(split_sizes(40), (40, 10, 10));
    }

    #[test]
    fn deterministic_for_same_options() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let o = opts(3, 24, 7);
        let sa = generate(&a, &o).unwrap();
        let sb = generate(&b, &o).unwrap();
        assert_eq!(sa, sb);
        let ta = read_tree(&a);
        let tb = read_tree(&b);
        assert_eq!(ta.len(), 12 * 5);
        assert_eq!(ta, tb);
    }

    #[test]
    fn different_seed_changes_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        generate(&a, &opts(2, 16, 1)).unwrap();
        generate(&b, &opts(2, 16, 2)).unwrap();
        let ta = read_tree(&a);
        let tb = read_tree(&b);
        assert_eq!(ta.len(), tb.len());
        let same = ta.iter().zip(&tb).filter(|(x, y)| x.1 == y.1).count();
        assert_eq!(same, 0, "{same} files identical across seeds");
    }

    #[test]
    fn layout_counts_and_decoding() {
        let tmp = tempfile::tempdir().unwrap();
        // Parent directories are created as needed.
        let out = tmp.path().join("nested").join("deeper").join("demo");
        let per_class = 4;
        let size = 20;
        let summary = generate(&out, &opts(per_class, size, 42)).unwrap();
        let (tr, va, te) = split_sizes(per_class);
        assert_eq!(
            summary,
            DemoSummary {
                train: 12 * tr,
                valid: 12 * va,
                test: 12 * te
            }
        );

        let mut top: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["test", "train", "valid"]);

        for (split, count) in [("train", tr), ("valid", va), ("test", te)] {
            let classes = fs::read_dir(out.join(split)).unwrap().count();
            assert_eq!(classes, CLASSES.len());
            for class in CLASSES {
                let dir = out.join(split).join(class);
                assert_eq!(
                    fs::read_dir(&dir).unwrap().count(),
                    count,
                    "{}",
                    dir.display()
                );
                for i in 0..count {
                    let path = dir.join(format!("{class}_{i:04}.png"));
                    let img = image::open(&path).unwrap();
                    assert!(
                        matches!(img, image::DynamicImage::ImageRgb8(_)),
                        "{}",
                        path.display()
                    );
                    assert_eq!((img.width(), img.height()), (size, size));
                }
            }
        }

        // No partial directory left behind.
        let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("demo")]);
    }

    #[test]
    fn refuses_non_empty_existing_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("demo");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), b"mine").unwrap();
        let err = generate(&out, &opts(1, 16, 0)).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains("remove it or choose another path"), "{err}");
        assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"mine");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn accepts_empty_existing_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("demo");
        fs::create_dir(&out).unwrap();
        generate(&out, &opts(1, 16, 0)).unwrap();
        assert!(out.join("train").join("pig").join("pig_0000.png").is_file());
    }

    #[test]
    fn rejects_bad_options() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("demo");
        let err = generate(&out, &opts(0, 32, 0)).unwrap_err().to_string();
        assert!(err.contains("per_class"), "{err}");
        let err = generate(&out, &opts(2, 7, 0)).unwrap_err().to_string();
        assert!(err.contains("image_size"), "{err}");
        assert!(!out.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn smallest_size_renders() {
        for seed in 0..3 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for class in 0..CLASSES.len() {
                assert_eq!(
                    render_image(class, MIN_IMAGE_SIZE, &mut rng).len(),
                    8 * 8 * 3
                );
            }
        }
    }

    /// Foreground mask of an RGB8 image: pixels far from the border's mean colour.
    fn foreground(img: &image::RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let mut border = [0.0f32; 3];
        let mut count = 0.0;
        for (x, y, p) in img.enumerate_pixels() {
            if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
                for c in 0..3 {
                    border[c] += p[c] as f32;
                }
                count += 1.0;
            }
        }
        let border = border.map(|b| b / count);
        img.pixels()
            .map(|p| {
                let d: f32 = (0..3).map(|c| (p[c] as f32 - border[c]).abs()).sum();
                if d > 60.0 { 1.0 } else { 0.0 }
            })
            .collect()
    }

    /// Mean foreground mask per class over `n` images rendered from `seed`.
    fn class_mean_masks(seed: u64, n: usize, size: u32) -> Vec<Vec<f32>> {
        (0..CLASSES.len())
            .map(|class| {
                let mut acc = vec![0.0f32; (size * size) as usize];
                for i in 0..n {
                    let mut rng = ChaCha8Rng::seed_from_u64(image_seed(seed, 0, class, i));
                    let img =
                        image::RgbImage::from_raw(size, size, render_image(class, size, &mut rng))
                            .unwrap();
                    for (a, m) in acc.iter_mut().zip(foreground(&img)) {
                        *a += m / n as f32;
                    }
                }
                acc
            })
            .collect()
    }

    fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    #[test]
    fn classes_are_distinct_on_average() {
        // Colours, positions and poses are random, so compare the mean
        // colour-invariant foreground mask of each class over many images.
        // Two independent draws (different seeds) of the same class must be
        // closer to each other than to the mean of any other class.
        let (n, size) = (200, 16);
        let draw_a = class_mean_masks(3, n, size);
        let draw_b = class_mean_masks(4, n, size);
        for (i, a) in draw_a.iter().enumerate() {
            let within = mean_abs_diff(a, &draw_b[i]);
            for (j, b) in draw_b.iter().enumerate() {
                if i != j {
                    let between = mean_abs_diff(a, b);
                    assert!(
                        between > 1.1 * within,
                        "mean masks of {} and {} differ by {between:.3}, \
                         but two draws of {} already differ by {within:.3}",
                        CLASSES[i],
                        CLASSES[j],
                        CLASSES[i]
                    );
                }
            }
        }
    }
}
