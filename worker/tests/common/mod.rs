//! Shared by the worker's integration tests.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use sweep_protocol::config::{Head, SelectMetric, TrialConfig, WorkerJob};

/// The Python with PyTorch 2.11 and torchvision that `make test` installs
/// (`SWEEP_PYTHON`, else the project's cache). Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SWEEP_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    let p = cache.join("sweep/torch-2.11.0/bin/python");
    assert!(
        p.exists(),
        "no Python with PyTorch 2.11 and torchvision: run the tests through `make test` (it installs one) or set SWEEP_PYTHON"
    );
    p
}

/// The smallest real training: resnet18 at 32 px, batches of 8, a bare linear
/// head, no augmentation, one epoch.
pub fn tiny_config() -> TrialConfig {
    TrialConfig {
        backbone: "resnet18".into(),
        lr: 0.01,
        epochs: 1,
        image_size: 32,
        batch_size: 8,
        head: Head::Mlp {
            hidden: vec![],
            dropout: 0.0,
        },
        augment: vec![],
        ..TrialConfig::default()
    }
}

/// A job for trial "t" of sweep "s" on one thread, without the shared decode cache.
pub fn job(data: &Path, out: &Path, config: TrialConfig, select: SelectMetric) -> WorkerJob {
    WorkerJob {
        trial: "t".into(),
        sweep: "s".into(),
        dataset: data.to_path_buf(),
        out_dir: out.to_path_buf(),
        threads: 1,
        config,
        select,
        dataset_hash: None,
        pause_after: None,
    }
}

/// libtorch's process-wide state (its random generator, its thread count),
/// for one in-process test at a time: a test that seeds the generator and
/// draws dropout masks from it is bit-exact only while no other test of
/// this binary builds a model (which draws initial weights) meanwhile.
pub fn torch_global() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
