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
use fast_image_resize::{
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
    images::{Image, ImageRef},
};
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
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoded-image cache: {0}")]
    Cache(String),
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
        .ok_or_else(|| {
            DataError::Layout(format!(
                "{}: missing split folder {}/",
                root.display(),
                candidates.join("/ or ")
            ))
        })
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Every image file under a class folder, as torchvision's ImageFolder finds
/// them: subfolders included, symlinks followed (`os.walk(followlinks=True)`),
/// directories in sorted path order and files sorted within each. A directory
/// reached twice (a symlink cycle, or two links to one folder) is walked once.
fn images_under(class_dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![class_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::metadata(&d).map_err(|e| DataError::Io {
            path: d.clone(),
            source: e,
        })?;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for p in list_dir(&d)? {
            // metadata() follows symlinks; a dangling link is neither and is ignored.
            if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(p);
            }
        }
        dirs.push(d);
    }
    dirs.sort_by(|a, b| a.to_string_lossy().cmp(&b.to_string_lossy()));
    let mut out = Vec::new();
    for d in dirs {
        for p in list_dir(&d)? {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .unwrap_or_default();
            if EXTENSIONS.contains(&ext.as_str())
                && !std::fs::metadata(&p).is_ok_and(|m| m.is_dir())
            {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for p in list_dir(dir)? {
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                DataError::Layout(format!(
                    "{}: class folder name is not valid UTF-8; rename it",
                    p.display()
                ))
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
        return Err(DataError::Layout(format!(
            "{}: found {} class folder(s); an ImageFolder needs at least 2",
            train_dir.display(),
            classes.len()
        )));
    }
    let mut splits = Vec::new();
    for split in [Split::Train, Split::Valid, Split::Test] {
        let dir = split_dir(root, split)?;
        let here = class_dirs(&dir)?;
        for c in &classes {
            if !here.contains(c) {
                return Err(DataError::Layout(format!(
                    "class {c:?} is missing from split {}: expected folder {}",
                    split.name(),
                    dir.join(c).display()
                )));
            }
        }
        for c in &here {
            if !classes.contains(c) {
                return Err(DataError::Layout(format!(
                    "class {c:?} in {} is not in train/ ({})",
                    dir.display(),
                    classes.join(", ")
                )));
            }
        }
        let mut items = Vec::new();
        for (ci, c) in classes.iter().enumerate() {
            let cdir = dir.join(c);
            let found = images_under(&cdir)?;
            if found.is_empty() {
                return Err(DataError::Layout(format!(
                    "class folder {} has no images (looked for {}, subfolders included); add images or remove the folder from every split",
                    cdir.display(),
                    EXTENSIONS.join(", ")
                )));
            }
            items.extend(found.into_iter().map(|p| (p, ci as i64)));
        }
        splits.push(SplitFiles { split, items });
    }
    let mut it = splits.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(train), Some(valid), Some(test)) => Ok(Layout {
            classes,
            train,
            valid,
            test,
        }),
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
    ) -> Result<SplitCache, String> {
        for (i, e) in entries.iter().enumerate() {
            let len = e.width as u64 * e.height as u64 * 3;
            if e.width == 0
                || e.height == 0
                || e.offset
                    .checked_add(len)
                    .is_none_or(|end| end > map.len() as u64)
            {
                return Err(format!(
                    "image {i} ({}×{} at offset {}) lies outside the {}-byte file",
                    e.width,
                    e.height,
                    e.offset,
                    map.len()
                ));
            }
        }
        if entries.len() != labels.len() || entries.len() != paths.len() {
            return Err(format!(
                "{} images but {} labels and {} paths",
                entries.len(),
                labels.len(),
                paths.len()
            ));
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

/// The stored shorter side for an image size: torchvision's 256/224 ratio.
pub fn stored_size(image_size: u32) -> u32 {
    sweep_protocol::config::default_cache_short(image_size)
}

fn resize_alg() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

thread_local! {
    /// One resizer a thread, kept between images: a fresh `Resizer` allocates
    /// its intermediate buffer (destination width × source height) anew every
    /// time, which measured as half of a 500×375 → 341×256 resize.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Resizes `src` into `dst` with this thread's [`RESIZER`].
fn resize_into(src: &ImageRef, dst: &mut Image, options: &ResizeOptions) -> Result<(), String> {
    RESIZER
        .with(|r| r.borrow_mut().resize(src, dst, options))
        .map_err(|e| e.to_string())
}

/// Reads an image file whole into `buf`: a regular, non-empty file of at
/// most [`MAX_FILE_BYTES`].
fn read_image(path: &Path, buf: &mut Vec<u8>) -> Result<(), DataError> {
    use std::io::Read;
    let bad = |reason: String| DataError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        // A FIFO would block the read forever; a directory named `x.jpg` says nothing useful.
        return Err(bad("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(bad("the file is empty (0 bytes)".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        // Files are read whole before they are decoded: a hostile or
        // mistaken multi-gigabyte file must not be read into memory.
        return Err(bad(format!(
            "the file is {} bytes, larger than any image this tool decodes ({MAX_FILE_BYTES} bytes, twice the decoded-size limit)",
            meta.len()
        )));
    }
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .map(drop)
        .map_err(|e| bad(e.to_string()))
}

/// The largest image file read at all: twice [`MAX_DECODED_BYTES`], with
/// room to spare, since a decoder's buffer holds at least as many bytes as
/// an uncompressed file has and a compressed image that large decodes to far
/// more than the limit.
const MAX_FILE_BYTES: u64 = 2 * MAX_DECODED_BYTES;

/// Decodes one file to RGB8 (grayscale, RGBA, 16-bit, CMYK all converted).
///
/// The format comes from the file's content, not its extension: an empty file
/// or one whose first bytes match no image format (a text file named `.jpg`)
/// is reported as such rather than as a decoder error. The image crate's
/// default limits apply (a decompression bomb is an error, not an abort).
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let mut bytes = Vec::new();
    read_image(path, &mut bytes)?;
    decode_bytes(path, &bytes)
}

/// [`decode_rgb`] of the file's bytes, already read.
fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, DataError> {
    let bad = |reason: String| DataError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let format = image::guess_format(bytes).map_err(|_| {
        bad(format!(
            "not an image: its content matches none of the supported formats ({}); is it another kind of file with an image extension?",
            EXTENSIONS.join(", ")
        ))
    })?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("image has zero width or height".into()));
    }
    // `into_rgb8` hands over the buffer of an RGB8 image (most JPEGs) instead of copying it.
    Ok(img.into_rgb8())
}

/// The image crate's default allocation limit for one decoded image, which
/// the JPEG fast path keeps too (larger ones go the image crate's way, to
/// its error).
const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// A colour JPEG (YCbCr or RGB, the common case) decoded from `file` (its
/// bytes) into `out` by zune-jpeg with the options the image crate gives it,
/// so the bytes are [`decode_rgb`]'s: but into a buffer the caller keeps
/// between images, instead of two fresh allocations (one of them zeroed)
/// and a second header parse an image. `None`: not such a file, or one that
/// does not decode: [`decode_bytes`] decides, and words its error.
fn decode_jpeg_into(file: &[u8], out: &mut Vec<u8>) -> Option<(u32, u32)> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    if image::guess_format(file).ok() != Some(image::ImageFormat::Jpeg) {
        return None;
    }
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(file), options);
    if decoder.decode_headers().is_err()
        || !matches!(
            decoder.input_colorspace(),
            Some(ColorSpace::YCbCr | ColorSpace::RGB)
        )
    {
        return None;
    }
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(ColorSpace::RGB));
    let (w, h) = decoder.dimensions()?;
    let len = w as u64 * h as u64 * 3;
    if w == 0
        || h == 0
        || len > MAX_DECODED_BYTES
        || decoder.output_buffer_size() != Some(len as usize)
    {
        return None;
    }
    // Only new capacity is zeroed; the bytes are overwritten by the decode.
    out.resize(len as usize, 0);
    decoder.decode_into(&mut out[..len as usize]).ok()?;
    Some((w as u32, h as u32))
}

