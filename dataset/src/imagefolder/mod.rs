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
//!
//! [`scan`](scan()) finds the files, `decode` reads them into a [`SplitCache`],
//! `transform` holds the torchvision-equivalent transforms and `batch` makes
//! batches from a split. Every public item is re-exported here, so the paths
//! `sweep_dataset::imagefolder::…` stay as they were.
mod batch;
mod decode;
mod scan;
#[cfg(test)]
mod tests;
mod transform;

pub use batch::*;
pub use decode::*;
pub use scan::*;
pub use transform::*;

use std::path::PathBuf;

pub const EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Layout(String),
    #[error("cannot read image {path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoded-image cache: {0}")]
    Cache(String),
}

/// One decoded image: RGB8, HWC, shorter side = the cache's stored size.
#[derive(Debug, Clone)]
pub struct Cached {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Cached {
    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            pixels: &self.pixels,
        }
    }
}

/// A decoded image wherever its pixels live (a worker's memory or the shared,
/// memory-mapped cache): RGB8, HWC, `pixels.len() == width·height·3`.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

/// Where one image lies in a mapped split file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug)]
enum Store {
    /// Decoded into this process's memory (no shared cache).
    Decoded(Vec<Cached>),
    /// A split file of the shared cache, mapped read-only: the pages are the
    /// kernel's page cache, shared by every worker on the machine.
    Mapped {
        map: memmap2::Mmap,
        entries: Vec<Entry>,
    },
}

/// A split file's index that does not fit the file or the file list.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(
        "image {image} ({}×{} at offset {}) lies outside the {file_bytes}-byte file",
        .entry.width,
        .entry.height,
        .entry.offset
    )]
    OutsideFile {
        image: usize,
        entry: Entry,
        file_bytes: usize,
    },
    #[error("{images} images but {labels} labels and {paths} paths")]
    Counts {
        images: usize,
        labels: usize,
        paths: usize,
    },
}

/// The decoded images of one split, with their labels and paths.
#[derive(Debug)]
pub struct SplitCache {
    store: Store,
    pub labels: Vec<i64>,
    pub paths: Vec<PathBuf>,
    pub skipped: usize,
}

impl SplitCache {
    /// Images held in memory.
    pub fn decoded(
        images: Vec<Cached>,
        labels: Vec<i64>,
        paths: Vec<PathBuf>,
        skipped: usize,
    ) -> SplitCache {
        SplitCache {
            store: Store::Decoded(images),
            labels,
            paths,
            skipped,
        }
    }

    /// Images in a mapped split file; every entry must lie inside the map.
    pub fn mapped(
        map: memmap2::Mmap,
        entries: Vec<Entry>,
        labels: Vec<i64>,
        paths: Vec<PathBuf>,
        skipped: usize,
    ) -> Result<SplitCache, MapError> {
        for (i, e) in entries.iter().enumerate() {
            let len = e.width as u64 * e.height as u64 * 3;
            if e.width == 0
                || e.height == 0
                || e.offset
                    .checked_add(len)
                    .is_none_or(|end| end > map.len() as u64)
            {
                return Err(MapError::OutsideFile {
                    image: i,
                    entry: *e,
                    file_bytes: map.len(),
                });
            }
        }
        if entries.len() != labels.len() || entries.len() != paths.len() {
            return Err(MapError::Counts {
                images: entries.len(),
                labels: labels.len(),
                paths: paths.len(),
            });
        }
        Ok(SplitCache {
            store: Store::Mapped { map, entries },
            labels,
            paths,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Decoded(v) => v.len(),
            Store::Mapped { entries, .. } => entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the pixels are the shared, memory-mapped cache.
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Mapped { .. })
    }

    pub fn image(&self, i: usize) -> Option<ImageView<'_>> {
        match &self.store {
            Store::Decoded(v) => v.get(i).map(Cached::view),
            Store::Mapped { map, entries } => {
                let e = entries.get(i)?;
                let start = e.offset as usize;
                let len = e.width as usize * e.height as usize * 3;
                Some(ImageView {
                    width: e.width,
                    height: e.height,
                    pixels: map.get(start..start + len)?,
                })
            }
        }
    }
}
