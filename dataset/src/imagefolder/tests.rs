use super::*;
use std::path::Path;

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
    std::os::unix::fs::symlink(d.path().join("train/b"), d.path().join("train/b/loop")).unwrap();
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
    assert!(matches!(e, BatchError::Buffer { .. }), "{e:?}");
    assert!(e.to_string().contains("needs 6144 bytes, not 9216"), "{e}");
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
    let fifo =
        std::ffi::CString::new(d.join("fifo.jpg").into_os_string().into_encoded_bytes()).unwrap();
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
    assert!(matches!(e, TransformError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("aspect ratio too extreme"), "{e}");
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
