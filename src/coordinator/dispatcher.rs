//! The dispatcher: the one owner of run state. One `tokio::select!` loop over
//! attempt events, signals and timers decides what starts where, when to retry
//! and when to stop; attempt tasks only report, the recorder only writes, the
//! launcher owns processes.
//!
//! Invariants: a trial never runs twice at once (one queue entry per trial,
//! and a per-sweep lock file so a second `sweep run` of the same sweep
//! refuses); finished trials are never rerun; nothing here calls libc on a
//! worker or looks for GPUs: that is the launcher's job.
use super::attempt::{self, AttemptResult};
use super::launcher::{AttemptControl, LaunchSpec, Launcher, Slot, gpus_of};
use super::lock::lock_sweep;
use super::progress::Progress;
use super::proposer::Proposer;
use super::retention;
use super::stopping::{Action, Decision, Stopper};
use super::{RunError, RunOptions};
use crate::spec::{Keep, KeepPrecision, PlannedTrial, SweepPlan};
use crate::store::recorder::{self, NewSweep, Recorder, StoreEvent, WriteError};
use crate::store::{FailureClass, SweepStatus, TrialStatus};
use restore::{
    check_gpu_list, initial_queue, restore_lineage, restore_proposer, restore_stopper,
    set_aside_unknown_checkpoints, slot_request, tidy_finished, train_classes,
    warn_if_short_of_space,
};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sweep_protocol::{WorkerJob, WorkerMessage};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

mod restore;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    AllDone { ran: usize, skipped: usize },
    SomeFailed { failed: usize },
    Interrupted,
}

pub(super) struct Queued {
    pub trial: PlannedTrial,
    pub attempt: u32,
    /// Attempts made in this run (for the retry budget).
    pub tries: u32,
    pub delay: Duration,
}

/// What attempt tasks tell the dispatcher.
pub(super) enum Event {
    Started {
        trial: String,
        control: Arc<dyn AttemptControl>,
    },
    Message {
        trial: String,
        msg: WorkerMessage,
    },
    Warning(String),
    Finished {
        trial: String,
        slot: Slot,
        result: AttemptResult,
    },
}

struct Running {
    control: Option<Arc<dyn AttemptControl>>,
    queued: Queued,
    /// The last epoch the worker reported (a pruned worker that ends with
    /// `done` before its last epoch stopped early; at its last, it finished).
    last_epoch: u32,
    /// The attempt reported the sweep's metric at least once.
    reported: bool,
}

/// The epoch a message closes: the built-in worker's `epoch`, a program's epoch record.
fn epoch_of(msg: &WorkerMessage) -> Option<u32> {
    match msg {
        WorkerMessage::Epoch { epoch, .. } => Some(*epoch),
        WorkerMessage::Record {
            epoch: Some(e),
            step: None,
            ..
        } => Some(*e),
        _ => None,
    }
}

/// The value of `metric` at the epoch a message closes, if it carries it.
fn metric_value(metric: &crate::spec::Objective, msg: &WorkerMessage) -> Option<(u32, f64)> {
    match msg {
        WorkerMessage::Epoch {
            epoch,
            val_accuracy,
            val_loss,
            ..
        } if !metric.program => Some((
            *epoch,
            if metric.name == "val_loss" {
                *val_loss
            } else {
                *val_accuracy
            },
        )),
        WorkerMessage::Record {
            epoch: Some(e),
            step: None,
            values,
        } if metric.program => values.get(&metric.name).map(|v| (*e, *v)),
        _ => None,
    }
}

/// Run state, owned by one task.
struct Dispatcher {
    plan: SweepPlan,
    opts: RunOptions,
    launcher: Arc<dyn Launcher>,
    recorder: Recorder,
    progress: Progress,
    events: mpsc::UnboundedSender<Event>,
    queue: VecDeque<Queued>,
    free: Vec<Slot>,
    running: HashMap<String, Running>,
    threads_per_worker: u32,
    failed: usize,
    stopping: bool,
    kill_at: Option<Instant>,
    /// Tells attempts still in their retry backoff that the run is stopping.
    stop_tx: watch::Sender<bool>,
    db_error: Option<WriteError>,
    /// The database file, for the message when it can no longer be written.
    db_path: std::path::PathBuf,
    /// Early stopping across trials (`[stopping]`), when configured.
    stopper: Option<Stopper>,
    /// Trials told to stop by a decision, until their attempt ends.
    pruning: HashMap<String, String>,
    pruned: usize,
    /// The dataset hash workers map the shared decoded-image cache by
    /// (`None`: each decodes into its own memory).
    decoded_cache: Option<String>,
    /// Trials sent a `stop` line, and when (SIGTERM once STOP_LINE_GRACE is over).
    stop_sent: HashMap<String, Instant>,
    /// `[random] sampler = "tpe"`: proposes the next point when a slot frees.
    proposer: Option<Proposer>,
    /// Trials proposed during this run.
    proposed: usize,
    sweep_id: i64,
    /// Promotion mode: trials paused at a rung, ready to resume (next attempt).
    paused: HashMap<String, Queued>,
}

