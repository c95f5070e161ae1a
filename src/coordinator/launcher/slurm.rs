//! The Slurm launcher: every attempt is one `srun` whose stdout streams the
//! worker protocol back to this coordinator, which keeps the database on the
//! submit host. Two modes, one launcher:
//!
//! * outside an allocation (a login node): each attempt is its own job,
//!   `srun --job-name=sweep.<sweep>.<trial> … worker --job JSON`, which waits
//!   in the queue and then streams; at most `max_jobs` are in flight;
//! * inside one (`SLURM_JOB_ID` set: `sweep run` wrapped in `sbatch`/`salloc`),
//!   each attempt is an `srun --exact` step on the allocation's resources; at
//!   most what the allocation holds (GPUs / `gres`, CPUs / `cpus_per_trial`).
//!
//! Before the worker, a few lines of `sh` on the compute node print where the
//! attempt landed (node, job/step id, GPUs) as the first stdout line, which
//! this launcher takes out of the stream ([`Placement`], recorded in
//! `attempts`), and check that the trial directory, the dataset and the worker
//! binary (resolved once here, passed by absolute path) are visible there;
//! if not, the attempt ends with a protocol `error` of class `config` that
//! says what to fix.
//!
//! Stopping maps onto Slurm: `terminate` = `scancel --signal=TERM` (the worker
//! stops at a clean batch), `kill` = `scancel` (and SIGTERM to `srun`, which
//! kills its step at once). Each job asks for `--signal=TERM@N` before its
//! time limit, so a trial hitting `time` also stops cleanly. How an attempt
//! ended is read from Slurm after `srun` exits ([`SlurmControl::end_state`]):
//! `sacct` when accounting is on, else `scontrol show job` (finished jobs stay
//! known for MinJobAge, 300 s by default), and for steps without accounting
//! the `slurmstepd` line that Slurm writes to the attempt's log.
//!
//! Leftovers: jobs and steps are named `sweep.<sweep>.<trial>`. A coordinator
//! that starts (or ends) a run cancels every job and step of its sweep still in
//! `squeue` (they cannot be adopted: their protocol stream went to an `srun`
//! that is gone) and waits until they have left the queue, so that no stale
//! worker writes in a trial directory that a new attempt is using.
use super::local::{WorkerNotFound, find_worker};
use super::{
    Attempt, AttemptControl, BoxFuture, ExitStatus, LaunchSpec, Launcher, Placement, Slot,
    SlotRequest, StdinLines,
};
use crate::spec::slurm::SlurmSpec;
use crate::store::FailureClass;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The first stdout line of every attempt (see the module docs).
const SLOT_TAG: &str = "SWEEP-SLURM-SLOT";

/// Runs on the compute node before the worker: report the slot, check the
/// shared filesystem, then become the worker (so Slurm's signals reach it).
const PREAMBLE: &str = r#"dir=$1 data=$2 worker=$3 e_dir=$4 e_data=$5 e_worker=$6; shift 6
gpus=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}}
printf '%s node=%s job=%s step=%s gpus=%s cvd=%s\n' "$SWEEP_SLOT_TAG" "${SLURMD_NODENAME:-$(hostname -s)}" "${SLURM_JOB_ID:-}" "${SLURM_STEP_ID:-}" "$gpus" "${CUDA_VISIBLE_DEVICES:-}"
if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then printf '%s\n' "$e_dir"; exit 2; fi
if [ ! -d "$data" ] || [ ! -r "$data" ]; then printf '%s\n' "$e_data"; exit 2; fi
if [ -n "$worker" ] && [ ! -x "$worker" ]; then printf '%s\n' "$e_worker"; exit 2; fi
exec ${worker:+"$worker"} "$@"
"#;

/// How long a finished job's state may take to settle (COMPLETING → final).
const STATE_WAIT: Duration = Duration::from_secs(20);
/// How long cancelled jobs may take to leave `squeue`.
const GONE_WAIT: Duration = Duration::from_secs(15);

pub struct SlurmLauncher {
    spec: SlurmSpec,
    sweep: String,
    /// The worker program, absolute: the same path must work on the compute nodes.
    program: PathBuf,
    real_worker: bool,
    /// `SLURM_JOB_ID` of the allocation this coordinator runs in, if any.
    allocation: Option<String>,
    /// Our uid, to list and cancel only our own jobs.
    uid: u32,
    accounting: tokio::sync::OnceCell<bool>,
}

