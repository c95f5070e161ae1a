//! The local launcher: each attempt is a `sweep-worker --job JSON` subprocess
//! on this machine (or the program named by `SWEEP_WORKER_CMD`: anything that
//! speaks the protocol, e.g. the scripted fake worker of the tests).
//!
//! Each worker runs in its own process group (so signals reach its threads and
//! children) and gets SIGKILL when the coordinator dies (PR_SET_PDEATHSIG), so
//! no orphan keeps a GPU busy. GPUs are found with `nvidia-smi` plus a probe
//! worker; the coordinator itself never initialises CUDA.
use super::{
    Attempt, AttemptControl, BoxFuture, ExitStatus, LaunchSpec, Launcher, Slot, SlotRequest,
    StdinLines, slots_for,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// `sweep-worker` could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find the worker program `sweep-worker` (looked at: {}); install it beside `sweep` (`make install`), put it on PATH, or set SWEEP_WORKER=/path/to/sweep-worker",
    looked.join(", ")
)]
pub struct WorkerNotFound {
    pub looked: Vec<String>,
}

pub const WORKER_NAME: &str = "sweep-worker";

/// Finds `sweep-worker`: `SWEEP_WORKER` if set, else beside this executable,
/// else on `PATH`.
pub fn find_worker() -> Result<PathBuf, WorkerNotFound> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("SWEEP_WORKER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(WorkerNotFound {
            looked: vec![format!(
                "SWEEP_WORKER={} (not an executable file)",
                p.display()
            )],
        });
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join(WORKER_NAME);
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(p.display().to_string());
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(WORKER_NAME);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    looked.push("$PATH".into());
    Err(WorkerNotFound { looked })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `sweep-worker probe` and parses its one JSON line.
pub async fn probe(worker: &Path) -> Option<sweep_protocol::ProbeInfo> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(worker)
            .arg("probe")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// GPU names via nvidia-smi (never CUDA in this process).
pub fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub struct LocalLauncher {
    /// The worker (None: a `[program]` sweep on a machine without `sweep-worker`).
    program: Option<PathBuf>,
    /// The real `sweep-worker` (probe-able) rather than a `SWEEP_WORKER_CMD` stand-in.
    real_worker: bool,
    /// `sweep-worker probe`, run at most once (it loads libtorch: ~1 s).
    probed: tokio::sync::OnceCell<Option<sweep_protocol::ProbeInfo>>,
}

impl LocalLauncher {
    /// The real worker's probe, shared by GPU detection and `describe`.
    async fn probe_once(&self) -> Option<&sweep_protocol::ProbeInfo> {
        if !self.real_worker {
            return None;
        }
        self.probed
            .get_or_init(|| async {
                match &self.program {
                    Some(p) => probe(p).await,
                    None => None,
                }
            })
            .await
            .as_ref()
    }

    /// `SWEEP_WORKER_CMD` when set, else the `sweep-worker` that [`find_worker`] finds.
    pub fn from_env() -> Result<LocalLauncher, WorkerNotFound> {
        if let Some(cmd) = std::env::var_os("SWEEP_WORKER_CMD").filter(|c| !c.is_empty()) {
            return Ok(LocalLauncher {
                program: Some(cmd.into()),
                real_worker: false,
                probed: Default::default(),
            });
        }
        Ok(LocalLauncher {
            program: Some(find_worker()?),
            real_worker: true,
            probed: Default::default(),
        })
    }

    /// For a `[program]` sweep: the worker is only asked how many GPUs CUDA
    /// sees, when there is one; without it `nvidia-smi -L` counts them.
    pub fn for_programs() -> LocalLauncher {
        let worker = find_worker().ok();
        LocalLauncher {
            real_worker: worker.is_some(),
            program: worker,
            probed: Default::default(),
        }
    }

    /// GPU ids to use ([`gpu_ids`]). `SWEEP_FAKE_GPUS=N` pretends N GPUs exist (scheduling
    /// tests); otherwise no `nvidia-smi` means no GPU, else a probe worker counts
    /// the devices that CUDA sees (honouring `CUDA_VISIBLE_DEVICES`).
    async fn detect_gpus(&self, wanted: Option<&[u32]>) -> Vec<String> {
        if let Some(n) = std::env::var("SWEEP_FAKE_GPUS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        {
            return gpu_ids(None, n, wanted);
        }
        let smi = tokio::process::Command::new("nvidia-smi")
            .arg("-L")
            .stdin(Stdio::null())
            .output()
            .await;
        let listed = match &smi {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count() as u32,
            _ => return vec![],
        };
        let count = if self.real_worker {
            self.probe_once()
                .await
                .map(|p| p.cuda_devices.max(0) as u32)
                .unwrap_or(0)
        } else if self.program.is_none() {
            // No worker to ask: the GPUs nvidia-smi lists, as far as the
            // coordinator's CUDA_VISIBLE_DEVICES lets programs see them.
            match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) if !v.trim().is_empty() => listed.min(v.split(',').count() as u32),
                Ok(_) => 0,
                Err(_) => listed,
            }
        } else {
            return vec![];
        };
        gpu_ids(
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
            count,
            wanted,
        )
    }
}

