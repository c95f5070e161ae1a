//! ImageFolder data for one trial: scan, decode once into a u8 cache, and make
//! batches on a background thread that overlaps with compute.
//!
//! Transforms follow torchvision's semantics. Each image is decoded and resized
//! once per trial so that its shorter side is `R = round(S·256/224)` (S =
//! `image_size`), aspect kept. Eval = centre crop S×S of that, i.e. exactly
//! `Resize(R)` + `CenterCrop(S)`. Train = `RandomResizedCrop(S, scale=(0.08, 1),
//! ratio=(3/4, 4/3))` taken from the cached image (not the full-resolution
//! original: the one documented difference) + `RandomHorizontalFlip`.
//! Normalisation with ImageNet mean/std happens on the tensor side.
//!
//! This module never touches libtorch: it hands out plain `u8` buffers.
use fast_image_resize::{images::{Image, ImageRef}, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub const EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Layout(String),
    #[error("cannot read image {path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error("io error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// The file list of one split: (path, class index).
#[derive(Debug, Clone)]
pub struct SplitFiles {
    pub split: Split,
    pub items: Vec<(PathBuf, i64)>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub classes: Vec<String>,
    pub train: SplitFiles,
    pub valid: SplitFiles,
    pub test: SplitFiles,
}

fn split_dir(root: &Path, split: Split) -> Result<PathBuf, DataError> {
    let candidates: &[&str] = match split {
        Split::Train => &["train"],
        Split::Valid => &["valid", "val"],
        Split::Test => &["test"],
    };
    candidates
        .iter()
        .map(|c| root.join(c))
        .find(|p| p.is_dir())
        .ok_or_else(|| DataError::Layout(format!("{}: missing split folder {}/", root.display(), candidates.join("/ or "))))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io { path: dir.to_path_buf(), source: e })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::Io { path: dir.to_path_buf(), source: e })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for p in list_dir(dir)? {
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                DataError::Layout(format!("{}: class folder name is not valid UTF-8; rename it", p.display()))
            })?;
            if !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// Scans an ImageFolder root. Class names are the sorted folder names of
/// `train/` and must be the same in every split.
pub fn scan(root: &Path) -> Result<Layout, DataError> {
    let train_dir = split_dir(root, Split::Train)?;
    let classes = class_dirs(&train_dir)?;
    if classes.len() < 2 {
        return Err(DataError::Layout(format!("{}: found {} class folder(s); an ImageFolder needs at least 2", train_dir.display(), classes.len())));
    }
    let mut splits = Vec::new();
    for split in [Split::Train, Split::Valid, Split::Test] {
        let dir = split_dir(root, split)?;
        let here = class_dirs(&dir)?;
        for c in &classes {
            if !here.contains(c) {
                return Err(DataError::Layout(format!("class {c:?} is missing from split {}: expected folder {}", split.name(), dir.join(c).display())));
            }
        }
        for c in &here {
            if !classes.contains(c) {
                return Err(DataError::Layout(format!("class {c:?} in {} is not in train/ ({})", dir.display(), classes.join(", "))));
            }
        }
        let mut items = Vec::new();
        for (ci, c) in classes.iter().enumerate() {
            let cdir = dir.join(c);
            let mut n = 0;
            for p in list_dir(&cdir)? {
                let ext = p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
                if EXTENSIONS.contains(&ext.as_str()) {
                    items.push((p, ci as i64));
                    n += 1;
                }
            }
            if n == 0 {
                return Err(DataError::Layout(format!("{}: no images (looked for {})", cdir.display(), EXTENSIONS.join(", "))));
            }
        }
        splits.push(SplitFiles { split, items });
    }
    let mut it = splits.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(train), Some(valid), Some(test)) => Ok(Layout { classes, train, valid, test }),
        _ => Err(DataError::Layout("internal: split scan incomplete".into())),
    }
}

/// One decoded image: RGB8, HWC, shorter side = the cache's stored size.
#[derive(Debug, Clone)]
pub struct Cached {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// The decoded images of one split, with their labels and paths.
#[derive(Debug)]
pub struct SplitCache {
    pub images: Vec<Cached>,
    pub labels: Vec<i64>,
    pub paths: Vec<PathBuf>,
    pub skipped: usize,
}

/// The stored shorter side for an image size: torchvision's 256/224 ratio.
pub fn stored_size(image_size: u32) -> u32 {
    ((image_size as f64) * 256.0 / 224.0).round() as u32
}

fn resize_alg() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

/// Decodes one file to RGB8 (grayscale, RGBA, 16-bit, CMYK all converted).
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let bad = |reason: String| DataError::BadImage { path: path.to_path_buf(), reason };
    let reader = image::ImageReader::open(path).map_err(|e| bad(e.to_string()))?;
    let reader = reader.with_guessed_format().map_err(|e| bad(e.to_string()))?;
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("image has zero width or height".into()));
    }
    Ok(img.to_rgb8())
}

