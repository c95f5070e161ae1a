//! The training loop of one trial: data → model → epochs → checkpoints → test.
//!
//! [`run`] takes a `Trainer` through its stages: `setup` (threads, device,
//! data, model, optimizer), `resume` (the last committed training state, if
//! any), then for every remaining epoch `train_epoch` (batches, optimizer
//! steps, `train_step` records) and `end_epoch` (validation, the choice of
//! the best checkpoint, checkpoints), and last `test_and_report` (test set on
//! the best checkpoint, confusion matrix, `done`). Protocol messages are
//! emitted as it goes.
//!
//! Checkpoints. `train_state.safetensors` is the resume point and the commit
//! of an epoch: one file, written atomically (temp, fsync, rename), holding
//! the weights with the BatchNorm statistics, the optimizer state (momentum
//! buffers or Adam moments, per-parameter step counts), the loss scaler and
//! the counters of `state.json`. `best.safetensors`, `last.safetensors` and
//! `state.json` are exports written after it (each atomically); a resume
//! finishes whichever of them a kill cut short. The torch generators (dropout)
//! are reseeded from (seed, epoch) at the start of every epoch, and the data
//! order and augmentation are functions of (seed, epoch) too, so a resumed
//! trial records exactly what an uninterrupted one does (on CPU, at the same
//! thread count; `worker/tests/exact_resume.rs`).
use crate::models::{self, BACKBONE_GROUP, HEAD_GROUP, Net};
use crate::optim::{self, Optimizer};
use crate::{device_input, device_labels, host_batch, weights};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;
use sweep_dataset::imagefolder::{self as data, Layout, SplitCache};
use sweep_protocol::config::{Schedule, SelectMetric, TrialConfig, WorkerJob};
use sweep_protocol::message::{
    ClassAccuracy, ErrorClass, Misclassified, SplitCounts, Timings, WorkerMessage, emit,
};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor, nn};

/// Set by SIGTERM/SIGINT: finish the batch, keep the last epoch checkpoint, exit.
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

/// `state.json`; the same counters travel inside `train_state.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// The last completed epoch.
    epoch: u32,
    /// Optimizer steps so far (one per batch).
    step: u64,
    /// Validation accuracy of `best_epoch`.
    best_val_accuracy: f64,
    /// The epoch of `best.safetensors` (0: none yet).
    best_epoch: u32,
    /// Validation loss of `best_epoch` (absent in checkpoints of older workers).
    #[serde(default)]
    best_val_loss: Option<f64>,
    /// What chose `best_epoch`.
    #[serde(default)]
    select: SelectMetric,
}

impl State {
    fn new(select: SelectMetric) -> State {
        State {
            epoch: 0,
            step: 0,
            best_val_accuracy: -1.0,
            best_epoch: 0,
            best_val_loss: None,
            select,
        }
    }

    /// Whether an epoch with these validation figures takes over as the best:
    /// strictly higher accuracy or strictly lower loss, as `select` says, so
    /// that a tie keeps the earlier epoch. The first epoch always does.
    fn improves(&self, select: SelectMetric, val_loss: f64, val_accuracy: f64) -> bool {
        if self.best_epoch == 0 {
            return true;
        }
        match select {
            SelectMetric::ValAccuracy => val_accuracy > self.best_val_accuracy,
            SelectMetric::ValLoss => self.best_val_loss.is_none_or(|best| val_loss < best),
        }
    }
}

/// Every metric message also goes to `journal.jsonl` in the trial directory. A
/// coordinator killed before committing what it was sent would otherwise lose
/// those rows for good; on resume the worker replays the journal up to its
/// checkpoint epoch and the store's upserts drop what it already has.
static JOURNAL: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

fn journal(msg: &WorkerMessage) {
    if matches!(
        msg,
        WorkerMessage::TrainStep { .. } | WorkerMessage::Epoch { .. }
    ) && let Ok(mut guard) = JOURNAL.lock()
        && let Some(f) = guard.as_mut()
    {
        use std::io::Write;
        let line = serde_json::to_string(msg).unwrap_or_default();
        let _ = writeln!(f, "{line}");
        if matches!(msg, WorkerMessage::Epoch { .. }) {
            let _ = f.sync_data();
        }
    }
}

/// Writes one message on stdout. A closed stdout means the coordinator is
/// gone: stop rather than train for nobody.
fn emit_msg(msg: &WorkerMessage) -> Result<(), Failure> {
    emit(msg).map_err(|e| {
        Failure::new(
            ErrorClass::Interrupted,
            format!("coordinator pipe closed: {e}"),
        )
    })
}

fn emit_line(line: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .map_err(|e| {
            Failure::new(
                ErrorClass::Interrupted,
                format!("coordinator pipe closed: {e}"),
            )
        })
}

fn send(msg: WorkerMessage) -> Result<(), Failure> {
    journal(&msg);
    emit_msg(&msg)
}

