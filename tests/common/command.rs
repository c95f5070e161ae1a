//! `sweep` command lines, their outcome, and coordinators running in the background.
use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, fake_worker, prerequisites};

/// A bare `sweep ARGS…` (no `--db`): `data demo`, `data show`, `doctor`,
/// `predict --weights …`. [`Scratch::sweep`](super::Scratch::sweep) adds the
/// scratch folder's database.
pub fn sweep(args: &[&str]) -> Sweep {
    Sweep {
        wrapper: Vec::new(),
        db: None,
        args: args.iter().map(OsString::from).collect(),
        results: None,
        cwd: None,
        fake_dir: None,
        env: Vec::new(),
        label: None,
    }
}

/// One `sweep` command line. Every one runs with stdin null and without the
/// caller's `SWEEP_DB`; `run` commands of a scratch folder add `--results DIR
/// --plain` at the end.
pub struct Sweep {
    wrapper: Vec<OsString>,
    db: Option<PathBuf>,
    args: Vec<OsString>,
    results: Option<PathBuf>,
    cwd: Option<PathBuf>,
    fake_dir: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
    label: Option<String>,
}

impl Sweep {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Sweep {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Sweep {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `--db PATH` (instead of the scratch folder's).
    pub fn db(mut self, path: impl Into<PathBuf>) -> Sweep {
        self.db = Some(path.into());
        self
    }

    /// `--results DIR --plain` after the other arguments.
    pub fn results(mut self, dir: impl Into<PathBuf>) -> Sweep {
        self.results = Some(dir.into());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Sweep {
        self.cwd = Some(dir.into());
        self
    }

    pub(super) fn fake_dir(mut self, dir: PathBuf) -> Sweep {
        self.fake_dir = Some(dir);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Sweep {
        self.env.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Sweep {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Sweep {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    /// Trials run by `tests/fake_worker.py` in `FAKE_MODE` `mode`, reporting
    /// to the scratch folder's `fake/` (`FAKE_DIR`), with no GPUs
    /// (`SWEEP_FAKE_GPUS=0`) and none of `CUDA_VISIBLE_DEVICES` or `FAKE_*`
    /// from the caller's environment. Set further `FAKE_*` after this.
    pub fn fake_worker(mut self, mode: &str) -> Sweep {
        for v in [
            "CUDA_VISIBLE_DEVICES",
            "FAKE_MODE",
            "FAKE_BARRIER",
            "FAKE_STEPS",
            "FAKE_TIMEOUT",
            "FAKE_PROTOCOL",
            "FAKE_DIR",
        ] {
            self = self.env_remove(v);
        }
        if let Some(dir) = self.fake_dir.clone() {
            std::fs::create_dir_all(&dir).expect("create FAKE_DIR");
            self = self.env("FAKE_DIR", dir);
        }
        self.worker(&fake_worker()).env("FAKE_MODE", mode)
    }

    /// Trials run by another stand-in worker (`SWEEP_WORKER_CMD`), with no GPUs.
    pub fn worker(self, cmd: &Path) -> Sweep {
        self.env("SWEEP_WORKER_CMD", cmd)
            .env("SWEEP_FAKE_GPUS", "0")
    }

    /// Runs `sweep` through another program: `PROGRAM ARGS… sweep …`.
    pub fn wrapped_in(mut self, prefix: &[&str]) -> Sweep {
        self.wrapper = prefix.iter().map(OsString::from).collect();
        self
    }

    /// As root, runs `sweep` and the workers it starts without the
    /// capabilities that let root read any file, so that a chmod 000 file is
    /// unreadable to them as to any user. See [`prerequisites::unreadable`].
    pub fn without_read_override(self) -> Sweep {
        if prerequisites::is_root() {
            self.wrapped_in(prerequisites::DROP_READ_OVERRIDE)
        } else {
            self
        }
    }

    /// The name assertion messages give this command (default: its arguments).
    pub fn label(mut self, what: impl Into<String>) -> Sweep {
        self.label = Some(what.into());
        self
    }

    fn what(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            let args: Vec<String> = self
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("sweep {}", args.join(" "))
        })
    }

    pub fn command(&self) -> Command {
        let mut c = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        if let Some(db) = &self.db {
            c.arg("--db").arg(db);
        }
        c.args(&self.args);
        if let Some(results) = &self.results {
            c.arg("--results").arg(results).arg("--plain");
        }
        if let Some(dir) = &self.cwd {
            c.current_dir(dir);
        }
        c.env_remove("SWEEP_DB").stdin(Stdio::null());
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs to the end.
    pub fn output(self) -> Out {
        let started = Instant::now();
        let o = self
            .command()
            .output()
            .unwrap_or_else(|e| panic!("start `{}`: {e}", self.what()));
        Out::new(self.what(), o.status, o.stdout, o.stderr, started.elapsed())
    }

    /// Runs to the end, killed (and the test failed) past `limit`.
    pub fn output_within(self, limit: Duration) -> Out {
        self.spawn().finish_within(limit)
    }

    /// Starts in the background; stdout and stderr go to files, so that a
    /// chatty run never blocks on a full pipe.
    pub fn spawn(self) -> Running {
        let stdout = tempfile::NamedTempFile::new().expect("a stdout file");
        let stderr = tempfile::NamedTempFile::new().expect("a stderr file");
        let mut c = self.command();
        c.stdout(stdout.reopen().expect("stdout file"))
            .stderr(stderr.reopen().expect("stderr file"));
        let started = Instant::now();
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("start `{}`: {e}", self.what()));
        Running {
            child,
            what: self.what(),
            stdout,
            stderr,
            started,
            read: 0,
            pending: Vec::new(),
        }
    }
}

/// How a command ended, and what it printed.
pub struct Out {
    pub what: String,
    /// None when a signal ended it (see `signal`).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
    pub elapsed: Duration,
}

impl Out {
    fn new(
        what: String,
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        elapsed: Duration,
    ) -> Out {
        Out {
            what,
            code: status.code(),
            signal: status.signal(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            raw_stdout: stdout,
            elapsed,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// A panic message, or exit 101 (Rust's panic exit code).
    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked") || self.code == Some(101)
    }

    /// The command, its exit and both outputs: for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "`{}`: exit {:?} (signal {:?})\nstdout:\n{}\nstderr:\n{}",
            self.what, self.code, self.signal, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn expect_success(&self) -> &Out {
        assert!(self.succeeded(), "expected success: {}", self.report());
        self
    }

    #[track_caller]
    pub fn expect_exit(&self, code: i32) -> &Out {
        assert_eq!(self.code, Some(code), "exit code: {}", self.report());
        self
    }

    /// Any exit but 0.
    #[track_caller]
    pub fn expect_failure(&self) -> &Out {
        assert!(!self.succeeded(), "expected a failure: {}", self.report());
        self
    }

    /// No panic, whatever the exit code.
    #[track_caller]
    pub fn expect_no_panic(&self) -> &Out {
        assert!(
            !self.stderr.contains("panicked"),
            "{}: panicked\nstderr:\n{}",
            self.what,
            self.stderr
        );
        assert_ne!(
            self.code,
            Some(101),
            "{}: exit 101 (a panic)\nstderr:\n{}",
            self.what,
            self.stderr
        );
        self
    }

    /// No panic, exit `code`, and a stderr that says every one of `says`.
    #[track_caller]
    pub fn expect_error(&self, code: i32, says: &[&str]) -> &Out {
        self.expect_no_panic().expect_exit(code);
        for s in says {
            assert!(
                self.stderr.contains(s),
                "{}: stderr lacks {s:?}\nstderr:\n{}",
                self.what,
                self.stderr
            );
        }
        self
    }

    /// stdout, which must be UTF-8.
    #[track_caller]
    pub fn stdout_utf8(&self) -> &str {
        std::str::from_utf8(&self.raw_stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not UTF-8: {e}", self.what))
    }

    /// stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.raw_stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}):\n{}", self.what, self.stdout))
    }
}

/// A `sweep` started in the background. Dropping it kills the process if it
/// still runs, so that a failing test leaves no coordinator behind.
pub struct Running {
    child: Child,
    what: String,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
    started: Instant,
    /// How much of stderr `next_stderr_line` has read.
    read: u64,
    pending: Vec<u8>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends `sig` to the process.
    #[track_caller]
    pub fn signal(&self, sig: i32) {
        // SAFETY: signals the child this Running started and has not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    fn out(&self, status: ExitStatus) -> Out {
        let read = |f: &tempfile::NamedTempFile| std::fs::read(f.path()).unwrap_or_default();
        Out::new(
            self.what.clone(),
            status,
            read(&self.stdout),
            read(&self.stderr),
            self.started.elapsed(),
        )
    }

    /// How it ended, once it has.
    pub fn try_finish(&mut self) -> Option<Out> {
        let status = self.child.try_wait().expect("try_wait")?;
        Some(self.out(status))
    }

    /// Waits for the end, however long it takes.
    pub fn wait(mut self) -> Out {
        let status = self.child.wait().expect("wait");
        self.out(status)
    }

    /// Waits up to `limit`; past it, kills the process and fails the test.
    #[track_caller]
    pub fn finish_within(mut self, limit: Duration) -> Out {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(out) = self.try_finish() {
                return out;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` still running after {limit:?}; stderr:\n{}",
                    self.what,
                    std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then how it ended.
    pub fn kill(mut self) -> Out {
        self.child.kill().expect("kill");
        let status = self.child.wait().expect("wait");
        self.out(status)
    }

    /// The next line of stderr, waiting for it; None once the process has
    /// ended and every line was read.
    pub fn next_stderr_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let ended = self.child.try_wait().expect("try_wait").is_some();
            let mut f = std::fs::File::open(self.stderr.path()).expect("open the stderr file");
            f.seek(SeekFrom::Start(self.read)).expect("seek");
            let n = f
                .read_to_end(&mut self.pending)
                .expect("read the stderr file");
            self.read += n as u64;
            if n > 0 {
                continue;
            }
            if ended {
                return (!self.pending.is_empty()).then(|| {
                    String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// stderr lines up to the first that contains `needle`; fails the test if
    /// the process ends first.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, needle: &str) -> Vec<String> {
        self.wait_for_stderr_line(&format!("{needle:?}"), |l| l.contains(needle))
    }

    /// stderr lines up to the first `is_it` accepts; fails the test, naming
    /// `what` it waited for, if the process ends first.
    #[track_caller]
    pub fn wait_for_stderr_line(
        &mut self,
        what: &str,
        is_it: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.next_stderr_line() {
            let hit = is_it(&line);
            seen.push(line);
            if hit {
                return seen;
            }
        }
        panic!("`{}` ended before {what}:\n{}", self.what, seen.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as gone).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ESRCH),
            "kill({pid}, 0): {err}"
        );
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Waits up to `limit` for every one of `pids` to be gone; past it, SIGKILLs
/// the survivors and fails the test, `what` saying whose they are.
#[track_caller]
pub fn assert_all_die(pids: &[i32], limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if live.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &live {
                // SAFETY: cleans up the test's own stray workers before failing.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            panic!("{what}: processes {live:?} still alive {limit:?} after they should have died");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
