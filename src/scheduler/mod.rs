//! The dispatcher: the one owner of run state. One `tokio::select!` loop over
//! attempt events, signals and timers decides what starts where, when to retry
//! and when to stop; attempt tasks only report, the recorder only writes.
//!
//! Invariants: a trial never runs twice at once (one queue entry per trial,
//! and a per-sweep lock file held with flock so a second `sweep run` of the
//! same sweep refuses); finished trials are never rerun; the coordinator never
//! initialises CUDA itself (GPUs are learnt from `nvidia-smi` + a probe worker).
pub mod progress;

use crate::config::WorkerJob;
use crate::launcher::{LaunchSpec, Launcher, Slot};
use crate::plan::{GpuSelection, PlannedTrial, SweepPlan};
use crate::protocol::{self, WorkerMessage};
use crate::store::recorder::{self, Recorder, StoreEvent};
use progress::Progress;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub struct RunOptions {
    pub results: PathBuf,
    pub retry_failed: bool,
    pub plain: bool,
    /// Grace period between SIGTERM and SIGKILL on Ctrl-C.
    pub grace: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    AllDone { ran: usize, skipped: usize },
    SomeFailed { failed: usize },
    Interrupted,
}

/// Holds `results/<sweep>/.lock` (flock) for the life of the run; the kernel
/// releases it if we die, so a kill -9 never leaves a stale lock.
pub struct SweepLock {
    _file: std::fs::File,
}

pub fn lock_sweep(results: &Path, sweep: &str) -> anyhow::Result<SweepLock> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = results.join(sweep);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a valid fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "sweep {sweep:?} is already running (coordinator pid {}); wait for it to finish, follow it with `sweep status --sweep {sweep}`, or stop it with Ctrl-C",
            holder.trim()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(SweepLock { _file: file })
}

/// GPU indices to use. `SWEEP_FAKE_GPUS=N` pretends N GPUs exist (scheduling
/// tests); otherwise no `nvidia-smi` means no GPU, else a probe worker counts
/// the devices that CUDA sees (honouring `CUDA_VISIBLE_DEVICES`).
pub async fn detect_gpus(sel: &GpuSelection) -> Vec<u32> {
    if let Some(n) = std::env::var("SWEEP_FAKE_GPUS").ok().and_then(|v| v.parse::<u32>().ok()) {
        return match sel {
            GpuSelection::All => (0..n).collect(),
            GpuSelection::List(l) => l.iter().copied().filter(|i| *i < n).collect(),
        };
    }
    let smi = tokio::process::Command::new("nvidia-smi").arg("-L").output().await;
    if !matches!(&smi, Ok(o) if o.status.success()) {
        return vec![];
    }
    let count = probe_cuda_devices().await.unwrap_or(0);
    let visible: Option<Vec<u32>> =
        std::env::var("CUDA_VISIBLE_DEVICES").ok().filter(|v| !v.trim().is_empty()).map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    let all: Vec<u32> = match visible {
        Some(v) => v.into_iter().take(count as usize).collect(),
        None => (0..count).collect(),
    };
    match sel {
        GpuSelection::All => all,
        GpuSelection::List(l) => l.iter().copied().filter(|i| all.contains(i)).collect(),
    }
}

async fn probe_cuda_devices() -> Option<u32> {
    let exe = std::env::current_exe().ok()?;
    let out = tokio::time::timeout(Duration::from_secs(120), tokio::process::Command::new(exe).args(["worker", "--probe"]).output()).await.ok()?.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("cuda_devices")?.as_u64().map(|n| n as u32)
}

fn slots(plan: &SweepPlan, gpus: &[u32]) -> Vec<Slot> {
    let r = &plan.resources;
    if gpus.is_empty() {
        (0..r.cpu_workers).map(|lane| Slot::Cpu { lane }).collect()
    } else {
        gpus.iter().flat_map(|&index| (0..r.trials_per_gpu).map(move |lane| Slot::Gpu { index, lane })).collect()
    }
}

