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
//!
//! The parts: [`failure`] (what a failed trial reports), [`journal`] (messages
//! out, and the journal that replays them), [`loader`] (data, threads, the batch
//! thread), [`model`] (the network as configured), [`scaler`] (one optimizer
//! step, loss scaling), [`eval`] (validation and test passes), [`checkpoint`]
//! (what is written to disk). This file is the loop that drives them.
mod checkpoint;
mod eval;
mod failure;
mod journal;
mod loader;
mod model;
mod scaler;
#[cfg(test)]
mod tests;

use crate::models::{self, Net};
use crate::optim::{self, Optimizer};
use crate::{device_input, device_labels, host_batch, weights};
use checkpoint::{
    FloatBits, Paths, State, TRAIN_STATE_FORMAT, TrainMeta, link_or_save, load_weights,
    read_train_state, save_vs, write_atomic, write_train_state,
};
pub use eval::{Eval, evaluate};
pub use failure::Failure;
use failure::{classify_panic, panic_message, torch_message};
use journal::{emit_msg, journal, open_journal, send};
use loader::{Data, load_data, spawn_loader, threads};
pub use model::optimizer;
use model::{build_model, to_channels_last};
use scaler::cpu_loss_scaling;
pub use scaler::{GradScaler, ScalerState, StepOutcome, train_step};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

pub fn device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
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
    // Promotion-based stopping pauses the trial at a rung: its checkpoint is
    // kept, and it is resumed (exactly) if it is promoted.
    let last = match job.pause_after {
        Some(p) if p < job.config.epochs => p,
        _ => job.config.epochs,
    };
    for epoch in (trainer.state.epoch + 1)..=last {
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
    if last < job.config.epochs {
        sweep_protocol::log!(
            "paused after epoch {} of {} as the coordinator asked; the checkpoint is kept to resume from",
            trainer.state.epoch,
            job.config.epochs
        );
        return trainer.send_done();
    }
    trainer.test_and_report()
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
        let opt = optimizer(cfg, &vs, &net)?;
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
        self.opt.set_base_lr(lr);
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
            self.check_stop(epoch)?;
            waited = Instant::now();
            self.timings.train_s += waited.duration_since(computing).as_secs_f64();
        }
        self.check_epoch_complete(epoch, batch_no, &epoch_run)?;
        if window.batches > 0 {
            self.record_window(epoch, batch_no, lr, &mut window)?;
        }
        Ok(epoch_run)
    }

    /// A stop asked for in the middle of an epoch (a signal, or the
    /// coordinator): the epoch ends here and the last committed one stands.
    fn check_stop(&self, epoch: u32) -> Result<(), Failure> {
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
        Ok(())
    }

    /// After the last batch: some batch had a finite loss, and the loader
    /// delivered every batch of the epoch.
    fn check_epoch_complete(
        &self,
        epoch: u32,
        batch_no: u32,
        epoch_run: &Running,
    ) -> Result<(), Failure> {
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
        Ok(())
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
