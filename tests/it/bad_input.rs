//! Bad input, end to end through the real binary: unusual and broken images,
//! broken dataset layouts, and command-line mistakes (unknown trial or sweep,
//! unusable databases). The contract checked everywhere: a clear message, the
//! documented exit code (1 trials failed, 2 bad input), and never a panic.
//!
//! Each image scenario is one tiny real run (resnet18, 32 px, one batch). The
//! failing scenarios are started together and waited for at the end, so the
//! whole file takes well under a minute on 2 cores. Runs on images go as an
//! ordinary user's would: as root, `sweep` runs without the capability to read
//! any file, so that chmod 000 means what it says (see `common::prerequisites`).
use crate::common;

use common::prerequisites::unreadable;
use common::{Db, EXIT_BAD_INPUT, EXIT_FAILED, Scratch, Sweep};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn png(path: &Path, w: u32, h: u32, seed: u8) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(7) ^ seed,
            (y as u8).wrapping_mul(5),
            seed,
        ])
    })
    .save(path)
    .unwrap();
}

/// A 2-class ImageFolder `data/`: train 2 images a class, valid and test 1.
fn scratch() -> Scratch {
    let s = Scratch::new();
    for (split, n) in [("train", 2), ("valid", 1), ("test", 1)] {
        for (ci, class) in ["a", "b"].iter().enumerate() {
            let dir = s.data().join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                png(
                    &dir.join(format!("{class}{i}.png")),
                    40,
                    36,
                    (ci * 100 + i) as u8,
                );
            }
        }
    }
    s
}

/// `sweep.toml`: sweep `name`, one batch of resnet18 at 32 px with a linear
/// head, not retried; `extra_defaults` added to `[defaults]`.
fn sweep_file(s: &Scratch, name: &str, extra_defaults: &str) -> PathBuf {
    s.sweep_file(name)
        .tiny_training()
        .defaults("epochs = 1\nmax_batches = 1\nhead = { hidden = [] }")
        .defaults(extra_defaults)
        .resources("retries = 0")
        .file_name("sweep.toml")
        .write()
}

/// `sweep run sweep.toml` for sweep `name`, as an ordinary user runs it.
fn run(s: &Scratch, name: &str, extra_defaults: &str) -> Sweep {
    s.run(&sweep_file(s, name, extra_defaults))
        .without_read_override()
        .label(name)
}

/// (trial, attempt, error_class, message) of every attempt.
fn attempts(db: &Db) -> Vec<(String, i64, Option<String>, Option<String>)> {
    db.query(
        "SELECT trial_id, attempt, error_class, message FROM attempts ORDER BY trial_id, attempt",
    )
}

/// The worker's stderr of attempt 1 of `trial` of sweep `name`.
fn worker_log(s: &Scratch, name: &str, trial: &str) -> String {
    std::fs::read_to_string(s.results().join(name).join(trial).join("attempt-1.log"))
        .unwrap_or_default()
}

fn fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

fn jpeg_bytes() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]))
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .unwrap();
    buf.into_inner()
}

