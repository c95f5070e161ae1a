//! How a worker process gets started. The scheduler only sees this trait, so
//! a Slurm `srun` launcher can slot in beside the local one.
pub mod local;

use crate::config::WorkerJob;
use std::path::PathBuf;

/// Where a trial runs: a GPU index (as the host numbers it) or the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Gpu { index: u32, lane: u32 },
    Cpu { lane: u32 },
}

impl Slot {
    pub fn label(&self) -> String {
        match self {
            Slot::Gpu { index, .. } => format!("cuda:{index}"),
            Slot::Cpu { .. } => "cpu".into(),
        }
    }
}

/// Everything needed to start one attempt.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub job: WorkerJob,
    pub slot: Slot,
    /// stderr of the worker goes here (results/<sweep>/<trial>/attempt-N.log).
    pub log_path: PathBuf,
}

pub trait Launcher: Send + Sync {
    /// Starts the worker with stdout piped; it must run in its own process group.
    fn launch(&self, spec: &LaunchSpec) -> std::io::Result<tokio::process::Child>;
}