fn label(t: &PlannedTrial, varying: &[String]) -> String {
    let v = t.config.to_json();
    let parts: Vec<String> = varying
        .iter()
        .filter_map(|k| {
            v.get(k)
                .map(|x| format!("{k}={}", sweep_protocol::config::value_text(x)))
        })
        .collect();
    if parts.is_empty() {
        match t.builtin() {
            Some(c) => c.backbone.clone(),
            None => t.id.clone(),
        }
    } else {
        parts.join(" ")
    }
}

/// How long workers get to checkpoint and exit once the database can no
/// longer be written, before they are killed: their last records cannot be
/// kept anyway, and the user should get the error in seconds.
const DB_ERROR_GRACE: Duration = Duration::from_secs(10);

/// The error that ends a run whose results could not be written.
fn write_failed(db: &Path, error: WriteError) -> RunError {
    RunError::WriteFailed {
        free: retention::free_space(db),
        db: db.to_path_buf(),
        error,
    }
}

/// Runs (or resumes) every trial of `plan` through `launcher`.
pub async fn run(
    mut plan: SweepPlan,
    opts: RunOptions,
    launcher: Arc<dyn Launcher>,
    pool: sqlx::SqlitePool,
    system_info: serde_json::Value,
    dataset_hash: String,
) -> Result<Outcome, RunError> {
    let _lock = lock_sweep(&opts.results, &plan.name)?;
    check_gpu_list(&plan, launcher.as_ref()).await?;
    let (sweep_id, state) = register(&plan, &pool, system_info, &dataset_hash).await?;
    let (proposer, startup_rows) = restore_proposer(&mut plan, &pool, sweep_id).await?;
    restore_lineage(&mut plan, &pool).await?;
    let (mut queue, skipped, skipped_failed) = initial_queue(&plan, &state, opts.retry_failed);
    let mut early_pruned = Vec::new();
    let stopper = match plan.stopping.active() {
        true => Some(restore_stopper(&plan, &pool, &mut queue, &mut early_pruned).await?),
        false => None,
    };
    // Promotion mode: trials paused at a rung wait outside the queue.
    let paused = take_paused(stopper.as_ref(), &mut queue);
    for q in queue.iter().filter(|q| q.attempt == 1) {
        set_aside_unknown_checkpoints(&opts.results.join(&plan.name).join(&q.trial.id))?;
    }
    let classes = train_classes(&plan);
    let to_propose = proposer
        .as_ref()
        .map(|p| p.remaining() * p.seeds())
        .unwrap_or(0);
    let (free, cores) = take_slots(&plan, launcher.as_ref(), to_propose, classes).await;
    tidy_finished(&plan, &opts, &state);
    warn_if_short_of_space(&plan, &opts, &queue, free.len(), classes);
    let threads_per_worker = (cores / free.len().max(1) as u32).max(1);
    let device_desc = describe_slots(&plan, &free, threads_per_worker);
    if plan.stopping.active() {
        sweep_protocol::log!(
            "early stopping: {}{}",
            if plan.stopping.auto {
                "method \"auto\" chose "
            } else {
                ""
            },
            plan.stopping.describe()
        );
    }
    sweep_protocol::log!(
        "sweep {}: {} trials ({} to run, {skipped} already finished{}{}) on {device_desc}",
        plan.name,
        plan.trials.len(),
        queue.len() + paused.len(),
        if skipped_failed > 0 {
            format!(", {skipped_failed} failed: rerun with --retry-failed")
        } else {
            String::new()
        },
        if paused.is_empty() {
            String::new()
        } else {
            format!(", {} of them paused at a rung", paused.len())
        }
    );

    // The dataset decoded once for every cache size the queued trials use,
    // before the first of them starts.
    let shorts = queue
        .iter()
        .filter_map(|q| q.trial.builtin().map(|c| c.cache_short()))
        .collect();
    let decoded_cache =
        crate::dataset::decoded::prepare(plan.dataset.clone(), dataset_hash.clone(), shorts).await;
    let (recorder, writer) = Recorder::spawn(&pool).await?;
    send_restored(&recorder, &plan, startup_rows, early_pruned);
    // A coordinator that died between a pause and the trial's status left it
    // running or interrupted in the database: it is paused.
    for trial in paused.keys() {
        recorder.send(StoreEvent::TrialStatus {
            trial: trial.clone(),
            status: TrialStatus::Paused,
        });
    }
    let (events, ev_rx) = mpsc::unbounded_channel::<Event>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ran = queue.len() + paused.len();
    let mut d = Dispatcher {
        progress: Progress::new(queue.len() + paused.len() + to_propose, opts.plain),
        plan,
        opts,
        launcher,
        recorder,
        events,
        queue,
        free,
        running: HashMap::new(),
        threads_per_worker,
        failed: 0,
        stopping: false,
        kill_at: None,
        stop_tx,
        db_error: None,
        db_path: pool.connect_options().get_filename().to_path_buf(),
        stopper,
        pruning: HashMap::new(),
        pruned: 0,
        decoded_cache,
        stop_sent: HashMap::new(),
        proposer,
        proposed: 0,
        sweep_id,
        paused,
    };
    d.run_loop(ev_rx, stop_rx).await?;
    let ran = ran + d.proposed;
    d.finish(sweep_id, ran, skipped, writer).await
}

