//! Shared by the worker's integration tests that compare with PyTorch.
use std::path::PathBuf;

/// The Python with PyTorch 2.11 and torchvision that `make test` installs
/// (`SWEEP_PYTHON`, else the project's cache). Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SWEEP_PYTHON") {
        return p.into();
    }
    let cache =
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    let p = cache.join("sweep/torch-2.11.0/bin/python");
    assert!(p.exists(), "no Python with PyTorch 2.11 and torchvision: run the tests through `make test` (it installs one) or set SWEEP_PYTHON");
    p
}
