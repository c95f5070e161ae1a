//! Bad input, end to end through the real binary: unusual and broken images,
//! broken dataset layouts, and command-line mistakes (unknown trial or sweep,
//! unusable databases). The contract checked everywhere: a clear message, the
//! documented exit code (1 trials failed, 2 bad input), and never a panic.
//!
//! Each image scenario is one tiny real run (resnet18, 32 px, one batch). The
//! failing scenarios are started together and waited for at the end, so the
//! whole file takes well under a minute on 2 cores.
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sweep");
const EXIT_FAILED: i32 = 1;
const EXIT_BAD_INPUT: i32 = 2;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Never a panic, whatever the exit code.
fn no_panic(what: &str, o: &Output) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{what}: panicked\nstderr:\n{err}");
    assert_ne!(o.status.code(), Some(101), "{what}: exit 101 (a panic)\nstderr:\n{err}");
}

/// Exit code `code`, no panic, and an `error:` line with every one of `says`.
fn fails_with(what: &str, o: &Output, code: i32, says: &[&str]) -> String {
    no_panic(what, o);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{what}: exit code\nstdout:\n{}\nstderr:\n{err}", text(&o.stdout));
    for s in says {
        assert!(err.contains(s), "{what}: stderr lacks {s:?}\nstderr:\n{err}");
    }
    err
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn connect(db: &Path, create: bool) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(db).create_if_missing(create)).await.unwrap()
}

/// A database with sweep's schema, made the way `sweep` makes it (its migrations).
fn schema_only_db(db: &Path) {
    rt().block_on(async {
        let pool = connect(db, true).await;
        let migrator = sqlx::migrate::Migrator::new(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))).await.unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
    });
}

fn png(path: &Path, w: u32, h: u32, seed: u8) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x as u8).wrapping_mul(7) ^ seed, (y as u8).wrapping_mul(5), seed])).save(path).unwrap();
}

/// A 2-class ImageFolder: train 2 images a class, valid and test 1.
fn dataset(root: &Path) -> PathBuf {
    let ds = root.join("data");
    for (split, n) in [("train", 2), ("valid", 1), ("test", 1)] {
        for (ci, class) in ["a", "b"].iter().enumerate() {
            let dir = ds.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                png(&dir.join(format!("{class}{i}.png")), 40, 36, (ci * 100 + i) as u8);
            }
        }
    }
    ds
}

/// One scenario: its own dataset, sweep file, database and results folder.
struct Case {
    name: &'static str,
    dir: tempfile::TempDir,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        dataset(dir.path());
        Case { name, dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn data(&self, p: &str) -> PathBuf {
        self.path("data").join(p)
    }
    fn db(&self) -> PathBuf {
        self.path("results.db")
    }
    fn file(&self, extra_defaults: &str) -> PathBuf {
        let ds = toml::Value::String(self.path("data").display().to_string());
        let text = format!(
            "[sweep]\nname = \"{}\"\ndataset = {ds}\n\n[defaults]\nbackbone = \"resnet18\"\nepochs = 1\nimage_size = 32\nbatch_size = 8\nmax_batches = 1\nhead = {{ hidden = [] }}\n{extra_defaults}\n\n[resources]\nretries = 0\n",
            self.name
        );
        let p = self.path("sweep.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--db").arg(self.db()).args(args).current_dir(self.dir.path());
        c
    }
    fn spawn_run(&self, extra_defaults: &str) -> Child {
        let file = self.file(extra_defaults);
        self.cmd(&["run"]).arg(file).arg("--results").arg(self.path("results")).arg("--plain").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }
    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// (trial, attempt, error_class, message) of every attempt.
    fn attempts(&self) -> Vec<(String, i64, Option<String>, Option<String>)> {
        rt().block_on(async {
            let pool = connect(&self.db(), false).await;
            let rows =
                sqlx::query_as("SELECT trial_id, attempt, error_class, message FROM attempts ORDER BY trial_id, attempt").fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        })
    }
    fn scalar(&self, sql: &str) -> i64 {
        rt().block_on(async {
            let pool = connect(&self.db(), false).await;
            let v = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            v
        })
    }
    /// The worker's stderr of attempt 1 of the only trial.
    fn worker_log(&self, trial: &str) -> String {
        std::fs::read_to_string(self.path("results").join(self.name).join(trial).join("attempt-1.log")).unwrap_or_default()
    }
}

/// chmod 000 keeps nobody out when the tests run as root (CAP_DAC_OVERRIDE).
fn unreadable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(path).is_ok() {
        println!("skipping the unreadable-file scenario: chmod 000 does not stop this user (root?) from reading {}", path.display());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        return false;
    }
    true
}

fn fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

fn jpeg_bytes() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90])).write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    buf.into_inner()
}