impl SlurmLauncher {
    /// `SWEEP_WORKER_CMD` when set, else the `sweep-worker` that [`find_worker`]
    /// finds; resolved here, once, to an absolute path.
    /// `programs`: a `[program]` sweep, whose attempts run the user's
    /// program (no worker needed).
    pub fn from_env(
        spec: SlurmSpec,
        sweep: &str,
        programs: bool,
    ) -> Result<SlurmLauncher, WorkerNotFound> {
        let (program, real_worker) =
            match std::env::var_os("SWEEP_WORKER_CMD").filter(|c| !c.is_empty()) {
                _ if programs => (PathBuf::new(), false),
                Some(cmd) => (PathBuf::from(cmd), false),
                None => (find_worker()?, true),
            };
        let program = std::fs::canonicalize(&program)
            .unwrap_or_else(|_| std::path::absolute(&program).unwrap_or(program));
        let allocation = std::env::var("SLURM_JOB_ID")
            .ok()
            .filter(|v| !v.trim().is_empty());
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Ok(SlurmLauncher {
            spec,
            sweep: sweep.to_string(),
            program,
            real_worker,
            allocation,
            uid,
            accounting: Default::default(),
        })
    }

    /// `sweep.<sweep>.`: every job and step of this sweep starts with it
    /// (sweep names have no dots, so no other sweep's name does).
    fn prefix(&self) -> String {
        format!("sweep.{}.", self.sweep)
    }

    fn job_name(&self, trial: &str) -> String {
        format!("{}{trial}", self.prefix())
    }

    /// Whether `sacct` has data (AccountingStorageType is not `none`).
    async fn accounting(&self) -> bool {
        *self
            .accounting
            .get_or_init(|| async {
                let out = output("scontrol", &["show", "config"])
                    .await
                    .unwrap_or_default();
                out.lines().any(|l| {
                    l.starts_with("AccountingStorageType") && !l.contains("accounting_storage/none")
                })
            })
            .await
    }

    /// Ids of our jobs and steps in `squeue` whose name marks them as this
    /// sweep's: whole jobs ("12") and, inside allocations, steps ("12.3").
    async fn ours(&self) -> Vec<String> {
        let uid = self.uid.to_string();
        let prefix = self.prefix();
        let mut ids = Vec::new();
        let jobs = output("squeue", &["-h", "-u", &uid, "-o", "%i|%j"])
            .await
            .unwrap_or_default();
        for l in jobs.lines() {
            if let Some((id, name)) = l.trim().split_once('|')
                && name.starts_with(&prefix)
            {
                ids.push(id.to_string());
            }
        }
        let steps = output("squeue", &["-h", "-s", "-u", &uid, "-o", "%i|%j"])
            .await
            .unwrap_or_default();
        for l in steps.lines() {
            if let Some((id, name)) = l.trim().split_once('|')
                && name.starts_with(&prefix)
                && !ids.iter().any(|j| id.split('.').next() == Some(j.as_str()))
            {
                ids.push(id.to_string());
            }
        }
        ids
    }