/// Replays the journal up to `replay_until` (the checkpoint's epoch) and keeps
/// only those lines: records of an epoch a kill interrupted are dropped, as
/// that epoch is trained again. A fresh start empties it.
fn open_journal(dir: &Path, replay_until: Option<u32>) -> Result<(), Failure> {
    let path = dir.join(trial_dir::JOURNAL);
    let mut kept = String::new();
    if let Some(until) = replay_until {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Ok(msg) = sweep_protocol::message::parse_line(line) else {
                continue;
            };
            let epoch = match &msg {
                WorkerMessage::TrainStep { epoch, .. } | WorkerMessage::Epoch { epoch, .. } => {
                    *epoch
                }
                _ => continue,
            };
            if epoch <= until {
                // The line as it was sent: parsing and printing again could move
                // a float by one ulp (serde_json parses decimals best-effort).
                emit_line(line)?;
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    write_atomic(&path, kept.as_bytes())?;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| {
            Failure::new(
                ErrorClass::Internal,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
    if let Ok(mut g) = JOURNAL.lock() {
        *g = Some(f);
    }
    Ok(())
}

pub fn device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| {
        Failure::new(
            ErrorClass::Internal,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    put_in_place(&tmp, path)
}

/// The temporary a checkpoint is written to before [`put_in_place`] (tch
/// picks the format from the extension, so it ends in .safetensors).
fn checkpoint_tmp(path: &Path) -> PathBuf {
    path.with_extension("tmp.safetensors")
}

/// The commit of an atomic write: the finished temporary `tmp` renamed over `path`.
fn put_in_place(tmp: &Path, path: &Path) -> Result<(), Failure> {
    std::fs::rename(tmp, path).map_err(|e| {
        Failure::new(
            ErrorClass::Internal,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

fn disk_full_hint(e: &dyn std::fmt::Display) -> &'static str {
    if e.to_string().contains("No space left") {
        "; the disk is full: free space and rerun to resume from the last checkpoint"
    } else {
        ""
    }
}

fn save_vs(vs: &nn::VarStore, path: &Path) -> Result<(), Failure> {
    let tmp = checkpoint_tmp(path);
    // Contiguous (NCHW) copies of channels-last weights: the file format is
    // the same whatever layout the trial trained in.
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.contiguous()))
        .collect();
    if let Err(e) = Tensor::write_safetensors(&named, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::new(
            ErrorClass::Internal,
            format!(
                "cannot save checkpoint {}: {e}{}",
                tmp.display(),
                disk_full_hint(&e)
            ),
        ));
    }
    put_in_place(&tmp, path)
}

/// `path` as a second name (hard link) of `same`, the checkpoint just
/// written from `vs`: the weights are not serialized and written twice.
/// Atomic (link to a temp name, rename over `path`); `same` is only ever
/// replaced by a rename, never rewritten in place, so `path` keeps these
/// bytes when `same` moves on. Where the filesystem has no hard links,
/// `vs` is written again.
fn link_or_save(vs: &nn::VarStore, same: &Path, path: &Path) -> Result<(), Failure> {
    let tmp = checkpoint_tmp(path);
    let _ = std::fs::remove_file(&tmp);
    match std::fs::hard_link(same, &tmp) {
        Ok(()) => put_in_place(&tmp, path),
        Err(_) => save_vs(vs, path),
    }
}

/// Per-run data, decoded once.
struct Data {
    layout: Layout,
    train: Arc<SplitCache>,
    valid: SplitCache,
    test: SplitCache,
}

fn load_data(job: &WorkerJob) -> Result<Data, Failure> {
    let t0 = Instant::now();
    let layout =
        data::scan(&job.dataset).map_err(|e| Failure::new(ErrorClass::Data, e.to_string()))?;
    let skip = job.config.skip_bad_images;
    let de = |e: data::DataError| Failure::new(ErrorClass::Data, e.to_string());
    let (train, valid, test) = match shared_cache(job, &layout) {
        Some(ready) => {
            let open = |files| sweep_dataset::cache::open_split(&ready, files, skip).map_err(de);
            (
                open(&layout.train)?,
                open(&layout.valid)?,
                open(&layout.test)?,
            )
        }
        None => {
            let short = job.config.cache_short();
            let load = |files| data::load_split_at(files, short, skip).map_err(de);
            (
                load(&layout.train)?,
                load(&layout.valid)?,
                load(&layout.test)?,
            )
        }
    };
    let counts = |split: &str, c: &SplitCache| {
        let mut v = vec![0usize; layout.classes.len()];
        for &l in &c.labels {
            if let Some(x) = v.get_mut(l as usize) {
                *x += 1;
            }
        }
        SplitCounts {
            split: split.into(),
            counts: v,
        }
    };
    send(WorkerMessage::Data {
        classes: layout.classes.clone(),
        counts: vec![
            counts("train", &train),
            counts("valid", &valid),
            counts("test", &test),
        ],
        skipped: train.skipped + valid.skipped + test.skipped,
        decode_s: t0.elapsed().as_secs_f64(),
    })?;
    Ok(Data {
        layout,
        train: Arc::new(train),
        valid,
        test,
    })
}

/// The shared decoded-image cache for this trial, when the coordinator sent
/// the dataset's hash: normally built by the coordinator before the first
/// trial, built here (under the same lock) only if it has gone missing since.
/// A cache that cannot be built (an unwritable cache directory, a full disk)
/// is not fatal: the worker decodes into its own memory as before.
fn shared_cache(job: &WorkerJob, layout: &Layout) -> Option<sweep_dataset::cache::Ready> {
    use sweep_dataset::cache;
    let hash = job.dataset_hash.as_deref().filter(|_| cache::enabled())?;
    let root = cache::root();
    match cache::ensure(
        &root,
        &job.dataset,
        layout,
        hash,
        job.config.cache_short(),
        0,
    ) {
        Ok(ready) => {
            let how = if ready.built { "built" } else { "mapped" };
            sweep_protocol::log!("{how} the decoded-image cache {}", ready.dir.display());
            Some(ready)
        }
        Err(e) => {
            sweep_protocol::log!(
                "warning: decoding into memory instead of the shared cache under {}: {e}",
                root.display()
            );
            None
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Fragments of libtorch errors that mean the trial's settings cannot work
/// (shapes or arguments libtorch rejects whatever the attempt), so that the
/// coordinator fails the trial instead of retrying it.
const CONFIG_ERRORS: [&str; 9] = [
    // Pooling or convolution on feature maps the image size left too small.
    "output size is too small",
    "kernel size can't be greater than actual input size",
    // Layer sizes that do not fit together (head, classes).
    "shapes cannot be multiplied",
    "must match the size of tensor",
    // A negative or absurd layer size.
    "negative dimension",
    "dimension size must be non-negative",
    "storage size calculation overflowed",
    "dropout probability has to be between 0 and 1",
    // BatchNorm in training mode on one value per channel.
    "expected more than 1 value per channel",
];

fn classify_panic(msg: &str) -> ErrorClass {
    let m = msg.to_ascii_lowercase();
    // cuBLAS and cuDNN report running out of device memory as ALLOC_FAILED.
    if m.contains("out of memory") || m.contains("outofmemory") || m.contains("status_alloc_failed")
    {
        ErrorClass::Oom
    } else if CONFIG_ERRORS.iter().any(|c| m.contains(c)) {
        ErrorClass::Config
    } else {
        ErrorClass::Internal
    }
}

/// The message of a libtorch error without tch's `unwrap` wrapping and the
/// C++ stack trace.
fn torch_message(raw: &str) -> String {
    let s = raw
        .strip_prefix("called `Result::unwrap()` on an `Err` value: ")
        .unwrap_or(raw);
    let s = s.strip_prefix("Torch(\"").unwrap_or(s);
    let s = s.split("\\nException raised from").next().unwrap_or(s);
    let s = s.split("\nException raised from").next().unwrap_or(s);
    s.trim_end_matches("\")")
        .replace("\\n", " ")
        .trim()
        .to_string()
}

/// Runs the whole trial. Panics inside libtorch are caught and classified.
pub fn run(job: &WorkerJob) -> Result<(), Failure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(job))) {
        Ok(r) => r,
        Err(p) => {
            let raw = panic_message(&*p);
            let class = classify_panic(&raw);
            let message = if class == ErrorClass::Oom {
                torch_message(&raw)
            } else if class == ErrorClass::Config {
                let c = &job.config;
                format!(
                    "libtorch rejected the trial's settings (backbone {}, image_size {}, batch_size {}, head {:?}): {}",
                    c.backbone,
                    c.image_size,
                    c.batch_size,
                    c.head,
                    torch_message(&raw)
                )
            } else {
                raw
            };
            Err(Failure::new(class, message))
        }
    }
}

fn run_inner(job: &WorkerJob) -> Result<(), Failure> {
    let mut trainer = Trainer::setup(job)?;
    trainer.resume()?;
    for epoch in (trainer.state.epoch + 1)..=job.config.epochs {
        if let Some(stop) = crate::control::stop_requested() {
            return trainer.stop_early(stop);
        }
        let totals = match trainer.train_epoch(epoch) {
            Ok(t) => t,
            // Stopped by the coordinator in the middle of an epoch: the last committed epoch stands.
            Err(f) => match crate::control::stop_requested() {
                Some(stop) => return trainer.stop_early(stop),
                None => return Err(f),
            },
        };
        trainer.end_epoch(epoch, totals)?;
    }
    trainer.test_and_report()
}

fn threads(job: &WorkerJob) -> (i32, usize) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let total = if job.threads == 0 {
        cores
    } else {
        job.threads as usize
    };
    if tch::Cuda::is_available() {
        // The model runs on the GPU: the host's work is mostly batch assembly
        // (crop, resize, flip), which then sets the pace. Three quarters of
        // the cores assemble batches; torch keeps a quarter for its host ops.
        let torch = (total / 4).max(1);
        return (torch as i32, total.saturating_sub(torch).max(1));
    }
    // On few cores batch assembly is cheap next to the model: give torch every
    // core and one loader thread; from 4 cores on, set a quarter aside.
    if total >= 4 {
        ((total - total / 4) as i32, total / 4)
    } else {
        (total as i32, 1)
    }
}

/// The torch seed of an epoch. Dropout masks, the only randomness training
/// draws from torch's generators, are then a function of (seed, epoch), like
/// the data order and augmentation: a resumed epoch draws the same ones.
fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    // splitmix64 of seed and epoch, kept non-negative.
    let mut z = seed
        ^ (epoch as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

struct Paths {
    dir: PathBuf,
    last: PathBuf,
    best: PathBuf,
    state: PathBuf,
    train_state: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            last: dir.join(trial_dir::LAST),
            best: dir.join(trial_dir::BEST),
            state: dir.join(trial_dir::STATE),
            train_state: dir.join(TRAIN_STATE),
        }
    }
}

/// Running sums over a stretch of batches (a `log_every` window, or an epoch).
struct Running {
    loss: f64,
    correct: i64,
    n: i64,
    batches: u32,
    since: Instant,
}

impl Running {
    fn new() -> Running {
        Running {
            loss: 0.0,
            correct: 0,
            n: 0,
            batches: 0,
            since: Instant::now(),
        }
    }

    fn add(&mut self, loss: f64, correct: i64, n: usize) {
        self.loss += loss * n as f64;
        self.correct += correct;
        self.n += n as i64;
        self.batches += 1;
    }

    fn loss(&self) -> f64 {
        self.loss / self.n.max(1) as f64
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }

    fn images_per_s(&self) -> f64 {
        self.n as f64 / self.since.elapsed().as_secs_f64().max(1e-9)
    }
}

/// One attempt of one trial, stage by stage.
struct Trainer<'a> {
    job: &'a WorkerJob,
    cfg: &'a TrialConfig,
    device: Device,
    data: Data,
    vs: nn::VarStore,
    net: Net,
    opt: Optimizer,
    scaler: GradScaler,
    state: State,
    paths: Paths,
    batches_per_epoch: usize,
    started: Instant,
    images_seen: u64,
    /// Where this attempt's time went, sent with `done`.
    timings: Timings,
}

impl<'a> Trainer<'a> {
    /// Threads, device, `hello`, data, model (with pretrained weights and a
    /// frozen backbone as configured) and optimizer.
    fn setup(job: &'a WorkerJob) -> Result<Trainer<'a>, Failure> {
        let cfg = &job.config;
        let (torch_threads, loader_threads) = threads(job);
        tch::set_num_threads(torch_threads);
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(loader_threads.max(1))
            .build_global();
        let device = device();
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(sweep_protocol::config::CUDNN_BENCHMARK);
        }
        send(WorkerMessage::Hello {
            protocol: sweep_protocol::message::PROTOCOL_VERSION,
            trial: job.trial.clone(),
            pid: std::process::id(),
            libtorch: crate::probe::libtorch_version(),
            device: format!("{device:?}"),
            cuda: device.is_cuda(),
            threads: torch_threads,
        })?;
        tch::manual_seed(cfg.seed as i64);
        let t_data = Instant::now();
        let data = load_data(job)?;
        let data_s = t_data.elapsed().as_secs_f64();
        let t_model = Instant::now();
        let (vs, net) = build_model(cfg, device, data.layout.classes.len() as i64)?;
        if cfg.channels_last {
            to_channels_last(&vs);
        }
        let opt = Optimizer::for_var_store(&vs, optim::Hyper::from_config(cfg), cfg.lr)
            .map_err(|m| Failure::new(ErrorClass::Config, m))?;
        std::fs::create_dir_all(&job.out_dir).map_err(|e| {
            Failure::new(
                ErrorClass::Internal,
                format!("cannot create {}: {e}", job.out_dir.display()),
            )
        })?;
        let mut batches_per_epoch = data.train.len().div_ceil(cfg.batch_size.max(1) as usize);
        if cfg.max_batches > 0 {
            batches_per_epoch = batches_per_epoch.min(cfg.max_batches as usize);
        }
        Ok(Trainer {
            job,
            cfg,
            device,
            data,
            vs,
            net,
            opt,
            scaler: GradScaler::new(cfg.amp && (device.is_cuda() || cpu_loss_scaling())),
            state: State::new(job.select),
            paths: Paths::new(&job.out_dir),
            batches_per_epoch,
            started: Instant::now(),
            images_seen: 0,
            timings: Timings {
                data_s,
                model_s: t_model.elapsed().as_secs_f64(),
                ..Timings::default()
            },
        })
    }

    /// Restores the last committed epoch, if there is one, and replays the
    /// journal up to it.
    fn resume(&mut self) -> Result<(), Failure> {
        let t0 = Instant::now();
        let restored = self.restore();
        self.timings.model_s += t0.elapsed().as_secs_f64();
        restored
    }

    fn restore(&mut self) -> Result<(), Failure> {
        let resumed = if self.paths.train_state.exists() {
            self.load_train_state()?;
            true
        } else if let (true, Ok(text)) = (
            self.paths.last.exists(),
            std::fs::read_to_string(&self.paths.state),
        ) && let Ok(s) = serde_json::from_str::<State>(&text)
        {
            // Written by a worker before exact resume: weights and counters only.
            self.vs
                .load(&self.paths.last)
                .map_err(|e| self.cannot_resume(&self.paths.last, e))?;
            sweep_protocol::log!(
                "{} holds no training state (an older worker's checkpoint): optimizer state restarts",
                self.paths.dir.display()
            );
            self.state = s;
            true
        } else {
            false
        };
        if resumed {
            if self.state.select != self.job.select {
                sweep_protocol::log!(
                    "the best checkpoint so far (epoch {}) was chosen by {:?}; from now on {:?} decides",
                    self.state.best_epoch,
                    self.state.select,
                    self.job.select
                );
                self.state.select = self.job.select;
            }
            sweep_protocol::log!(
                "resuming {} after epoch {}",
                self.job.trial,
                self.state.epoch
            );
            send(WorkerMessage::Resumed {
                from_epoch: self.state.epoch,
            })?;
        }
        open_journal(
            &self.paths.dir,
            (self.state.epoch > 0).then_some(self.state.epoch),
        )
    }

    fn cannot_resume(&self, path: &Path, e: impl std::fmt::Display) -> Failure {
        Failure::new(
            ErrorClass::Internal,
            format!("cannot resume from {}: {e}", path.display()),
        )
    }

    fn load_train_state(&mut self) -> Result<(), Failure> {
        let path = self.paths.train_state.clone();
        let saved = read_train_state(&path).map_err(|e| self.cannot_resume(&path, e))?;
        if saved.meta.optimizer != self.opt.hyper().name() {
            return Err(self.cannot_resume(
                &path,
                format!(
                    "it was written for optimizer {}, this trial uses {}",
                    saved.meta.optimizer,
                    self.opt.hyper().name()
                ),
            ));
        }
        load_weights(&self.vs, &saved.model).map_err(|e| self.cannot_resume(&path, e))?;
        self.opt
            .load_state_tensors(&saved.optim)
            .map_err(|e| self.cannot_resume(&path, e))?;
        self.scaler.restore(saved.meta.scaler);
        self.state = saved.meta.state;
        // A kill between the commit and the end of the exports: finish them.
        let exported = std::fs::read_to_string(&self.paths.state)
            .ok()
            .and_then(|t| serde_json::from_str::<State>(&t).ok());
        if exported.as_ref() != Some(&self.state) || !self.paths.last.exists() {
            self.export(self.state.best_epoch == self.state.epoch)?;
        }
        Ok(())
    }

    /// Trains one epoch: lr for the epoch, batches from the loader thread, one
    /// optimizer step each, a `train_step` record every `log_every` batches and
    /// one for the epoch's last, partial window.
    fn train_epoch(&mut self, epoch: u32) -> Result<Running, Failure> {
        let cfg = self.cfg;
        let lr = lr_at(cfg, epoch);
        self.opt.set_lr(BACKBONE_GROUP, lr * cfg.backbone_lr_scale);
        self.opt.set_lr(HEAD_GROUP, lr);
        tch::manual_seed(epoch_seed(cfg.seed, epoch));
        let (s, seed) = (cfg.image_size, cfg.seed);
        let cache = Arc::clone(&self.data.train);
        let augment = cfg.augment.clone();
        let order = data::epoch_order(cache.len(), seed, epoch);
        let device = self.device;
        let mut staging = Vec::new();
        let rx = spawn_loader(
            order,
            cfg.batch_size as usize,
            self.batches_per_epoch,
            epoch,
            move |idx| {
                // Pixels go to (pinned) host memory here, on the loader thread.
                host_batch(idx.len(), s, device, &mut staging, |out| {
                    data::train_batch_into(&cache, idx, s, &augment, seed, epoch, out)
                })
            },
        );
        let mut epoch_run = Running::new();
        let mut window = Running::new();
        let mut batch_no = 0u32;
        let mut waited = Instant::now();
        for batch in rx.iter() {
            let computing = Instant::now();
            self.timings.batch_wait_s += computing.duration_since(waited).as_secs_f64();
            let (pixels, labels) = batch?;
            batch_no += 1;
            let n = labels.len();
            let xs = device_input(&pixels, self.device, cfg.channels_last);
            let ys = device_labels(&labels, self.device);
            let out = train_step(&self.net, &mut self.opt, &mut self.scaler, &xs, &ys);
            let finite = out.loss.is_finite();
            if !finite && !self.scaler.enabled {
                return Err(Failure::new(
                    ErrorClass::Nan,
                    format!(
                        "loss is {} at epoch {epoch} batch {batch_no}; try a lower lr",
                        out.loss
                    ),
                ));
            }
            if n == 1 {
                self.check_single_image_batch(epoch, batch_no)?;
            }
            self.state.step += 1;
            self.images_seen += n as u64;
            // Under amp a step with a non-finite loss was skipped and the
            // scale lowered, as torch's GradScaler does; it counts as a
            // batch but not in the running loss and accuracy.
            if finite {
                epoch_run.add(out.loss, out.correct, n);
                window.add(out.loss, out.correct, n);
            }
            if window.batches == cfg.log_every {
                self.record_window(epoch, batch_no, lr, &mut window)?;
            }
            if STOP.load(Ordering::SeqCst) {
                return Err(Failure::new(
                    ErrorClass::Interrupted,
                    format!(
                        "stopped by signal during epoch {epoch}; last checkpoint is epoch {}",
                        self.state.epoch
                    ),
                ));
            }
            if crate::control::stop_requested().is_some() {
                return Err(Failure::new(
                    ErrorClass::Interrupted,
                    format!("stopped by the coordinator during epoch {epoch}"),
                ));
            }
            waited = Instant::now();
            self.timings.train_s += waited.duration_since(computing).as_secs_f64();
        }
        if epoch_run.n == 0 && batch_no > 0 {
            return Err(Failure::new(
                ErrorClass::Nan,
                format!(
                    "the loss was not finite at any of the {batch_no} batches of epoch {epoch}, under amp's loss scaling; try a lower lr or amp = false"
                ),
            ));
        }
        if (batch_no as usize) < self.batches_per_epoch {
            return Err(Failure::new(
                ErrorClass::Internal,
                format!(
                    "the data loader ended epoch {epoch} after {batch_no} of {} batches",
                    self.batches_per_epoch
                ),
            ));
        }
        if window.batches > 0 {
            self.record_window(epoch, batch_no, lr, &mut window)?;
        }
        Ok(epoch_run)
    }

    fn record_window(
        &mut self,
        epoch: u32,
        batch: u32,
        lr: f64,
        window: &mut Running,
    ) -> Result<(), Failure> {
        send(WorkerMessage::TrainStep {
            epoch,
            batch,
            step: self.state.step,
            loss: window.loss(),
            accuracy: window.accuracy(),
            lr,
            images_per_s: window.images_per_s(),
        })?;
        *window = Running::new();
        Ok(())
    }

    /// BatchNorm in training mode normalises every channel over batch × height
    /// × width values. With one, libtorch does not fail (PyTorch's Python layer
    /// does): it divides by n − 1 = 0 and the running variance turns NaN, which
    /// would surface later as a NaN validation loss blamed on the lr.
    fn check_single_image_batch(&self, epoch: u32, batch: u32) -> Result<(), Failure> {
        if self.net.freeze_backbone {
            return Ok(());
        }
        let broken = self
            .vs
            .variables()
            .into_iter()
            .filter(|(k, _)| k.ends_with("running_var"))
            .find(|(_, v)| v.isfinite().all().int64_value(&[]) == 0);
        match broken {
            None => Ok(()),
            Some((name, _)) => Err(Failure::new(
                ErrorClass::Config,
                format!(
                    "epoch {epoch} batch {batch} holds a single image, and BatchNorm cannot train on one value per channel \
                     ({name} became NaN): batch_size {} leaves one of the {} training images over; choose another batch_size \
                     (or max_batches), or a larger image_size",
                    self.cfg.batch_size,
                    self.data.train.len()
                ),
            )),
        }
    }

    /// Validation, the choice of the best checkpoint, the commit and exports,
    /// and the epoch's `epoch` and `checkpoint` messages.
    fn end_epoch(&mut self, epoch: u32, train: Running) -> Result<(), Failure> {
        let train_secs = train.since.elapsed().as_secs_f64();
        let cfg = self.cfg;
        let t_valid = Instant::now();
        let val = evaluate(&self.net, &self.data.valid, cfg, self.device, false)?;
        self.timings.valid_s += t_valid.elapsed().as_secs_f64();
        if !val.loss.is_finite() {
            return Err(Failure::new(
                ErrorClass::Nan,
                format!(
                    "validation loss is {} after epoch {epoch}; try a lower lr",
                    val.loss
                ),
            ));
        }
        self.state.epoch = epoch;
        self.state.select = self.job.select;
        let improved = self.state.improves(self.job.select, val.loss, val.accuracy);
        if improved {
            self.state.best_epoch = epoch;
            self.state.best_val_accuracy = val.accuracy;
            self.state.best_val_loss = Some(val.loss);
        }
        let msg = WorkerMessage::Epoch {
            epoch,
            train_loss: train.loss(),
            train_accuracy: train.accuracy(),
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            step: self.state.step,
            seconds: train.since.elapsed().as_secs_f64(),
            images_per_s: train.n as f64 / train_secs.max(1e-9),
        };
        // Journaled before the commit, sent after it: a kill in between leaves
        // a journal line that the resume either drops (not committed) or replays.
        journal(&msg);
        let t_save = Instant::now();
        self.commit()?;
        self.export(improved)?;
        self.timings.checkpoint_s += t_save.elapsed().as_secs_f64();
        emit_msg(&msg)?;
        send(WorkerMessage::Checkpoint {
            epoch,
            kind: "last".into(),
            path: self.paths.last.display().to_string(),
        })?;
        if improved {
            send(WorkerMessage::Checkpoint {
                epoch,
                kind: "best".into(),
                path: self.paths.best.display().to_string(),
            })?;
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(Failure::new(
                ErrorClass::Interrupted,
                format!("stopped by signal after epoch {epoch}"),
            ));
        }
        Ok(())
    }

    /// Writes `train_state.safetensors`: from here on a resume starts after this epoch.
    fn commit(&self) -> Result<(), Failure> {
        let meta = TrainMeta {
            format: TRAIN_STATE_FORMAT,
            state: self.state.clone(),
            optimizer: self.opt.hyper().name().to_string(),
            scaler: self.scaler.state(),
            rng_seed: self.cfg.seed,
            bits: FloatBits::of(&self.state, &self.scaler.state()),
        };
        let mut tensors: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("model.{k}"), t))
            .collect();
        tensors.extend(
            self.opt
                .state_tensors()
                .into_iter()
                .map(|(k, t)| (format!("optim.{k}"), t)),
        );
        write_train_state(&self.paths.train_state, &meta, tensors)
    }

    /// `last.safetensors`, `best.safetensors` (when this epoch is the best:
    /// the same bytes, so a second name of the same file), `state.json`.
    fn export(&self, best: bool) -> Result<(), Failure> {
        save_vs(&self.vs, &self.paths.last)?;
        if best {
            link_or_save(&self.vs, &self.paths.last, &self.paths.best)?;
        }
        let json = serde_json::to_vec(&self.state)
            .map_err(|e| Failure::new(ErrorClass::Internal, e.to_string()))?;
        write_atomic(&self.paths.state, &json)
    }

    /// Early stopping, asked on stdin: the last committed epoch is where this
    /// trial ends. With `test`, the best checkpoint is tested as at a normal
    /// end; either way `done` reports the epochs actually trained.
    /// The last message of a run: epochs done, wall time, throughput.
    fn send_done(&self) -> Result<(), Failure> {
        let wall = self.started.elapsed().as_secs_f64();
        send(WorkerMessage::Done {
            epochs: self.state.epoch,
            wall_s: wall,
            images_per_s: self.images_seen as f64 / wall.max(1e-9),
            best_val_accuracy: self.state.best_val_accuracy,
            timings: Some(self.timings),
        })
    }

    fn stop_early(&mut self, (after_epoch, test): (u32, bool)) -> Result<(), Failure> {
        sweep_protocol::log!(
            "stopping early as the coordinator asked (after epoch {after_epoch}); last checkpoint: epoch {}",
            self.state.epoch
        );
        if test {
            return self.test_and_report();
        }
        self.send_done()
    }

    /// The test split on the best checkpoint: `test`, `confusion`,
    /// `misclassified`, `done`.
    fn test_and_report(&mut self) -> Result<(), Failure> {
        let t_test = Instant::now();
        let best = &self.paths.best;
        if best.exists() {
            self.vs.load(best).map_err(|e| {
                Failure::new(
                    ErrorClass::Internal,
                    format!("cannot load {}: {e}", best.display()),
                )
            })?;
        }
        let cfg = self.cfg;
        let test = evaluate(&self.net, &self.data.test, cfg, self.device, true)?;
        let classes = &self.data.layout.classes;
        let k = classes.len();
        let mut matrix = vec![vec![0u64; k]; k];
        let mut mis = Vec::new();
        for (i, (&pred, &prob)) in test.preds.iter().zip(&test.probs).enumerate() {
            let truth = self.data.test.labels.get(i).copied().unwrap_or(0) as usize;
            let pred = pred as usize;
            if let Some(cell) = matrix.get_mut(truth).and_then(|r| r.get_mut(pred)) {
                *cell += 1;
            }
            if truth != pred {
                mis.push(Misclassified {
                    file: self
                        .data
                        .test
                        .paths
                        .get(i)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    truth: classes.get(truth).cloned().unwrap_or_default(),
                    pred: classes.get(pred).cloned().unwrap_or_default(),
                    prob,
                });
            }
        }
        let per_class = classes
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let total: u64 = matrix[c].iter().sum();
                let correct = matrix[c][c];
                ClassAccuracy {
                    class: name.clone(),
                    correct,
                    total,
                    accuracy: if total > 0 {
                        correct as f64 / total as f64
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        self.timings.test_s = t_test.elapsed().as_secs_f64();
        send(WorkerMessage::Test {
            loss: test.loss,
            accuracy: test.accuracy,
            n: test.preds.len(),
            per_class,
            epoch: self.state.best_epoch,
        })?;
        send(WorkerMessage::Confusion {
            classes: classes.clone(),
            matrix,
        })?;
        send(WorkerMessage::Misclassified { items: mis })?;
        self.send_done()
    }
}

/// The network and its variables: backbone, head, pretrained weights, frozen
/// backbone. All of it follows from the configuration, so what libtorch
/// rejects while building (a negative layer size, …) is a config error.
fn build_model(
    cfg: &TrialConfig,
    device: Device,
    classes: i64,
) -> Result<(nn::VarStore, Net), Failure> {
    let mut vs = nn::VarStore::new(device);
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        models::build(&vs.root(), &cfg.backbone, classes, &cfg.head)
    }));
    let mut net = match built {
        Ok(net) => net.map_err(|m| Failure::new(ErrorClass::Config, m))?,
        Err(p) => {
            let raw = panic_message(&*p);
            let class = if classify_panic(&raw) == ErrorClass::Oom {
                ErrorClass::Oom
            } else {
                ErrorClass::Config
            };
            return Err(Failure::new(
                class,
                format!(
                    "cannot build {} with head {:?}: {}",
                    cfg.backbone,
                    cfg.head,
                    torch_message(&raw)
                ),
            ));
        }
    };
    if let Some(p) = &cfg.pretrained {
        let r = weights::load_into(&mut vs, p, net.head_prefix)
            .map_err(|m| Failure::new(ErrorClass::Config, m))?;
        sweep_protocol::log!(
            "loaded {} tensors from {} ({} head tensors re-initialised)",
            r.loaded,
            p.display(),
            r.head_skipped
        );
    }
    if cfg.freeze_backbone {
        net.freeze_backbone = true;
        let prefix = format!("{}.", net.head_prefix);
        for (k, t) in vs.variables() {
            if !(k.starts_with(&prefix) || k == net.head_prefix) {
                let _ = t.set_requires_grad(false);
            }
        }
    }
    Ok((vs, net))
}

