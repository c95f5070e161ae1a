//! The training loop of one trial: data → model → epochs → checkpoints → test.
//!
//! Emits protocol messages as it goes. Checkpoints (`last.safetensors`,
//! `best.safetensors`, `state.json`) are written atomically (temp + rename) so a
//! kill at any point leaves either the old or the new checkpoint. Resume restores
//! weights, the epoch counter and the best score; optimizer momentum restarts
//! (documented in README).
use sweep_dataset::imagefolder::{self as data, Layout, SplitCache};
use crate::models::{self, BACKBONE_GROUP, HEAD_GROUP, Net};
use crate::{to_input, weights};
use sweep_protocol::config::{Optimizer, Schedule, WorkerJob};
use sweep_protocol::message::{ClassAccuracy, ErrorClass, Misclassified, SplitCounts, WorkerMessage, emit};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::nn::{ModuleT, OptimizerConfig};
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
        Failure { class, message: message.into() }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    epoch: u32,
    step: u64,
    best_val_accuracy: f64,
    best_epoch: u32,
}

/// Every metric message also goes to `journal.jsonl` in the trial directory. A
/// coordinator killed before committing what it was sent would otherwise lose
/// those rows for good; on resume the worker replays the journal up to its
/// checkpoint epoch and the store's upserts drop what it already has.
static JOURNAL: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

fn send(msg: WorkerMessage) -> Result<(), Failure> {
    if matches!(msg, WorkerMessage::TrainStep { .. } | WorkerMessage::Epoch { .. })
        && let Ok(mut guard) = JOURNAL.lock()
        && let Some(f) = guard.as_mut()
    {
        use std::io::Write;
        let line = serde_json::to_string(&msg).unwrap_or_default();
        let _ = writeln!(f, "{line}");
        if matches!(msg, WorkerMessage::Epoch { .. }) {
            let _ = f.sync_data();
        }
    }
    // A closed stdout means the coordinator is gone: stop rather than train for nobody.
    emit(&msg).map_err(|e| Failure::new(ErrorClass::Interrupted, format!("coordinator pipe closed: {e}")))
}

fn open_journal(dir: &Path, replay_until: Option<u32>) -> Result<(), Failure> {
    let path = dir.join("journal.jsonl");
    if let Some(until) = replay_until {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Ok(msg) = sweep_protocol::message::parse_line(line) else { continue };
            let epoch = match &msg {
                WorkerMessage::TrainStep { epoch, .. } | WorkerMessage::Epoch { epoch, .. } => *epoch,
                _ => continue,
            };
            if epoch <= until {
                emit(&msg).map_err(|e| Failure::new(ErrorClass::Interrupted, format!("coordinator pipe closed: {e}")))?;
            }
        }
    } else {
        let _ = std::fs::remove_file(&path);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot open {}: {e}", path.display())))?;
    if let Ok(mut g) = JOURNAL.lock() {
        *g = Some(f);
    }
    Ok(())
}

pub fn device() -> Device {
    if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot write {}: {e}", path.display())))
}

fn save_vs(vs: &nn::VarStore, path: &Path) -> Result<(), Failure> {
    // tch picks the format from the extension, so the temp name must end in .safetensors.
    let tmp = path.with_extension("tmp.safetensors");
    if let Err(e) = vs.save(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        let hint = if e.to_string().contains("No space left") { "; the disk is full: free space and rerun to resume from the last checkpoint" } else { "" };
        return Err(Failure::new(ErrorClass::Internal, format!("cannot save checkpoint {}: {e}{hint}", tmp.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot write {}: {e}", path.display())))
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
    let layout = data::scan(&job.dataset).map_err(|e| Failure::new(ErrorClass::Data, e.to_string()))?;
    let s = job.config.image_size;
    let skip = job.config.skip_bad_images;
    let de = |e: data::DataError| Failure::new(ErrorClass::Data, e.to_string());
    let train = data::load_split(&layout.train, s, skip).map_err(de)?;
    let valid = data::load_split(&layout.valid, s, skip).map_err(de)?;
    let test = data::load_split(&layout.test, s, skip).map_err(de)?;
    let counts = |split: &str, c: &SplitCache| {
        let mut v = vec![0usize; layout.classes.len()];
        for &l in &c.labels {
            if let Some(x) = v.get_mut(l as usize) {
                *x += 1;
            }
        }
        SplitCounts { split: split.into(), counts: v }
    };
    send(WorkerMessage::Data {
        classes: layout.classes.clone(),
        counts: vec![counts("train", &train), counts("valid", &valid), counts("test", &test)],
        skipped: train.skipped + valid.skipped + test.skipped,
        decode_s: t0.elapsed().as_secs_f64(),
    })?;
    Ok(Data { layout, train: Arc::new(train), valid, test })
}

fn classify_panic(msg: &str) -> ErrorClass {
    let m = msg.to_ascii_lowercase();
    if m.contains("out of memory") || m.contains("outofmemory") { ErrorClass::Oom } else { ErrorClass::Internal }
}

/// Runs the whole trial. Panics inside libtorch are caught and classified.
pub fn run(job: &WorkerJob) -> Result<(), Failure> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(job)));
    match result {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panic".into());
            Err(Failure::new(classify_panic(&msg), msg))
        }
    }
}

