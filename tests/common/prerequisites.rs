//! What some tests need from the machine, and the one rule for when it is
//! missing: under CI (`CI=true`) the test fails, saying what is missing and
//! how `make test` provides it; elsewhere it prints why it skipped, then
//! returns. A test never passes in CI by skipping.
//!
//! | prerequisite | who | how `make test` (run as root, as CI does) provides it |
//! |---|---|---|
//! | Chromium | plots.rs, HTML rendering | exports `SWEEP_INSTALL_CHROMIUM=1`; [`chromium`] then `apt-get install`s Debian's `chromium` |
//! | a small tmpfs | faults.rs, full-disk cases | root may `mount -t tmpfs` ([`Tmpfs`]) |
//! | a Slurm cluster | slurm.rs | starts `scripts/slurm/start-slurm.sh --install` (single node, two fake GPUs) before the tests, `stop-slurm.sh` after |
//! | Python packages `tensorboard`, `mlflow` | export.rs | [`export_python`] makes a venv with them from PyPI once, under `${XDG_CACHE_HOME:-~/.cache}/sweep/` |
//! | a file chmod 000 keeps out | bad_input.rs, unreadable image | as root the `sweep` process runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (`setpriv`, util-linux); as any other user chmod 000 is enough |
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether the tests run under CI (`CI=true`, as GitHub Actions and most CI systems set).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing prerequisite: fails the test under CI, else prints a
/// skip line (the caller then returns).
#[track_caller]
pub fn missing(what: &str, how: &str) {
    if in_ci() {
        panic!(
            "missing prerequisite: {what}\n  {how}\n  (CI=true: a test whose prerequisite is missing fails instead of skipping)"
        );
    }
    eprintln!("SKIPPED: {what}\n  {how}\n  (under CI=true this fails the test)");
    // The runner hides a passing test's stderr: `make test` lists every skip
    // at the end of the run from this file.
    if let Some(log) = std::env::var_os("SWEEP_SKIPPED_LOG") {
        use std::io::Write;
        let test = std::thread::current()
            .name()
            .unwrap_or("(unnamed test)")
            .to_string();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: needs {what}; {how}");
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `setpriv` prefix that takes from root (and every process it starts)
/// the capabilities to read and search any file, whatever its mode.
pub const DROP_READ_OVERRIDE: &[&str] = &[
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
];

/// chmod 000 on `path`, and whether a `sweep` run with
/// [`Sweep::without_read_override`](super::Sweep::without_read_override)
/// really cannot read it now. When it could, [`missing`] (a failure under CI)
/// and false; the file is made readable again.
#[track_caller]
pub fn unreadable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let probe = if is_root() {
        Command::new(DROP_READ_OVERRIDE[0])
            .args(&DROP_READ_OVERRIDE[1..])
            .arg("cat")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    } else {
        Command::new("cat")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    if probe.as_ref().is_ok_and(|s| !s.success()) {
        return true;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    missing(
        &format!(
            "a process that chmod 000 keeps out of {} ({probe:?})",
            path.display()
        ),
        "as root the test runs `sweep` under `setpriv` (util-linux: apt-get install util-linux) without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; `make test` runs as root in CI",
    );
    false
}

/// A small tmpfs mounted at `path` (unmounted on drop), so that a test can fill a disk.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts one of `size` (`mount -t tmpfs -o size=…`), or reports it missing.
    #[track_caller]
    pub fn mount(path: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&path).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => format!("mount: {e}"),
                };
                missing(
                    &format!("a {size} tmpfs at {} ({why})", path.display()),
                    "mounting needs root (CAP_SYS_ADMIN): run `make test` as root, as CI does (in a container: --privileged or --cap-add SYS_ADMIN)",
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Debian's Chromium; installed with apt-get when `SWEEP_INSTALL_CHROMIUM=1`
/// (as `make test` sets) and root. None after [`missing`] otherwise.
#[track_caller]
pub fn chromium() -> Option<PathBuf> {
    let find = || {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Some(p);
    }
    const HOW: &str = "`make test` exports SWEEP_INSTALL_CHROMIUM=1 and, run as root (as CI does), this test then apt-get installs Debian's `chromium`";
    if std::env::var("SWEEP_INSTALL_CHROMIUM").as_deref() != Ok("1") {
        missing(
            "chromium is not installed and SWEEP_INSTALL_CHROMIUM is not 1",
            HOW,
        );
        return None;
    }
    if !is_root() {
        missing(
            "chromium is not installed, and SWEEP_INSTALL_CHROMIUM=1 needs root to apt-get install it",
            HOW,
        );
        return None;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-q", "chromium"]) {
        assert!(apt(&["update", "-q"]), "apt-get update failed");
        assert!(
            apt(&["install", "-y", "-q", "chromium"]),
            "apt-get install chromium failed"
        );
    }
    Some(find().expect("chromium installed but /usr/bin/chromium is missing"))
}

/// A running Slurm cluster that this user can submit to (`sinfo` answers and a
/// node is up): `make test` starts the single-node one of `scripts/slurm/`
/// (as root: Debian's slurmctld, slurmd and munge, two fake GPUs) and stops it
/// afterwards. [`missing`] (a failure under CI) and false otherwise.
#[track_caller]
pub fn slurm() -> bool {
    let out = Command::new("sinfo")
        .args(["-h", "-N", "-o", "%T"])
        .stdin(Stdio::null())
        .output();
    let why = match out {
        Ok(o) if o.status.success() => {
            let states = String::from_utf8_lossy(&o.stdout).to_string();
            if states.lines().any(|s| {
                ["idle", "mixed", "allocated", "completing"]
                    .iter()
                    .any(|w| s.trim().starts_with(w))
            }) {
                return true;
            }
            format!("no node up (sinfo states: {})", states.trim())
        }
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("sinfo: {e}"),
    };
    missing(
        &format!("a running Slurm cluster ({why})"),
        "`make test` starts one (scripts/slurm/start-slurm.sh --install, as root: apt-get installs slurmctld slurmd slurm-client munge) and stops it afterwards; by hand: sudo scripts/slurm/start-slurm.sh --install",
    );
    false
}

/// The pinned PyPI packages the export tests read their output back with.
pub const EXPORT_PACKAGES: &[&str] = &["tensorboard==2.21.0", "mlflow==3.17.2"];

/// The Python of a virtual environment holding [`EXPORT_PACKAGES`] (TensorBoard's
/// reader, MLflow's server and client): made on first use with `python3 -m venv`
/// and pip from PyPI, under `${XDG_CACHE_HOME:-~/.cache}/sweep/` (shared by every
/// clone and run, never in git). [`missing`] (a failure under CI) and None when
/// it cannot be made.
#[track_caller]
pub fn export_python() -> Option<PathBuf> {
    static MADE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = made.as_ref() {
        return Some(p.clone());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sweep");
    let name = format!(
        "export-venv-{}",
        EXPORT_PACKAGES.join("-").replace("==", "")
    );
    let venv = cache.join(&name);
    let python = venv.join("bin/python");
    if !python.exists() {
        const HOW: &str = "the test makes it with `python3 -m venv` and `pip install` from PyPI (needs python3 with venv and pip, and the network); `make test` and CI do the same";
        let partial = cache.join(format!("{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::create_dir_all(&cache);
        let run = |cmd: &mut Command| {
            cmd.stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    if o.status.success() {
                        Ok(())
                    } else {
                        Err(String::from_utf8_lossy(&o.stderr).into_owned())
                    }
                })
        };
        let made_now =
            run(Command::new("python3").arg("-m").arg("venv").arg(&partial)).and_then(|()| {
                run(Command::new(partial.join("bin/python"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(EXPORT_PACKAGES))
            });
        if let Err(why) = made_now {
            let _ = std::fs::remove_dir_all(&partial);
            missing(
                &format!("a Python venv with {} ({why})", EXPORT_PACKAGES.join(", ")),
                HOW,
            );
            return None;
        }
        // Another test process may have finished first: then its venv is kept.
        if std::fs::rename(&partial, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    *made = Some(python.clone());
    Some(python)
}