/// Every broken file kind, written into `dir`. Returns (file name as shown in
/// messages, what the message says about it); the unreadable file only when
/// chmod 000 means something here.
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
    image::GrayImage::from_pixel(1, 70_000, image::Luma([128])).save(dir.join("strip.png")).unwrap();
    out.push(("strip.png".into(), "aspect ratio too extreme"));
    fifo(&dir.join("pipe.jpg"));
    out.push(("pipe.jpg".into(), "not a regular file"));
    std::fs::write(dir.join("locked.png"), std::fs::read(dir.join("a0.png")).unwrap_or_else(|_| jpeg.clone())).unwrap();
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
    let c = Case::new("odd");
    for split in ["train/a", "test/b"] {
        let d = c.data(split);
        image::GrayImage::from_fn(30, 20, |x, _| image::Luma([x as u8 * 8])).save(d.join("gray.jpg")).unwrap();
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cmyk.jpg"), d.join("cmyk.jpg")).unwrap();
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(20, 20, |x, y| image::Luma([(x * y * 150) as u16])).save(d.join("g16.png")).unwrap();
        image::RgbaImage::from_fn(20, 20, |x, _| image::Rgba([200, 10, 10, x as u8 * 12])).save(d.join("rgba.png")).unwrap();
        image::RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3])).save(d.join("one.png")).unwrap();
        std::fs::copy(c.data("train/a/a0.png"), d.join(OsStr::from_bytes(b"caf\xe9-latin1.png"))).unwrap();
    }
    image::RgbImage::from_pixel(6000, 4000, image::Rgb([20, 120, 220])).save(c.data("train/b/huge.png")).unwrap();
    let run = c.spawn_run("").wait_with_output().unwrap();
    no_panic("run", &run);
    assert_eq!(run.status.code(), Some(0), "stderr:\n{}", text(&run.stderr));
    let trial: String = c.attempts().first().map(|a| a.0.clone()).unwrap();
    assert!(c.attempts().iter().all(|a| a.2.is_none()), "{:?}", c.attempts());
    // Every image was loaded: train a = 2 + 6, b = 2 + 1; test b = 1 + 6.
    assert_eq!(c.scalar("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'a'"), 8);
    assert_eq!(c.scalar("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'b'"), 3);
    assert_eq!(c.scalar("SELECT count FROM class_distribution WHERE split = 'test' AND class = 'b'"), 7);
    let show = c.out(&["show", &trial]);
    no_panic("show", &show);
    assert!(show.status.success() && text(&show.stdout).contains("done"), "{}", text(&show.stderr));

    // Unknown or malformed trial ids and sweep names: exit 2, a clear message.
    fails_with("show unknown trial", &c.out(&["show", "0123456789"]), EXIT_BAD_INPUT, &["no trial \"0123456789\"", "sweep status"]);
    fails_with("show non-hex", &c.out(&["show", "xyz; DROP TABLE trials"]), EXIT_BAD_INPUT, &["is not a trial id"]);
    fails_with("show empty id", &c.out(&["show", ""]), EXIT_BAD_INPUT, &["is not a trial id"]);
    fails_with("predict unknown trial", &c.out(&["predict", "--trial", "0123456789", "x.png"]), EXIT_BAD_INPUT, &["no trial \"0123456789\""]);
    for cmd in ["report", "status", "plot"] {
        let mut args = vec![cmd, "--sweep", "no-such-sweep"];
        if cmd == "plot" {
            args.extend(["--out", "plots"]);
        }
        fails_with(&format!("{cmd} unknown sweep"), &c.out(&args), EXIT_BAD_INPUT, &["no sweep named \"no-such-sweep\"", "known sweeps: odd"]);
    }
    // predict on broken images with a real trial: the file is named, exit 2.
    let results = c.path("results");
    let predict = |file: &Path| c.cmd(&["predict", "--trial", &trial, "--results"]).arg(&results).arg(file).output().unwrap();
    std::fs::write(c.path("notes.jpg"), b"not a photo").unwrap();
    fails_with("predict text file", &predict(&c.path("notes.jpg")), EXIT_BAD_INPUT, &["notes.jpg", "not an image"]);
    std::fs::write(c.path("zero.png"), b"").unwrap();
    fails_with("predict empty file", &predict(&c.path("zero.png")), EXIT_BAD_INPUT, &["zero.png", "empty (0 bytes)"]);
    fails_with("predict missing file", &predict(&c.path("missing.png")), EXIT_BAD_INPUT, &["missing.png"]);
    let ok = predict(&c.data("train/a/cmyk.jpg"));
    no_panic("predict cmyk", &ok);
    assert!(ok.status.success() && text(&ok.stdout).contains("\"pred\""), "{}", text(&ok.stderr));
}