/// The GPUs to schedule on, as each worker's `CUDA_VISIBLE_DEVICES` must
/// name them, given the coordinator's own `CUDA_VISIBLE_DEVICES` (`visible`)
/// and the `count` devices the probe saw under it. CUDA uses that list's
/// tokens in order up to the first it cannot use, so the devices are its
/// first `count` tokens (host indices, `GPU-…` UUIDs or `MIG-…` ids, passed on
/// as written); without the variable, ordinal i is host index i.
///
/// `wanted` (`[resources] gpus`) names host indices while every token is one
/// (or the variable is unset); once a UUID or MIG id is among them, it names
/// positions in the list (0 = its first device).
fn gpu_ids(visible: Option<&str>, count: u32, wanted: Option<&[u32]>) -> Vec<String> {
    let tokens: Vec<String> = match visible.filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .split(',')
            .map(|t| t.trim().to_string())
            .take(count as usize)
            .collect(),
        None => (0..count).map(|i| i.to_string()).collect(),
    };
    let Some(wanted) = wanted else { return tokens };
    let host: Option<Vec<u32>> = tokens.iter().map(|t| t.parse().ok()).collect();
    let names: Vec<u32> = host.unwrap_or_else(|| (0..tokens.len() as u32).collect());
    wanted
        .iter()
        .filter_map(|w| names.iter().position(|n| n == w))
        .map(|i| tokens[i].clone())
        .collect()
}

/// Signals the worker's process group (pgid = pid, set at spawn).
struct GroupControl {
    pid: Option<u32>,
    /// The worker's piped stdin (protocol 2 `stop` lines).
    stdin: Option<StdinLines>,
}

impl GroupControl {
    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid {
            // SAFETY: plain kill(2) on the worker's own process group.
            unsafe {
                libc::kill(-(pid as i32), sig);
            }
        }
    }
}

impl AttemptControl for GroupControl {
    fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }
    fn kill(&self) {
        self.signal(libc::SIGKILL);
    }
    fn group_alive(&self) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the group exists.
        self.pid
            .is_some_and(|pid| unsafe { libc::kill(-(pid as i32), 0) } == 0)
    }
    fn pid(&self) -> Option<u32> {
        self.pid
    }
    fn stdin(&self) -> Option<&StdinLines> {
        self.stdin.as_ref()
    }
}