/// Promotion mode: the queued trials the stopper knows as paused at a rung
/// leave the queue; they resume when promoted (their next attempt).
fn take_paused(stopper: Option<&Stopper>, queue: &mut VecDeque<Queued>) -> HashMap<String, Queued> {
    let Some(s) = stopper.filter(|s| s.pauses()) else {
        return HashMap::new();
    };
    let (paused, rest): (Vec<Queued>, Vec<Queued>) =
        queue.drain(..).partition(|q| s.is_paused(&q.trial.id));
    queue.extend(rest);
    paused
        .into_iter()
        .map(|q| (q.trial.id.clone(), q))
        .collect()
}

/// The sweep and its planned trials, registered (or found) in the database;
/// returns the sweep's id and what the database knows of each trial.
async fn register(
    plan: &SweepPlan,
    pool: &sqlx::SqlitePool,
    system_info: serde_json::Value,
    dataset_hash: &str,
) -> Result<(i64, HashMap<String, recorder::TrialState>), RunError> {
    let new = NewSweep {
        name: &plan.name,
        file: plan.file.display().to_string(),
        toml: &plan.toml,
        description: plan.description.as_deref(),
        metric: &plan.metric,
        maximize: plan.maximize,
        program: plan.program.as_ref().map(|p| p.json.clone()),
        dataset: plan.dataset.display().to_string(),
        dataset_hash,
        system_info,
        trials: plan
            .trials
            .iter()
            .map(|t| (t.id.as_str(), &t.config))
            .collect(),
    };
    let (sweep_id, states) = recorder::register(pool, &new).await?;
    let state: HashMap<String, recorder::TrialState> =
        states.into_iter().map(|s| (s.id.clone(), s)).collect();
    Ok((sweep_id, state))
}