/// Buffers one thread reuses from image to image in [`decode_with`].
#[derive(Default)]
struct DecodeBuffers {
    file: Vec<u8>,
    decoded: Vec<u8>,
    resized: Vec<u8>,
}

thread_local! {
    static DECODE_BUFFERS: std::cell::RefCell<DecodeBuffers> = std::cell::RefCell::new(DecodeBuffers::default());
}

/// Buffers larger than this are not kept for the next image (a 100-megapixel
/// photo would otherwise pin 300 MB a thread for the rest of the run;
/// 16 MB holds a 5-megapixel decode).
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// Decodes one file, resizes it so its shorter side is `short` (`None`: kept
/// at full resolution) and hands (width, height, RGB8 pixels) to `use_pixels`.
/// The one decode path of the project: the shared cache and a worker's
/// in-memory decode both go through it, so both hold the same bytes. The
/// pixels live in buffers this thread keeps between calls; `use_pixels`
/// copies what it needs and must not decode itself.
pub fn decode_with<R>(
    path: &Path,
    short: Option<u32>,
    use_pixels: impl FnOnce(u32, u32, &[u8]) -> R,
) -> Result<R, DataError> {
    // A decoder bug on a crafted file must not take the whole trial down
    // without naming the file: turn a panic into this file's error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        DECODE_BUFFERS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let DecodeBuffers {
                file,
                decoded,
                resized,
            } = &mut *guard;
            // Read once; a file the JPEG fast path does not take is decoded
            // from the same bytes.
            read_image(path, file)?;
            let (w, h) = match decode_jpeg_into(file, decoded) {
                Some(wh) => wh,
                None => {
                    let img = decode_bytes(path, file)?;
                    let wh = img.dimensions();
                    *decoded = img.into_raw();
                    wh
                }
            };
            let pixels = &decoded[..w as usize * h as usize * 3];
            let result = match short {
                None => Ok(use_pixels(w, h, pixels)),
                Some(short) => resize_view_into(
                    &ImageView {
                        width: w,
                        height: h,
                        pixels,
                    },
                    short,
                    resized,
                )
                .map(|(nw, nh)| use_pixels(nw, nh, &resized[..nw as usize * nh as usize * 3]))
                .map_err(|reason| DataError::BadImage {
                    path: path.to_path_buf(),
                    reason,
                }),
            };
            for buf in [file, decoded, resized] {
                if buf.capacity() > KEEP_BUFFER_BYTES {
                    *buf = Vec::new();
                }
            }
            result
        })
    }))
    .unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(DataError::BadImage {
            path: path.to_path_buf(),
            reason: format!("the decoder crashed on this file: {msg}"),
        })
    })
}

