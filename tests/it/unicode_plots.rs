//! Class names in any script reach the charts as glyphs, not empty boxes.
//!
//! The motivating dataset is Chinese zodiac signs (folders 鼠 牛 虎 …). The
//! embedded DejaVu Sans has no CJK or emoji glyphs, so those characters must
//! come from the system's fonts (`scripts/install-test-fonts.sh` installs Noto
//! Sans CJK and Noto Color Emoji; `make test` runs it). Arabic is in DejaVu
//! Sans itself, and must be shaped (letters joined).
//!
//! The PNG proofs use the dataset overview (`sweep data show`), whose layout is
//! fixed (see `src/report/plot/overview.rs`): class `i`'s label is drawn from
//! x = 20 in the row band y = 96 + 70·i … 96 + 70·(i + 1). Each label region is
//! compared with the same chart drawn with `SWEEP_FONT_FALLBACK=0` (the
//! embedded font alone, where every missing character is the same .notdef box):
//! there, 鼠 and 牛 come out pixel-identical; with the system's fonts they
//! differ, carry ink, and emoji carry colour. The SVG proofs check that the
//! text is in the file and that its `font-family` names a family that
//! fontconfig (`fc-list :charset=…`) says has the character.
//!
//! Under CI=true a missing font or `fc-list` fails the test; elsewhere it is
//! skipped with the reason.
use crate::common;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

const RAT: &str = "鼠";
const OX: &str = "牛";
const SCORPION: &str = "عقرب";
/// The same four letters with ZERO WIDTH NON-JOINERs between them: not joined.
const SCORPION_APART: &str = "ع\u{200C}ق\u{200C}ر\u{200C}ب";
const DRAGON: &str = "🐉";
const SNAKE: &str = "🐍";
const CLASSES: [&str; 6] = [RAT, OX, SCORPION, SCORPION_APART, DRAGON, SNAKE];

/// The overview's fixed geometry (overview.rs): first row band, row pitch, label x, narrowest label column.
const TOP: u32 = 96;
const PITCH: u32 = 70;
const LABEL_X: u32 = 20;
const MIN_LABEL_W: u32 = 120;

/// Under CI a missing prerequisite fails the test; elsewhere it is skipped (the caller returns).
fn missing(what: &str) {
    common::prerequisites::missing(
        what,
        "run scripts/install-test-fonts.sh (as root; `make test` runs it)",
    );
}

/// Families that fontconfig says have the character `c`; None without `fc-list`.
fn families_with(c: char) -> Option<Vec<String>> {
    let out = Command::new("fc-list")
        .arg(format!(":charset={:x}", c as u32))
        .arg("family")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .flat_map(|l| l.split(','))
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
    )
}

/// Whether the system can draw every character the test needs; reports what is missing.
fn fonts_present() -> bool {
    for (c, what) in [
        ('鼠', "a CJK font (fonts-noto-cjk)"),
        ('🐉', "an emoji font (fonts-noto-color-emoji)"),
        ('ع', "DejaVu Sans (fonts-dejavu-core)"),
    ] {
        match families_with(c) {
            None => {
                missing("fc-list (fontconfig), to check the fonts");
                return false;
            }
            Some(f) if f.is_empty() => {
                missing(&format!("{what}: no font of this system has {c:?}"));
                return false;
            }
            Some(_) => {}
        }
    }
    true
}

