//! The one harness of the root package's integration tests. Each `tests/*.rs`
//! file says `mod common;` and uses what it needs:
//!
//! * [`Scratch`]: a scratch folder holding a dataset (the demo generator's,
//!   made once per process and copied in, or one image per class folder), sweep
//!   files ([`SweepFile`]), the database `results.db` and the folder `results/`;
//! * [`Sweep`]: one `sweep` command line (`--db`, `--results`, `--plain`, the
//!   fake worker, never the caller's `SWEEP_DB`, stdin null), run to an [`Out`]
//!   whose exit code and output the test asserts on, or started as a
//!   [`Running`] coordinator to signal, follow and wait for;
//! * [`Db`]: reads (and for set-ups writes) a results database;
//! * [`prerequisites`]: what a test needs from the machine (Chromium, a tmpfs
//!   mount, a process that chmod 000 keeps out). Under CI (`CI=true`) a
//!   missing prerequisite fails the test; elsewhere the test says it skipped.
#![allow(dead_code)] // each test file uses its own part of the harness

mod command;
mod db;
pub mod prerequisites;

#[allow(unused_imports)] // each test file uses its own part
pub use command::{Out, Running, Sweep, alive, assert_all_die, sweep};
#[allow(unused_imports)]
pub use db::Db;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};

/// The coordinator binary under test (it finds `sweep-worker` beside itself).
pub const BIN: &str = env!("CARGO_BIN_EXE_sweep");
/// `sweep`'s documented exit codes.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

/// The smallest real training worth recording: resnet18 at 32 px in batches
/// of 8 with a 16-unit head, a train record every 2 batches, 2 epochs.
pub const TINY_TRAINING: &str = "backbone = \"resnet18\"\nepochs = 2\nimage_size = 32\nbatch_size = 8\nlog_every = 2\nhead = { hidden = [16] }";

/// A path inside this repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `examples/shell/sweep.toml` (a `[program]` sweep of a shell script with a
/// known curve) with its program's path made absolute, so that it runs from
/// a scratch folder, and `extra` (TOML tables) appended.
pub fn shell_example(extra: &str) -> String {
    let example = std::fs::read_to_string(repo_path("examples/shell/sweep.toml"))
        .expect("read examples/shell/sweep.toml");
    let script = format!(
        "{:?}",
        repo_path("examples/shell/train.sh").display().to_string()
    );
    let text = example.replace("\"examples/shell/train.sh\"", &script);
    assert_ne!(
        text, example,
        "examples/shell/sweep.toml no longer names its script"
    );
    format!("{text}\n{extra}\n")
}

/// The scripted stand-in worker (`FAKE_MODE` says how it behaves).
pub fn fake_worker() -> PathBuf {
    repo_path("tests/fake_worker.py")
}

/// A scratch folder for one test (or, [`Scratch::until_exit`], for the tests
/// of a file that share it). Everything a test writes goes below it.
pub struct Scratch {
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

impl Scratch {
    /// An empty folder, removed when the `Scratch` is dropped.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("sweep-test-")
            .tempdir()
            .expect("create a scratch folder");
        Scratch {
            root: dir.path().to_path_buf(),
            _dir: Some(dir),
        }
    }

    /// An empty folder kept until the test process exits: for a fixture that a
    /// `static` shares between the tests of one file.
    pub fn until_exit() -> Scratch {
        let root = tempfile::Builder::new()
            .prefix("sweep-test-")
            .tempdir()
            .expect("create a scratch folder")
            .keep();
        remove_at_exit(root.clone());
        Scratch { root, _dir: None }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// The dataset folder, `data/`.
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    pub fn db(&self) -> PathBuf {
        self.path("results.db")
    }

    pub fn results(&self) -> PathBuf {
        self.path("results")
    }

    /// Where the fake worker appends its events (`FAKE_DIR`).
    pub fn fake_dir(&self) -> PathBuf {
        self.path("fake")
    }

    /// `data/`: the demo generator's 12-class dataset (`sweep data demo
    /// --per-class N --image-size S`).
    pub fn with_demo(self, per_class: u32, image_size: u32) -> Scratch {
        self.with_demo_in("data", per_class, image_size)
    }

    /// The demo dataset at `rel`. It is generated once per process and copied.
    pub fn with_demo_in(self, rel: &str, per_class: u32, image_size: u32) -> Scratch {
        copy_tree(&demo_dataset(per_class, image_size), &self.path(rel));
        self
    }

    /// The least ImageFolder that plans: `rel/<split>/<class>/0.png`, one
    /// 8×8 image in each class folder of each split. A real worker could train
    /// on it; the fake one reads no images.
    pub fn with_one_image_per_class(self, rel: &str, splits: &[&str], classes: &[&str]) -> Scratch {
        for split in splits {
            for (i, class) in classes.iter().enumerate() {
                let dir = self.path(rel).join(split).join(class);
                std::fs::create_dir_all(&dir).expect("create a class folder");
                image::RgbImage::from_pixel(8, 8, image::Rgb([40 * i as u8, 90, 160]))
                    .save(dir.join("0.png"))
                    .expect("write an image");
            }
        }
        self
    }

    /// Writes a file below the scratch folder (making its parents).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("a file inside the scratch folder"))
            .expect("create parent folders");
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// An empty folder `rel`, emptied first if it exists.
    pub fn fresh_dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a folder");
        p
    }

