//! The launcher: the seam between "what to run" (the dispatcher) and "where
//! it runs" (a local subprocess, `local`; an `srun` job or step, `slurm`).
//! The dispatcher sees only this trait: it asks for slots, starts attempts,
//! reads their stdout lines, asks them to stop, kills them and waits for
//! their exit.
//! Everything that touches processes, signals or GPUs lives behind it; the
//! dispatcher never calls libc or nvidia-smi itself.
pub mod local;
pub mod slurm;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use sweep_protocol::WorkerJob;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a trial runs: a GPU (its id in `CUDA_VISIBLE_DEVICES`: the host's
/// index, a `GPU-…` UUID or a `MIG-…` id, as the coordinator's own
/// `CUDA_VISIBLE_DEVICES` names it) or a CPU lane.
/// `Slurm`: a trial in flight on Slurm, whose node and GPUs Slurm picks; they
/// are recorded once known ([`Placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Gpu { id: String, lane: u32 },
    Cpu { lane: u32 },
    Slurm { lane: u32 },
}

impl Slot {
    /// The physical device label recorded in `attempts.device`.
    pub fn label(&self) -> String {
        match self {
            Slot::Gpu { id, .. } => format!("cuda:{id}"),
            Slot::Cpu { .. } => "cpu".into(),
            Slot::Slurm { .. } => "slurm".into(),
        }
    }
}

/// The GPUs among `slots`, once each (their lane 0), in order.
pub fn gpus_of<'a>(slots: impl IntoIterator<Item = &'a Slot>) -> Vec<&'a str> {
    slots
        .into_iter()
        .filter_map(|s| {
            if let Slot::Gpu { id, lane: 0 } = s {
                Some(id.as_str())
            } else {
                None
            }
        })
        .collect()
}

/// What slots a sweep may use: `[resources]` of the plan, in launcher terms.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRequest {
    /// `None` = every GPU the launcher finds; `Some(list)` = only these indices
    /// (host indices, or positions in a `CUDA_VISIBLE_DEVICES` of UUIDs: `local::gpu_ids`).
    pub gpus: Option<Vec<u32>>,
    pub trials_per_gpu: u32,
    /// CPU lanes when no GPU is found.
    pub cpu_workers: u32,
}

/// A user's program (`[program]`) in place of `sweep-worker`, resolved for
/// one attempt: argv with its placeholders filled, the `SWEEP_*` variables
/// and `[program] env`, the working directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramRun {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    /// `SWEEP_PARAMS`: the file and its JSON, written before the attempt starts.
    pub params: (PathBuf, String),
}

/// Everything needed to start one attempt.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The attempt's trial, sweep and folder (`out_dir`); the built-in
    /// worker's whole job. For a program its `config` is not used.
    pub job: WorkerJob,
    /// Run this program instead of the worker (`[program]`).
    pub program: Option<ProgramRun>,
    pub slot: Slot,
    /// stderr of the worker goes here (results/<sweep>/<trial>/attempt-N.log).
    pub log_path: PathBuf,
}

/// A new, empty attempt log, opened for appending: the process's stderr
/// and the coordinator's copy of a program's stdout log lines both go to its
/// end, never over each other.
pub fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

/// How an attempt's process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Stop requests for one running attempt; cheap to clone and callable from
/// the dispatcher while another task reads the attempt's output.
pub trait AttemptControl: Send + Sync {
    /// Ask the attempt to stop at a clean point (SIGTERM to its process group).
    fn terminate(&self);
    /// Whether any process of the attempt's process group is still alive
    /// (after its leader exited: children it left behind). A launcher that
    /// cannot tell says false.
    fn group_alive(&self) -> bool {
        false
    }
    /// Stop it now (SIGKILL to its process group).
    fn kill(&self);
    /// The OS process id, when there is one (recorded in `attempts.pid`).
    fn pid(&self) -> Option<u32>;
    /// Where the attempt landed, once known (Slurm: node, GPUs, job id).
    fn placement(&self) -> Option<Placement> {
        None
    }
    /// After the process ended: why, as the scheduler outside saw it (Slurm's
    /// job state: timeout, preempted, cancelled), when that overrides what the
    /// exit status says. `worker_interrupted`: SIGTERM stopped the worker (it
    /// reported the stop, or died of the signal before its handler was set).
    fn end_state(
        &self,
        _worker_interrupted: bool,
    ) -> BoxFuture<'_, Option<(crate::store::FailureClass, String)>> {
        Box::pin(async { None })
    }
    /// Lines to the worker's stdin (protocol 2: early-stopping `stop`), when
    /// the launcher has a pipe to it. Without one, the dispatcher falls back
    /// on `terminate`.
    fn stdin(&self) -> Option<&StdinLines> {
        None
    }
}