    /// Cancels every job and step of this sweep and waits (up to 15 s) until
    /// `squeue` lists none. Returns the ids cancelled.
    pub async fn cancel_all(&self) -> Vec<String> {
        let ids = self.ours().await;
        if ids.is_empty() {
            return ids;
        }
        let mut args: Vec<&str> = vec!["--signal=KILL"];
        args.extend(ids.iter().map(String::as_str));
        let _ = output("scancel", &args).await;
        let _ = output(
            "scancel",
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        let deadline = Instant::now() + GONE_WAIT;
        while Instant::now() < deadline && !self.ours().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ids
    }

    /// Trials in flight: `max_jobs`, and inside an allocation no more than it holds.
    async fn capacity(&self) -> u32 {
        let Some(job) = &self.allocation else {
            return self
                .spec
                .max_jobs
                .unwrap_or(crate::spec::slurm::DEFAULT_MAX_JOBS);
        };
        let show = output("scontrol", &["show", "job", "-o", job])
            .await
            .unwrap_or_default();
        let tres = field(&show, "AllocTRES")
            .or_else(|| field(&show, "TRES"))
            .unwrap_or_default();
        let count = |key: &str| {
            tres.split(',')
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.parse::<u32>().ok()))
        };
        let mut fit = u32::MAX;
        if self.spec.gpus_per_trial > 0 {
            // AllocTRES counts GPUs only where accounting tracks gres/gpu; else
            // TresPerNode ("gres:gpu:2", "gres/gpu:a100:2") times the nodes, else the job's environment.
            let nodes: u32 = field(&show, "NumNodes")
                .and_then(|v| v.split('-').next().and_then(|n| n.parse().ok()))
                .unwrap_or(1);
            let per_node = field(&show, "TresPerNode").and_then(|t| {
                t.split(',').find_map(|g| {
                    let g = g
                        .strip_prefix("gres:gpu")
                        .or_else(|| g.strip_prefix("gres/gpu"))?;
                    g.rsplit(':')
                        .next()
                        .and_then(|n| n.parse::<u32>().ok())
                        .or(Some(1))
                })
            });
            let env = std::env::var("SLURM_GPUS_ON_NODE")
                .ok()
                .and_then(|v| v.parse::<u32>().ok());
            let gpus = count("gres/gpu=")
                .or(per_node.map(|g| g * nodes))
                .or(env.map(|g| g * nodes))
                .unwrap_or(0);
            fit = fit.min(gpus.checked_div(self.spec.gpus_per_trial).unwrap_or(0));
        }
        if let Some(cpus) =
            count("cpu=").or_else(|| field(&show, "NumCPUs").and_then(|v| v.parse().ok()))
        {
            fit = fit.min(cpus / self.spec.cpus_per_trial.unwrap_or(1));
        }
        let fit = if fit == u32::MAX { 1 } else { fit.max(1) };
        self.spec.max_jobs.map_or(fit, |m| m.min(fit))
    }

    /// `srun`'s options for one attempt (before the program).
    fn srun_args(&self, name: &str) -> Vec<String> {
        let s = &self.spec;
        let mut a = vec![
            format!("--job-name={name}"),
            "--nodes=1".into(),
            "--ntasks=1".into(),
        ];
        if self.allocation.is_some() {
            // A step on exactly the resources it asks for, so steps run side by side.
            a.push("--exact".into());
        } else {
            a.extend(s.partition.iter().map(|p| format!("--partition={p}")));
            a.extend(s.account.iter().map(|p| format!("--account={p}")));
            a.extend(s.qos.iter().map(|p| format!("--qos={p}")));
        }
        a.extend(s.gres.iter().map(|g| format!("--gres={g}")));
        match (s.cpus_per_trial, self.allocation.is_some()) {
            (Some(c), _) => a.push(format!("--cpus-per-task={c}")),
            // A step would otherwise take the batch job's SLURM_CPUS_PER_TASK (Slurm ≥ 23.11): all of it.
            (None, true) => a.push("--cpus-per-task=1".into()),
            (None, false) => {}
        }
        a.extend(s.mem.iter().map(|m| format!("--mem={m}")));
        if let (Some(m), Some(w)) = (s.time_minutes(), s.warning_seconds()) {
            a.push(format!("--time={m}"));
            a.push(format!("--signal=TERM@{w}"));
        }
        a.extend(s.extra.iter().cloned());
        a
    }
}

/// `KEY=value` out of `scontrol show … -o` text.
fn field(text: &str, key: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(String::from)
}