fn threads(job: &WorkerJob) -> (i32, usize) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let total = if job.threads == 0 { cores } else { job.threads as usize };
    // On few cores batch assembly is cheap next to the model: give torch every
    // core and one loader thread; from 4 cores on, set a quarter aside.
    if total >= 4 { ((total - total / 4) as i32, total / 4) } else { (total as i32, 1) }
}

fn run_inner(job: &WorkerJob) -> Result<(), Failure> {
    let cfg = &job.config;
    let (torch_threads, loader_threads) = threads(job);
    tch::set_num_threads(torch_threads);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(loader_threads.max(1)).build_global();
    let device = device();
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
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
    let data = load_data(job)?;
    let classes = data.layout.classes.len() as i64;

    let mut vs = nn::VarStore::new(device);
    let mut net = models::build(&vs.root(), &cfg.backbone, classes, &cfg.head).map_err(|m| Failure::new(ErrorClass::Config, m))?;
    if let Some(p) = &cfg.pretrained {
        let r = weights::load_into(&mut vs, p, net.head_prefix).map_err(|m| Failure::new(ErrorClass::Config, m))?;
        sweep_protocol::log!("loaded {} tensors from {} ({} head tensors re-initialised)", r.loaded, p.display(), r.head_skipped);
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

    std::fs::create_dir_all(&job.out_dir).map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot create {}: {e}", job.out_dir.display())))?;
    let last = job.out_dir.join("last.safetensors");
    let best = job.out_dir.join("best.safetensors");
    let state_path = job.out_dir.join("state.json");
    let mut state = State { epoch: 0, step: 0, best_val_accuracy: -1.0, best_epoch: 0 };
    if let (true, Ok(text)) = (last.exists(), std::fs::read_to_string(&state_path))
        && let Ok(s) = serde_json::from_str::<State>(&text)
    {
        vs.load(&last).map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot resume from {}: {e}", last.display())))?;
        sweep_protocol::log!("resuming {} after epoch {}", job.trial, s.epoch);
        send(WorkerMessage::Resumed { from_epoch: s.epoch })?;
        state = s;
    }
    open_journal(&job.out_dir, (state.epoch > 0).then_some(state.epoch))?;

    let mut opt = match cfg.optimizer {
        Optimizer::Sgd => nn::Sgd { momentum: cfg.momentum, dampening: 0., wd: cfg.weight_decay, nesterov: cfg.nesterov }.build(&vs, cfg.lr),
        Optimizer::Adam => nn::Adam { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr),
        Optimizer::Adamw => nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr),
    }
    .map_err(|e| Failure::new(ErrorClass::Internal, format!("optimizer: {e}")))?;

    let s = cfg.image_size;
    let bs = cfg.batch_size as usize;
    let n_train = data.train.images.len();
    let mut batches_per_epoch = n_train.div_ceil(bs);
    if cfg.max_batches > 0 {
        batches_per_epoch = batches_per_epoch.min(cfg.max_batches as usize);
    }
    let started = Instant::now();
    let mut images_seen = 0u64;
    let mut scaler = GradScaler::new(cfg.amp && device.is_cuda());

    for epoch in (state.epoch + 1)..=cfg.epochs {
        let lr = lr_at(cfg, epoch);
        opt.set_lr_group(BACKBONE_GROUP, lr * cfg.backbone_lr_scale);
        opt.set_lr_group(HEAD_GROUP, lr);
        let epoch_start = Instant::now();
        let rx = spawn_loader(Arc::clone(&data.train), bs, batches_per_epoch, s, cfg.augment.clone(), cfg.seed, epoch);
        let (mut run_loss, mut run_correct, mut run_n, mut run_batches) = (0.0, 0i64, 0i64, 0u32);
        let (mut ep_loss, mut ep_correct, mut ep_n) = (0.0, 0i64, 0i64);
        let mut log_start = Instant::now();
        let mut log_images = 0usize;
        for (bi, batch) in rx.iter().enumerate() {
            let batch = batch.map_err(|m| Failure::new(ErrorClass::Data, m))?;
            let n = batch.labels.len();
            let xs = to_input(&batch.pixels, n, s, device);
            let ys = Tensor::from_slice(&batch.labels).to_device(device);
            let logits = tch::autocast(scaler.enabled, || net.forward_t(&xs, true));
            let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(&ys);
            let loss_v = loss.double_value(&[]);
            if !loss_v.is_finite() {
                return Err(Failure::new(ErrorClass::Nan, format!("loss is {loss_v} at epoch {epoch} batch {}; try a lower lr", bi + 1)));
            }
            scaler.step(&mut opt, &loss, &vs);
            let correct = logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64).int64_value(&[]);
            state.step += 1;
            images_seen += n as u64;
            log_images += n;
            run_loss += loss_v * n as f64;
            run_correct += correct;
            run_n += n as i64;
            run_batches += 1;
            ep_loss += loss_v * n as f64;
            ep_correct += correct;
            ep_n += n as i64;
            if run_batches == cfg.log_every {
                send(WorkerMessage::TrainStep {
                    epoch,
                    batch: bi as u32 + 1,
                    step: state.step,
                    loss: run_loss / run_n as f64,
                    accuracy: run_correct as f64 / run_n as f64,
                    lr,
                    images_per_s: log_images as f64 / log_start.elapsed().as_secs_f64().max(1e-9),
                })?;
                (run_loss, run_correct, run_n, run_batches) = (0.0, 0, 0, 0);
                log_start = Instant::now();
                log_images = 0;
            }
            if STOP.load(Ordering::SeqCst) {
                return Err(Failure::new(ErrorClass::Interrupted, format!("stopped by signal during epoch {epoch}; last checkpoint is epoch {}", state.epoch)));
            }
        }
        let train_secs = epoch_start.elapsed().as_secs_f64();
        let val = evaluate(&net, &data.valid, s, bs, device, false);
        if !val.loss.is_finite() {
            return Err(Failure::new(ErrorClass::Nan, format!("validation loss is {} after epoch {epoch}; try a lower lr", val.loss)));
        }
        state.epoch = epoch;
        let improved = val.accuracy > state.best_val_accuracy;
        if improved {
            state.best_val_accuracy = val.accuracy;
            state.best_epoch = epoch;
        }
        save_vs(&vs, &last)?;
        if improved {
            save_vs(&vs, &best)?;
        }
        let state_json = serde_json::to_vec(&state).map_err(|e| Failure::new(ErrorClass::Internal, e.to_string()))?;
        write_atomic(&state_path, &state_json)?;
        send(WorkerMessage::Epoch {
            epoch,
            train_loss: ep_loss / ep_n.max(1) as f64,
            train_accuracy: ep_correct as f64 / ep_n.max(1) as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            step: state.step,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_s: ep_n as f64 / train_secs.max(1e-9),
        })?;
        send(WorkerMessage::Checkpoint { epoch, kind: "last".into(), path: last.display().to_string() })?;
        if improved {
            send(WorkerMessage::Checkpoint { epoch, kind: "best".into(), path: best.display().to_string() })?;
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(Failure::new(ErrorClass::Interrupted, format!("stopped by signal after epoch {epoch}")));
        }
    }

    // Test on the best-validation checkpoint.
    if best.exists() {
        vs.load(&best).map_err(|e| Failure::new(ErrorClass::Internal, format!("cannot load {}: {e}", best.display())))?;
    }
    let test = evaluate(&net, &data.test, s, bs, device, true);
    let classes_v = &data.layout.classes;
    let k = classes_v.len();
    let mut matrix = vec![vec![0u64; k]; k];
    let mut mis = Vec::new();
    for (i, (&pred, &prob)) in test.preds.iter().zip(&test.probs).enumerate() {
        let truth = data.test.labels.get(i).copied().unwrap_or(0) as usize;
        let pred = pred as usize;
        if let Some(cell) = matrix.get_mut(truth).and_then(|r| r.get_mut(pred)) {
            *cell += 1;
        }
        if truth != pred {
            mis.push(Misclassified {
                file: data.test.paths.get(i).map(|p| p.display().to_string()).unwrap_or_default(),
                truth: classes_v.get(truth).cloned().unwrap_or_default(),
                pred: classes_v.get(pred).cloned().unwrap_or_default(),
                prob,
            });
        }
    }
    let per_class = classes_v
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let total: u64 = matrix[c].iter().sum();
            let correct = matrix[c][c];
            ClassAccuracy { class: name.clone(), correct, total, accuracy: if total > 0 { correct as f64 / total as f64 } else { 0.0 } }
        })
        .collect();
    send(WorkerMessage::Test { loss: test.loss, accuracy: test.accuracy, n: test.preds.len(), per_class, epoch: state.best_epoch })?;
    send(WorkerMessage::Confusion { classes: classes_v.clone(), matrix })?;
    send(WorkerMessage::Misclassified { items: mis })?;
    let wall = started.elapsed().as_secs_f64();
    send(WorkerMessage::Done {
        epochs: state.epoch,
        wall_s: wall,
        images_per_s: images_seen as f64 / wall.max(1e-9),
        best_val_accuracy: state.best_val_accuracy,
    })?;
    Ok(())
}