/// Each broken file fails its trial with error class `data` and a message
/// naming the file; broken layouts likewise name the folder. All runs start
/// at once and are checked when they are done.
#[test]
fn broken_images_and_layouts_fail_the_trial_naming_the_file() {
    type Setup = fn(&Case) -> Option<Vec<&'static str>>;
    let setups: Vec<(&'static str, Setup)> = vec![
        ("truncated", |c| {
            let j = jpeg_bytes();
            std::fs::write(c.data("train/a/trunc.jpg"), &j[..j.len() / 2]).unwrap();
            Some(vec!["trunc.jpg"])
        }),
        ("zero_byte", |c| {
            std::fs::write(c.data("valid/b/zero.jpg"), b"").unwrap();
            Some(vec!["valid/b/zero.jpg", "empty (0 bytes)"])
        }),
        ("text_as_jpg", |c| {
            std::fs::write(c.data("test/a/notes.jpg"), b"hello\n").unwrap();
            Some(vec!["test/a/notes.jpg", "not an image"])
        }),
        ("symlink_loop", |c| {
            std::os::unix::fs::symlink("loop.jpg", c.data("train/b/loop.jpg")).unwrap();
            Some(vec!["train/b/loop.jpg", "symbolic links"])
        }),
        ("non_utf8_name", |c| {
            std::fs::write(c.data("train/a").join(OsStr::from_bytes(b"bad-\xff.jpg")), b"GIF89a?").unwrap();
            Some(vec!["train/a/bad-\u{fffd}.jpg"])
        }),
        ("extreme_aspect", |c| {
            image::GrayImage::from_pixel(70_000, 1, image::Luma([9])).save(c.data("train/a/strip.png")).unwrap();
            Some(vec!["strip.png", "aspect ratio too extreme"])
        }),
        ("fifo", |c| {
            fifo(&c.data("train/a/pipe.jpg"));
            Some(vec!["pipe.jpg", "not a regular file"])
        }),
        ("unreadable", |c| {
            let p = c.data("train/a/locked.png");
            png(&p, 8, 8, 1);
            unreadable(&p).then(|| vec!["locked.png", "Permission denied"])
        }),
        ("empty_class_folder", |c| {
            std::fs::remove_file(c.data("valid/b/b0.png")).unwrap();
            Some(vec!["valid/b", "no images"])
        }),
        ("non_utf8_class", |c| {
            let d = c.data("train").join(OsStr::from_bytes(b"cl\xffss"));
            std::fs::create_dir(&d).unwrap();
            png(&d.join("x.png"), 8, 8, 3);
            Some(vec!["not valid UTF-8"])
        }),
        ("extra_class_in_test", |c| {
            std::fs::create_dir(c.data("test/c")).unwrap();
            png(&c.data("test/c/c0.png"), 8, 8, 4);
            Some(vec!["class \"c\"", "not in train/"])
        }),
    ];
    let mut running = Vec::new();
    for (name, setup) in setups {
        let case = Case::new(name);
        match setup(&case) {
            Some(says) => {
                let child = case.spawn_run("");
                running.push((case, says, child));
            }
            None => continue,
        }
    }
    for (case, says, child) in running {
        let what = case.name;
        let out = child.wait_with_output().unwrap();
        fails_with(what, &out, EXIT_FAILED, &["failed: data:"]);
        let attempts = case.attempts();
        assert_eq!(attempts.len(), 1, "{what}: {attempts:?}");
        let (trial, _, class, message) = &attempts[0];
        assert_eq!(class.as_deref(), Some("data"), "{what}: {attempts:?}");
        let message = message.clone().unwrap_or_default();
        for s in &says {
            assert!(message.contains(s), "{what}: attempt message lacks {s:?}: {message}");
        }
        let log = case.worker_log(trial);
        assert!(!log.contains("panicked"), "{what}: the worker panicked:\n{log}");
        let show = case.out(&["show", trial]);
        no_panic(what, &show);
        let shown = text(&show.stdout);
        assert!(show.status.success() && shown.contains("failed") && shown.contains("data"), "{what}: show:\n{shown}");
        let status = case.out(&["status"]);
        no_panic(what, &status);
        assert!(status.status.success() && text(&status.stdout).contains("failed 1"), "{what}: {}", text(&status.stdout));
    }
}

