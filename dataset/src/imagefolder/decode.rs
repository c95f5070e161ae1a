//! Bounded decoding: an image file read whole (size-checked), decoded (JPEG
//! through zune-jpeg, the rest through `image`) within a pixel limit and
//! resized once to the stored size; a split decoded in parallel. A decoder
//! panic is a bad image, never a crash.
use super::*;
use rayon::prelude::*;
use std::path::Path;

/// Reads an image file whole into `buf`: a regular, non-empty file of at
/// most [`MAX_FILE_BYTES`].
pub(super) fn read_image(path: &Path, buf: &mut Vec<u8>) -> Result<(), DataError> {
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
pub(super) const MAX_FILE_BYTES: u64 = 2 * MAX_DECODED_BYTES;

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
pub(super) fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, DataError> {
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
pub(super) const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// A colour JPEG (YCbCr or RGB, the common case) decoded from `file` (its
/// bytes) into `out` by zune-jpeg with the options the image crate gives it,
/// so the bytes are [`decode_rgb`]'s: but into a buffer the caller keeps
/// between images, instead of two fresh allocations (one of them zeroed)
/// and a second header parse an image. `None`: not such a file, or one that
/// does not decode: [`decode_bytes`] decides, and words its error.
pub(super) fn decode_jpeg_into(file: &[u8], out: &mut Vec<u8>) -> Option<(u32, u32)> {
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
pub(super) struct DecodeBuffers {
    pub(super) file: Vec<u8>,
    pub(super) decoded: Vec<u8>,
    pub(super) resized: Vec<u8>,
}

thread_local! {
    static DECODE_BUFFERS: std::cell::RefCell<DecodeBuffers> = std::cell::RefCell::new(DecodeBuffers::default());
}

/// Buffers larger than this are not kept for the next image (a 100-megapixel
/// photo would otherwise pin 300 MB a thread for the rest of the run;
/// 16 MB holds a 5-megapixel decode).
pub(super) const KEEP_BUFFER_BYTES: usize = 16 << 20;

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
                .map_err(|e| DataError::BadImage {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
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
