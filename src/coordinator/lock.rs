//! One coordinator per sweep: `results/<sweep>/.lock`, held with flock for the
//! life of the run. The kernel releases it if we die, so a kill -9 never
//! leaves a stale lock.
use super::RunError;
use std::path::Path;

pub struct SweepLock {
    _file: std::fs::File,
}

pub fn lock_sweep(results: &Path, sweep: &str) -> Result<SweepLock, RunError> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = results.join(sweep);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        RunError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot {what} {}: {e}", p.display()),
        ))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    // SAFETY: flock on a valid fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(RunError::AlreadyRunning {
            sweep: sweep.to_string(),
            pid: holder.trim().to_string(),
        });
    }
    file.set_len(0).map_err(|e| io("write", &path, e))?;
    write!(file, "{}", std::process::id()).map_err(|e| io("write", &path, e))?;
    Ok(SweepLock { _file: file })
}