/// Gives every 4-d variable (convolution weights) channels-last strides, as
/// `model.to(memory_format=torch.channels_last)` does; the inputs already
/// arrive channels-last (an NHWC buffer viewed as NCHW), so convolutions run
/// in NHWC (tensor cores under amp) without layout conversions.
fn to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = v.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                v.set_data(&cl);
            }
        }
    })
}

fn lr_at(cfg: &TrialConfig, epoch: u32) -> f64 {
    match cfg.schedule {
        Schedule::None => cfg.lr,
        Schedule::Step => cfg.lr * cfg.gamma.powi(((epoch - 1) / cfg.step_size.max(1)) as i32),
        Schedule::Cosine => {
            let t = (epoch - 1) as f64 / cfg.epochs.max(1) as f64;
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// What one [`train_step`] did.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// The batch's mean cross-entropy (before the step).
    pub loss: f64,
    /// Correct top-1 predictions in the batch (before the step).
    pub correct: i64,
    /// Whether the optimizer stepped: not when the loss is not finite (the
    /// caller reports it), nor when the loss scaler found inf/NaN gradients.
    pub stepped: bool,
}

/// One optimisation step on one batch, as the trainer takes it: forward in
/// training mode (under autocast when loss scaling is on), cross-entropy in
/// f32, backward, optimizer step through the scaler. The host reads from the
/// device once (loss, correct count and, under amp, the inf/NaN flag
/// together), where torch's GradScaler reads once too: every read makes the
/// host wait until the device has run everything queued before it. A step
/// whose loss is not finite is not taken.
pub fn train_step(
    net: &Net,
    opt: &mut Optimizer,
    scaler: &mut GradScaler,
    xs: &Tensor,
    ys: &Tensor,
) -> StepOutcome {
    let logits = crate::autocast::cuda(scaler.enabled, || net.forward_t(xs, true));
    let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(ys);
    let correct = logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Int64);
    let found_inf = scaler.backward(opt, &loss);
    let mut read = vec![
        loss.detach().to_kind(Kind::Double),
        correct.to_kind(Kind::Double),
    ];
    // `found_inf` has one element in one dimension; the others none.
    read.extend(
        found_inf
            .as_ref()
            .map(|f| f.reshape([]).to_kind(Kind::Double)),
    );
    let values = Vec::<f64>::try_from(Tensor::stack(&read, 0).to_device(tch::Device::Cpu))
        .expect("a 1-d f64 tensor");
    let (loss_v, correct) = (values[0], values[1] as i64);
    let finite_grads = values.get(2).is_none_or(|&f| f == 0.0);
    let stepped = scaler.step(opt, loss_v.is_finite() && finite_grads);
    StepOutcome {
        loss: loss_v,
        correct,
        stepped,
    }
}

/// `amp` scales the loss only on CUDA. `SWEEP_TEST_CPU_LOSS_SCALING=1` scales
/// it on the CPU too, so that the test suite runs the amp training loop on a
/// machine without a GPU: autocast changes only CUDA operations, and a scale
/// that is a power of two leaves f32 gradients as they were.
fn cpu_loss_scaling() -> bool {
    std::env::var_os("SWEEP_TEST_CPU_LOSS_SCALING").is_some_and(|v| v == "1")
}

/// The loss scaler's state, checkpointed with the optimizer's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    /// Steps since the last inf/NaN (torch's `_growth_tracker`).
    pub good_steps: u32,
}