impl Launcher for LocalLauncher {
    fn slots<'a>(&'a self, request: &'a SlotRequest) -> BoxFuture<'a, Vec<Slot>> {
        Box::pin(async move {
            let gpus = self.detect_gpus(request.gpus.as_deref()).await;
            slots_for(&gpus, request)
        })
    }

    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        Box::pin(async move {
            let probe = self.probe_once().await;
            serde_json::json!({
                "worker": self.program.as_ref().map(|p| p.display().to_string()),
                "libtorch": probe.as_ref().map(|p| p.libtorch.clone()),
                "cuda": probe.as_ref().and_then(|p| p.libtorch.split_once('+').map(|(_, v)| v.to_string())),
                "gpus": gpu_names(),
            })
        })
    }

    fn start(&self, spec: &LaunchSpec) -> std::io::Result<Attempt> {
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = super::open_log(&spec.log_path)?;
        let mut cmd = match &spec.program {
            Some(p) => {
                let mut cmd = tokio::process::Command::new(&p.argv[0]);
                cmd.args(&p.argv[1..]).envs(p.env.iter().cloned());
                if let Some(w) = &p.workdir {
                    cmd.current_dir(w);
                }
                cmd
            }
            None => {
                let job = serde_json::to_string(&spec.job).map_err(std::io::Error::other)?;
                let mut cmd = tokio::process::Command::new(
                    self.program
                        .as_ref()
                        .ok_or_else(|| std::io::Error::other(WorkerNotFound { looked: vec![] }))?,
                );
                cmd.arg("--job").arg(job);
                cmd
            }
        };
        match &spec.slot {
            Slot::Gpu { id, .. } => {
                cmd.env("CUDA_VISIBLE_DEVICES", id);
            }
            Slot::Cpu { .. } | Slot::Slurm { .. } => {
                // Keep a CPU trial off the GPUs entirely.
                cmd.env("CUDA_VISIBLE_DEVICES", "");
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        // The coordinator's pid, taken before the fork: the child compares its
        // parent with it. (Comparing with 1 would kill every worker when the
        // coordinator itself is PID 1, as in `docker run` without --init.)
        let coordinator = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The coordinator may have died before prctl took effect.
                if libc::getppid() as u32 != coordinator {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("worker has no stdout"))?;
        let stdin = child.stdin.take().map(StdinLines::spawn);
        let control = Arc::new(GroupControl {
            pid: child.id(),
            stdin,
        });
        let exit = Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            let s = child.wait().await?;
            Ok(ExitStatus {
                code: s.code(),
                signal: s.signal(),
            })
        });
        Ok(Attempt {
            stdout: Box::pin(stdout),
            control,
            exit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::gpu_ids as ids;

    #[test]
    fn gpu_ids_without_cuda_visible_devices_are_the_ordinals() {
        assert_eq!(ids(None, 3, None), ["0", "1", "2"]);
        assert_eq!(ids(Some(""), 2, None), ["0", "1"]);
        assert_eq!(ids(Some("  "), 2, None), ["0", "1"]);
        assert!(ids(None, 0, None).is_empty());
    }

    #[test]
    fn gpu_ids_pass_each_child_the_parents_token() {
        // Integer lists: the children get the host's indices, as before.
        assert_eq!(ids(Some("2,3"), 2, None), ["2", "3"]);
        // UUIDs and MIG instances, exactly as the parent wrote them.
        assert_eq!(
            ids(Some("GPU-aaa,GPU-bbb"), 2, None),
            ["GPU-aaa", "GPU-bbb"]
        );
        assert_eq!(ids(Some("MIG-x"), 1, None), ["MIG-x"]);
        assert_eq!(
            ids(Some("MIG-GPU-8f6c/1/0,MIG-GPU-8f6c/2/0"), 2, None),
            ["MIG-GPU-8f6c/1/0", "MIG-GPU-8f6c/2/0"]
        );
        // Whitespace around tokens is not part of them.
        assert_eq!(ids(Some(" GPU-aaa , 3 "), 2, None), ["GPU-aaa", "3"]);
        assert_eq!(ids(Some(" 1 , 0"), 2, None), ["1", "0"]);
    }

    #[test]
    fn gpu_ids_are_the_first_count_tokens() {
        // CUDA stops at the first token it cannot use: the probe's count says how many it used.
        assert_eq!(ids(Some("2,3,bogus,5"), 2, None), ["2", "3"]);
        assert_eq!(ids(Some("GPU-aaa,GPU-bbb,GPU-ccc"), 1, None), ["GPU-aaa"]);
        assert!(ids(Some("GPU-aaa,GPU-bbb"), 0, None).is_empty());
        assert!(ids(Some("-1"), 0, None).is_empty());
    }

    #[test]
    fn gpu_ids_wanted_names_host_indices_or_visible_ordinals() {
        // No CUDA_VISIBLE_DEVICES: host index = ordinal.
        assert_eq!(ids(None, 4, Some(&[0, 2])), ["0", "2"]);
        assert_eq!(ids(None, 2, Some(&[1, 5])), ["1"]);
        // An integer list: `gpus` names host indices, as documented.
        assert_eq!(ids(Some("2,3"), 2, Some(&[3])), ["3"]);
        assert!(ids(Some("2,3"), 2, Some(&[0, 1])).is_empty());
        // UUIDs or MIG ids: `gpus` names positions in CUDA_VISIBLE_DEVICES.
        assert_eq!(
            ids(Some("GPU-aaa,GPU-bbb,GPU-ccc"), 3, Some(&[2, 0])),
            ["GPU-ccc", "GPU-aaa"]
        );
        assert_eq!(ids(Some("GPU-aaa,GPU-bbb"), 2, Some(&[1, 7])), ["GPU-bbb"]);
        assert_eq!(ids(Some("1,MIG-x"), 2, Some(&[1])), ["MIG-x"]);
        // Only what the probe saw counts.
        assert!(ids(Some("GPU-aaa,GPU-bbb"), 1, Some(&[1])).is_empty());
    }
}