fn work_dir(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("unicode-plots")
        .join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A tiny ImageFolder with one 16 × 16 PNG per class and split.
fn dataset(root: &Path) -> PathBuf {
    let data = root.join("data");
    for split in ["train", "valid", "test"] {
        for (i, class) in CLASSES.iter().enumerate() {
            let dir = data.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let shade = 40 + 30 * i as u8;
            let img = image::RgbImage::from_pixel(16, 16, image::Rgb([shade, 255 - shade, 128]));
            img.save(dir.join("0.png")).unwrap();
        }
    }
    data
}

fn sweep(args: &[&str], fallback: bool) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if fallback {
        cmd.env_remove("SWEEP_FONT_FALLBACK");
    } else {
        cmd.env("SWEEP_FONT_FALLBACK", "0");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "sweep {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Rows of the overview in class order (the dataset sorts its folder names).
fn sorted_classes() -> Vec<&'static str> {
    let mut c = CLASSES.to_vec();
    c.sort();
    c
}

/// The label region of class row `row` (x 20 … 140, the row's band less a
/// pixel each side) as ink: per pixel, how far it is from the row's
/// background (its most common colour) towards the text colour (30, 30, 30),
/// 0 … 1. Rows alternate white and light grey; ink does not depend on that.
/// Also returns how many pixels are strongly coloured (max − min channel > 80:
/// text is grey, colour emoji are not).
fn label(img: &image::RgbImage, row: usize) -> (Vec<f32>, usize) {
    let y0 = TOP + PITCH * row as u32 + 1;
    let mut px = Vec::new();
    for y in y0..y0 + PITCH - 2 {
        for x in LABEL_X..LABEL_X + MIN_LABEL_W {
            px.push(img.get_pixel(x, y).0);
        }
    }
    let mut counts = std::collections::HashMap::new();
    for p in &px {
        *counts.entry(*p).or_insert(0usize) += 1;
    }
    let bg = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p)
        .unwrap();
    let lum = |p: &[u8; 3]| p.iter().map(|&v| v as f32).sum::<f32>();
    let ink = px
        .iter()
        .map(|p| ((lum(&bg) - lum(p)).abs() / (lum(&bg) - 90.0)).clamp(0.0, 1.0))
        .collect();
    let coloured = px
        .iter()
        .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 80)
        .count();
    (ink, coloured)
}

/// Total ink of a label.
fn total(ink: &[f32]) -> f32 {
    ink.iter().sum()
}

/// How much two labels' ink differs (sum of per-pixel differences).
fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

fn overview_png(data: &Path, out: &Path, fallback: bool) -> image::RgbImage {
    sweep(
        &[
            "data",
            "show",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--per-class",
            "1",
        ],
        fallback,
    );
    image::open(out).unwrap().to_rgb8()
}