/// Resizes so the shorter side is `short` (aspect kept), unless it already is.
pub fn resize_shorter(img: &image::RgbImage, short: u32) -> Result<Cached, String> {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (short, ((h as f64) * short as f64 / w as f64).round().max(1.0) as u32)
    } else {
        (((w as f64) * short as f64 / h as f64).round().max(1.0) as u32, short)
    };
    if (nw, nh) == (w, h) {
        return Ok(Cached { width: w, height: h, pixels: img.as_raw().clone() });
    }
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::new(nw, nh, PixelType::U8x3);
    Resizer::new().resize(&src, &mut dst, &resize_alg()).map_err(|e| e.to_string())?;
    Ok(Cached { width: nw, height: nh, pixels: dst.into_vec() })
}

/// Decodes and resizes every file of a split once, in parallel.
pub fn load_split(files: &SplitFiles, image_size: u32, skip_bad: bool) -> Result<SplitCache, DataError> {
    let short = stored_size(image_size);
    let results: Vec<Result<Cached, DataError>> = files
        .items
        .par_iter()
        .map(|(p, _)| {
            let img = decode_rgb(p)?;
            resize_shorter(&img, short).map_err(|reason| DataError::BadImage { path: p.clone(), reason })
        })
        .collect();
    let mut out = SplitCache { images: Vec::new(), labels: Vec::new(), paths: Vec::new(), skipped: 0 };
    for (r, (p, label)) in results.into_iter().zip(&files.items) {
        match r {
            Ok(c) => {
                out.images.push(c);
                out.labels.push(*label);
                out.paths.push(p.clone());
            }
            Err(e) if skip_bad => {
                eprintln!("warning: skipping {}: {e}", p.display());
                out.skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if out.images.is_empty() {
        return Err(DataError::Layout(format!("split {} has no readable images", files.split.name())));
    }
    Ok(out)
}

/// Centre crop S×S into `out` (len S·S·3).
pub fn center_crop(img: &Cached, s: u32, out: &mut [u8]) {
    let s = s.min(img.width).min(img.height);
    // torchvision rounds the offsets: int(round((h - s) / 2.0)).
    let left = ((img.width - s) as f64 / 2.0).round() as u32;
    let top = ((img.height - s) as f64 / 2.0).round() as u32;
    copy_rect(img, left, top, s, s, out);
}

fn copy_rect(img: &Cached, left: u32, top: u32, w: u32, h: u32, out: &mut [u8]) {
    let row = (w * 3) as usize;
    for y in 0..h {
        let src_start = (((top + y) * img.width + left) * 3) as usize;
        let dst_start = (y as usize) * row;
        if let (Some(dst), Some(src)) = (out.get_mut(dst_start..dst_start + row), img.pixels.get(src_start..src_start + row)) {
            dst.copy_from_slice(src);
        }
    }
}

/// torchvision's RandomResizedCrop parameters (10 tries, then centre fallback).
fn rrc_params(rng: &mut ChaCha8Rng, w: u32, h: u32) -> (f64, f64, f64, f64) {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(0.08..1.0);
        let ratio = rng.gen_range(lr0..lr1).exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw > 0.0 && ch > 0.0 && cw <= w as f64 && ch <= h as f64 {
            let top = rng.gen_range(0..=(h - ch as u32)) as f64;
            let left = rng.gen_range(0..=(w - cw as u32)) as f64;
            return (left, top, cw, ch);
        }
    }
    let ratio = w as f64 / h as f64;
    let (cw, ch) = if ratio < 3.0 / 4.0 {
        (w as f64, (w as f64 / (3.0 / 4.0)).round())
    } else if ratio > 4.0 / 3.0 {
        ((h as f64 * 4.0 / 3.0).round(), h as f64)
    } else {
        (w as f64, h as f64)
    };
    (((w as f64 - cw) / 2.0).floor(), ((h as f64 - ch) / 2.0).floor(), cw, ch)
}

/// The train transform for one image into `out` (len S·S·3).
pub fn train_transform(img: &Cached, s: u32, augment: &[String], rng: &mut ChaCha8Rng, out: &mut [u8]) -> Result<(), String> {
    if augment.iter().any(|a| a == "random_resized_crop") {
        let (left, top, cw, ch) = rrc_params(rng, img.width, img.height);
        let src = ImageRef::new(img.width, img.height, &img.pixels, PixelType::U8x3).map_err(|e| e.to_string())?;
        let mut dst = Image::new(s, s, PixelType::U8x3);
        Resizer::new().resize(&src, &mut dst, &resize_alg().crop(left, top, cw, ch)).map_err(|e| e.to_string())?;
        out.copy_from_slice(dst.buffer());
    } else {
        center_crop(img, s, out);
    }
    if augment.iter().any(|a| a == "hflip") && rng.gen_bool(0.5) {
        let row = (s * 3) as usize;
        for r in out.chunks_mut(row) {
            let n = s as usize;
            for x in 0..n / 2 {
                for c in 0..3 {
                    r.swap(x * 3 + c, (n - 1 - x) * 3 + c);
                }
            }
        }
    }
    Ok(())
}

/// A batch of HWC u8 images and labels.
pub struct Batch {
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
}

/// Seeded per-epoch permutation: the same seed gives the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

/// Builds a train batch; each image's randomness comes from (seed, epoch, index)
/// so the result does not depend on thread scheduling.
pub fn train_batch(cache: &SplitCache, idx: &[usize], s: u32, augment: &[String], seed: u64, epoch: u32) -> Result<Batch, String> {
    let per = (s * s * 3) as usize;
    let mut pixels = vec![0u8; per * idx.len()];
    pixels
        .par_chunks_mut(per)
        .zip(idx.par_iter())
        .try_for_each(|(out, &i)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ ((epoch as u64) << 40) ^ i as u64);
            let img = cache.images.get(i).ok_or("index out of range")?;
            train_transform(img, s, augment, &mut rng, out)
        })?;
    let labels = idx.iter().map(|&i| cache.labels.get(i).copied().unwrap_or(0)).collect();
    Ok(Batch { pixels, labels })
}