struct Queued {
    trial: PlannedTrial,
    attempt: u32,
    /// Attempts made in this run (for the retry budget).
    tries: u32,
    delay: Duration,
}

enum Event {
    Started { trial: String, pid: Option<u32> },
    Message { trial: String, msg: WorkerMessage },
    Warning(String),
    Finished { trial: String, slot: Slot, result: AttemptResult },
}

#[derive(Debug, Default)]
pub struct AttemptResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub done: bool,
    pub error_class: Option<String>,
    pub message: Option<String>,
}

fn label(t: &PlannedTrial, varying: &[String]) -> String {
    let v = serde_json::to_value(&t.config).unwrap_or_default();
    let parts: Vec<String> =
        varying.iter().filter_map(|k| v.get(k).map(|x| format!("{k}={}", x.as_str().map(String::from).unwrap_or_else(|| x.to_string())))).collect();
    if parts.is_empty() { t.config.backbone.clone() } else { parts.join(" ") }
}

pub async fn run(plan: SweepPlan, opts: RunOptions, pool: sqlx::SqlitePool, system_info: serde_json::Value, dataset_hash: String) -> anyhow::Result<Outcome> {
    let _lock = lock_sweep(&opts.results, &plan.name)?;
    let (sweep_id, states) = recorder::register(&pool, &plan, &system_info, &dataset_hash).await?;
    let state: HashMap<String, recorder::TrialState> = states.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut skipped = 0;
    let mut skipped_failed = 0;
    for t in &plan.trials {
        let s = state.get(&t.id);
        match s.map(|s| s.status.as_str()) {
            Some("done") => skipped += 1,
            Some("failed") if !opts.retry_failed => {
                skipped += 1;
                skipped_failed += 1;
            }
            _ => queue.push_back(Queued { trial: t.clone(), attempt: s.map(|s| s.attempts).unwrap_or(0) + 1, tries: 0, delay: Duration::ZERO }),
        }
    }
    let gpus = detect_gpus(&plan.resources.gpus).await;
    let mut free: Vec<Slot> = slots(&plan, &gpus);
    free.reverse();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u32;
    let threads_per_worker = (cores / free.len().max(1) as u32).max(1);
    let device_desc = if gpus.is_empty() {
        format!("{} CPU worker(s), {threads_per_worker} threads each", free.len())
    } else {
        format!("GPUs {:?}, {} trial(s) per GPU", gpus, plan.resources.trials_per_gpu)
    };
    eprintln!(
        "sweep {}: {} trials ({} to run, {} already finished{}) on {device_desc}",
        plan.name,
        plan.trials.len(),
        queue.len(),
        skipped,
        if skipped_failed > 0 { format!(", {skipped_failed} failed: rerun with --retry-failed") } else { String::new() }
    );

    let (recorder, writer) = Recorder::spawn(pool.clone());
    let launcher: Arc<dyn Launcher> = Arc::new(crate::launcher::local::LocalLauncher::from_env()?);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let mut progress = Progress::new(queue.len(), opts.plain);
    let mut running: HashMap<String, (Option<u32>, Queued)> = HashMap::new();
    let mut failed = 0usize;
    let mut stopping = false;
    let mut kill_at: Option<Instant> = None;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // Tells attempts still in their retry backoff that the run is stopping.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut db_error: Option<String> = None;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    let ran = queue.len();

    loop {
        while !stopping && !free.is_empty() && !queue.is_empty() {
            let (Some(slot), Some(q)) = (free.pop(), queue.pop_front()) else { break };
            let trial = q.trial.id.clone();
            let job = WorkerJob {
                trial: trial.clone(),
                sweep: plan.name.clone(),
                dataset: plan.dataset.clone(),
                out_dir: opts.results.join(&plan.name).join(&trial),
                threads: threads_per_worker,
                config: q.trial.config.clone(),
            };
            let spec = LaunchSpec { log_path: job.out_dir.join(format!("attempt-{}.log", q.attempt)), job, slot: slot.clone() };
            progress.started(&trial, &label(&q.trial, &plan.varying), q.attempt, &slot.label(), q.trial.config.epochs);
            recorder.send(StoreEvent::TrialStatus { trial: trial.clone(), status: "running" });
            tokio::spawn(attempt(Arc::clone(&launcher), spec, recorder.clone(), ev_tx.clone(), q.attempt, q.delay, plan.resources.timeout, stop_rx.clone()));
            running.insert(trial, (None, q));
        }
        if running.is_empty() && (queue.is_empty() || stopping) {
            break;
        }
        tokio::select! {
            Some(ev) = ev_rx.recv() => match ev {
                Event::Started { trial, pid } => {
                    if let Some(r) = running.get_mut(&trial) { r.0 = pid; }
                    // Started during a stop: TERM while the grace runs, KILL once it is over.
                    if stopping && let Some(pid) = pid { signal_group(pid, if kill_at.is_some() { libc::SIGTERM } else { libc::SIGKILL }); }
                }
                Event::Message { trial, msg } => progress.message(&trial, &msg),
                Event::Warning(w) => progress.warn(&w),
                Event::Finished { trial, slot, mut result } => {
                    free.push(slot);
                    let Some((_, mut q)) = running.remove(&trial) else { continue };
                    q.tries += 1;
                    // A worker we signalled to stop did not crash: it was interrupted.
                    if stopping && !result.done && result.error_class.as_deref() == Some("crash") && result.signal.is_some() {
                        result.error_class = Some("interrupted".into());
                        result.message = Some(format!("stopped by signal {} on interrupt", result.signal.unwrap_or(0)));
                    }
                    let class = result.error_class.clone();
                    let (status, final_state) = if result.done && result.exit_code == Some(0) {
                        ("done", true)
                    } else if stopping {
                        ("interrupted", true)
                    } else if matches!(class.as_deref(), Some("config" | "data")) || q.tries > plan.resources.retries {
                        failed += 1;
                        ("failed", true)
                    } else {
                        ("queued", false)
                    };
                    recorder.send(StoreEvent::AttemptEnded {
                        trial: trial.clone(), attempt: q.attempt, exit_code: result.exit_code, signal: result.signal,
                        error_class: result.error_class.clone(), message: result.message.clone(),
                    });
                    recorder.send(StoreEvent::TrialStatus { trial: trial.clone(), status });
                    let why = match (&class, &result.message) {
                        (Some(c), Some(m)) => format!("{status}: {c}: {}", m.lines().next().unwrap_or("")),
                        (Some(c), None) => format!("{status}: {c}"),
                        _ => status.to_string(),
                    };
                    progress.finished(&trial, &why, final_state, queue.len());
                    if status == "queued" {
                        if class.as_deref() == Some("oom") && plan.resources.oom_retry_halve_batch && q.trial.config.batch_size > 1 {
                            // Same trial (same id), smaller batches; attempts.batch_size records it.
                            q.trial.config.batch_size /= 2;
                            progress.warn(&format!("trial {trial}: out of memory; retrying with batch_size {}", q.trial.config.batch_size));
                        }
                        q.attempt += 1;
                        q.delay = Duration::from_secs(1u64 << (q.tries - 1).min(6));
                        queue.push_back(q);
                    }
                }
            },
            _ = sigint.recv() => { on_signal(&mut stopping, &mut kill_at, &running, opts.grace); stop_tx.send_replace(true); }
            _ = sigterm.recv() => { on_signal(&mut stopping, &mut kill_at, &running, opts.grace); stop_tx.send_replace(true); }
            _ = async { match kill_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                for (pid, _) in running.values() { if let Some(pid) = pid { signal_group(*pid, libc::SIGKILL); } }
                kill_at = None;
            }
            _ = heartbeat.tick() => recorder.send(StoreEvent::Heartbeat { sweep_id }),
            e = recorder.failed(), if db_error.is_none() => {
                // Nothing more can be recorded: stop like an interrupt, report the cause.
                eprintln!("stopping: results can no longer be written ({e}); free space and rerun the same command to resume");
                db_error = Some(e);
                if !stopping { on_signal(&mut stopping, &mut kill_at, &running, opts.grace); stop_tx.send_replace(true); }
            }
        }
    }
    progress.finish();
    if let Some(e) = db_error {
        let _ = recorder.flush().await;
        drop(recorder);
        let _ = writer.await;
        anyhow::bail!("{e}\n  the database is intact up to the last committed write; free space and run the same command again to resume");
    }
    // Trials never started because of a stop stay queued; mark them interrupted.
    if stopping {
        for q in &queue {
            recorder.send(StoreEvent::TrialStatus { trial: q.trial.id.clone(), status: "interrupted" });
        }
    }
    let outcome = if stopping {
        Outcome::Interrupted
    } else if failed > 0 {
        Outcome::SomeFailed { failed }
    } else {
        Outcome::AllDone { ran, skipped }
    };
    let sweep_status = match outcome {
        Outcome::AllDone { .. } => "done",
        Outcome::SomeFailed { .. } => "failed",
        Outcome::Interrupted => "interrupted",
    };
    recorder.send(StoreEvent::SweepStatus { sweep_id, status: sweep_status });
    recorder.flush().await.map_err(anyhow::Error::msg)?;
    drop(recorder);
    writer.await?.map_err(anyhow::Error::msg)?;
    Ok(outcome)
}