/// Dynamic loss scaling for mixed precision, by torch.amp.GradScaler's rules
/// (init_scale 2^16, growth_factor 2, backoff_factor 0.5, growth_interval
/// 2000): the loss is multiplied by the scale before backward; the gradients
/// are divided by it again and checked for inf/NaN with one device-to-host
/// read per step; a step with inf/NaN gradients is skipped and halves the
/// scale, 2000 good steps in a row double it.
#[derive(Debug)]
pub struct GradScaler {
    pub enabled: bool,
    scale: f64,
    good_steps: u32,
}

impl GradScaler {
    const INIT_SCALE: f64 = 65536.0;
    const GROWTH_FACTOR: f64 = 2.0;
    const BACKOFF_FACTOR: f64 = 0.5;
    const GROWTH_INTERVAL: u32 = 2000;

    pub fn new(enabled: bool) -> Self {
        GradScaler {
            enabled,
            scale: Self::INIT_SCALE,
            good_steps: 0,
        }
    }

    pub fn state(&self) -> ScalerState {
        ScalerState {
            scale: self.scale,
            good_steps: self.good_steps,
        }
    }

    pub fn restore(&mut self, s: ScalerState) {
        self.scale = s.scale;
        self.good_steps = s.good_steps;
    }

    /// Zeroes the gradients and runs backward (on the scaled loss under
    /// amp, then unscales the gradients and checks them). Under amp returns
    /// the inf/NaN flag, still on the device; nothing here reads it.
    pub fn backward(&self, opt: &mut Optimizer, loss: &Tensor) -> Option<Tensor> {
        opt.zero_grad();
        if !self.enabled {
            loss.backward();
            return None;
        }
        (loss * self.scale).backward();
        Some(unscale_and_check(&opt.grads(), 1.0 / self.scale))
    }