/// Where a launched attempt really runs (`attempts.node`, `.gpus`, `.slurm_job`, `.device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// GPU ids the job got (`SLURM_STEP_GPUS`, else `CUDA_VISIBLE_DEVICES`), "" for none.
    pub gpus: String,
    /// "JOBID" or "JOBID.STEPID".
    pub job: String,
    /// `cuda:<CUDA_VISIBLE_DEVICES>` or `cpu`.
    pub device: String,
}

/// The coordinator → worker line channel of one attempt. Any launcher that
/// spawns a child process with a piped stdin (the local one; `srun`, which
/// forwards its stdin to the task) provides it with
/// `StdinLines::spawn(child.stdin.take()?)`: a task writes each line and
/// flushes, so the dispatcher never blocks on a slow or dead pipe.
#[derive(Clone)]
pub struct StdinLines {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

impl StdinLines {
    /// Must be called inside the tokio runtime (`Launcher::start` is).
    pub fn spawn<W: tokio::io::AsyncWrite + Send + Unpin + 'static>(mut w: W) -> StdinLines {
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if w.write_all(line.as_bytes()).await.is_err() || w.flush().await.is_err() {
                    break; // the worker is gone; its exit is reported elsewhere
                }
            }
        });
        StdinLines { tx }
    }

    /// Queues one line (without its newline); false when the pipe is known closed.
    pub fn send(&self, line: String) -> bool {
        self.tx.send(line).is_ok()
    }
}

/// One started attempt.
pub struct Attempt {
    /// The worker's stdout: protocol lines.
    pub stdout: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    pub control: Arc<dyn AttemptControl>,
    /// Resolves when the attempt's process has exited.
    pub exit: BoxFuture<'static, std::io::Result<ExitStatus>>,
}

pub trait Launcher: Send + Sync {
    /// The slots to schedule on (GPUs, or CPU lanes when there is none).
    fn slots<'a>(&'a self, request: &'a SlotRequest) -> BoxFuture<'a, Vec<Slot>>;
    /// Starts one attempt; its stdout must be readable through `Attempt::stdout`.
    fn start(&self, spec: &LaunchSpec) -> std::io::Result<Attempt>;
    /// Facts about the worker and the machine for `sweeps.system_info`.
    fn describe(&self) -> BoxFuture<'_, serde_json::Value>;
    /// Called once when the run ends (all attempts have exited, the sweep
    /// lock still held): release whatever outlives attempts (Slurm jobs).
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// `cpu_workers = "auto"`: one CPU trial per core, each then on one torch
/// thread (on few cores, trials side by side use the machine better than one
/// trial's intra-op threads do: `bench/sweep-vs-pytorch.sh`), but no more
/// trials than there are to run (a lone trial keeps every core) and no more
/// than `mem_available` holds at `per_trial` bytes each. At least one.
pub fn auto_cpu_workers(
    cores: u32,
    to_run: usize,
    mem_available: Option<u64>,
    per_trial: u64,
) -> u32 {
    let by_memory = mem_available
        .map(|m| (m / per_trial.max(1)).min(u32::MAX as u64) as u32)
        .unwrap_or(u32::MAX);
    cores
        .min(to_run.min(u32::MAX as usize) as u32)
        .min(by_memory)
        .max(1)
}

/// Memory the kernel says can be given to new processes without swapping
/// (`MemAvailable` of /proc/meminfo), if it says.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Expands GPU ids into slots (`trials_per_gpu` lanes each), or CPU lanes.
pub fn slots_for(gpus: &[String], request: &SlotRequest) -> Vec<Slot> {
    if gpus.is_empty() {
        (0..request.cpu_workers)
            .map(|lane| Slot::Cpu { lane })
            .collect()
    } else {
        gpus.iter()
            .flat_map(|id| {
                (0..request.trials_per_gpu).map(move |lane| Slot::Gpu {
                    id: id.clone(),
                    lane,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    #[test]
    fn auto_cpu_workers_is_a_trial_per_core_within_the_trials_and_memory() {
        // Two cores, four trials, plenty of memory: two at once (one thread each).
        assert_eq!(auto_cpu_workers(2, 4, Some(22 * GB), GB), 2);
        // A lone trial keeps every core.
        assert_eq!(auto_cpu_workers(16, 1, Some(64 * GB), GB), 1);
        assert_eq!(auto_cpu_workers(16, 3, Some(64 * GB), GB), 3);
        // Memory for three trials only.
        assert_eq!(auto_cpu_workers(16, 20, Some(16 * GB), 5 * GB), 3);
        // Never none, even when memory says not even one.
        assert_eq!(auto_cpu_workers(8, 5, Some(GB), 5 * GB), 1);
        assert_eq!(auto_cpu_workers(8, 0, None, GB), 1);
        // Memory unknown: cores and trials decide.
        assert_eq!(auto_cpu_workers(4, 9, None, GB), 4);
    }

    #[test]
    fn mem_available_reads_proc_meminfo() {
        let m = mem_available().expect("Linux has MemAvailable in /proc/meminfo");
        assert!(m > 0);
    }
}