fn signal_group(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on the worker's process group (pgid = pid).
    unsafe {
        libc::kill(-(pid as i32), sig);
    }
}

fn on_signal(stopping: &mut bool, kill_at: &mut Option<Instant>, running: &HashMap<String, (Option<u32>, Queued)>, grace: Duration) {
    if !*stopping {
        *stopping = true;
        eprintln!("interrupt: stopping {} running trial(s) (grace {}s; press Ctrl-C again to kill)", running.len(), grace.as_secs());
        for (pid, _) in running.values() {
            if let Some(pid) = pid {
                signal_group(*pid, libc::SIGTERM);
            }
        }
        *kill_at = Some(Instant::now() + grace);
    } else {
        eprintln!("second interrupt: killing workers");
        for (pid, _) in running.values() {
            if let Some(pid) = pid {
                signal_group(*pid, libc::SIGKILL);
            }
        }
        *kill_at = None;
    }
}

/// Runs one attempt: start, relay stdout lines, wait, classify.
#[expect(clippy::too_many_arguments, reason = "each argument is one independent input of the attempt or drawing")]
async fn attempt(
    launcher: Arc<dyn Launcher>,
    spec: LaunchSpec,
    recorder: Recorder,
    ev: mpsc::UnboundedSender<Event>,
    attempt: u32,
    delay: Duration,
    timeout: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let trial = spec.job.trial.clone();
    if !delay.is_zero() {
        // A stop during the retry backoff cancels the retry: no worker starts after Ctrl-C.
        let stopped = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            r = stop.wait_for(|s| *s) => r.is_ok(),
        };
        if stopped {
            let result =
                AttemptResult { error_class: Some("interrupted".into()), message: Some("stopped before the retry started".into()), ..Default::default() };
            let _ = ev.send(Event::Finished { trial, slot: spec.slot.clone(), result });
            return;
        }
    }
    let result = run_attempt(launcher.as_ref(), &spec, &recorder, &ev, attempt, timeout).await;
    let _ = ev.send(Event::Finished { trial, slot: spec.slot.clone(), result });
}

