//! A trial folder on disk, for everyone above the worker: what stays once a
//! trial is done ([`retention`]), the float16 rewrite of kept weights
//! ([`precision`]) and the `keep` settings themselves ([`Keep`],
//! [`KeepPrecision`]). The file names are `sweep_protocol::trial_dir`'s.
//!
//! A crate of its own so that the coordinator (which applies it after a trial)
//! and the views (`sweep show` lists what a trial holds) share it without the
//! views depending on the coordinator.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
mod keep;
pub mod precision;
pub mod retention;

pub use keep::{Keep, KeepPrecision};

/// Writes `bytes` to `path` so that `path` is always the old file or the new
/// one, never a part, even across a crash: through `tmp` (in the same folder),
/// fsynced, renamed into place, then the folder fsynced. `tmp` is removed when
/// anything fails. The one atomic write of the coordinator and the views.
pub fn write_atomic(
    tmp: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    let written = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // The rename is durable once the folder is synced; a failure here leaves a
    // valid file either way.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