#[test]
fn png_labels_in_cjk_arabic_and_emoji_are_drawn_glyphs_not_boxes() {
    if !fonts_present() {
        return;
    }
    let root = work_dir("png");
    let data = dataset(&root);
    let real = overview_png(&data, &root.join("overview.png"), true);
    let boxes = overview_png(&data, &root.join("overview-embedded-only.png"), false);
    let rows = sorted_classes();
    let row = |name: &str| rows.iter().position(|c| *c == name).unwrap();
    assert_eq!(
        real.height(),
        TOP + PITCH * CLASSES.len() as u32 + 44,
        "the overview's documented height"
    );

    let ink = |img: &image::RgbImage, c: &str| label(img, row(c)).0;
    let coloured = |img: &image::RgbImage, c: &str| label(img, row(c)).1;

    // The control: with the embedded font alone, 鼠 and 牛 are the same .notdef
    // box, and so are the two emoji (up to blending on the two row colours).
    let boxed = ink(&boxes, RAT);
    assert!(
        total(&boxed) > 10.0,
        "control: the box itself has ink ({})",
        total(&boxed)
    );
    assert!(
        distance(&boxed, &ink(&boxes, OX)) < 0.05 * total(&boxed),
        "control: 鼠 and 牛 should be the same box without fallback"
    );
    assert!(
        distance(&ink(&boxes, DRAGON), &ink(&boxes, SNAKE)) < 0.05 * total(&boxed),
        "control: the emoji should be the same box without fallback"
    );

    // CJK: drawn from a system font: more ink than the box, not the box, and each character its own shape.
    for c in [RAT, OX] {
        let real_ink = ink(&real, c);
        assert!(
            total(&real_ink) > 20.0,
            "{c}: only {} ink",
            total(&real_ink)
        );
        assert!(
            distance(&real_ink, &ink(&boxes, c)) > 0.5 * total(&boxed),
            "{c} is still the .notdef box"
        );
    }
    let (rat, ox) = (ink(&real, RAT), ink(&real, OX));
    assert!(
        distance(&rat, &ox) > 0.3 * total(&rat).min(total(&ox)),
        "鼠 and 牛 look the same"
    );

    // Emoji: colour bitmaps (Noto Color Emoji), each its own picture; the boxes have no colour.
    for c in [DRAGON, SNAKE] {
        assert!(
            coloured(&real, c) > 30,
            "{c}: only {} coloured pixels",
            coloured(&real, c)
        );
        assert_eq!(coloured(&boxes, c), 0);
    }
    let (dragon, snake) = (ink(&real, DRAGON), ink(&real, SNAKE));
    assert!(
        distance(&dragon, &snake) > 0.3 * total(&dragon).min(total(&snake)),
        "🐉 and 🐍 look the same"
    );

    // Arabic: in the embedded font, so the same with or without the system's
    // fonts, and shaped: the joined word differs from the same letters kept apart.
    let joined = ink(&real, SCORPION);
    assert!(total(&joined) > 20.0, "عقرب: only {} ink", total(&joined));
    assert!(
        distance(&joined, &ink(&boxes, SCORPION)) < 0.05 * total(&joined),
        "Arabic needs no system font"
    );
    let apart = ink(&real, SCORPION_APART);
    assert!(
        distance(&joined, &apart) > 0.3 * total(&joined),
        "Arabic letters were not joined (no shaping)"
    );
    eprintln!(
        "ink: box {:.0}, 鼠 {:.0}, 牛 {:.0} (apart {:.0}), 🐉 {:.0} ({} coloured px), 🐍 {:.0}, عقرب {:.0} (vs apart {:.0})",
        total(&boxed),
        total(&rat),
        total(&ox),
        distance(&rat, &ox),
        total(&dragon),
        coloured(&real, DRAGON),
        total(&snake),
        total(&joined),
        distance(&joined, &apart)
    );
}

/// Every `<text>` element whose content is `label`, with its font-family attribute.
fn text_elements<'a>(svg: &'a str, label: &str) -> Vec<&'a str> {
    svg.split("<text")
        .skip(1)
        .filter(|t| {
            t.split_once('>')
                .is_some_and(|(_, body)| body.trim_start().starts_with(label))
        })
        .collect()
}