fn lr_at(cfg: &sweep_protocol::config::TrialConfig, epoch: u32) -> f64 {
    match cfg.schedule {
        Schedule::None => cfg.lr,
        Schedule::Step => cfg.lr * cfg.gamma.powi(((epoch - 1) / cfg.step_size.max(1)) as i32),
        Schedule::Cosine => {
            let t = (epoch - 1) as f64 / cfg.epochs.max(1) as f64;
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// Dynamic loss scaling for mixed precision (torch.cuda.amp.GradScaler's rules:
/// start at 2^16, halve and skip the step on inf/NaN grads, double after 2000 good steps).
struct GradScaler {
    enabled: bool,
    scale: f64,
    good: u32,
}

impl GradScaler {
    fn new(enabled: bool) -> Self {
        GradScaler { enabled, scale: 65536.0, good: 0 }
    }

    fn step(&mut self, opt: &mut nn::Optimizer, loss: &Tensor, vs: &nn::VarStore) {
        opt.zero_grad();
        if !self.enabled {
            loss.backward();
            opt.step();
            return;
        }
        (loss * self.scale).backward();
        let mut finite = true;
        tch::no_grad(|| {
            for v in vs.trainable_variables() {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.g_div_scalar_(self.scale);
                    if finite && g.isfinite().all().int64_value(&[]) == 0 {
                        finite = false;
                    }
                }
            }
        });
        if finite {
            opt.step();
            self.good += 1;
            if self.good >= 2000 {
                self.scale *= 2.0;
                self.good = 0;
            }
        } else {
            self.scale /= 2.0;
            self.good = 0;
        }
    }
}

type BatchResult = Result<data::Batch, String>;

/// Builds the epoch's batches on a thread of its own, two ahead of compute.
fn spawn_loader(
    cache: Arc<SplitCache>,
    bs: usize,
    batches: usize,
    s: u32,
    augment: Vec<String>,
    seed: u64,
    epoch: u32,
) -> std::sync::mpsc::Receiver<BatchResult> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        let order = data::epoch_order(cache.images.len(), seed, epoch);
        for chunk in order.chunks(bs).take(batches) {
            let b = data::train_batch(&cache, chunk, s, &augment, seed, epoch);
            if tx.send(b).is_err() {
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

pub fn evaluate(net: &Net, split: &SplitCache, s: u32, bs: usize, device: Device, keep: bool) -> Eval {
    tch::no_grad(|| {
        let n = split.images.len();
        let (mut loss, mut correct) = (0.0, 0i64);
        let mut preds = Vec::new();
        let mut probs = Vec::new();
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(bs.max(1)) {
            let b = data::eval_batch(split, chunk, s);
            let xs = to_input(&b.pixels, chunk.len(), s, device);
            let ys = Tensor::from_slice(&b.labels).to_device(device);
            let logits = net.forward_t(&xs, false).to_kind(Kind::Float);
            loss += logits.cross_entropy_for_logits(&ys).double_value(&[]) * chunk.len() as f64;
            let pred = logits.argmax(-1, false);
            correct += pred.eq_tensor(&ys).sum(Kind::Int64).int64_value(&[]);
            if keep {
                let p = logits.softmax(-1, Kind::Float).max_dim(-1, false).0.to_device(Device::Cpu);
                preds.extend(Vec::<i64>::try_from(pred.to_device(Device::Cpu)).unwrap_or_default());
                probs.extend(Vec::<f64>::try_from(p.to_kind(Kind::Double)).unwrap_or_default());
            }
        }
        Eval { loss: loss / n.max(1) as f64, accuracy: correct as f64 / n.max(1) as f64, preds, probs }
    })
}