/// stdout of a Slurm command, or None when it cannot run or fails.
async fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Starts a Slurm command without waiting for it (from the dispatcher's sync
/// stop requests); its exit is collected in the background.
fn fire(cmd: &str, args: Vec<String>) {
    let mut c = std::process::Command::new(cmd);
    c.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(mut child) = c.spawn() {
        std::thread::spawn(move || child.wait());
    }
}

/// A protocol `error` line of class `config` (printed by the preamble).
fn config_error(message: String) -> String {
    serde_json::json!({"type": "error", "class": "config", "message": message}).to_string()
}

impl Launcher for SlurmLauncher {
    fn slots<'a>(&'a self, _request: &'a SlotRequest) -> BoxFuture<'a, Vec<Slot>> {
        Box::pin(async move {
            let left = self.cancel_all().await;
            if !left.is_empty() {
                sweep_protocol::log!(
                    "sweep {}: cancelled {} Slurm job(s)/step(s) of this sweep left by a coordinator that did not clean up ({}); their trials resume from their last checkpoints",
                    self.sweep,
                    left.len(),
                    left.join(", ")
                );
            }
            let _ = self.accounting().await;
            (0..self.capacity().await)
                .map(|lane| Slot::Slurm { lane })
                .collect()
        })
    }

    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        Box::pin(async move {
            let version = output("srun", &["--version"])
                .await
                .map(|v| v.trim().to_string());
            serde_json::json!({
                "worker": self.program.display().to_string(),
                "launcher": "slurm",
                "slurm": version,
                "slurm_allocation": self.allocation,
                "real_worker": self.real_worker,
            })
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let left = self.cancel_all().await;
            if !left.is_empty() {
                sweep_protocol::log!(
                    "sweep {}: cancelled {} Slurm job(s)/step(s) still queued ({})",
                    self.sweep,
                    left.len(),
                    left.join(", ")
                );
            }
        })
    }

    fn start(&self, spec: &LaunchSpec) -> std::io::Result<Attempt> {
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = super::open_log(&spec.log_path)?;
        let mut job = spec.job.clone();
        // Compute nodes may start elsewhere than this shell's directory.
        job.out_dir = std::path::absolute(&job.out_dir)?;
        job.dataset = match &spec.program {
            // A program reads its own data; the preamble checks the trial folder twice.
            Some(_) => job.out_dir.clone(),
            None => std::path::absolute(&job.dataset)?,
        };
        job.threads = self.spec.cpus_per_trial.unwrap_or(1);
        let json = serde_json::to_string(&job).map_err(std::io::Error::other)?;
        let name = self.job_name(&job.trial);
        let shared = "results/ and the dataset must be on a filesystem that the compute nodes mount at the same path (e.g. under $HOME or a shared /scratch): pass --results and `dataset` on it";
        let e_dir = config_error(format!(
            "the trial directory {} is not visible or not writable on the compute node; {shared}",
            job.out_dir.display()
        ));
        let e_data = config_error(format!(
            "the dataset {} is not readable on the compute node; {shared}",
            job.dataset.display()
        ));
        let e_worker = config_error(format!(
            "the worker {} is not an executable file on the compute node; install sweep-worker on shared storage (or on every node at this path), or set SWEEP_WORKER",
            self.program.display()
        ));
        let mut cmd = tokio::process::Command::new("srun");
        cmd.args(self.srun_args(&name));
        if let Some(w) = spec.program.as_ref().and_then(|p| p.workdir.as_ref()) {
            cmd.arg(format!("--chdir={}", std::path::absolute(w)?.display()));
        }
        cmd.arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(PREAMBLE)
            .arg("sweep-slurm");
        cmd.arg(&job.out_dir)
            .arg(&job.dataset)
            .arg(&self.program)
            .arg(e_dir)
            .arg(e_data)
            .arg(e_worker);
        match &spec.program {
            // srun passes the environment on (--export=ALL is its default).
            Some(p) => {
                cmd.args(&p.argv).envs(p.env.iter().cloned());
            }
            None => {
                cmd.arg("--job").arg(json);
            }
        }
        cmd.env("SWEEP_SLOT_TAG", SLOT_TAG);
        if self.spec.gpus_per_trial == 0 {
            // No GPU asked for: keep the trial off any GPU the node has.
            cmd.env("CUDA_VISIBLE_DEVICES", "");
        }
        // stdin stays a pipe: srun forwards it to the task, as the local worker's own stdin.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        let coordinator = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // If the coordinator dies, SIGTERM makes srun end its step at once.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
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
            .ok_or_else(|| std::io::Error::other("srun has no stdout"))?;
        let control = Arc::new(SlurmControl {
            pid: child.id(),
            name,
            step_mode: self.allocation.is_some(),
            uid: self.uid,
            placement: Mutex::new(None),
            asked: AtomicBool::new(false),
            started: Instant::now(),
            log: spec.log_path.clone(),
            time: self.spec.time,
            accounting: self.accounting.get().copied(),
            stdin: child.stdin.take().map(StdinLines::spawn),
        });
        let (reader, writer) = tokio::io::duplex(1 << 16);
        tokio::spawn(split_slot_line(stdout, writer, Arc::clone(&control)));
        let exit = Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            let s = child.wait().await?;
            Ok(ExitStatus {
                code: s.code(),
                signal: s.signal(),
            })
        });
        Ok(Attempt {
            stdout: Box::pin(reader),
            control,
            exit,
        })
    }
}