pub fn eval_batch(cache: &SplitCache, idx: &[usize], s: u32) -> Batch {
    let per = (s * s * 3) as usize;
    let mut pixels = vec![0u8; per * idx.len()];
    pixels.par_chunks_mut(per).zip(idx.par_iter()).for_each(|(out, &i)| {
        if let Some(img) = cache.images.get(i) {
            center_crop(img, s, out);
        }
    });
    let labels = idx.iter().map(|&i| cache.labels.get(i).copied().unwrap_or(0)).collect();
    Batch { pixels, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(w: u32, h: u32) -> Cached {
        Cached { width: w, height: h, pixels: (0..w * h * 3).map(|i| (i % 251) as u8).collect() }
    }

    #[test]
    fn stored_size_matches_torchvision_ratio() {
        assert_eq!(stored_size(224), 256);
        assert_eq!(stored_size(64), 73);
    }

    #[test]
    fn center_crop_takes_the_middle() {
        let img = cached(5, 3);
        let mut out = vec![0u8; 3 * 3 * 3];
        center_crop(&img, 3, &mut out);
        // left offset = round((5-3)/2) = 1
        assert_eq!(&out[0..3], &img.pixels[3..6]);
    }

    #[test]
    fn train_batches_are_deterministic() {
        let cache = SplitCache { images: vec![cached(40, 50), cached(60, 40)], labels: vec![0, 1], paths: vec![], skipped: 0 };
        let aug = vec!["random_resized_crop".to_string(), "hflip".to_string()];
        let a = train_batch(&cache, &[1, 0], 32, &aug, 7, 1).unwrap();
        let b = train_batch(&cache, &[1, 0], 32, &aug, 7, 1).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.labels, vec![1, 0]);
        let c = train_batch(&cache, &[1, 0], 32, &aug, 8, 1).unwrap();
        assert_ne!(a.pixels, c.pixels);
    }

    #[test]
    fn epoch_order_is_a_permutation() {
        let mut o = epoch_order(100, 3, 2);
        assert_ne!(o, (0..100).collect::<Vec<_>>());
        o.sort();
        assert_eq!(o, (0..100).collect::<Vec<_>>());
    }
}
