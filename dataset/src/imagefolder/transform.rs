//! torchvision-equivalent transforms on decoded images: the resize to the
//! stored shorter side, the eval transform (`Resize` + `CenterCrop`) and the
//! train transform (`RandomResizedCrop` + `RandomHorizontalFlip`). Pure
//! functions of the image and the random generator; no I/O.
use super::*;
use fast_image_resize::{
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
    images::{Image, ImageRef},
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Why an image could not be resized or transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// An empty image, or a shorter side of 0.
    #[error("cannot resize a {width}×{height} image to shorter side {short}")]
    Empty { width: u32, height: u32, short: u32 },
    /// The resized image would exceed [`MAX_RESIZED_PIXELS`].
    #[error(
        "aspect ratio too extreme: a {width}×{height} image resized to shorter side {short} would be {new_width}×{new_height} pixels (limit {MAX_RESIZED_PIXELS})"
    )]
    TooLarge {
        width: u32,
        height: u32,
        short: u32,
        new_width: u32,
        new_height: u32,
    },
    /// Pixels that do not make the image their size says.
    #[error("{0}")]
    Buffer(#[from] fast_image_resize::ImageBufferError),
    /// The resizer refused the operation.
    #[error("{0}")]
    Resize(#[from] fast_image_resize::ResizeError),
}

/// For callers that report errors as text (the thumbnails of `sweep plot`).
impl From<TransformError> for String {
    fn from(e: TransformError) -> String {
        e.to_string()
    }
}

/// The stored shorter side for an image size: torchvision's 256/224 ratio.
pub fn stored_size(image_size: u32) -> u32 {
    sweep_protocol::config::default_cache_short(image_size)
}

pub(super) fn resize_alg() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

thread_local! {
    /// One resizer a thread, kept between images: a fresh `Resizer` allocates
    /// its intermediate buffer (destination width × source height) anew every
    /// time, which measured as half of a 500×375 → 341×256 resize.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Resizes `src` into `dst` with this thread's [`RESIZER`].
pub(super) fn resize_into(
    src: &ImageRef,
    dst: &mut Image,
    options: &ResizeOptions,
) -> Result<(), TransformError> {
    RESIZER
        .with(|r| r.borrow_mut().resize(src, dst, options))
        .map_err(TransformError::from)
}

/// The most pixels a resized image may have (a 1×60000 strip at image_size
/// 224 would otherwise become 256×15 360 000 and exhaust memory).
pub const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Resizes so the shorter side is `short` (aspect kept), unless it already is.
pub fn resize_shorter(img: &image::RgbImage, short: u32) -> Result<Cached, TransformError> {
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
pub fn resize_view(img: &ImageView, short: u32) -> Result<Cached, TransformError> {
    let mut pixels = Vec::new();
    let (width, height) = resize_view_into(img, short, &mut pixels)?;
    Ok(Cached {
        width,
        height,
        pixels,
    })
}

/// [`resize_view`] into `out` (resized to fit): the new width and height.
pub(super) fn resize_view_into(
    img: &ImageView,
    short: u32,
    out: &mut Vec<u8>,
) -> Result<(u32, u32), TransformError> {
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || short == 0 {
        return Err(TransformError::Empty {
            width: w,
            height: h,
            short,
        });
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
        return Err(TransformError::TooLarge {
            width: w,
            height: h,
            short,
            new_width: nw,
            new_height: nh,
        });
    }
    let len = nw as usize * nh as usize * 3;
    if (nw, nh) == (w, h) {
        out.clear();
        out.extend_from_slice(&img.pixels[..len]);
        return Ok((w, h));
    }
    out.resize(len, 0);
    let src = ImageRef::new(w, h, img.pixels, PixelType::U8x3)?;
    let mut dst = Image::from_slice_u8(nw, nh, &mut out[..len], PixelType::U8x3)?;
    resize_into(&src, &mut dst, &resize_alg())?;
    Ok((nw, nh))
}

/// The evaluation transform into `out` (len S·S·3): torchvision's
/// `Resize(round(S·256/224))` + `CenterCrop(S)`. From an image stored at that
/// shorter side (the default cache size) it is the crop alone; from any
/// other it resizes first, as torchvision does from the original.
pub fn eval_transform(img: &ImageView, s: u32, out: &mut [u8]) -> Result<(), TransformError> {
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

pub(super) fn copy_rect(img: &ImageView, left: u32, top: u32, w: u32, h: u32, out: &mut [u8]) {
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
pub(super) fn rrc_params(rng: &mut ChaCha8Rng, w: u32, h: u32) -> (f64, f64, f64, f64) {
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
) -> Result<(), TransformError> {
    if augment.iter().any(|a| a == "random_resized_crop") {
        let (left, top, cw, ch) = rrc_params(rng, img.width, img.height);
        let src = ImageRef::new(img.width, img.height, img.pixels, PixelType::U8x3)?;
        // The crop is resized straight into the batch buffer: no copy.
        let mut dst = Image::from_slice_u8(s, s, out, PixelType::U8x3)?;
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