fn font_families(element: &str) -> Vec<String> {
    let attr = element
        .split("font-family=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("");
    attr.split(',')
        .map(|f| {
            f.trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .replace("&apos;", "")
                .to_string()
        })
        .collect()
}

/// The SVG names `label` as text, and its font-family list names a family that has `probe`.
fn assert_svg_label(svg: &str, file: &Path, label: &str, probe: char) {
    let elements = text_elements(svg, label);
    assert!(
        !elements.is_empty(),
        "{}: no <text> with {label:?}",
        file.display()
    );
    let covering = families_with(probe).unwrap();
    for e in elements {
        let named = font_families(e);
        assert_eq!(
            named.last().map(String::as_str),
            Some("sans-serif"),
            "{label}: {named:?}"
        );
        assert!(
            named.iter().any(|f| covering.contains(f)),
            "{}: {label:?} is set in {named:?}, none of which has {probe:?} (fontconfig: {covering:?})",
            file.display()
        );
    }
}

#[test]
fn svg_overview_names_fonts_that_have_the_characters() {
    if !fonts_present() {
        return;
    }
    let root = work_dir("svg");
    let data = dataset(&root);
    let out = root.join("overview.svg");
    sweep(
        &[
            "data",
            "show",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--per-class",
            "1",
        ],
        true,
    );
    let svg = std::fs::read_to_string(&out).unwrap();
    assert_svg_label(&svg, &out, RAT, '鼠');
    assert_svg_label(&svg, &out, OX, '牛');
    assert_svg_label(&svg, &out, SCORPION, 'ع');
    assert_svg_label(&svg, &out, DRAGON, '🐉');
    assert_svg_label(&svg, &out, SNAKE, '🐍');
    // Latin text keeps the embedded font's family first.
    let title = text_elements(&svg, "dataset ");
    assert_eq!(font_families(title[0]), ["DejaVu Sans", "sans-serif"]);
}

/// A results database with one finished trial whose classes are `CLASSES`, written row by row.
fn results_db(path: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sweep::store::db::open(path, true).await.unwrap();
        sqlx::query("INSERT INTO sweeps (id, name, file, toml, dataset, created_at, updated_at) VALUES (1, 'zodiac', 's.toml', '', 'data', 0, 0)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            r#"INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, epochs_done, created_at)
               VALUES ('0123456789', 1, 0, '{"backbone":"resnet18","lr":0.01}', 'resnet18', 0.01, 2, 8, 32, 0, 'done', 2, 0)"#,
        )
        .execute(&pool)
        .await
        .unwrap();
        for (step, v) in [(1, 0.4), (2, 0.7)] {
            sqlx::query("INSERT INTO metrics VALUES ('0123456789', 1, 'valid', ?, 0, ?, 'accuracy', ?, 0)")
                .bind(step)
                .bind(step)
                .bind(v)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO test_results VALUES ('0123456789', 0.9, 0.75, 24, 2, 0)").execute(&pool).await.unwrap();
        for (i, t) in CLASSES.iter().enumerate() {
            sqlx::query("INSERT INTO class_accuracy VALUES ('0123456789', ?, 3, 4, 0.75)").bind(t).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO class_distribution VALUES (1, 'train', ?, ?)").bind(t).bind(4 + i as i64).execute(&pool).await.unwrap();
            for (j, p) in CLASSES.iter().enumerate() {
                let n = if i == j { 3 } else { i64::from((i + 1) % CLASSES.len() == j) };
                sqlx::query("INSERT INTO confusion VALUES ('0123456789', ?, ?, ?)").bind(t).bind(p).bind(n).execute(&pool).await.unwrap();
            }
        }
        pool.close().await;
    });
}

#[test]
fn plot_charts_with_unicode_class_names() {
    if !fonts_present() {
        return;
    }
    let root = work_dir("plot");
    let db = root.join("results.db");
    results_db(&db);
    let (real, boxes) = (root.join("charts"), root.join("charts-embedded-only"));
    for (dir, fallback) in [(&real, true), (&boxes, false)] {
        sweep(
            &[
                "--db",
                db.to_str().unwrap(),
                "plot",
                "--out",
                dir.to_str().unwrap(),
            ],
            fallback,
        );
    }
    for stem in ["0123456789-confusion", "class-distribution"] {
        let png = real.join(format!("{stem}.png"));
        let a = image::open(&png).unwrap().to_rgb8();
        let b = image::open(boxes.join(format!("{stem}.png")))
            .unwrap()
            .to_rgb8();
        // Only the text differs between the two runs (the data are the same), so
        // equal pixels would mean the system's fonts drew nothing.
        assert_eq!(a.dimensions(), b.dimensions());
        assert_ne!(
            a.as_raw(),
            b.as_raw(),
            "{stem}: the labels look the same with and without the system's fonts"
        );
        let svg_path = real.join(format!("{stem}.svg"));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert_svg_label(&svg, &svg_path, RAT, '鼠');
        assert_svg_label(&svg, &svg_path, SCORPION, 'ع');
        assert_svg_label(&svg, &svg_path, DRAGON, '🐉');
    }
}
