//! Live progress: indicatif bars on a terminal, one plain line per event
//! otherwise. Fed by the dispatcher; never decides anything.
use crate::store::TrialStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use sweep_protocol::WorkerMessage;

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    trial_bars: HashMap<String, ProgressBar>,
    labels: HashMap<String, String>,
    total: usize,
    done: usize,
    failed: usize,
    interrupted: usize,
    pruned: usize,
    /// Promotion mode: trials waiting at a rung.
    paused: std::collections::HashSet<String>,
}

impl Progress {
    pub fn new(total: usize, force_plain: bool) -> Progress {
        let bars = (!force_plain && std::io::stderr().is_terminal()).then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = mp.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} {msg} {elapsed_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            overall.set_prefix("sweep");
            (mp, overall)
        });
        Progress {
            bars,
            trial_bars: HashMap::new(),
            labels: HashMap::new(),
            total,
            done: 0,
            failed: 0,
            interrupted: 0,
            pruned: 0,
            paused: Default::default(),
        }
    }

    fn overall_msg(&self, queued: usize) -> String {
        let mut parts = vec![format!("done {}", self.done)];
        if self.pruned > 0 {
            parts.push(format!("pruned {}", self.pruned));
        }
        parts.push(format!("failed {}", self.failed));
        if self.interrupted > 0 {
            parts.push(format!("interrupted {}", self.interrupted));
        }
        if !self.paused.is_empty() {
            parts.push(format!("paused {}", self.paused.len()));
        }
        parts.push(format!("queued {queued}"));
        parts.join(" · ")
    }

    pub fn started(&mut self, trial: &str, label: &str, attempt: u32, device: &str, epochs: u32) {
        self.labels.insert(trial.to_string(), label.to_string());
        match &self.bars {
            Some((mp, _)) => {
                let pb = mp.add(ProgressBar::new(epochs as u64));
                pb.set_style(
                    ProgressStyle::with_template(
                        "  {prefix} [{bar:20}] epoch {pos}/{len} {msg} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.set_prefix(format!("{trial} {label}"));
                pb.set_message(format!("starting on {device}"));
                self.trial_bars.insert(trial.to_string(), pb);
            }
            None => sweep_protocol::log!("[{trial}] start {label} attempt {attempt} on {device}"),
        }
    }

    pub fn message(&mut self, trial: &str, msg: &WorkerMessage) {
        match (&self.bars, msg) {
            (
                Some(_),
                WorkerMessage::TrainStep {
                    epoch,
                    batch,
                    loss,
                    accuracy,
                    ..
                },
            ) => {
                if let Some(pb) = self.trial_bars.get(trial) {
                    pb.set_message(format!(
                        "e{epoch} b{batch} loss {loss:.3} acc {:.1}%",
                        accuracy * 100.0
                    ));
                }
            }
            (
                Some(_),
                WorkerMessage::Epoch {
                    epoch,
                    val_accuracy,
                    val_loss,
                    ..
                },
            ) => {
                if let Some(pb) = self.trial_bars.get(trial) {
                    pb.set_position(*epoch as u64);
                    pb.set_message(format!(
                        "val loss {val_loss:.3} acc {:.1}%",
                        val_accuracy * 100.0
                    ));
                }
            }
            (Some(_), WorkerMessage::Resumed { from_epoch }) => {
                if let Some(pb) = self.trial_bars.get(trial) {
                    pb.set_position(*from_epoch as u64);
                }
            }
            (
                None,
                WorkerMessage::Epoch {
                    epoch,
                    train_loss,
                    val_loss,
                    val_accuracy,
                    seconds,
                    ..
                },
            ) => {
                sweep_protocol::log!(
                    "[{trial}] epoch {epoch}: train loss {train_loss:.4}, val loss {val_loss:.4}, val acc {:.2}% ({seconds:.1}s)",
                    val_accuracy * 100.0
                );
            }
            (
                Some(_),
                WorkerMessage::Record {
                    epoch: Some(epoch),
                    step: None,
                    values,
                },
            ) => {
                if let Some(pb) = self.trial_bars.get(trial) {
                    pb.set_position(*epoch as u64);
                    pb.set_message(record_text(values));
                }
            }
            (
                None,
                WorkerMessage::Record {
                    epoch: Some(epoch),
                    step: None,
                    values,
                },
            ) => sweep_protocol::log!("[{trial}] epoch {epoch}: {}", record_text(values)),
            (None, WorkerMessage::Resumed { from_epoch }) => {
                sweep_protocol::log!("[{trial}] resumed after epoch {from_epoch}")
            }
            (None, WorkerMessage::Test { accuracy, loss, .. }) => sweep_protocol::log!(
                "[{trial}] test loss {loss:.4}, test acc {:.2}%",
                accuracy * 100.0
            ),
            (
                None,
                WorkerMessage::TrainStep {
                    epoch,
                    batch,
                    loss,
                    accuracy,
                    ..
                },
            ) => {
                sweep_protocol::log!(
                    "[{trial}] epoch {epoch} batch {batch}: loss {loss:.4}, acc {:.2}%",
                    accuracy * 100.0
                )
            }
            _ => {}
        }
    }

    pub fn warn(&self, text: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(format!("warning: {text}"));
            }
            None => sweep_protocol::log!("warning: {text}"),
        }
    }

    /// An attempt ended; `status` is the trial's new status (`queued`: it will be retried).
    pub fn finished(&mut self, trial: &str, status: TrialStatus, outcome: &str, queued: usize) {
        let final_state = !matches!(status, TrialStatus::Queued | TrialStatus::Paused);
        match status {
            TrialStatus::Done => self.done += 1,
            TrialStatus::Failed => self.failed += 1,
            TrialStatus::Pruned => self.pruned += 1,
            TrialStatus::Interrupted => self.interrupted += 1,
            TrialStatus::Paused => {
                self.paused.insert(trial.to_string());
            }
            TrialStatus::Queued | TrialStatus::Running => {}
        }
        if status != TrialStatus::Paused {
            self.paused.remove(trial);
        }
        let msg = self.overall_msg(queued);
        match &self.bars {
            Some((_, overall)) => {
                if let Some(pb) = self.trial_bars.remove(trial) {
                    pb.finish_and_clear();
                }
                if final_state {
                    overall.inc(1);
                }
                overall.set_message(msg);
            }
            None => sweep_protocol::log!("[{trial}] {outcome} ({msg}, total {})", self.total),
        }
    }

    pub fn finish(&self) {
        if let Some((mp, overall)) = &self.bars {
            overall.finish();
            let _ = mp.clear();
        }
    }
}

/// A program's epoch record as a progress line: "val_acc 0.8123, val_loss 0.52".
fn record_text(values: &std::collections::BTreeMap<String, f64>) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}