    /// A sweep file for sweep `name` on this folder's `data/`, written as
    /// `<name>.toml` by [`SweepFile::write`].
    pub fn sweep_file(&self, name: &str) -> SweepFile {
        SweepFile::new(self.path(format!("{name}.toml")), name, &self.data())
    }

    /// `sweep --db results.db ARGS…` run in the scratch folder.
    pub fn sweep(&self, args: &[&str]) -> Sweep {
        sweep(args)
            .db(self.db())
            .current_dir(&self.root)
            .fake_dir(self.fake_dir())
            .env("SWEEP_CACHE_DIR", self.decoded_cache())
    }

    /// The shared decoded-image cache of this folder's runs (`SWEEP_CACHE_DIR`),
    /// never the user's own.
    pub fn decoded_cache(&self) -> PathBuf {
        self.path("decoded-cache")
    }

    /// `sweep --db results.db run FILE --results results/ --plain`.
    pub fn run(&self, file: &Path) -> Sweep {
        self.sweep(&["run"]).arg(file).results(self.results())
    }

    /// The results database, to read.
    pub fn open_db(&self) -> Db {
        Db::open(self.db())
    }
}

/// A sweep file, table by table: `[sweep]` starts with `name` and `dataset`
/// (line 3); each `key = value` line given for a table adds that key, or
/// replaces it where the table has it already. Tables keep the order in which
/// they are first named.
#[derive(Clone)]
pub struct SweepFile {
    path: PathBuf,
    tables: Vec<(String, Vec<(String, String)>)>,
}

impl SweepFile {
    pub fn new(path: PathBuf, name: &str, dataset: &Path) -> SweepFile {
        let keys = vec![
            ("name".to_string(), toml_string(name)),
            (
                "dataset".to_string(),
                toml_string(&dataset.display().to_string()),
            ),
        ];
        SweepFile {
            path,
            tables: vec![("sweep".to_string(), keys)],
        }
    }

    /// Written under another file name, in the same folder.
    pub fn file_name(mut self, name: &str) -> SweepFile {
        self.path.set_file_name(name);
        self
    }