/// The free slots (last first, as the loop pops them) and the machine's core
/// count, for a sweep with `to_propose` trials still to be proposed.
async fn take_slots(
    plan: &SweepPlan,
    launcher: &dyn Launcher,
    to_propose: usize,
    classes: u64,
) -> (Vec<Slot>, u32) {
    // "auto" counts every trial of the sweep, not the ones left to run: a
    // resumed or retried trial then gets the thread count it first had, and
    // with it the same metrics to the last digit (they differ across thread counts).
    let per_trial = plan
        .trials
        .iter()
        .filter_map(|t| t.builtin())
        .map(|c| super::estimate::cpu_trial_memory(c, classes))
        .max()
        .unwrap_or(0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u32;
    let mut free = launcher
        .slots(&slot_request(
            plan,
            plan.trials.len() + to_propose,
            per_trial,
            cores,
        ))
        .await;
    free.reverse();
    (free, cores)
}

/// Where the trials run, for the start-up line: "GPUs [0, 1], 2 trial(s) per GPU".
fn describe_slots(plan: &SweepPlan, free: &[Slot], threads_per_worker: u32) -> String {
    let gpus = gpus_of(free.iter().rev());
    if free.iter().any(|s| matches!(s, Slot::Slurm { .. })) {
        format!("Slurm, up to {} trial(s) in flight", free.len())
    } else if gpus.is_empty() {
        format!(
            "{} CPU worker(s), {threads_per_worker} threads each",
            free.len()
        )
    } else {
        format!(
            "GPUs [{}], {} trial(s) per GPU",
            gpus.join(", "),
            plan.resources.trials_per_gpu
        )
    }
}

/// What start-up restored and must still be written: the TPE startup rows,
/// then the decisions made now for epochs recorded before a crash (restored
/// ones are in the database already) and the trials they stop.
fn send_restored(
    recorder: &Recorder,
    plan: &SweepPlan,
    startup_rows: Vec<recorder::ProposalRow>,
    early_pruned: Vec<(Decision, bool)>,
) {
    for row in startup_rows {
        recorder.send(StoreEvent::Proposal(Box::new(row)));
    }
    for (d, stopped) in early_pruned {
        if d.method != "restored" {
            recorder.send(StoreEvent::Decision(decision_row(&d, plan)));
        }
        if stopped {
            recorder.send(StoreEvent::TrialStatus {
                trial: d.trial.clone(),
                status: TrialStatus::Pruned,
            });
        }
    }
}

/// What a finished trial no longer needs goes ([`retention::apply`]), then
/// the weights it keeps become float16 if asked ([`retention::halve_kept`]).
/// Problems are warnings (`hint` says what finishes the job later).
fn release(dir: &Path, status: TrialStatus, keep: Keep, precision: KeepPrecision, hint: &str) {
    if let Err(e) = retention::apply(dir, status, keep, false) {
        sweep_protocol::log!("warning: {e}{hint}");
    }
    match retention::halve_kept(dir, status, keep, precision, false) {
        Ok(h) => h
            .kept_full
            .iter()
            .for_each(|w| sweep_protocol::log!("warning: {w}")),
        Err(e) => sweep_protocol::log!("warning: {e}{hint}"),
    }
}

fn decision_row(d: &Decision, plan: &SweepPlan) -> recorder::DecisionRow {
    recorder::DecisionRow {
        trial_id: d.trial.clone(),
        epoch: d.epoch as i64,
        method: d.method.to_string(),
        rung: d.rung.map(i64::from),
        bracket: d.bracket.map(i64::from),
        metric: plan.stopping.metric.name.clone(),
        value: d.value,
        cutoff: d.cutoff,
        compared: d.compared as i64,
        action: d.action.as_str().into(),
        time: crate::store::now(),
    }
}

/// PBT: the `lineage` row of an exploit.
fn lineage_row(d: &Decision, ex: &super::stopping::Exploit) -> crate::store::lineage::LineageRow {
    let changes: serde_json::Map<String, serde_json::Value> = ex
        .changes
        .iter()
        .map(|(k, a, b)| (k.clone(), serde_json::json!([a, b])))
        .collect();
    crate::store::lineage::LineageRow {
        trial_id: d.trial.clone(),
        epoch: d.epoch as i64,
        donor_id: ex.donor.clone(),
        value: d.value,
        donor_value: ex.donor_value,
        params: serde_json::Value::Object(ex.params.to_json()).to_string(),
        changes: serde_json::Value::Object(changes).to_string(),
        time: crate::store::now(),
    }
}

/// "pruned by asha at epoch 3 (rung 1): 0.41 < cutoff 0.52 of 7 records".
fn explain(d: &Decision) -> String {
    let rung = d.rung.map(|r| format!(" (rung {r})")).unwrap_or_default();
    let cutoff = d
        .cutoff
        .map(|c| format!("{:.4} vs cutoff {c:.4}", d.value))
        .unwrap_or_else(|| format!("{:.4}", d.value));
    match d.method {
        "patience" => format!(
            "pruned by patience at epoch {}: no improvement for {} epoch(s) (best {cutoff})",
            d.epoch, d.compared
        ),
        m => format!(
            "pruned by {m} at epoch {}{rung}: {cutoff} over {} record(s)",
            d.epoch, d.compared
        ),
    }
}

impl Dispatcher {
    /// The one `select!` loop: proposes and starts what can start, then waits
    /// for the next attempt event, signal or timer; ends when nothing runs and
    /// nothing more will start.
    async fn run_loop(
        &mut self,
        mut ev_rx: mpsc::UnboundedReceiver<Event>,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        let d = self;
        let sweep_id = d.sweep_id;
        let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Io)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Io)?;
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        // Stop lines are checked every second, so a short `stop_grace` is kept.
        let mut stop_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            if d.propose_ready() {
                // Written before any of its trials starts: a resumed sweep continues this sequence.
                if let Err(e) = d.recorder.flush().await {
                    d.on_db_error(e);
                }
            }
            d.start_ready(&stop_rx);
            if d.running.is_empty() && (d.queue.is_empty() || d.stopping) {
                if !d.stopping && !d.paused.is_empty() {
                    // Nothing runs, nothing new starts and nobody can be promoted.
                    d.stop_paused();
                }
                return Ok(());
            }
            let kill_at = d.kill_at;
            let recorder = d.recorder.clone();
            tokio::select! {
                Some(ev) = ev_rx.recv() => d.on_event(ev),
                _ = sigint.recv() => d.on_interrupt(),
                _ = sigterm.recv() => d.on_interrupt(),
                _ = async { match kill_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => d.on_grace_over(),
                _ = heartbeat.tick() => {
                    d.recorder.send(StoreEvent::Heartbeat { sweep_id });
                }
                _ = stop_check.tick(), if !d.stop_sent.is_empty() => d.stop_lines_overdue(),
                e = recorder.failed(), if d.db_error.is_none() => d.on_db_error(e),
            }
        }
    }

    /// TPE: proposes a point for every slot the queue cannot fill, and queues
    /// its trials. True when something was proposed (the caller commits it
    /// before anything starts).
    fn propose_ready(&mut self) -> bool {
        let Some(p) = self.proposer.as_mut() else {
            return false;
        };
        let mut any = false;
        while !self.stopping && self.free.len() > self.queue.len() {
            let Some(prop) = p.propose(self.sweep_id) else {
                break;
            };
            self.recorder.send(StoreEvent::Proposal(Box::new(prop.row)));
            let max_epochs = self
                .plan
                .trials
                .iter()
                .chain(&prop.trials)
                .filter_map(|t| t.config.epochs())
                .max()
                .unwrap_or(1);
            for t in prop.trials {
                // A new trial joins the plan, and its Hyperband bracket by its position (as on restart).
                if let Some(s) = self.stopper.as_mut() {
                    s.assign(&t.id, self.plan.trials.len(), max_epochs);
                }
                self.plan.trials.push(t.clone());
                self.queue.push_back(Queued {
                    trial: t,
                    attempt: 1,
                    tries: 0,
                    delay: Duration::ZERO,
                });
                self.proposed += 1;
            }
            any = true;
        }
        any
    }

    /// Starts queued trials on free slots (nothing once stopping).
    fn start_ready(&mut self, stop_rx: &watch::Receiver<bool>) {
        self.pbt_generation();
        while !self.stopping && !self.free.is_empty() {
            // Promotion mode: a paused trial that can be promoted goes before
            // any new configuration.
            let next = match self.next_promoted() {
                Some(q) => Some(q),
                None => self.queue.pop_front(),
            };
            let (Some(q), Some(slot)) = (next, self.free.pop()) else {
                break;
            };
            let trial = q.trial.id.clone();
            let pause_after = self
                .stopper
                .as_ref()
                .and_then(|s| s.pause_after(&trial, q.trial.config.epochs().unwrap_or(u32::MAX)));
            let job = WorkerJob {
                trial: trial.clone(),
                sweep: self.plan.name.clone(),
                dataset: self.plan.dataset.clone(),
                out_dir: self.opts.results.join(&self.plan.name).join(&trial),
                threads: self.threads_per_worker,
                config: q.trial.builtin().cloned().unwrap_or_default(),
                select: self.plan.select,
                dataset_hash: self.decoded_cache.clone(),
                pause_after,
            };
            let program = self.plan.program.as_ref().map(|p| {
                super::program::run_for(
                    p,
                    &self.plan.name,
                    &q.trial,
                    &job.out_dir,
                    q.attempt,
                    self.threads_per_worker,
                    pause_after,
                )
            });
            let spec = LaunchSpec {
                log_path: sweep_protocol::trial_dir::attempt_log(&job.out_dir, q.attempt),
                job,
                program,
                slot: slot.clone(),
            };
            self.progress.started(
                &trial,
                &label(&q.trial, &self.plan.varying),
                q.attempt,
                &slot.label(),
                q.trial.config.epochs().unwrap_or(0),
            );
            self.recorder.send(StoreEvent::TrialStatus {
                trial: trial.clone(),
                status: TrialStatus::Running,
            });
            tokio::spawn(attempt::run(
                Arc::clone(&self.launcher),
                spec,
                self.recorder.clone(),
                self.events.clone(),
                attempt::Policy {
                    attempt: q.attempt,
                    delay: q.delay,
                    timeout: self.plan.resources.timeout,
                },
                stop_rx.clone(),
            ));
            self.running.insert(
                trial,
                Running {
                    control: None,
                    queued: q,
                    last_epoch: 0,
                    reported: false,
                },
            );
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Started { trial, control } => self.on_started(trial, control),
            Event::Message { trial, msg } => {
                if let Some(epoch) = epoch_of(&msg)
                    && let Some(r) = self.running.get_mut(&trial)
                {
                    r.last_epoch = r.last_epoch.max(epoch);
                }
                let objective = self.plan.objective();
                if let Some((epoch, v)) = metric_value(&objective, &msg) {
                    if let Some(r) = self.running.get_mut(&trial) {
                        r.reported = true;
                    }
                    if let Some(p) = self.proposer.as_mut() {
                        p.observe_metric(&trial, epoch, v);
                    }
                }
                let judged = self.stopper.as_ref().map(|s| s.metric().clone());
                if let Some((epoch, v)) = judged.and_then(|m| metric_value(&m, &msg)) {
                    self.judge(&trial, epoch, v);
                }
                self.progress.message(&trial, &msg);
            }
            Event::Warning(w) => self.progress.warn(&w),
            Event::Finished {
                trial,
                slot,
                result,
            } => self.on_finished(trial, slot, result),
        }
    }

    fn on_started(&mut self, trial: String, control: Arc<dyn AttemptControl>) {
        if self.stopping {
            // Started during a stop: TERM while the grace runs, KILL once it is over.
            if self.kill_at.is_some() {
                control.terminate()
            } else {
                control.kill()
            }
        }
        if let Some(r) = self.running.get_mut(&trial) {
            r.control = Some(control);
        }
    }

    fn on_finished(&mut self, trial: String, slot: Slot, mut result: AttemptResult) {
        self.free.push(slot);
        let Some(Running {
            queued: mut q,
            last_epoch,
            reported,
            ..
        }) = self.running.remove(&trial)
        else {
            return;
        };
        self.stop_sent.remove(&trial);
        q.tries += 1;
        // A worker we signalled to stop did not crash: it was interrupted.
        if self.stopping
            && !result.done
            && result.class == Some(FailureClass::Crash)
            && result.exit.signal.is_some()
        {
            result.class = Some(FailureClass::Interrupted);
            result.message = Some(format!(
                "stopped by signal {} on interrupt",
                result.exit.signal.unwrap_or(0)
            ));
        }
        // A worker told to stop ends cleanly (`done`, exit 0) before its last
        // epoch, or by SIGTERM; one that reached its last epoch first finished.
        let pruned_by = self.pruning.remove(&trial).filter(|_| {
            !(result.succeeded() && q.trial.config.epochs().is_some_and(|n| last_epoch >= n))
        });
        // Promotion mode: a trial that completed its rung waits there,
        // whatever its process did after the rung's epoch was recorded.
        let paused = !self.stopping && self.stopper.as_ref().is_some_and(|s| s.is_paused(&trial));
        if paused {
            result.class = None;
            result.message = Some(format!("paused after epoch {last_epoch}"));
        }
        if let Some(why) = &pruned_by {
            result.class = Some(FailureClass::Pruned);
            result.message = Some(why.clone());
        }
        let status = if paused {
            TrialStatus::Paused
        } else if result.succeeded() && pruned_by.is_none() {
            TrialStatus::Done
        } else if pruned_by.is_some() {
            self.pruned += 1;
            TrialStatus::Pruned
        } else if self.stopping {
            TrialStatus::Interrupted
        } else if result.class.is_some_and(FailureClass::is_permanent)
            || q.tries > self.plan.resources.retries
        {
            self.failed += 1;
            TrialStatus::Failed
        } else {
            TrialStatus::Queued
        };
        self.recorder.send(StoreEvent::AttemptEnded {
            trial: trial.clone(),
            attempt: q.attempt,
            exit_code: result.exit.code,
            signal: result.exit.signal,
            error_class: result.class,
            message: result.message.clone(),
        });
        self.recorder.send(StoreEvent::TrialStatus {
            trial: trial.clone(),
            status,
        });
        self.release_checkpoints(&trial, status);
        let why = match (&result.class, &result.message) {
            (Some(c), Some(m)) => format!("{status}: {c}: {}", m.lines().next().unwrap_or("")),
            (Some(c), None) => format!("{status}: {c}"),
            _ => status.to_string(),
        };
        if self.plan.program.is_some() && status == TrialStatus::Done && !reported {
            self.progress.warn(&format!(
                "trial {trial}: finished without reporting `{}` in an epoch record; it is done but cannot be ranked by it",
                self.plan.metric
            ));
        }
        self.progress
            .finished(&trial, status, &why, self.queue.len());
        if status == TrialStatus::Queued {
            self.requeue(q, result.class);
        } else if status == TrialStatus::Paused {
            q.attempt += 1;
            q.tries = 0;
            q.delay = Duration::ZERO;
            self.paused.insert(trial, q);
        }
    }

    /// Promotion mode: the paused trial to resume now, if any can be promoted
    /// (its decision row becomes `promote`).
    fn next_promoted(&mut self) -> Option<Queued> {
        // Ending: nothing runs or waits in the queue (the caller holds a free slot).
        let ending = self.running.is_empty() && self.queue.is_empty();
        let paused = &self.paused;
        let d = self
            .stopper
            .as_mut()?
            .next_promotion(|t| paused.contains_key(t), ending)?;
        self.recorder
            .send(StoreEvent::Decision(decision_row(&d, &self.plan)));
        self.progress.warn(&format!(
            "trial {}: promoted from rung {} (epoch {}): {:.4} is in the top 1/{} of {} record(s)",
            d.trial,
            d.rung.unwrap_or(0),
            d.epoch,
            d.value,
            self.plan.stopping.reduction,
            d.compared + 1
        ));
        self.paused.remove(&d.trial)
    }

    /// PBT: once the whole population has paused (nothing runs or waits),
    /// ranks it; the bottom copies a top trial's checkpoint and takes its
    /// parameters, perturbed; everyone resumes (in plan order). The copies are
    /// made before the generation's rows are sent (see `pbt`).
    fn pbt_generation(&mut self) {
        if self.stopping
            || !self.running.is_empty()
            || !self.queue.is_empty()
            || self.paused.is_empty()
        {
            return;
        }
        let Some(s) = self.stopper.as_mut().filter(|s| s.pbt().is_some()) else {
            return;
        };
        let paused = &self.paused;
        let generation = s.pbt_generation(|t| paused.get(t).map(|q| q.trial.config.clone()));
        let dir = self.opts.results.join(&self.plan.name);
        let program = self.plan.program.is_some();
        let mut rows = crate::store::lineage::Generation {
            decisions: vec![],
            lineage: vec![],
        };
        for (mut d, exploit) in generation {
            if let Some(ex) = exploit {
                match super::pbt::clone_checkpoint(
                    &dir.join(&ex.donor),
                    &dir.join(&d.trial),
                    program,
                ) {
                    Ok(()) => {
                        self.progress.warn(&format!(
                            "trial {}: exploits {} at epoch {} ({:.4} vs {:.4}): {}",
                            d.trial,
                            ex.donor,
                            d.epoch,
                            d.value,
                            ex.donor_value,
                            ex.changes
                                .iter()
                                .map(|(k, a, b)| format!("{k} {a} → {b}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        if let Some(q) = self.paused.get_mut(&d.trial) {
                            q.trial.config = ex.params.clone();
                        }
                        rows.lineage.push(lineage_row(&d, &ex));
                    }
                    Err(e) => {
                        // It keeps its own weights and parameters.
                        self.progress.warn(&format!(
                            "trial {}: cannot copy the checkpoint of {} ({e}); it goes on with its own",
                            d.trial, ex.donor
                        ));
                        d.action = Action::Promote;
                    }
                }
            }
            rows.decisions.push(decision_row(&d, &self.plan));
        }
        let order: HashMap<&str, usize> = self
            .plan
            .trials
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut resumed: Vec<Queued> = rows
            .decisions
            .iter()
            .filter_map(|d| self.paused.remove(&d.trial_id))
            .collect();
        resumed.sort_by_key(|q| {
            order
                .get(q.trial.id.as_str())
                .copied()
                .unwrap_or(usize::MAX)
        });
        self.recorder.send(StoreEvent::Generation(Box::new(rows)));
        self.queue.extend(resumed);
    }

    /// Promotion mode, at the end: the trials still paused were never in the
    /// top of their rung; they are pruned (their rung decision becomes `stop`).
    fn stop_paused(&mut self) {
        let Some(s) = self.stopper.as_mut() else {
            return;
        };
        for d in s.stop_paused() {
            self.recorder
                .send(StoreEvent::Decision(decision_row(&d, &self.plan)));
            self.recorder.send(StoreEvent::TrialStatus {
                trial: d.trial.clone(),
                status: TrialStatus::Pruned,
            });
            self.pruned += 1;
            self.paused.remove(&d.trial);
            self.release_checkpoints(&d.trial, TrialStatus::Pruned);
            let why = format!(
                "pruned: paused at rung {} (epoch {}) and never in the top 1/{} of its {} record(s)",
                d.rung.unwrap_or(0),
                d.epoch,
                self.plan.stopping.reduction,
                d.compared + 1
            );
            self.progress
                .finished(&d.trial, TrialStatus::Pruned, &why, 0);
        }
    }

    /// Once the trial's final status is committed, removes the checkpoints
    /// `[resources] keep` does not keep, and with `keep_precision = "half"`
    /// rewrites the kept weights as float16 (see `retention`).
    fn release_checkpoints(&self, trial: &str, status: TrialStatus) {
        // A program's folder holds its own files: they are its to keep.
        if !matches!(status, TrialStatus::Done | TrialStatus::Pruned) || self.plan.program.is_some()
        {
            return;
        }
        let (dir, keep, precision) = (
            self.opts.results.join(&self.plan.name).join(trial),
            self.plan.resources.keep,
            self.plan.resources.keep_precision,
        );
        self.recorder
            .send(StoreEvent::AfterCommit(recorder::AfterCommit(Box::new(
                move || {
                    release(
                        &dir,
                        status,
                        keep,
                        precision,
                        "; `sweep gc` finishes it later",
                    );
                },
            ))));
    }

    /// Puts a failed attempt's trial back with a backoff (and half the batch after an OOM).
    fn requeue(&mut self, mut q: Queued, class: Option<FailureClass>) {
        let oom = class == Some(FailureClass::Worker(sweep_protocol::ErrorClass::Oom));
        if let Some(c) = q.trial.config.builtin_mut()
            && oom
            && self.plan.resources.oom_retry_halve_batch
            && c.batch_size > 1
        {
            // Same trial (same id), smaller batches; attempts.batch_size records it.
            c.batch_size /= 2;
            self.progress.warn(&format!(
                "trial {}: out of memory; retrying with batch_size {}",
                q.trial.id, c.batch_size
            ));
        }
        q.attempt += 1;
        q.delay = Duration::from_secs(1u64 << (q.tries - 1).min(6));
        self.queue.push_back(q);
    }

    /// A trial finished an epoch: ask the stopper; record every decision; stop
    /// the trial (SIGTERM: it ends at a clean batch, its epoch checkpoint kept).
    fn judge(&mut self, trial: &str, epoch: u32, value: f64) {
        let Some(stopper) = self.stopper.as_mut() else {
            return;
        };
        let Some(r) = self.running.get(trial) else {
            return;
        };
        if self.pruning.contains_key(trial) {
            return; // told to stop already: epochs it trains meanwhile are not judged again
        }
        let epochs = r.queued.trial.config.epochs().unwrap_or(u32::MAX);
        let decisions = stopper.report(trial, epoch, epochs, value);
        for d in &decisions {
            self.recorder
                .send(StoreEvent::Decision(decision_row(d, &self.plan)));
        }
        if let Some(d) = decisions
            .iter()
            .find(|d| d.action == Action::Pause && self.plan.program.is_some())
            && let Some(c) = &r.control
        {
            // A program is asked to end after the rung's epoch (it got
            // SWEEP_PAUSE_AFTER too): the stop line, SIGTERM after stop_grace.
            let line = serde_json::to_string(&sweep_protocol::CoordinatorMessage::Stop {
                after_epoch: d.epoch,
                test: false,
            })
            .unwrap_or_default();
            if let Some(s) = c.stdin() {
                s.send(line);
            }
            self.stop_sent.insert(trial.to_string(), Instant::now());
        }
        if let Some(d) = decisions.iter().find(|d| d.stop()) {
            let why = explain(d);
            self.progress.warn(&format!("trial {trial}: {why}"));
            if let Some(c) = &r.control {
                // Protocol 2: a `stop` line on the worker's stdin (it keeps
                // training until it reads it, and never waits for a verdict);
                // SIGTERM where the launcher has no pipe to the worker.
                let line = serde_json::to_string(&sweep_protocol::CoordinatorMessage::Stop {
                    after_epoch: epoch,
                    test: self.plan.stopping.test_pruned,
                })
                .unwrap_or_default();
                let program = self.plan.program.is_some();
                if program {
                    // A program gets SIGTERM at once (and the stop line, for
                    // one that prefers it), SIGKILL after `stop_grace`.
                    c.terminate();
                    if let Some(s) = c.stdin() {
                        s.send(line);
                    }
                    self.stop_sent.insert(trial.to_string(), Instant::now());
                } else {
                    match c.stdin() {
                        Some(s) if s.send(line) => {
                            self.stop_sent.insert(trial.to_string(), Instant::now());
                        }
                        _ => c.terminate(),
                    }
                }
            }
            self.pruning.insert(trial.to_string(), why);
        }
    }

    /// Workers that were sent a `stop` line long ago and still run: SIGTERM
    /// (a worker that does not read its stdin still stops).
    fn stop_lines_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<String> = self
            .stop_sent
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > self.stop_line_grace())
            .map(|(k, _)| k.clone())
            .collect();
        for trial in overdue {
            self.stop_sent.remove(&trial);
            let pausing = self.stopper.as_ref().is_some_and(|s| s.is_paused(&trial));
            if let Some(c) = self.running.get(&trial).and_then(|r| r.control.as_ref()) {
                if self.plan.program.is_some() && !pausing {
                    self.progress.warn(&format!(
                        "trial {trial}: still running {}s after SIGTERM; sending SIGKILL",
                        self.stop_line_grace().as_secs()
                    ));
                    c.kill();
                } else {
                    self.progress.warn(&format!(
                        "trial {trial}: no stop after {}s of the stop line; sending SIGTERM",
                        self.stop_line_grace().as_secs()
                    ));
                    c.terminate();
                }
            }
        }
    }

    /// `[stopping] stop_grace`: how long a told-to-stop trial may take.
    fn stop_line_grace(&self) -> Duration {
        Duration::from_secs(self.plan.stopping.stop_grace.into())
    }

    fn controls(&self) -> impl Iterator<Item = &Arc<dyn AttemptControl>> {
        self.running.values().filter_map(|r| r.control.as_ref())
    }

    /// First Ctrl-C/SIGTERM: TERM every worker and start the grace period;
    /// second: KILL them.
    fn on_interrupt(&mut self) {
        if !self.stopping {
            self.stopping = true;
            sweep_protocol::log!(
                "interrupt: stopping {} running trial(s) (grace {}s; press Ctrl-C again to kill)",
                self.running.len(),
                self.opts.grace.as_secs()
            );
            self.terminate_all(self.opts.grace);
        } else {
            sweep_protocol::log!("second interrupt: killing workers");
            self.controls().for_each(|c| c.kill());
            self.kill_at = None;
        }
        self.stop_tx.send_replace(true);
    }

    fn on_grace_over(&mut self) {
        self.controls().for_each(|c| c.kill());
        self.kill_at = None;
    }

    /// Nothing more can be recorded: stop every worker at once (their
    /// trials stay resumable), and report the cause when the run ends.
    fn on_db_error(&mut self, e: WriteError) {
        self.db_error = Some(e);
        if !self.stopping {
            self.stopping = true;
            sweep_protocol::log!(
                "stopping {} running trial(s): the database can no longer be written",
                self.running.len()
            );
            self.terminate_all(self.opts.grace.min(DB_ERROR_GRACE));
            self.stop_tx.send_replace(true);
        }
    }

    /// SIGTERM to every worker; SIGKILL once `grace` is over.
    fn terminate_all(&mut self, grace: Duration) {
        self.controls().for_each(|c| c.terminate());
        self.kill_at = Some(Instant::now() + grace);
    }

    async fn finish(
        mut self,
        sweep_id: i64,
        ran: usize,
        skipped: usize,
        writer: tokio::task::JoinHandle<Result<(), WriteError>>,
    ) -> Result<Outcome, RunError> {
        self.progress.finish();
        self.launcher.shutdown().await;
        if let Some(e) = self.db_error.take() {
            let err = write_failed(&self.db_path, e);
            drop(self);
            let _ = writer.await;
            return Err(err);
        }
        // Trials never started because of a stop stay queued; mark them interrupted.
        if self.stopping {
            for q in &self.queue {
                self.recorder.send(StoreEvent::TrialStatus {
                    trial: q.trial.id.clone(),
                    status: TrialStatus::Interrupted,
                });
            }
        }
        let (outcome, status) = if self.stopping {
            (Outcome::Interrupted, SweepStatus::Interrupted)
        } else if self.failed > 0 {
            (
                Outcome::SomeFailed {
                    failed: self.failed,
                },
                SweepStatus::Failed,
            )
        } else {
            (Outcome::AllDone { ran, skipped }, SweepStatus::Done)
        };
        self.recorder
            .send(StoreEvent::SweepStatus { sweep_id, status });
        if let Err(e) = self.recorder.flush().await {
            return Err(write_failed(&self.db_path, e));
        }
        let db = self.db_path.clone();
        drop(self);
        match writer.await {
            Ok(Ok(())) => Ok(outcome),
            Ok(Err(e)) => Err(write_failed(&db, e)),
            Err(_) => Err(write_failed(&db, WriteError::Stopped)),
        }
    }
}