/// Every broken file kind, written into `dir`. Returns (file name as shown in
/// messages, what the message says about it); the unreadable file only when
/// chmod 000 keeps `sweep` out here (under CI it must).
fn broken_files(dir: &Path) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    let jpeg = jpeg_bytes();
    std::fs::write(dir.join("trunc.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    out.push(("trunc.jpg".to_string(), "trunc.jpg"));
    std::fs::write(dir.join("zero.jpg"), b"").unwrap();
    out.push(("zero.jpg".into(), "empty (0 bytes)"));
    std::fs::write(dir.join("notes.jpg"), b"these are my notes, not a photo\n").unwrap();
    out.push(("notes.jpg".into(), "not an image"));
    std::os::unix::fs::symlink("loop.jpg", dir.join("loop.jpg")).unwrap();
    out.push(("loop.jpg".into(), "symbolic links"));
    std::fs::write(dir.join(OsStr::from_bytes(b"bad-\xff\xfe.jpg")), b"nope").unwrap();
    out.push(("bad-\u{fffd}\u{fffd}.jpg".into(), "not an image"));
    image::GrayImage::from_pixel(1, 70_000, image::Luma([128]))
        .save(dir.join("strip.png"))
        .unwrap();
    out.push(("strip.png".into(), "aspect ratio too extreme"));
    fifo(&dir.join("pipe.jpg"));
    out.push(("pipe.jpg".into(), "not a regular file"));
    std::fs::write(
        dir.join("locked.png"),
        std::fs::read(dir.join("a0.png")).unwrap_or_else(|_| jpeg.clone()),
    )
    .unwrap();
    if unreadable(&dir.join("locked.png")) {
        out.push(("locked.png".into(), "Permission denied"));
    } else {
        std::fs::remove_file(dir.join("locked.png")).unwrap();
    }
    out
}

/// Grayscale, CMYK, 16-bit, RGBA, 1×1, 6000×4000 and a non-UTF-8 name: all
/// converted, the trial finishes. The same database then serves the CLI checks
/// that need a real finished trial.
#[test]
fn unusual_images_are_converted_and_cli_mistakes_are_clear() {
    let s = scratch();
    for split in ["train/a", "test/b"] {
        let d = s.data().join(split);
        image::GrayImage::from_fn(30, 20, |x, _| image::Luma([x as u8 * 8]))
            .save(d.join("gray.jpg"))
            .unwrap();
        std::fs::copy(
            common::repo_path("tests/fixtures/cmyk.jpg"),
            d.join("cmyk.jpg"),
        )
        .unwrap();
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(20, 20, |x, y| {
            image::Luma([(x * y * 150) as u16])
        })
        .save(d.join("g16.png"))
        .unwrap();
        image::RgbaImage::from_fn(20, 20, |x, _| image::Rgba([200, 10, 10, x as u8 * 12]))
            .save(d.join("rgba.png"))
            .unwrap();
        image::RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]))
            .save(d.join("one.png"))
            .unwrap();
        std::fs::copy(
            s.data().join("train/a/a0.png"),
            d.join(OsStr::from_bytes(b"caf\xe9-latin1.png")),
        )
        .unwrap();
    }
    image::RgbImage::from_pixel(6000, 4000, image::Rgb([20, 120, 220]))
        .save(s.data().join("train/b/huge.png"))
        .unwrap();
    run(&s, "odd", "").output().expect_no_panic().expect_exit(0);
    let db = s.open_db();
    let trial: String = attempts(&db).first().map(|a| a.0.clone()).unwrap();
    assert!(
        attempts(&db).iter().all(|a| a.2.is_none()),
        "{:?}",
        attempts(&db)
    );
    // Every image was loaded: train a = 2 + 6, b = 2 + 1; test b = 1 + 6.
    assert_eq!(
        db.count("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'a'"),
        8
    );
    assert_eq!(
        db.count("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'b'"),
        3
    );
    assert_eq!(
        db.count("SELECT count FROM class_distribution WHERE split = 'test' AND class = 'b'"),
        7
    );
    let show = s.sweep(&["show", &trial]).output();
    show.expect_no_panic();
    assert!(
        show.succeeded() && show.stdout.contains("done"),
        "{}",
        show.stderr
    );

    // Unknown or malformed trial ids and sweep names: exit 2, a clear message.
    s.sweep(&["show", "0123456789"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["no trial \"0123456789\"", "sweep status"]);
    s.sweep(&["show", "xyz; DROP TABLE trials"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["is not a trial id"]);
    s.sweep(&["show", ""])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["is not a trial id"]);
    s.sweep(&["predict", "--trial", "0123456789", "x.png"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["no trial \"0123456789\""]);
    for cmd in ["report", "status", "plot"] {
        let mut args = vec![cmd, "--sweep", "no-such-sweep"];
        if cmd == "plot" {
            args.extend(["--out", "plots"]);
        }
        s.sweep(&args).output().expect_error(
            EXIT_BAD_INPUT,
            &["no sweep named \"no-such-sweep\"", "known sweeps: odd"],
        );
    }
    // predict on broken images with a real trial: the file is named, exit 2.
    let predict = |file: &Path| {
        s.sweep(&["predict", "--trial", &trial, "--results"])
            .arg(s.results())
            .arg(file)
            .output()
    };
    std::fs::write(s.path("notes.jpg"), b"not a photo").unwrap();
    predict(&s.path("notes.jpg")).expect_error(EXIT_BAD_INPUT, &["notes.jpg", "not an image"]);
    std::fs::write(s.path("zero.png"), b"").unwrap();
    predict(&s.path("zero.png")).expect_error(EXIT_BAD_INPUT, &["zero.png", "empty (0 bytes)"]);
    predict(&s.path("missing.png")).expect_error(EXIT_BAD_INPUT, &["missing.png"]);
    let ok = predict(&s.data().join("train/a/cmyk.jpg"));
    ok.expect_no_panic();
    assert!(
        ok.succeeded() && ok.stdout.contains("\"pred\""),
        "{}",
        ok.stderr
    );
}

/// Each broken file fails its trial with error class `data` and a message
/// naming the file. All runs start at once and are checked when they are done.
#[test]
fn broken_images_fail_the_trial_naming_the_file() {
    type Setup = fn(&Path) -> Option<Vec<&'static str>>;
    let setups: Vec<(&'static str, Setup)> = vec![
        ("truncated", |d| {
            let j = jpeg_bytes();
            std::fs::write(d.join("train/a/trunc.jpg"), &j[..j.len() / 2]).unwrap();
            Some(vec!["trunc.jpg"])
        }),
        ("zero_byte", |d| {
            std::fs::write(d.join("valid/b/zero.jpg"), b"").unwrap();
            Some(vec!["valid/b/zero.jpg", "empty (0 bytes)"])
        }),
        ("text_as_jpg", |d| {
            std::fs::write(d.join("test/a/notes.jpg"), b"hello\n").unwrap();
            Some(vec!["test/a/notes.jpg", "not an image"])
        }),
        ("symlink_loop", |d| {
            std::os::unix::fs::symlink("loop.jpg", d.join("train/b/loop.jpg")).unwrap();
            Some(vec!["train/b/loop.jpg", "symbolic links"])
        }),
        ("non_utf8_name", |d| {
            std::fs::write(
                d.join("train/a").join(OsStr::from_bytes(b"bad-\xff.jpg")),
                b"GIF89a?",
            )
            .unwrap();
            Some(vec!["train/a/bad-\u{fffd}.jpg"])
        }),
        ("extreme_aspect", |d| {
            image::GrayImage::from_pixel(70_000, 1, image::Luma([9]))
                .save(d.join("train/a/strip.png"))
                .unwrap();
            Some(vec!["strip.png", "aspect ratio too extreme"])
        }),
        ("fifo", |d| {
            fifo(&d.join("train/a/pipe.jpg"));
            Some(vec!["pipe.jpg", "not a regular file"])
        }),
        ("unreadable", |d| {
            let p = d.join("train/a/locked.png");
            png(&p, 8, 8, 1);
            unreadable(&p).then(|| vec!["locked.png", "Permission denied"])
        }),
    ];
    let mut running = Vec::new();
    for (name, setup) in setups {
        let s = scratch();
        if let Some(says) = setup(&s.data()) {
            let child = run(&s, name, "").spawn();
            running.push((name, s, says, child));
        }
    }
    for (what, s, says, child) in running {
        child.wait().expect_error(EXIT_FAILED, &["failed: data:"]);
        let db = s.open_db();
        let attempts = attempts(&db);
        assert_eq!(attempts.len(), 1, "{what}: {attempts:?}");
        let (trial, _, class, message) = &attempts[0];
        assert_eq!(class.as_deref(), Some("data"), "{what}: {attempts:?}");
        let message = message.clone().unwrap_or_default();
        for m in &says {
            assert!(
                message.contains(m),
                "{what}: attempt message lacks {m:?}: {message}"
            );
        }
        let log = worker_log(&s, what, trial);
        assert!(
            !log.contains("panicked"),
            "{what}: the worker panicked:\n{log}"
        );
        let show = s.sweep(&["show", trial]).label(what).output();
        show.expect_no_panic();
        assert!(
            show.succeeded() && show.stdout.contains("failed") && show.stdout.contains("data"),
            "{what}: show:\n{}",
            show.stdout
        );
        let status = s.sweep(&["status"]).label(what).output();
        status.expect_no_panic();
        assert!(
            status.succeeded() && status.stdout.contains("failed 1"),
            "{what}: {}",
            status.stdout
        );
    }
}

/// A broken layout is bad input, caught when the sweep is planned (the whole
/// layout is validated then): exit 2 at the `dataset` line, a message naming
/// the folder, nothing written.
#[test]
fn broken_layouts_are_bad_input_naming_the_folder() {
    type Setup = fn(&Path) -> Vec<&'static str>;
    let setups: Vec<(&'static str, Setup)> = vec![
        ("empty_class_folder", |d| {
            std::fs::remove_file(d.join("valid/b/b0.png")).unwrap();
            vec!["valid/b", "no images"]
        }),
        ("non_utf8_class", |d| {
            let c = d.join("train").join(OsStr::from_bytes(b"cl\xffss"));
            std::fs::create_dir(&c).unwrap();
            png(&c.join("x.png"), 8, 8, 3);
            vec!["not valid UTF-8"]
        }),
        ("extra_class_in_test", |d| {
            std::fs::create_dir(d.join("test/c")).unwrap();
            png(&d.join("test/c/c0.png"), 8, 8, 4);
            vec!["class \"c\"", "not in train/"]
        }),
    ];
    for (name, setup) in setups {
        let s = scratch();
        let says = setup(&s.data());
        run(&s, name, "")
            .output()
            .expect_error(EXIT_BAD_INPUT, &[&["sweep.toml:3:"][..], &says].concat());
        assert!(
            !s.db().exists() && !s.results().exists(),
            "{name}: validation wrote something"
        );
    }
}

/// With `skip_bad_images = true` every broken file is skipped, logged by name
/// and left out of the counts; the trial finishes.
#[test]
fn skip_bad_images_skips_and_counts_every_broken_file() {
    let s = scratch();
    let broken = broken_files(&s.data().join("train/a"));
    run(&s, "skip", "skip_bad_images = true")
        .output()
        .expect_no_panic()
        .expect_exit(0);
    let db = s.open_db();
    let trial = attempts(&db)[0].0.clone();
    let log = worker_log(&s, "skip", &trial);
    for (file, reason) in &broken {
        let line = log
            .lines()
            .find(|l| l.contains("skipping") && l.contains(file.as_str()));
        assert!(
            line.is_some_and(|l| l.contains(reason)),
            "no skip line for {file} ({reason}) in the worker log:\n{log}"
        );
    }
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("warning: skipping"))
            .count(),
        broken.len(),
        "{log}"
    );
    assert_eq!(
        db.count("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'a'"),
        2
    );
}