    /// After [`GradScaler::backward`]: the optimizer steps unless the loss or
    /// the gradients were not finite, and under amp the scale follows (a
    /// skipped step halves it). Returns whether the step was taken.
    pub fn step(&mut self, opt: &mut Optimizer, finite: bool) -> bool {
        if finite {
            opt.step();
        }
        if self.enabled {
            self.update(!finite);
        }
        finite
    }

    /// torch's `_amp_update_scale_`.
    fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= Self::BACKOFF_FACTOR;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                let grown = self.scale * Self::GROWTH_FACTOR;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.good_steps = 0;
            }
        }
    }
}

/// Multiplies every gradient by `inv_scale` in place and returns a
/// one-element flag on the gradients' device, non-zero when any of them was
/// not finite, with libtorch's fused kernel
/// (`_amp_foreach_non_finite_check_and_unscale_`, what torch.amp.GradScaler
/// calls): one kernel a gradient, no read by the host. As in torch, the check
/// is on the scaled values and `inv_scale` is the f32 of the f64 reciprocal
/// of the scale.
fn unscale_and_check(grads: &[Tensor], inv_scale: f64) -> Tensor {
    let device = grads.first().map_or(tch::Device::Cpu, |g| g.device());
    tch::no_grad(|| {
        let mut found_inf = Tensor::zeros([1], (Kind::Float, device));
        let inv = Tensor::full([1], inv_scale as f32 as f64, (Kind::Float, device));
        for g in grads {
            let mut g = g.shallow_clone();
            g.internal_amp_non_finite_check_and_unscale(&mut found_inf, &inv);
        }
        found_inf
    })
}