/// Takes the preamble's slot line out of srun's stdout and passes the rest on.
async fn split_slot_line(
    stdout: tokio::process::ChildStdout,
    mut to: tokio::io::DuplexStream,
    control: Arc<SlurmControl>,
) {
    let mut reader = BufReader::new(stdout);
    let mut first = Vec::new();
    if (&mut reader)
        .take(4096)
        .read_until(b'\n', &mut first)
        .await
        .is_err()
    {
        return;
    }
    let line = String::from_utf8_lossy(&first);
    match line.strip_prefix(SLOT_TAG) {
        Some(rest) => {
            let kv: std::collections::HashMap<&str, &str> = rest
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect();
            let get = |k: &str| kv.get(k).copied().unwrap_or("").to_string();
            let job = match (get("job"), get("step")) {
                (j, s) if control.step_mode && !s.is_empty() => format!("{j}.{s}"),
                (j, _) => j,
            };
            let cvd = get("cvd");
            let device = if cvd.is_empty() {
                "cpu".to_string()
            } else {
                format!("cuda:{cvd}")
            };
            *control.placement.lock().unwrap_or_else(|e| e.into_inner()) = Some(Placement {
                node: get("node"),
                gpus: get("gpus"),
                job,
                device,
            });
        }
        None => {
            if to.write_all(&first).await.is_err() {
                return;
            }
        }
    }
    let _ = tokio::io::copy_buf(&mut reader, &mut to).await;
    let _ = to.shutdown().await;
}

/// Stop requests and the end state of one Slurm attempt.
pub struct SlurmControl {
    pid: Option<u32>,
    name: String,
    /// A step inside an allocation (else a job of its own).
    step_mode: bool,
    uid: u32,
    placement: Mutex<Option<Placement>>,
    /// This coordinator asked it to stop (so a CANCELLED state is ours, not someone else's).
    asked: AtomicBool,
    started: Instant,
    log: PathBuf,
    time: Option<Duration>,
    accounting: Option<bool>,
    /// The worker's stdin (srun forwards it to the task): protocol 2 `stop` lines.
    stdin: Option<StdinLines>,
}

impl SlurmControl {
    fn target(&self) -> Option<String> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.job.clone())
            .filter(|j| !j.is_empty())
    }

    fn signal_srun(&self, sig: i32) {
        if let Some(pid) = self.pid {
            // SAFETY: plain kill(2) on srun's own process group.
            unsafe {
                libc::kill(-(pid as i32), sig);
            }
        }
    }

    /// Job state as Slurm reports it once final: sacct (accounting), else
    /// `scontrol show job` for jobs, else the `slurmstepd` line in the log.
    async fn final_state(&self, id: &str, accounting: bool) -> Option<String> {
        let deadline = Instant::now() + STATE_WAIT;
        loop {
            let state = if accounting {
                let args: Vec<&str> = if self.step_mode {
                    vec!["-n", "-P", "-j", id, "-o", "State"]
                } else {
                    vec!["-n", "-P", "-X", "-j", id, "-o", "State"]
                };
                output("sacct", &args).await.and_then(|o| {
                    o.lines()
                        .next()
                        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                })
            } else if !self.step_mode {
                output("scontrol", &["show", "job", "-o", id])
                    .await
                    .and_then(|o| field(&o, "JobState"))
            } else {
                None
            };
            match state.as_deref() {
                Some(
                    "PENDING" | "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" | "REQUEUED"
                    | "RESIZING" | "",
                ) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Some(s) if !s.is_empty() => return Some(s.to_string()),
                _ => return self.state_from_log(),
            }
        }
    }

    /// `*** JOB 12 ON node CANCELLED AT … DUE TO TIME LIMIT ***`, as slurmstepd writes it into the task's stderr.
    fn state_from_log(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("***") && l.contains(" CANCELLED AT "))?;
        Some(
            if line.contains("DUE TO TIME LIMIT") {
                "TIMEOUT"
            } else if line.contains("DUE TO PREEMPTION") {
                "PREEMPTED"
            } else if line.contains("DUE TO NODE FAILURE") {
                "NODE_FAIL"
            } else {
                "CANCELLED"
            }
            .to_string(),
        )
    }
}

impl AttemptControl for SlurmControl {
    fn stdin(&self) -> Option<&StdinLines> {
        self.stdin.as_ref()
    }

    fn terminate(&self) {
        self.asked.store(true, Ordering::SeqCst);
        match self.target() {
            // Running: SIGTERM to the worker; it stops at a clean batch.
            Some(id) => fire("scancel", vec!["--signal=TERM".into(), id]),
            // Still queued (or starting): nothing to save, withdraw it.
            None if !self.step_mode => fire(
                "scancel",
                vec![
                    format!("--name={}", self.name),
                    format!("--user={}", self.uid),
                ],
            ),
            None => self.signal_srun(libc::SIGTERM),
        }
    }