async fn run_attempt(
    launcher: &dyn Launcher,
    spec: &LaunchSpec,
    recorder: &Recorder,
    ev: &mpsc::UnboundedSender<Event>,
    attempt: u32,
    timeout: Option<Duration>,
) -> AttemptResult {
    let trial = spec.job.trial.clone();
    let mut child = match launcher.launch(spec) {
        Ok(c) => c,
        Err(e) => {
            recorder.send(StoreEvent::AttemptStarted {
                trial: trial.clone(),
                attempt,
                pid: None,
                device: spec.slot.label(),
                batch_size: spec.job.config.batch_size,
            });
            return AttemptResult { error_class: Some("internal".into()), message: Some(format!("cannot start worker: {e}")), ..Default::default() };
        }
    };
    let pid = child.id();
    recorder.send(StoreEvent::AttemptStarted { trial: trial.clone(), attempt, pid, device: spec.slot.label(), batch_size: spec.job.config.batch_size });
    let _ = ev.send(Event::Started { trial: trial.clone(), pid });
    let mut result = AttemptResult::default();
    let Some(stdout) = child.stdout.take() else {
        return AttemptResult { error_class: Some("internal".into()), message: Some("worker has no stdout".into()), ..Default::default() };
    };
    let read = async {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        let mut bad_lines = 0;
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf).await {
                Ok(None) => break,
                Ok(Some(too_long)) => {
                    if too_long {
                        bad_lines += 1;
                        let _ = ev.send(Event::Warning(format!("trial {trial}: worker line over {} bytes ignored", protocol::MAX_LINE_BYTES)));
                        continue;
                    }
                    let line = String::from_utf8_lossy(&buf);
                    if line.trim().is_empty() {
                        continue;
                    }
                    match protocol::parse_line(&line) {
                        Ok(msg) => {
                            match &msg {
                                WorkerMessage::Done { .. } => result.done = true,
                                WorkerMessage::Error { class, message } => {
                                    result.error_class = Some(class.as_str().to_string());
                                    result.message = Some(message.clone());
                                }
                                _ => {}
                            }
                            let _ = ev.send(Event::Message { trial: trial.clone(), msg: msg.clone() });
                            recorder.send(StoreEvent::Worker { trial: trial.clone(), attempt, msg });
                        }
                        Err(e) => {
                            bad_lines += 1;
                            let shown: String = line.chars().take(120).collect();
                            let _ = ev.send(Event::Warning(format!("trial {trial}: malformed worker line ignored ({e}): {shown}")));
                        }
                    }
                }
                Err(e) => {
                    let _ = ev.send(Event::Warning(format!("trial {trial}: reading worker output failed: {e}")));
                    break;
                }
            }
        }
        bad_lines
    };
    let timed_out = match timeout {
        Some(t) => tokio::time::timeout(t, read).await.is_err(),
        None => {
            read.await;
            false
        }
    };
    if timed_out && let Some(pid) = pid {
        signal_group(pid, libc::SIGKILL);
    }
    // A worker that closed stdout yet keeps running gets a minute to exit, then SIGKILL.
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGKILL);
            }
            child.wait().await
        }
    };
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => {
            result.exit_code = s.code();
            result.signal = s.signal();
        }
        Err(e) => result.message = Some(format!("wait failed: {e}")),
    }
    if timed_out {
        result.done = false;
        result.error_class = Some("timeout".into());
        result.message = Some(format!("no completion within the {}s timeout; killed", timeout.map(|t| t.as_secs()).unwrap_or(0)));
    } else if result.error_class.is_none() && !(result.done && result.exit_code == Some(0)) {
        if let Some(sig) = result.signal {
            result.error_class = Some("crash".into());
            result.message = Some(format!("worker killed by signal {sig}"));
        } else if result.exit_code == Some(0) {
            result.error_class = Some("protocol".into());
            result.message = Some("worker exited 0 without its final `done` message".into());
        } else {
            result.error_class = Some("crash".into());
            result.message = Some(format!("worker exited with code {:?}; see {}", result.exit_code, spec.log_path.display()));
        }
    }
    result
}

/// Reads one line into `buf` (without the newline), keeping at most
/// MAX_LINE_BYTES. Ok(None) at EOF; Ok(Some(true)) when the line was too long.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if any { Some(too_long) } else { None });
        }
        any = true;
        let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let data = &chunk[..if found { take - 1 } else { take }];
        if !too_long {
            if buf.len() + data.len() > protocol::MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(data);
            }
        }
        r.consume(take);
        if found {
            return Ok(Some(too_long));
        }
    }
}