type Loaded<T> = Result<T, Failure>;

/// Builds the epoch's batches (chunks of `order`, at most `batches` of them)
/// on a thread of its own, two ahead of compute. A batch that cannot be built
/// ends the epoch with a `data` failure; a panic while building one ends it
/// with an `internal` failure (`oom` when memory ran out) that names the
/// epoch and batch — never with a channel that just closes, which would
/// look like the end of the epoch.
fn spawn_loader<T, F>(
    order: Vec<usize>,
    bs: usize,
    batches: usize,
    epoch: u32,
    mut build: F,
) -> Receiver<Loaded<T>>
where
    T: Send + 'static,
    F: FnMut(&[usize]) -> Result<T, String> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        for (i, chunk) in order.chunks(bs.max(1)).take(batches).enumerate() {
            let item = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(chunk)))
            {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(m)) => Err(Failure::new(
                    ErrorClass::Data,
                    format!("epoch {epoch} batch {}: {m}", i + 1),
                )),
                Err(p) => {
                    // Pinned host memory is allocated here: running out of it is `oom`.
                    let raw = panic_message(&*p);
                    Err(match classify_panic(&raw) {
                        ErrorClass::Oom => Failure::new(
                            ErrorClass::Oom,
                            format!("epoch {epoch} batch {}: {}", i + 1, torch_message(&raw)),
                        ),
                        _ => Failure::new(
                            ErrorClass::Internal,
                            format!(
                                "the data loader panicked building batch {} of epoch {epoch}: {raw}",
                                i + 1
                            ),
                        ),
                    })
                }
            };
            let failed = item.is_err();
            if tx.send(item).is_err() || failed {
                return;
            }
        }
    });
    rx
}

pub struct Eval {
    pub loss: f64,
    pub accuracy: f64,
    pub preds: Vec<i64>,
    pub probs: Vec<f64>,
}

/// Loss and accuracy of `net` on `split`, at the trial's image size, batch
/// size and memory format; `keep`: every image's prediction and probability.
pub fn evaluate(
    net: &Net,
    split: &SplitCache,
    cfg: &TrialConfig,
    device: Device,
    keep: bool,
) -> Result<Eval, Failure> {
    let (s, bs) = (cfg.image_size, cfg.batch_size as usize);
    tch::no_grad(|| {
        let n = split.len();
        // Sums kept on the device and read once at the end: a read a batch
        // would make the host wait for the device at every batch.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut correct_sum = Tensor::zeros([], (Kind::Int64, device));
        let (mut preds, mut probs) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..n).collect();
        let mut staging = Vec::new();
        for chunk in idx.chunks(bs.max(1)) {
            let (host, labels) = host_batch(chunk.len(), s, device, &mut staging, |out| {
                data::eval_batch_into(split, chunk, s, out)
            })
            .map_err(|m| Failure::new(ErrorClass::Data, m))?;
            let xs = device_input(&host, device, cfg.channels_last);
            let ys = device_labels(&labels, device);
            let logits = net.forward_t(&xs, false).to_kind(Kind::Float);
            loss_sum +=
                logits.cross_entropy_for_logits(&ys).to_kind(Kind::Double) * chunk.len() as f64;
            let pred = logits.argmax(-1, false);
            correct_sum += pred.eq_tensor(&ys).sum(Kind::Int64);
            if keep {
                probs.push(logits.softmax(-1, Kind::Float).max_dim(-1, false).0);
                preds.push(pred);
            }
        }
        let loss = loss_sum.double_value(&[]);
        let correct = correct_sum.int64_value(&[]);
        let (preds, probs) = if keep && !preds.is_empty() {
            let preds = Vec::<i64>::try_from(Tensor::cat(&preds, 0).to_device(Device::Cpu))
                .unwrap_or_default();
            let probs = Vec::<f64>::try_from(
                Tensor::cat(&probs, 0)
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .unwrap_or_default();
            (preds, probs)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Eval {
            loss: loss / n.max(1) as f64,
            accuracy: correct as f64 / n.max(1) as f64,
            preds,
            probs,
        })
    })
}

// ---- train_state.safetensors ----

use sweep_protocol::trial_dir::{self, TRAIN_STATE};
const TRAIN_STATE_FORMAT: u32 = 1;

/// The non-tensor part of `train_state.safetensors`, as JSON under the
/// `sweep` key of the safetensors metadata. Tensors are named `model.<var>`
/// (every variable: parameters and BatchNorm buffers) and `optim.<param>.<slot>`.
#[derive(Debug, Serialize, Deserialize)]
struct TrainMeta {
    format: u32,
    state: State,
    /// `sgd`, `adam` or `adamw`.
    optimizer: String,
    scaler: ScalerState,
    /// The RNG state: the torch generators are reseeded with
    /// `epoch_seed(rng_seed, epoch)` at every epoch start, so this seed and the
    /// next epoch determine it.
    rng_seed: u64,
    /// The floats above as IEEE-754 bits, which are what a resume restores:
    /// serde_json parses decimals best-effort and may miss by one ulp, which
    /// could turn a tie in the best-checkpoint choice.
    bits: FloatBits,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct FloatBits {
    best_val_accuracy: u64,
    best_val_loss: Option<u64>,
    scale: u64,
}

impl FloatBits {
    fn of(state: &State, scaler: &ScalerState) -> FloatBits {
        FloatBits {
            best_val_accuracy: state.best_val_accuracy.to_bits(),
            best_val_loss: state.best_val_loss.map(f64::to_bits),
            scale: scaler.scale.to_bits(),
        }
    }

    fn restore(&self, state: &mut State, scaler: &mut ScalerState) {
        state.best_val_accuracy = f64::from_bits(self.best_val_accuracy);
        state.best_val_loss = self.best_val_loss.map(f64::from_bits);
        scaler.scale = f64::from_bits(self.scale);
    }
}

struct SavedTrainState {
    meta: TrainMeta,
    model: HashMap<String, Tensor>,
    optim: HashMap<String, Tensor>,
}

/// A tensor's bytes for safetensors, from a contiguous CPU copy.
struct CpuView {
    tensor: Tensor,
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
}

fn dtype_of(kind: Kind) -> Option<safetensors::Dtype> {
    use safetensors::Dtype as D;
    Some(match kind {
        Kind::Float => D::F32,
        Kind::Double => D::F64,
        Kind::Half => D::F16,
        Kind::BFloat16 => D::BF16,
        Kind::Int64 => D::I64,
        Kind::Int => D::I32,
        Kind::Uint8 => D::U8,
        Kind::Bool => D::BOOL,
        _ => return None,
    })
}

fn kind_of(dtype: safetensors::Dtype) -> Option<Kind> {
    [
        Kind::Float,
        Kind::Double,
        Kind::Half,
        Kind::BFloat16,
        Kind::Int64,
        Kind::Int,
        Kind::Uint8,
        Kind::Bool,
    ]
    .into_iter()
    .find(|k| dtype_of(*k) == Some(dtype))
}

impl safetensors::View for CpuView {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let mut bytes = vec![0u8; self.data_len()];
        self.tensor.copy_data_u8(&mut bytes, self.tensor.numel());
        bytes.into()
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

fn write_train_state(
    path: &Path,
    meta: &TrainMeta,
    tensors: Vec<(String, Tensor)>,
) -> Result<(), Failure> {
    let internal = |m: String| Failure::new(ErrorClass::Internal, m);
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = dtype_of(t.kind())
            .ok_or_else(|| internal(format!("cannot checkpoint {name}: dtype {:?}", t.kind())))?;
        let tensor = t.detach().to_device(Device::Cpu).contiguous();
        views.push((
            name,
            CpuView {
                shape: tensor.size().iter().map(|&d| d as usize).collect(),
                tensor,
                dtype,
            },
        ));
    }
    let json = serde_json::to_string(meta).map_err(|e| internal(e.to_string()))?;
    let metadata = Some(HashMap::from([("sweep".to_string(), json)]));
    let tmp = checkpoint_tmp(path);
    let written = safetensors::serialize_to_file(views, &metadata, &tmp)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(internal(format!(
            "cannot save checkpoint {}: {e}{}",
            tmp.display(),
            disk_full_hint(&e)
        )));
    }
    put_in_place(&tmp, path)
}