    fn kill(&self) {
        self.asked.store(true, Ordering::SeqCst);
        match self.target() {
            Some(id) => {
                fire("scancel", vec!["--signal=KILL".into(), id.clone()]);
                fire("scancel", vec![id]);
            }
            None if !self.step_mode => fire(
                "scancel",
                vec![
                    format!("--name={}", self.name),
                    format!("--user={}", self.uid),
                ],
            ),
            None => {}
        }
        // srun on SIGTERM kills its step at once and exits.
        self.signal_srun(libc::SIGTERM);
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn placement(&self) -> Option<Placement> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn end_state(&self, worker_interrupted: bool) -> BoxFuture<'_, Option<(FailureClass, String)>> {
        Box::pin(async move {
            if self.asked.load(Ordering::SeqCst) {
                return None;
            }
            let Some(id) = self.target() else {
                // srun gave up before the job started: say why, and whether retrying can help.
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let line = log
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("srun: error:"))?
                    .trim_start_matches("srun: error:")
                    .trim()
                    .to_string();
                let permanent = [
                    "Invalid partition",
                    "Invalid generic resource",
                    "Invalid account",
                    "Invalid qos",
                    "Requested node configuration is not available",
                    "Invalid gres",
                ]
                .iter()
                .any(|m| line.contains(m));
                let class = if permanent {
                    FailureClass::Worker(sweep_protocol::ErrorClass::Config)
                } else {
                    FailureClass::Crash
                };
                return Some((
                    class,
                    format!(
                        "srun could not start the job: {line}; check [slurm] in the sweep file"
                    ),
                ));
            };
            let accounting = match self.accounting {
                Some(a) => a,
                None => output("scontrol", &["show", "config"])
                    .await
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.starts_with("AccountingStorageType")
                            && !l.contains("accounting_storage/none")
                    }),
            };
            let state = self.final_state(&id, accounting).await.unwrap_or_default();
            let what = if self.step_mode { "step" } else { "job" };
            let limit = self
                .time
                .map(|t| humantime::format_duration(t).to_string())
                .unwrap_or_default();
            let by_limit = || {
                (
                    FailureClass::Timeout,
                    format!(
                        "Slurm {what} {id} reached its time limit ([slurm] time = {limit:?}); resumed from its last checkpoint"
                    ),
                )
            };
            Some(match state.split_whitespace().next().unwrap_or("") {
                "TIMEOUT" => by_limit(),
                "DEADLINE" => (
                    FailureClass::Timeout,
                    format!("Slurm {what} {id} reached its deadline"),
                ),
                "PREEMPTED" => (
                    FailureClass::Preempted,
                    format!("Slurm {what} {id} was preempted; resumed from its last checkpoint"),
                ),
                "NODE_FAIL" | "BOOT_FAIL" => (
                    FailureClass::Crash,
                    format!("Slurm {what} {id}: its node failed ({state})"),
                ),
                "OUT_OF_MEMORY" => (
                    FailureClass::Worker(sweep_protocol::ErrorClass::Oom),
                    format!(
                        "Slurm {what} {id} ran out of memory (OUT_OF_MEMORY); raise [slurm] mem"
                    ),
                ),
                // A step stopped by the time-limit warning reads CANCELLED in its log.
                "CANCELLED" if worker_interrupted && self.step_mode && self.near_limit() => {
                    by_limit()
                }
                "CANCELLED" => (
                    FailureClass::Cancelled,
                    format!(
                        "Slurm {what} {id} was cancelled outside sweep (scancel); resumed from its last checkpoint"
                    ),
                ),
                // The worker stopped on SIGTERM that nobody here sent: Slurm's
                // warning before the time limit (--signal).
                _ if worker_interrupted && self.time.is_some() => (
                    FailureClass::Timeout,
                    format!(
                        "Slurm {what} {id} was stopped at a clean batch by the warning before its time limit ([slurm] time = {limit:?})"
                    ),
                ),
                _ => return None,
            })
        })
    }
}

impl SlurmControl {
    /// Within the warning window of the time limit (plus Slurm's 60 s resolution).
    fn near_limit(&self) -> bool {
        let Some(t) = self.time else { return false };
        let warn = (t.as_secs().div_ceil(60).max(1) * 6).clamp(30, 300);
        self.started.elapsed().as_secs() + warn + 60 >= t.as_secs()
    }
}