/// A missing split is caught by validation: exit 2, nothing written.
#[test]
fn missing_split_is_bad_input_before_anything_runs() {
    let s = scratch();
    std::fs::remove_dir_all(s.data().join("test")).unwrap();
    let file = sweep_file(&s, "nosplit", "");
    s.run(&file).output().expect_error(
        EXIT_BAD_INPUT,
        &["sweep.toml:3:", "not an ImageFolder root: missing test/"],
    );
    assert!(
        !s.db().exists() && !s.results().exists(),
        "validation wrote something"
    );
    // `val/` is accepted for `valid/`; a missing `valid/` is named with it.
    std::fs::rename(s.data().join("valid"), s.data().join("val")).unwrap();
    s.sweep(&["run"])
        .arg(&file)
        .arg("--dry-run")
        .output()
        .expect_error(EXIT_BAD_INPUT, &["missing test/"]);
    std::fs::remove_dir_all(s.data().join("val")).unwrap();
    s.sweep(&["run"])
        .arg(&file)
        .arg("--dry-run")
        .output()
        .expect_error(EXIT_BAD_INPUT, &["valid/ (or val/)"]);
}

/// (length, hash) of a file's bytes; None when it cannot be read.
fn fingerprint(path: &Path) -> Option<(usize, u64)> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some((bytes.len(), h.finish()))
}