/// With `skip_bad_images = true` every broken file is skipped, logged by name
/// and left out of the counts; the trial finishes.
#[test]
fn skip_bad_images_skips_and_counts_every_broken_file() {
    let c = Case::new("skip");
    let broken = broken_files(&c.data("train/a"));
    let out = c.spawn_run("skip_bad_images = true").wait_with_output().unwrap();
    no_panic("run", &out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let trial = c.attempts()[0].0.clone();
    let log = c.worker_log(&trial);
    for (file, reason) in &broken {
        let line = log.lines().find(|l| l.contains("skipping") && l.contains(file.as_str()));
        assert!(line.is_some_and(|l| l.contains(reason)), "no skip line for {file} ({reason}) in the worker log:\n{log}");
    }
    assert_eq!(log.lines().filter(|l| l.starts_with("warning: skipping")).count(), broken.len(), "{log}");
    assert_eq!(c.scalar("SELECT count FROM class_distribution WHERE split = 'train' AND class = 'a'"), 2);
}

/// A missing split is caught by validation: exit 2, nothing written.
#[test]
fn missing_split_is_bad_input_before_anything_runs() {
    let c = Case::new("nosplit");
    std::fs::remove_dir_all(c.data("test")).unwrap();
    let file = c.file("");
    let out = c.cmd(&["run"]).arg(&file).arg("--results").arg(c.path("results")).arg("--plain").output().unwrap();
    fails_with("missing split", &out, EXIT_BAD_INPUT, &["sweep.toml:3:", "not an ImageFolder root: missing test/"]);
    assert!(!c.db().exists() && !c.path("results").exists(), "validation wrote something");
    // `val/` is accepted for `valid/`; a missing `valid/` is named with it.
    std::fs::rename(c.data("valid"), c.data("val")).unwrap();
    let out = c.cmd(&["run"]).arg(&file).arg("--dry-run").output().unwrap();
    fails_with("missing split, val/", &out, EXIT_BAD_INPUT, &["missing test/"]);
    std::fs::remove_dir_all(c.data("val")).unwrap();
    let out = c.cmd(&["run"]).arg(&file).arg("--dry-run").output().unwrap();
    fails_with("missing valid", &out, EXIT_BAD_INPUT, &["valid/ (or val/)"]);
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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d);
    let sweep = d.join("s.toml");
    std::fs::write(&sweep, format!("[sweep]\nname = \"s\"\ndataset = {}\n", toml::Value::String(d.join("data").display().to_string()))).unwrap();

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
    schema_only_db(&d.join("newer.db"));
    schema_only_db(&d.join("branch.db"));
    rt().block_on(async {
        for (db, version) in [("newer.db", 99_991_231_000_000i64), ("branch.db", 20_261_129_000_000)] {
            let pool = connect(&d.join(db), false).await;
            sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, 'not ours', 1, x'00', 0)")
                .bind(version)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let pool = connect(&d.join("foreign.db"), true).await;
        sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)").execute(&pool).await.unwrap();
        pool.close().await;
    });

    let cases: [(&str, &[&str]); 7] = [
        ("dir.db", &["is a directory"]),
        ("missing.db", &["no database at", "run a sweep first"]),
        ("random.db", &["cannot open database", "file is not a database", "move it away"]),
        ("header.db", &["cannot open database", "move it away"]),
        ("newer.db", &["written by a newer sweep", "99991231000000", "upgrade sweep"]),
        ("branch.db", &["schema migration 20261129000000", "different version of sweep"]),
        ("foreign.db", &["not a sweep results database", "invoices"]),
    ];
    let commands: [&[&str]; 6] =
        [&["status"], &["report"], &["show", "abc"], &["predict", "--trial", "abc", "x.png"], &["plot", "--out", "p"], &["run", "s.toml", "--plain"]];
    for (db, says) in cases {
        let path = d.join(db);
        let before = fingerprint(&path);
        for args in commands {
            if db == "missing.db" && args[0] == "run" {
                continue; // `run` creates the database: not a mistake.
            }
            let out = Command::new(BIN).arg("--db").arg(&path).args(args).current_dir(d).output().unwrap();
            let what = format!("--db {db} {}", args.join(" "));
            let err = fails_with(&what, &out, EXIT_BAD_INPUT, says);
            assert!(err.starts_with("error: "), "{what}: {err}");
            assert!(!d.join("results").exists(), "{what}: started a run");
        }
        assert_eq!(fingerprint(&path), before, "--db {db}: the file was changed");
    }
    // The foreign database did not get sweep's tables.
    let tables: Vec<String> = rt().block_on(async {
        let pool = connect(&d.join("foreign.db"), false).await;
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetch_all(&pool).await.unwrap()
    });
    assert_eq!(tables, ["invoices"]);
}

/// A sweep file that is not text, or not there, or a directory: exit 2 with the path.
#[test]
fn unreadable_sweep_files_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("binary.toml"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::create_dir(d.join("folder.toml")).unwrap();
    for (file, says) in [("binary.toml", "not UTF-8 text"), ("missing.toml", "cannot read sweep file"), ("folder.toml", "cannot read sweep file")] {
        let out = Command::new(BIN).arg("--db").arg(d.join("r.db")).args(["run", file]).current_dir(d).output().unwrap();
        fails_with(file, &out, EXIT_BAD_INPUT, &[&format!("{file}:1:1:"), says]);
        assert!(!d.join("r.db").exists());
    }
}