    /// `key = value` lines (one a line, values as TOML) for `[table]`.
    pub fn table(mut self, table: &str, lines: &str) -> SweepFile {
        let i = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table.to_string(), Vec::new()));
                self.tables.len() - 1
            }
        };
        for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a `key = value` line: {line:?}"));
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            let keys = &mut self.tables[i].1;
            match keys.iter_mut().find(|(k, _)| *k == key) {
                Some(kv) => kv.1 = value,
                None => keys.push((key, value)),
            }
        }
        self
    }

    pub fn sweep(self, lines: &str) -> SweepFile {
        self.table("sweep", lines)
    }

    pub fn defaults(self, lines: &str) -> SweepFile {
        self.table("defaults", lines)
    }

    /// `[defaults]` = [`TINY_TRAINING`].
    pub fn tiny_training(self) -> SweepFile {
        self.defaults(TINY_TRAINING)
    }

    pub fn grid(self, lines: &str) -> SweepFile {
        self.table("grid", lines)
    }

    pub fn resources(self, lines: &str) -> SweepFile {
        self.table("resources", lines)
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (table, keys) in &self.tables {
            out.push_str(&format!("[{table}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }

    pub fn write(&self) -> PathBuf {
        std::fs::write(&self.path, self.text())
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
        self.path.clone()
    }
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The demo dataset for (per_class, image_size), generated on first use in
/// this process into a folder removed when the process exits.
fn demo_dataset(per_class: u32, image_size: u32) -> PathBuf {
    static CACHE: OnceLock<Mutex<Option<Scratch>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(None));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let root = cache.get_or_insert_with(Scratch::until_exit);
    let dir = root.path(format!("demo-{per_class}x{image_size}"));
    if !dir.exists() {
        let tmp = root.path(format!("demo-{per_class}x{image_size}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        sweep(&["data", "demo"])
            .arg(&tmp)
            .args([
                "--per-class",
                &per_class.to_string(),
                "--image-size",
                &image_size.to_string(),
            ])
            .output()
            .expect_success();
        std::fs::rename(&tmp, &dir).expect("keep the demo dataset");
    }
    dir
}

/// Copies the files and folders below `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Removes `path` (a folder) when the test process exits.
fn remove_at_exit(path: PathBuf) {
    static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static REGISTER: Once = Once::new();
    extern "C" fn remove_all() {
        let paths = PATHS.lock().map(|p| p.clone()).unwrap_or_default();
        for p in paths {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    REGISTER.call_once(|| {
        // SAFETY: registers a plain function that neither panics nor unwinds.
        unsafe { libc::atexit(remove_all) };
    });
    PATHS.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// The fake worker's `curve` mode (validation accuracy saturates at 10 × lr)
/// behind the real coordinator: `sweep --db r.db run s.toml --results results
/// --plain` in `dir`, one train step and `epoch_s` seconds an epoch. For the
/// early-stopping and TPE tests, whose sweeps live in a bare temp dir.
pub fn curve_run(dir: &Path, epoch_s: &str) -> std::process::Command {
    let mut c = run_in(dir);
    c.env("SWEEP_WORKER_CMD", fake_worker())
        .env("FAKE_MODE", "curve")
        .env("FAKE_STEPS", "1")
        .env("FAKE_EPOCH_S", epoch_s);
    c
}

/// `sweep --db r.db run s.toml --results results --plain` in `dir`, stdin
/// closed, `SWEEP_DB` unset.
pub fn run_in(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args([
        "--db",
        "r.db",
        "run",
        "s.toml",
        "--results",
        "results",
        "--plain",
    ])
    .current_dir(dir)
    .env_remove("SWEEP_DB")
    .stdin(std::process::Stdio::null());
    c
}

/// The same sweep run twice: straight in one folder from `fresh`, and in
/// another killed with SIGKILL once the database holds each of `kills`
/// decisions, then run to the end. `run(dir, slow)` makes the command
/// (`slow`: for the runs that are killed, so that the kills land mid-way).
/// Both must succeed; returns (straight, killed) to compare.
pub fn straight_and_killed(
    fresh: impl Fn() -> tempfile::TempDir,
    run: impl Fn(&Path, bool) -> std::process::Command,
    kills: &[u32],
) -> (tempfile::TempDir, tempfile::TempDir) {
    let straight = fresh();
    let out = run(straight.path(), false).output().expect("run sweep");
    assert_eq!(
        out.status.code(),
        Some(0),
        "straight: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = fresh();
    for &n in kills {
        kill_after_decisions(killed.path(), run(killed.path(), true), n);
    }
    let out = run(killed.path(), false).output().expect("run sweep");
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the kills: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (straight, killed)
}

/// Starts `cmd` (a `sweep run` writing DIR/r.db) and kills it with SIGKILL
/// once the database holds `n` early-stopping decisions (within 90 s).
pub fn kill_after_decisions(dir: &Path, mut cmd: std::process::Command, n: u32) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        // Polled with a busy timeout, and an error (the coordinator creating or
        // migrating the file holds it locked) counts as none yet.
        let seen: u32 = (dir.join("r.db").exists())
            .then(|| {
                std::process::Command::new("sqlite3")
                    .args(["-cmd", ".timeout 2000"])
                    .arg(dir.join("r.db"))
                    .arg("SELECT count(*) FROM decisions")
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            })
            .flatten()
            .unwrap_or(0);
        if seen >= n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} decisions within 90 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `sqlite3 DIR/r.db SQL`, one string a row (columns joined by `|`).
/// A scratch folder holding `data`: the demo dataset, 4 images a class of
/// 32 px (`sweep data demo data --per-class 4 --image-size 32`).
pub fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(BIN)
        .args([
            "data",
            "demo",
            "data",
            "--per-class",
            "4",
            "--image-size",
            "32",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    dir
}

/// What `sweep --db r.db show ID` prints (stdout) in `dir`.
pub fn show(dir: &Path, id: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["--db", "r.db", "show", id])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every early-stopping decision of DIR/r.db, by trial lr and epoch (lr,
/// epoch, method, rung, action): what a straight and a killed run compare.
pub fn decisions_by_lr(dir: &Path) -> Vec<String> {
    sqlite_rows(
        dir,
        "SELECT t.lr, d.epoch, d.method, d.rung, d.action FROM decisions d JOIN trials t ON t.id = d.trial_id ORDER BY t.lr, d.epoch, d.method",
    )
}

pub fn sqlite_rows(dir: &Path, sql: &str) -> Vec<String> {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("r.db"))
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