/// Unusable databases: a directory, a missing file, random bytes, a file from
/// a newer sweep or another branch of it, another program's database. Every
/// command says what is wrong (exit 2) and none changes the file.
#[test]
fn unusable_databases_are_clear_errors() {
    let s = scratch();
    let d = s.root();
    s.sweep_file("s").write();

    std::fs::create_dir(d.join("dir.db")).unwrap();
    let mut random = vec![0u8; 8192];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(d.join("random.db"), &random).unwrap();
    let mut header = b"SQLite format 3\0".to_vec();
    header.extend_from_slice(&random[..4096]);
    std::fs::write(d.join("header.db"), &header).unwrap();
    for (db, version) in [
        ("newer.db", 99_991_231_000_000i64),
        ("branch.db", 20_261_129_000_000),
    ] {
        Db::create_with_schema(&d.join(db)).execute(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ({version}, 'not ours', 1, x'00', 0)"
        ));
    }
    Db::create_empty(&d.join("foreign.db"))
        .execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)");

    let cases: [(&str, &[&str]); 7] = [
        ("dir.db", &["is a directory"]),
        ("missing.db", &["no database at", "run a sweep first"]),
        (
            "random.db",
            &[
                "cannot open database",
                "file is not a database",
                "move it away",
            ],
        ),
        ("header.db", &["cannot open database", "move it away"]),
        (
            "newer.db",
            &[
                "written by a newer sweep",
                "99991231000000",
                "upgrade sweep",
            ],
        ),
        (
            "branch.db",
            &[
                "schema migration 20261129000000",
                "different version of sweep",
            ],
        ),
        ("foreign.db", &["not a sweep results database", "invoices"]),
    ];
    let commands: [&[&str]; 6] = [
        &["status"],
        &["report"],
        &["show", "abc"],
        &["predict", "--trial", "abc", "x.png"],
        &["plot", "--out", "p"],
        &["run", "s.toml", "--plain"],
    ];
    for (db, says) in cases {
        let path = d.join(db);
        let before = fingerprint(&path);
        for args in commands {
            if db == "missing.db" && args[0] == "run" {
                continue; // `run` creates the database: not a mistake.
            }
            let what = format!("--db {db} {}", args.join(" "));
            let out = s.sweep(args).db(&path).label(&what).output();
            out.expect_error(EXIT_BAD_INPUT, says);
            assert!(out.stderr.starts_with("error: "), "{what}: {}", out.stderr);
            assert!(!s.results().exists(), "{what}: started a run");
        }
        assert_eq!(
            fingerprint(&path),
            before,
            "--db {db}: the file was changed"
        );
    }
    // The foreign database did not get sweep's tables.
    let tables: Vec<String> = Db::open(d.join("foreign.db"))
        .query::<(String,)>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .into_iter()
        .map(|(t,)| t)
        .collect();
    assert_eq!(tables, ["invoices"]);
}

/// A sweep file that is not text, or not there, or a directory: exit 2 with the path.
#[test]
fn unreadable_sweep_files_are_bad_input() {
    let s = Scratch::new();
    s.write("binary.toml", [0xff, 0xfe, 0x00, 0x80]);
    std::fs::create_dir(s.path("folder.toml")).unwrap();
    for (file, says) in [
        ("binary.toml", "not UTF-8 text"),
        ("missing.toml", "cannot read sweep file"),
        ("folder.toml", "cannot read sweep file"),
    ] {
        s.sweep(&["run", file])
            .output()
            .expect_error(EXIT_BAD_INPUT, &[&format!("{file}:1:1:"), says]);
        assert!(!s.db().exists());
    }
}