/// The most pixels a resized image may have (a 1×60000 strip at image_size
/// 224 would otherwise become 256×15 360 000 and exhaust memory).
pub const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Resizes so the shorter side is `short` (aspect kept), unless it already is.
pub fn resize_shorter(img: &image::RgbImage, short: u32) -> Result<Cached, String> {
    let (w, h) = img.dimensions();
    resize_view(
        &ImageView {
            width: w,
            height: h,
            pixels: img.as_raw(),
        },
        short,
    )
}

/// [`resize_shorter`] for any decoded image.
pub fn resize_view(img: &ImageView, short: u32) -> Result<Cached, String> {
    let mut pixels = Vec::new();
    let (width, height) = resize_view_into(img, short, &mut pixels)?;
    Ok(Cached {
        width,
        height,
        pixels,
    })
}

/// [`resize_view`] into `out` (resized to fit): the new width and height.
fn resize_view_into(img: &ImageView, short: u32, out: &mut Vec<u8>) -> Result<(u32, u32), String> {
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || short == 0 {
        return Err(format!(
            "cannot resize a {w}×{h} image to shorter side {short}"
        ));
    }
    let long = |l: u32, s: u32| {
        ((l as f64) * short as f64 / s as f64)
            .round()
            .clamp(1.0, u32::MAX as f64) as u32
    };
    let (nw, nh) = if w <= h {
        (short, long(h, w))
    } else {
        (long(w, h), short)
    };
    if nw as u64 * nh as u64 > MAX_RESIZED_PIXELS {
        return Err(format!(
            "aspect ratio too extreme: a {w}×{h} image resized to shorter side {short} would be {nw}×{nh} pixels (limit {MAX_RESIZED_PIXELS})"
        ));
    }
    let len = nw as usize * nh as usize * 3;
    if (nw, nh) == (w, h) {
        out.clear();
        out.extend_from_slice(&img.pixels[..len]);
        return Ok((w, h));
    }
    out.resize(len, 0);
    let src = ImageRef::new(w, h, img.pixels, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::from_slice_u8(nw, nh, &mut out[..len], PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    resize_into(&src, &mut dst, &resize_alg())?;
    Ok((nw, nh))
}

/// [`decode_with`] into an image of its own.
pub fn decode_one(path: &Path, short: Option<u32>) -> Result<Cached, DataError> {
    decode_with(path, short, |width, height, pixels| Cached {
        width,
        height,
        pixels: pixels.to_vec(),
    })
}

/// Decodes and resizes every file of a split once, in parallel.
pub fn load_split(
    files: &SplitFiles,
    image_size: u32,
    skip_bad: bool,
) -> Result<SplitCache, DataError> {
    load_split_at(files, Some(stored_size(image_size)), skip_bad)
}

/// [`load_split`] at a given stored shorter side (`None`: full resolution).
pub fn load_split_at(
    files: &SplitFiles,
    short: Option<u32>,
    skip_bad: bool,
) -> Result<SplitCache, DataError> {
    let results: Vec<Result<Cached, DataError>> = files
        .items
        .par_iter()
        .map(|(p, _)| decode_one(p, short))
        .collect();
    let (mut images, mut labels, mut paths, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (r, (p, label)) in results.into_iter().zip(&files.items) {
        match r {
            Ok(c) => {
                images.push(c);
                labels.push(*label);
                paths.push(p.clone());
            }
            Err(e) if skip_bad => {
                sweep_protocol::log!("warning: skipping {}: {e}", p.display());
                skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if images.is_empty() {
        return Err(DataError::Layout(format!(
            "split {} has no readable images",
            files.split.name()
        )));
    }
    Ok(SplitCache::decoded(images, labels, paths, skipped))
}

/// The evaluation transform into `out` (len S·S·3): torchvision's
/// `Resize(round(S·256/224))` + `CenterCrop(S)`. From an image stored at that
/// shorter side (the default cache size) it is the crop alone; from any
/// other it resizes first, as torchvision does from the original.
pub fn eval_transform(img: &ImageView, s: u32, out: &mut [u8]) -> Result<(), String> {
    let r = stored_size(s);
    if img.width.min(img.height) == r {
        center_crop(img, s, out);
        return Ok(());
    }
    let resized = resize_view(img, r)?;
    center_crop(&resized.view(), s, out);
    Ok(())
}

/// Centre crop S×S into `out` (len S·S·3).
pub fn center_crop(img: &ImageView, s: u32, out: &mut [u8]) {
    let s = s.min(img.width).min(img.height);
    // torchvision rounds the offsets: int(round((h - s) / 2.0)).
    let left = ((img.width - s) as f64 / 2.0).round() as u32;
    let top = ((img.height - s) as f64 / 2.0).round() as u32;
    copy_rect(img, left, top, s, s, out);
}

fn copy_rect(img: &ImageView, left: u32, top: u32, w: u32, h: u32, out: &mut [u8]) {
    let row = (w * 3) as usize;
    for y in 0..h {
        let src_start = (((top + y) * img.width + left) * 3) as usize;
        let dst_start = (y as usize) * row;
        if let (Some(dst), Some(src)) = (
            out.get_mut(dst_start..dst_start + row),
            img.pixels.get(src_start..src_start + row),
        ) {
            dst.copy_from_slice(src);
        }
    }
}

/// torchvision's RandomResizedCrop parameters (10 tries, then centre fallback).
fn rrc_params(rng: &mut ChaCha8Rng, w: u32, h: u32) -> (f64, f64, f64, f64) {
    let area = w as f64 * h as f64;
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
    (
        ((w as f64 - cw) / 2.0).floor(),
        ((h as f64 - ch) / 2.0).floor(),
        cw,
        ch,
    )
}

/// The train transform for one image into `out` (len S·S·3).
pub fn train_transform(
    img: &ImageView,
    s: u32,
    augment: &[String],
    rng: &mut ChaCha8Rng,
    out: &mut [u8],
) -> Result<(), String> {
    if augment.iter().any(|a| a == "random_resized_crop") {
        let (left, top, cw, ch) = rrc_params(rng, img.width, img.height);
        let src = ImageRef::new(img.width, img.height, img.pixels, PixelType::U8x3)
            .map_err(|e| e.to_string())?;
        // The crop is resized straight into the batch buffer: no copy.
        let mut dst =
            Image::from_slice_u8(s, s, out, PixelType::U8x3).map_err(|e| e.to_string())?;
        resize_into(&src, &mut dst, &resize_alg().crop(left, top, cw, ch))?;
    } else {
        eval_transform(img, s, out)?;
    }
    if augment.iter().any(|a| a == "hflip") && rng.gen_bool(0.5) {
        for row in out.chunks_exact_mut((s * 3) as usize) {
            row.as_chunks_mut::<3>().0.reverse();
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
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

/// Builds a train batch; each image's randomness comes from (seed, epoch, index)
/// so the result does not depend on thread scheduling.
pub fn train_batch(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    augment: &[String],
    seed: u64,
    epoch: u32,
) -> Result<Batch, String> {
    let mut pixels = vec![0u8; (s * s * 3) as usize * idx.len()];
    let labels = train_batch_into(cache, idx, s, augment, seed, epoch, &mut pixels)?;
    Ok(Batch { pixels, labels })
}

/// [`train_batch`] into `out` (`idx.len()` · S·S·3 bytes, every one
/// overwritten: it need not be zeroed): the caller's buffer, reused from
/// batch to batch or the memory of the tensor that feeds the model. Returns
/// the labels.
pub fn train_batch_into(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    augment: &[String],
    seed: u64,
    epoch: u32,
    out: &mut [u8],
) -> Result<Vec<i64>, String> {
    fill_batch(cache, idx, s, out, |i, img, out| {
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(1_000_003) ^ ((epoch as u64) << 40) ^ i as u64,
        );
        train_transform(img, s, augment, &mut rng, out)
    })
}

pub fn eval_batch(cache: &SplitCache, idx: &[usize], s: u32) -> Result<Batch, String> {
    let mut pixels = vec![0u8; (s * s * 3) as usize * idx.len()];
    let labels = eval_batch_into(cache, idx, s, &mut pixels)?;
    Ok(Batch { pixels, labels })
}

/// [`eval_batch`] into `out`, as [`train_batch_into`].
pub fn eval_batch_into(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    out: &mut [u8],
) -> Result<Vec<i64>, String> {
    fill_batch(cache, idx, s, out, |_, img, out| {
        eval_transform(img, s, out)
    })
}

/// Writes image `idx[k]` of `cache`, transformed by `transform` (given the
/// image's index), into the k-th S·S·3 slice of `out`, in parallel; returns
/// the labels. `out` must hold exactly `idx.len()` images.
fn fill_batch(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    out: &mut [u8],
    transform: impl Fn(usize, &ImageView, &mut [u8]) -> Result<(), String> + Sync,
) -> Result<Vec<i64>, String> {
    let per = (s * s * 3) as usize;
    if out.len() != per * idx.len() {
        return Err(format!(
            "a batch of {} images of {per} bytes needs {} bytes, not {}",
            idx.len(),
            per * idx.len(),
            out.len()
        ));
    }
    out.par_chunks_mut(per)
        .zip(idx.par_iter())
        .try_for_each(|(out, &i)| {
            let img = cache.image(i).ok_or("index out of range")?;
            transform(i, &img, out)
        })?;
    Ok(idx
        .iter()
        .map(|&i| cache.labels.get(i).copied().unwrap_or(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(w: u32, h: u32) -> Cached {
        Cached {
            width: w,
            height: h,
            pixels: (0..w * h * 3).map(|i| (i % 251) as u8).collect(),
        }
    }

    fn png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]))
            .save(path)
            .unwrap();
    }

    /// A valid 2-class ImageFolder with one image per class and split.
    fn folder() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for split in ["train", "valid", "test"] {
            for c in ["a", "b"] {
                png(&d.path().join(split).join(c).join("0.png"));
            }
        }
        d
    }

    #[test]
    fn images_in_subfolders_belong_to_the_class() {
        let d = folder();
        png(&d.path().join("train/a/deeper/more/1.png"));
        png(&d.path().join("train/a/deeper/2.jpg.png"));
        let l = scan(d.path()).unwrap();
        let names: Vec<String> = l
            .train
            .items
            .iter()
            .map(|(p, c)| format!("{c}:{}", p.strip_prefix(d.path()).unwrap().display()))
            .collect();
        // torchvision order: directories sorted by path, files sorted within.
        assert_eq!(
            names,
            [
                "0:train/a/0.png",
                "0:train/a/deeper/2.jpg.png",
                "0:train/a/deeper/more/1.png",
                "1:train/b/0.png"
            ]
        );
    }

    #[test]
    fn symlinks_are_followed_and_cycles_walked_once() {
        let d = folder();
        let outside = tempfile::tempdir().unwrap();
        png(&outside.path().join("x.png"));
        std::os::unix::fs::symlink(outside.path(), d.path().join("train/b/linked")).unwrap();
        // A cycle: train/b/loop -> train/b
        std::os::unix::fs::symlink(d.path().join("train/b"), d.path().join("train/b/loop"))
            .unwrap();
        let l = scan(d.path()).unwrap();
        let b: Vec<&PathBuf> = l
            .train
            .items
            .iter()
            .filter(|(_, c)| *c == 1)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b.iter().any(|p| p.ends_with("linked/x.png")));
    }

    #[test]
    fn an_empty_class_is_a_layout_error() {
        let d = folder();
        std::fs::remove_file(d.path().join("valid/b/0.png")).unwrap();
        std::fs::create_dir_all(d.path().join("valid/b/sub")).unwrap();
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("valid/b") && e.contains("has no images"), "{e}");
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
        center_crop(&img.view(), 3, &mut out);
        // left offset = round((5-3)/2) = 1
        assert_eq!(&out[0..3], &img.pixels[3..6]);
    }

    #[test]
    fn train_batches_are_deterministic() {
        let cache = SplitCache::decoded(
            vec![cached(40, 50), cached(60, 40)],
            vec![0, 1],
            vec![PathBuf::new(), PathBuf::new()],
            0,
        );
        let aug = vec!["random_resized_crop".to_string(), "hflip".to_string()];
        let a = train_batch(&cache, &[1, 0], 32, &aug, 7, 1).unwrap();
        let b = train_batch(&cache, &[1, 0], 32, &aug, 7, 1).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.labels, vec![1, 0]);
        let c = train_batch(&cache, &[1, 0], 32, &aug, 8, 1).unwrap();
        assert_ne!(a.pixels, c.pixels);
    }

    /// The `_into` forms overwrite every byte of a dirty buffer (a reused one,
    /// or a tensor's uninitialised memory) and refuse one of the wrong size.
    #[test]
    fn batches_into_a_dirty_buffer_are_the_same_batches() {
        let cache = SplitCache::decoded(
            vec![cached(40, 50), cached(60, 40), cached(73, 73)],
            vec![0, 1, 1],
            vec![PathBuf::new(); 3],
            0,
        );
        let aug = vec!["random_resized_crop".to_string(), "hflip".to_string()];
        let mut buf = vec![0xA5u8; 3 * 32 * 32 * 3];
        let labels = train_batch_into(&cache, &[2, 1, 0], 32, &aug, 7, 3, &mut buf).unwrap();
        let want = train_batch(&cache, &[2, 1, 0], 32, &aug, 7, 3).unwrap();
        assert_eq!(
            (buf.as_slice(), labels),
            (want.pixels.as_slice(), want.labels)
        );
        buf.fill(0x5A);
        let labels = eval_batch_into(&cache, &[2, 1, 0], 32, &mut buf).unwrap();
        let want = eval_batch(&cache, &[2, 1, 0], 32).unwrap();
        assert_eq!(
            (buf.as_slice(), labels),
            (want.pixels.as_slice(), want.labels)
        );
        let e = train_batch_into(&cache, &[2, 1], 32, &aug, 7, 3, &mut buf).unwrap_err();
        assert!(e.contains("needs 6144 bytes, not 9216"), "{e}");
    }

    /// Every odd-but-valid image kind is converted to RGB8 at the right size.
    #[test]
    fn unusual_images_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        image::GrayImage::from_fn(20, 10, |x, _| image::Luma([(x * 12) as u8]))
            .save(d.join("gray.jpg"))
            .unwrap();
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(12, 12, |x, y| {
            image::Luma([(x * y * 400) as u16])
        })
        .save(d.join("g16.png"))
        .unwrap();
        image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_pixel(
            9,
            7,
            image::Rgb([65535, 0, 32768]),
        )
        .save(d.join("rgb16.png"))
        .unwrap();
        image::RgbaImage::from_pixel(8, 8, image::Rgba([10, 20, 30, 0]))
            .save(d.join("rgba.png"))
            .unwrap();
        image::RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]))
            .save(d.join("one.png"))
            .unwrap();
        image::RgbImage::from_pixel(6000, 4000, image::Rgb([9, 99, 199]))
            .save(d.join("big.png"))
            .unwrap();
        for (name, w, h) in [
            ("gray.jpg", 20, 10),
            ("g16.png", 12, 12),
            ("rgb16.png", 9, 7),
            ("rgba.png", 8, 8),
            ("one.png", 1, 1),
            ("big.png", 6000, 4000),
        ] {
            let img = decode_rgb(&d.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(img.dimensions(), (w, h), "{name}");
            let c = resize_shorter(&img, stored_size(32)).unwrap();
            assert_eq!(c.width.min(c.height), 37, "{name}");
            assert_eq!(c.pixels.len(), (c.width * c.height * 3) as usize, "{name}");
        }
        assert_eq!(
            decode_rgb(&d.join("rgb16.png")).unwrap().get_pixel(0, 0).0,
            [255, 0, 128]
        );
        let big = resize_shorter(&decode_rgb(&d.join("big.png")).unwrap(), 37).unwrap();
        assert_eq!((big.width, big.height), (56, 37));
        assert_eq!(&big.pixels[..3], &[9, 99, 199]);
    }

    /// tests/fixtures/cmyk.jpg: made with PIL (RGB → CMYK, Adobe JPEG); four
    /// quadrants whose RGB colours PIL reads back exactly.
    #[test]
    fn cmyk_jpeg_is_converted_to_the_right_colours() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cmyk.jpg");
        let img = decode_rgb(&path).unwrap();
        assert_eq!(img.dimensions(), (16, 16));
        for ((x, y), want) in [
            ((4, 4), [220, 30, 30]),
            ((12, 4), [30, 200, 40]),
            ((4, 12), [40, 40, 210]),
            ((12, 12), [250, 250, 250]),
        ] {
            let got = img.get_pixel(x, y).0;
            let close = got
                .iter()
                .zip(want)
                .all(|(g, w)| (*g as i32 - w).abs() <= 12);
            assert!(close, "pixel ({x}, {y}): got {got:?}, want about {want:?}");
        }
    }

    /// decode_rgb's reason, which the cache's decode path gives too.
    fn reason(path: &Path) -> String {
        let via_cache_path = match decode_one(path, Some(8)) {
            Err(DataError::BadImage { reason, .. }) => reason,
            other => panic!(
                "{}: expected BadImage from decode_one, got {other:?}",
                path.display()
            ),
        };
        match decode_rgb(path) {
            Err(DataError::BadImage { path: p, reason }) => {
                assert_eq!(p, path);
                assert_eq!(reason, via_cache_path, "{}", path.display());
                reason
            }
            other => panic!("{}: expected BadImage, got {other:?}", path.display()),
        }
    }

    /// The JPEG fast path (zune-jpeg called directly into reused buffers)
    /// gives the image crate's bytes, for every kind of JPEG it takes
    /// (colour, odd sizes, PIL's 4:2:0 CMYK fixture falls back) and after
    /// larger and smaller images in the same thread.
    #[test]
    fn the_jpeg_fast_path_decodes_what_the_image_crate_does() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let noise = |w: u32, h: u32| {
            image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8 * 3])
            })
        };
        let mut files = Vec::new();
        for (i, (w, h, q)) in [
            (300, 200, 90),
            (37, 23, 75),
            (16, 64, 100),
            (500, 375, 60),
            (1, 1, 90),
            (9, 300, 85),
        ]
        .into_iter()
        .enumerate()
        {
            let path = d.join(format!("{i}.jpg"));
            let mut out = std::fs::File::create(&path).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                .encode_image(&noise(w, h))
                .unwrap();
            files.push(path);
        }
        let gray = d.join("gray.jpg");
        image::GrayImage::from_fn(20, 10, |x, y| image::Luma([(x * 9 + y) as u8]))
            .save(&gray)
            .unwrap();
        files.push(gray);
        files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cmyk.jpg"));
        for round in 0..2 {
            for path in &files {
                let want = decode_rgb(path).unwrap();
                let got = decode_one(path, None).unwrap();
                assert_eq!(
                    (got.width, got.height),
                    want.dimensions(),
                    "{} round {round}",
                    path.display()
                );
                assert!(
                    got.pixels == *want.as_raw(),
                    "{}: pixels differ (round {round})",
                    path.display()
                );
                for short in [8, 37, 256] {
                    let want = resize_shorter(&want, short).unwrap();
                    let got = decode_one(path, Some(short)).unwrap();
                    assert_eq!(
                        (got.width, got.height),
                        (want.width, want.height),
                        "{} at {short}",
                        path.display()
                    );
                    assert!(
                        got.pixels == want.pixels,
                        "{} at {short}: pixels differ",
                        path.display()
                    );
                }
            }
        }
    }

    /// Broken files are errors that name the file and say what is wrong.
    #[test]
    fn broken_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("empty.jpg"), b"").unwrap();
        assert!(reason(&d.join("empty.jpg")).contains("empty (0 bytes)"));
        std::fs::write(d.join("text.jpg"), b"hello, I am not a JPEG\n").unwrap();
        assert!(reason(&d.join("text.jpg")).contains("not an image"));
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]))
            .save(d.join("full.jpg"))
            .unwrap();
        let bytes = std::fs::read(d.join("full.jpg")).unwrap();
        std::fs::write(d.join("trunc.jpg"), &bytes[..bytes.len() / 2]).unwrap();
        assert!(!reason(&d.join("trunc.jpg")).is_empty());
        std::fs::write(d.join("head.png"), &b"\x89PNG\r\n\x1a\n"[..]).unwrap();
        assert!(!reason(&d.join("head.png")).is_empty());
        std::os::unix::fs::symlink(d.join("loop.jpg"), d.join("loop.jpg")).unwrap();
        assert!(
            reason(&d.join("loop.jpg"))
                .to_lowercase()
                .contains("symbolic links")
        );
        std::fs::create_dir(d.join("dir.jpg")).unwrap();
        assert!(reason(&d.join("dir.jpg")).contains("not a regular file"));
        // A sparse file of 1 GiB + 1 byte that starts like a JPEG: refused
        // before a byte is read, not read whole into memory.
        let big = std::fs::File::create(d.join("big.jpg")).unwrap();
        std::io::Write::write_all(&mut &big, &[0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(reason(&d.join("big.jpg")).contains("larger than any image this tool decodes"));
        let fifo = std::ffi::CString::new(d.join("fifo.jpg").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(reason(&d.join("fifo.jpg")).contains("not a regular file"));
        assert!(!reason(&d.join("missing.jpg")).is_empty());
    }

    /// A 1×70000 strip would become 37×2 590 000 pixels: refused, not allocated.
    #[test]
    fn extreme_aspect_ratio_is_refused() {
        let strip = image::RgbImage::from_pixel(1, 70_000, image::Rgb([5, 5, 5]));
        let e = resize_shorter(&strip, 37).unwrap_err();
        assert!(e.contains("aspect ratio too extreme"), "{e}");
        assert!(resize_shorter(&image::RgbImage::new(0, 5), 37).is_err());
    }

    /// Non-UTF-8 file names are listed and decoded; with skip_bad the broken
    /// ones are skipped and counted, without it the first one is the error.
    #[test]
    fn scan_and_load_with_bad_files() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for split in ["train", "val", "test"] {
            for class in ["a", "b"] {
                let c = root.join(split).join(class);
                std::fs::create_dir_all(&c).unwrap();
                image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3]))
                    .save(c.join("ok.png"))
                    .unwrap();
            }
        }
        let a = root.join("train/a");
        let odd = a.join(std::ffi::OsStr::from_bytes(b"odd-\xff\xfe.png"));
        std::fs::copy(a.join("ok.png"), &odd).unwrap();
        std::fs::write(a.join("bad.jpg"), b"nope").unwrap();
        std::fs::write(a.join("notes.txt"), b"ignored: not an image extension").unwrap();
        let layout = scan(root).unwrap();
        assert_eq!(layout.classes, ["a", "b"]);
        assert_eq!(layout.train.items.len(), 4);
        let e = load_split(&layout.train, 32, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jpg") && e.contains("not an image"), "{e}");
        let c = load_split(&layout.train, 32, true).unwrap();
        assert_eq!((c.len(), c.skipped), (3, 1));
        assert!(c.paths.contains(&odd));

        // Every file of a split broken, even with skip_bad: a layout error naming the split.
        std::fs::write(root.join("test/a/ok.png"), b"").unwrap();
        std::fs::write(root.join("test/b/ok.png"), b"x").unwrap();
        let e = load_split(&layout.test, 32, true).unwrap_err().to_string();
        assert!(e.contains("split test has no readable images"), "{e}");

        // An empty class folder is a layout error naming the folder.
        std::fs::create_dir_all(root.join("valid/b")).unwrap();
        std::fs::create_dir_all(root.join("valid/a")).unwrap();
        let e = scan(root).unwrap_err().to_string();
        assert!(e.contains("valid/a") && e.contains("no images"), "{e}");
    }

    #[test]
    fn epoch_order_is_a_permutation() {
        let mut o = epoch_order(100, 3, 2);
        assert_ne!(o, (0..100).collect::<Vec<_>>());
        o.sort();
        assert_eq!(o, (0..100).collect::<Vec<_>>());
    }
}