fn read_train_state(path: &Path) -> Result<SavedTrainState, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format!("{e:?}"))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("sweep"))
        .ok_or("no `sweep` metadata")?;
    let mut meta: TrainMeta = serde_json::from_str(json).map_err(|e| format!("metadata: {e}"))?;
    let bits = meta.bits;
    bits.restore(&mut meta.state, &mut meta.scaler);
    if meta.format != TRAIN_STATE_FORMAT {
        return Err(format!(
            "format {} (this worker reads {TRAIN_STATE_FORMAT})",
            meta.format
        ));
    }
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{e:?}"))?;
    let (mut model, mut optim) = (HashMap::new(), HashMap::new());
    for (name, view) in file.tensors() {
        let kind =
            kind_of(view.dtype()).ok_or_else(|| format!("{name}: dtype {:?}", view.dtype()))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(k) = name.strip_prefix("model.") {
            model.insert(k.to_string(), t);
        } else if let Some(k) = name.strip_prefix("optim.") {
            optim.insert(k.to_string(), t);
        } else {
            return Err(format!("unexpected tensor {name}"));
        }
    }
    Ok(SavedTrainState { meta, model, optim })
}

/// Copies `tensors` into the store's variables: the same names, the same shapes.
fn load_weights(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let vars = vs.variables();
    if let Some(extra) = tensors.keys().find(|k| !vars.contains_key(*k)) {
        return Err(format!("{extra} is not a variable of this model"));
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let src = tensors
                .get(name)
                .ok_or_else(|| format!("{name} is missing"))?;
            if src.size() != var.size() {
                return Err(format!(
                    "{name} has shape {:?}, the model {:?}",
                    src.size(),
                    var.size()
                ));
            }
            var.shallow_clone()
                .f_copy_(src)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Algorithm, Hyper};

    fn batch(idx: &[usize]) -> Result<data::Batch, String> {
        Ok(data::Batch {
            pixels: vec![0; idx.len()],
            labels: idx.iter().map(|&i| i as i64).collect(),
        })
    }

    #[test]
    fn loader_delivers_every_batch_in_order() {
        let rx = spawn_loader((0..10).collect(), 4, 3, 1, batch);
        let got: Vec<Vec<i64>> = rx.iter().map(|b| b.unwrap().labels).collect();
        assert_eq!(got, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    }

    #[test]
    fn a_panic_in_the_loader_fails_the_epoch_instead_of_shortening_it() {
        let rx = spawn_loader((0..12).collect(), 4, 3, 7, |idx: &[usize]| {
            if idx[0] == 4 {
                panic!("index 99 out of range");
            }
            batch(idx)
        });
        let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
        assert_eq!(
            items.len(),
            2,
            "the batch before the panic, then the failure; nothing after"
        );
        assert!(items[0].is_ok());
        let Err(f) = &items[1] else {
            panic!("a failure, not a closed channel")
        };
        assert_eq!(f.class, ErrorClass::Internal);
        assert!(
            f.message.contains("epoch 7")
                && f.message.contains("batch 2")
                && f.message.contains("index 99 out of range"),
            "{}",
            f.message
        );
    }

    /// Pinned host memory is allocated on the loader thread: running out of
    /// it is `oom` (a smaller batch may fit), like device memory.
    #[test]
    fn running_out_of_memory_in_the_loader_is_oom() {
        let rx = spawn_loader(
            (0..8).collect(),
            4,
            2,
            2,
            |_: &[usize]| -> Result<data::Batch, String> {
                panic!(
                    "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB\\nException raised from malloc at alloc.cpp:1\")"
                )
            },
        );
        let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
        let Err(f) = &items[0] else {
            panic!("a failure")
        };
        assert_eq!(f.class, ErrorClass::Oom);
        assert!(
            f.message.contains("epoch 2 batch 1")
                && f.message
                    .contains("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "{}",
            f.message
        );
        assert!(
            !f.message.contains("Exception raised from") && !f.message.contains("unwrap"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_batch_error_is_a_data_failure_naming_the_epoch() {
        let rx = spawn_loader((0..8).collect(), 4, 2, 3, |_: &[usize]| {
            Err("cannot crop".to_string())
        });
        let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
        assert_eq!(items.len(), 1);
        let Err(f) = &items[0] else {
            panic!("a data failure")
        };
        assert_eq!(f.class, ErrorClass::Data);
        assert!(
            f.message.contains("epoch 3") && f.message.contains("cannot crop"),
            "{}",
            f.message
        );
    }

    /// A tch call that fails panics with `unwrap`'s message around libtorch's:
    /// the real messages of libtorch 2.11, obtained by making it fail.
    fn torch_panic(f: impl FnOnce() -> Tensor + std::panic::UnwindSafe) -> String {
        let p = std::panic::catch_unwind(f).expect_err("libtorch should have refused");
        panic_message(&*p)
    }

    #[test]
    fn libtorch_shape_and_argument_errors_are_config_errors() {
        let cases = [
            // A feature map the image size left at 1×1, pooled 2×2 (VGG below 32 px).
            torch_panic(|| {
                Tensor::zeros([1, 3, 1, 1], (Kind::Float, Device::Cpu)).max_pool2d(
                    [2, 2],
                    [2, 2],
                    [0, 0],
                    [1, 1],
                    false,
                )
            }),
            // A convolution kernel larger than its input.
            torch_panic(|| {
                Tensor::zeros([1, 3, 2, 2], (Kind::Float, Device::Cpu)).conv2d(
                    &Tensor::zeros([4, 3, 3, 3], (Kind::Float, Device::Cpu)),
                    None::<Tensor>,
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    1,
                )
            }),
            // A head whose sizes do not chain.
            torch_panic(|| {
                Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)).linear(
                    &Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)),
                    None::<Tensor>,
                )
            }),
            // A negative layer size.
            torch_panic(|| Tensor::zeros([-3, 4], (Kind::Float, Device::Cpu))),
            // A dropout probability out of range.
            torch_panic(|| Tensor::zeros([3], (Kind::Float, Device::Cpu)).dropout(1.5, true)),
        ];
        for raw in &cases {
            assert_eq!(classify_panic(raw), ErrorClass::Config, "{raw}");
            let clean = torch_message(raw);
            assert!(
                !clean.contains("Exception raised from") && !clean.contains("unwrap"),
                "{clean}"
            );
        }
        assert_eq!(
            classify_panic("CUDA out of memory. Tried to allocate 2.00 GiB"),
            ErrorClass::Oom
        );
        // cuBLAS and cuDNN word running out of device memory their own way.
        assert_eq!(
            classify_panic(
                "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
            ),
            ErrorClass::Oom
        );
        assert_eq!(
            classify_panic("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
            ErrorClass::Oom
        );
        assert_eq!(
            classify_panic("called `Option::unwrap()` on a `None` value"),
            ErrorClass::Internal
        );
    }

    /// The whole training step with loss scaling on (the amp path, which on
    /// a machine without CUDA runs in f32: the autocast flag only changes
    /// CUDA operations): one read of loss, correct count and inf flag, the
    /// step taken, the scale's good-step count advanced; then a batch whose
    /// loss is NaN is skipped and halves the scale.
    #[test]
    fn a_train_step_under_loss_scaling_reads_once_and_steps() {
        let cfg = TrialConfig {
            image_size: 32,
            batch_size: 2,
            ..TrialConfig::default()
        };
        let (vs, net) = build_model(&cfg, Device::Cpu, 3).unwrap();
        let mut opt =
            Optimizer::for_var_store(&vs, optim::Hyper::from_config(&cfg), cfg.lr).unwrap();
        let mut scaler = GradScaler::new(true);
        let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let ys = Tensor::from_slice(&[0i64, 2]);
        let params =
            || -> Vec<Tensor> { vs.trainable_variables().iter().map(|t| t.copy()).collect() };
        let before = params();
        let out = train_step(&net, &mut opt, &mut scaler, &xs, &ys);
        assert!(
            out.loss.is_finite() && out.stepped && (0..=2).contains(&out.correct),
            "{out:?}"
        );
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 65536.0,
                good_steps: 1
            }
        );
        let stepped = params();
        assert!(
            before.iter().zip(&stepped).any(|(a, b)| !a.equal(b)),
            "the step changed the weights"
        );
        let out = train_step(&net, &mut opt, &mut scaler, &xs.full_like(f64::NAN), &ys);
        assert!(out.loss.is_nan() && !out.stepped, "{out:?}");
        assert!(
            stepped.iter().zip(&params()).all(|(a, b)| a.equal(b)),
            "a skipped step leaves the weights"
        );
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 32768.0,
                good_steps: 0
            }
        );
    }

    /// Building the model is a function of the configuration alone: a head
    /// with a negative layer size makes libtorch panic, and that is `config`.
    #[test]
    fn a_model_build_panic_is_a_config_error() {
        let cfg = TrialConfig {
            head: sweep_protocol::config::Head::Mlp {
                hidden: vec![-5],
                dropout: 0.0,
            },
            ..TrialConfig::default()
        };
        let Err(f) = build_model(&cfg, Device::Cpu, 3) else {
            panic!("a negative hidden size cannot build")
        };
        assert_eq!(f.class, ErrorClass::Config, "{}", f.message);
        assert!(f.message.contains("negative"), "{}", f.message);
    }

    #[test]
    fn best_epoch_rules() {
        let mut s = State::new(SelectMetric::ValAccuracy);
        assert!(
            s.improves(SelectMetric::ValAccuracy, 9.0, 0.0),
            "the first epoch is the best so far"
        );
        s.best_epoch = 1;
        s.best_val_accuracy = 0.5;
        s.best_val_loss = Some(1.0);
        assert!(s.improves(SelectMetric::ValAccuracy, 2.0, 0.6));
        assert!(
            !s.improves(SelectMetric::ValAccuracy, 0.1, 0.5),
            "a tie keeps the earlier epoch"
        );
        assert!(!s.improves(SelectMetric::ValAccuracy, 0.1, 0.4));
        assert!(s.improves(SelectMetric::ValLoss, 0.9, 0.1));
        assert!(
            !s.improves(SelectMetric::ValLoss, 1.0, 0.9),
            "a tie keeps the earlier epoch"
        );
        assert!(!s.improves(SelectMetric::ValLoss, 1.1, 0.9));
        // An older worker's state.json has no loss: any loss beats none.
        let old: State =
            serde_json::from_str(r#"{"epoch":2,"step":8,"best_val_accuracy":0.5,"best_epoch":1}"#)
                .unwrap();
        assert_eq!(old.select, SelectMetric::ValAccuracy);
        assert!(old.improves(SelectMetric::ValLoss, 5.0, 0.0));
    }

    #[test]
    fn epoch_seeds_differ_and_are_stable() {
        let seeds: std::collections::HashSet<i64> = (1..=50)
            .map(|e| epoch_seed(0, e))
            .chain((1..=50).map(|e| epoch_seed(1, e)))
            .collect();
        assert_eq!(seeds.len(), 100);
        assert!(seeds.iter().all(|&s| s >= 0));
        assert_eq!(epoch_seed(3, 2), epoch_seed(3, 2));
    }

    fn sgd(p: &Tensor) -> Optimizer {
        let h = Hyper {
            algorithm: Algorithm::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
        };
        Optimizer::new(h, 0.5, vec![("p".into(), p.shallow_clone(), 0)]).unwrap()
    }

    /// What `train_step` does with the scaler after the forward pass.
    fn step_on(scaler: &mut GradScaler, opt: &mut Optimizer, loss: &Tensor) -> bool {
        let found = scaler
            .backward(opt, loss)
            .expect("amp checks the gradients");
        let loss = loss.double_value(&[]);
        scaler.step(opt, loss.is_finite() && found.double_value(&[0]) == 0.0)
    }

    /// The mixed-precision path on CPU (no autocast needed to test the scaler):
    /// an overflowing step is skipped and halves the scale, a good step is
    /// taken on unscaled gradients, 2000 good steps double the scale.
    #[test]
    fn grad_scaler_skips_non_finite_steps_and_unscales() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = sgd(&p);
        let mut scaler = GradScaler::new(true);

        // d/dp of sum(p * 1e36) is 1e36; × 65536 overflows f32.
        let stepped = step_on(&mut scaler, &mut opt, &(&p * 1e36).sum(Kind::Float));
        assert!(!stepped);
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 32768.0,
                good_steps: 0
            }
        );
        assert_eq!(
            Vec::<f32>::try_from(&p).unwrap(),
            vec![1.0, -2.0],
            "a skipped step leaves the parameters"
        );
        // Gradient 3 per element; lr 0.5.
        assert!(step_on(&mut scaler, &mut opt, &(&p * 3.0).sum(Kind::Float)));
        assert_eq!(
            Vec::<f32>::try_from(&p).unwrap(),
            vec![-0.5, -3.5],
            "the step used the unscaled gradient"
        );
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 32768.0,
                good_steps: 1
            }
        );
        scaler.restore(ScalerState {
            scale: 32768.0,
            good_steps: 1999,
        });
        assert!(step_on(&mut scaler, &mut opt, &(&p * 0.0).sum(Kind::Float)));
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 65536.0,
                good_steps: 0
            }
        );
        let nan = step_on(&mut scaler, &mut opt, &(&p * f64::NAN).sum(Kind::Float));
        assert!(!nan);
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 32768.0,
                good_steps: 0
            }
        );
    }

    /// The fused check covers every gradient, not just the first: an inf in
    /// the last of three is found, and finite gradients come back unscaled.
    #[test]
    fn unscale_and_check_sees_every_gradient() {
        let grads = || {
            [
                Tensor::from_slice(&[4.0f32, -8.0]),
                Tensor::from_slice(&[2.0f32]),
                Tensor::from_slice(&[16.0f32, 0.0, 1.0]),
            ]
        };
        let g = grads();
        let finite = |g: &[Tensor]| unscale_and_check(g, 0.25).double_value(&[0]) == 0.0;
        assert!(finite(&g));
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), vec![1.0, -2.0]);
        assert_eq!(Vec::<f32>::try_from(&g[1]).unwrap(), vec![0.5]);
        assert_eq!(Vec::<f32>::try_from(&g[2]).unwrap(), vec![4.0, 0.0, 0.25]);
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let g = grads();
            let _ = g[2].get(1).fill_(bad as f64);
            assert!(!finite(&g), "{bad} in the last gradient");
        }
        assert!(finite(&[]));
    }

    /// `best` becomes a second name of `last` when the epoch is the best, and
    /// keeps its bytes when `last` is written again.
    #[test]
    fn best_is_a_link_of_last_that_outlives_the_next_last() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (last, best) = (
            dir.path().join("last.safetensors"),
            dir.path().join("best.safetensors"),
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        save_vs(&vs, &last).unwrap();
        link_or_save(&vs, &last, &best).unwrap();
        assert_eq!(
            std::fs::metadata(&best).unwrap().ino(),
            std::fs::metadata(&last).unwrap().ino()
        );
        assert!(!dir.path().join("best.tmp.safetensors").exists());
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(2.0);
        });
        save_vs(&vs, &last).unwrap();
        let read = |p: &Path| {
            Tensor::read_safetensors(p)
                .unwrap()
                .into_iter()
                .find(|(k, _)| k == "w")
                .unwrap()
                .1
        };
        assert_eq!(Vec::<f32>::try_from(read(&best)).unwrap(), vec![1.0; 3]);
        assert_eq!(Vec::<f32>::try_from(read(&last)).unwrap(), vec![2.0; 3]);
        // A second best epoch replaces the link.
        link_or_save(&vs, &last, &best).unwrap();
        assert_eq!(Vec::<f32>::try_from(read(&best)).unwrap(), vec![2.0; 3]);
    }

    #[test]
    fn train_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRAIN_STATE);
        // Floats whose shortest decimal has 17 digits, the ones a best-effort parser may miss.
        let state = State {
            epoch: 3,
            step: 12,
            best_val_accuracy: 0.1 + 0.2,
            best_epoch: 2,
            best_val_loss: Some(1.0 / 3.0),
            select: SelectMetric::ValLoss,
        };
        let scaler = ScalerState {
            scale: 1024.0,
            good_steps: 7,
        };
        let meta = TrainMeta {
            format: TRAIN_STATE_FORMAT,
            bits: FloatBits::of(&state, &scaler),
            state,
            optimizer: "adamw".into(),
            scaler,
            rng_seed: 9,
        };
        let w = Tensor::from_slice(&[1.5f32, -0.25, 3.0]).view([3, 1]);
        let step = Tensor::from_slice(&[5i64]);
        write_train_state(
            &path,
            &meta,
            vec![
                ("model.fc.weight".into(), w.shallow_clone()),
                ("optim.fc.weight.step".into(), step),
            ],
        )
        .unwrap();
        let back = read_train_state(&path).unwrap();
        assert_eq!(back.meta.state, meta.state);
        assert_eq!(
            back.meta.state.best_val_loss.map(f64::to_bits),
            Some((1.0f64 / 3.0).to_bits())
        );
        assert_eq!(back.meta.scaler, meta.scaler);
        assert_eq!(back.meta.optimizer, "adamw");
        assert!(back.model["fc.weight"].equal(&w));
        assert_eq!(back.optim["fc.weight.step"].int64_value(&[0]), 5);
        assert!(!dir.path().join("train_state.tmp.safetensors").exists());
    }
}
