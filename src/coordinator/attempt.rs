//! One attempt of one trial, as a task: wait out the retry backoff, start it
//! through the launcher, relay its protocol lines to the recorder and the
//! dispatcher, enforce the timeout, and classify how it ended. It reports; it
//! decides nothing about retries.
use super::dispatcher::Event;
use super::launcher::{ExitStatus, LaunchSpec, Launcher};
use crate::store::FailureClass;
use crate::store::recorder::{Recorder, StoreEvent};
use std::sync::Arc;
use std::time::Duration;
use sweep_protocol::message::{self, MAX_LINE_BYTES};
use sweep_protocol::{PROTOCOL_VERSION, WorkerMessage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Default)]
pub struct AttemptResult {
    pub exit: ExitStatus,
    /// The worker sent `done`.
    pub done: bool,
    pub class: Option<FailureClass>,
    pub message: Option<String>,
}

impl AttemptResult {
    fn failed(class: FailureClass, message: impl Into<String>) -> AttemptResult {
        AttemptResult {
            class: Some(class),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    pub fn succeeded(&self) -> bool {
        self.done && self.exit.code == Some(0) && self.class.is_none()
    }
}

/// The attempt number, its backoff and its time limit.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub attempt: u32,
    pub delay: Duration,
    pub timeout: Option<Duration>,
}

/// A worker that closed stdout yet keeps running gets this long to exit.
const EXIT_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn run(
    launcher: Arc<dyn Launcher>,
    spec: LaunchSpec,
    recorder: Recorder,
    ev: mpsc::UnboundedSender<Event>,
    policy: Policy,
    mut stop: watch::Receiver<bool>,
) {
    let trial = spec.job.trial.clone();
    if !policy.delay.is_zero() {
        // A stop during the retry backoff cancels the retry: no worker starts after Ctrl-C.
        let stopped = tokio::select! {
            _ = tokio::time::sleep(policy.delay) => false,
            r = stop.wait_for(|s| *s) => r.is_ok(),
        };
        if stopped {
            let result = AttemptResult::failed(
                FailureClass::Interrupted,
                "stopped before the retry started",
            );
            let _ = ev.send(Event::Finished {
                trial,
                slot: spec.slot.clone(),
                result,
            });
            return;
        }
    }
    let result = run_attempt(launcher.as_ref(), &spec, &recorder, &ev, policy).await;
    let _ = ev.send(Event::Finished {
        trial,
        slot: spec.slot.clone(),
        result,
    });
}

async fn run_attempt(
    launcher: &dyn Launcher,
    spec: &LaunchSpec,
    recorder: &Recorder,
    ev: &mpsc::UnboundedSender<Event>,
    policy: Policy,
) -> AttemptResult {
    let trial = spec.job.trial.clone();
    let started = launcher.start(spec);
    let pid = started.as_ref().ok().and_then(|a| a.control.pid());
    recorder.send(StoreEvent::AttemptStarted {
        trial: trial.clone(),
        attempt: policy.attempt,
        pid,
        device: spec.slot.label(),
        batch_size: spec.job.config.batch_size,
    });
    let attempt = match started {
        Ok(a) => a,
        Err(e) => {
            return AttemptResult::failed(
                FailureClass::Worker(sweep_protocol::ErrorClass::Internal),
                format!("cannot start worker: {e}"),
            );
        }
    };
    let control = Arc::clone(&attempt.control);
    let _ = ev.send(Event::Started {
        trial: trial.clone(),
        control: Arc::clone(&control),
    });
    let mut result = AttemptResult::default();
    let mut relay = Relay {
        trial: &trial,
        attempt: policy.attempt,
        recorder,
        ev,
        result: &mut result,
        control: &control,
        placed: false,
    };
    let read = relay.read_all(attempt.stdout);
    let timed_out = match policy.timeout {
        Some(t) => tokio::time::timeout(t, read).await.is_err(),
        None => {
            read.await;
            false
        }
    };
    let placed = relay.placed;
    if timed_out {
        control.kill();
    }
    let mut exit = attempt.exit;
    let status = match tokio::time::timeout(EXIT_WAIT, &mut exit).await {
        Ok(s) => s,
        Err(_) => {
            control.kill();
            exit.await
        }
    };
    match status {
        Ok(s) => result.exit = s,
        Err(e) => result.message = Some(format!("wait failed: {e}")),
    }
    if !placed {
        record_placement(recorder, &trial, policy.attempt, control.as_ref());
    }
    let clean = result.done && result.exit.code == Some(0) && result.class.is_none();
    if !timed_out && !clean {
        // The launcher's view of the end (Slurm: time limit, preemption, scancel).
        // Stopped by SIGTERM: the worker said so, or the signal came before
        // its handler was in place (it died of it: srun then exits 128 + 15).
        let interrupted = result.class
            == Some(FailureClass::Worker(
                sweep_protocol::ErrorClass::Interrupted,
            ))
            || result.exit.signal == Some(libc::SIGTERM)
            || result.exit.code == Some(128 + libc::SIGTERM);
        if let Some((class, message)) = control.end_state(interrupted).await {
            result.class = Some(class);
            result.message = Some(message);
        }
    }
    classify(&mut result, timed_out, policy.timeout, spec);
    result
}

/// Records where the attempt runs, when the launcher knows (once per attempt).
fn record_placement(
    recorder: &Recorder,
    trial: &str,
    attempt: u32,
    control: &dyn super::launcher::AttemptControl,
) -> bool {
    let Some(p) = control.placement() else {
        return false;
    };
    recorder.send(StoreEvent::AttemptPlaced {
        trial: trial.to_string(),
        attempt,
        node: p.node,
        gpus: p.gpus,
        job: p.job,
        device: p.device,
    });
    true
}

/// Names what went wrong when the worker did not say so itself.
fn classify(
    result: &mut AttemptResult,
    timed_out: bool,
    timeout: Option<Duration>,
    spec: &LaunchSpec,
) {
    if timed_out {
        result.done = false;
        result.class = Some(FailureClass::Timeout);
        result.message = Some(format!(
            "no completion within the {}s timeout; killed",
            timeout.map(|t| t.as_secs()).unwrap_or(0)
        ));
    } else if result.class.is_none() && !(result.done && result.exit.code == Some(0)) {
        let (class, message) = match (result.exit.signal, result.exit.code) {
            (Some(sig), _) => (
                FailureClass::Crash,
                format!("worker killed by signal {sig}"),
            ),
            (None, Some(0)) => (
                FailureClass::Protocol,
                "worker exited 0 without its final `done` message".to_string(),
            ),
            (None, code) => (
                FailureClass::Crash,
                format!(
                    "worker exited with code {code:?}; see {}",
                    spec.log_path.display()
                ),
            ),
        };
        result.class = Some(class);
        result.message = Some(message);
    }
}

/// Reads an attempt's stdout and passes each message on.
struct Relay<'a> {
    trial: &'a str,
    attempt: u32,
    recorder: &'a Recorder,
    ev: &'a mpsc::UnboundedSender<Event>,
    result: &'a mut AttemptResult,
    control: &'a Arc<dyn super::launcher::AttemptControl>,
    /// The attempt's placement is recorded (at its first message).
    placed: bool,
}

impl Relay<'_> {
    fn warn(&self, w: String) {
        let _ = self
            .ev
            .send(Event::Warning(format!("trial {}: {w}", self.trial)));
    }

    async fn read_all(&mut self, stdout: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>) {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf).await {
                Ok(None) => break,
                Ok(Some(true)) => {
                    self.warn(format!("worker line over {MAX_LINE_BYTES} bytes ignored"))
                }
                Ok(Some(false)) => {
                    let line = String::from_utf8_lossy(&buf);
                    if line.trim().is_empty() {
                        continue;
                    }
                    match message::parse_line(&line) {
                        Ok(msg) => {
                            if !self.on_message(msg) {
                                break;
                            }
                        }
                        Err(e) => {
                            let shown: String = line.chars().take(120).collect();
                            self.warn(format!("malformed worker line ignored ({e}): {shown}"));
                        }
                    }
                }
                Err(e) => {
                    self.warn(format!("reading worker output failed: {e}"));
                    break;
                }
            }
        }
    }

    /// Handles one message; false when the attempt must be abandoned.
    fn on_message(&mut self, msg: WorkerMessage) -> bool {
        if !self.placed {
            self.placed = record_placement(
                self.recorder,
                self.trial,
                self.attempt,
                self.control.as_ref(),
            );
        }
        match &msg {
            WorkerMessage::Hello { protocol, .. } if *protocol != PROTOCOL_VERSION => {
                // A worker of another version: nothing it says can be trusted to mean the same.
                self.result.class = Some(FailureClass::Protocol);
                self.result.message = Some(format!(
                    "worker speaks protocol version {protocol}, this coordinator speaks {PROTOCOL_VERSION}; install the `sweep-worker` built with this `sweep` (make install)"
                ));
                self.control.kill();
                return false;
            }
            WorkerMessage::Done { .. } => self.result.done = true,
            WorkerMessage::Error { class, message } => {
                self.result.class = Some(FailureClass::Worker(*class));
                self.result.message = Some(message.clone());
            }
            _ => {}
        }
        let _ = self.ev.send(Event::Message {
            trial: self.trial.to_string(),
            msg: msg.clone(),
        });
        self.recorder.send(StoreEvent::Worker {
            trial: self.trial.to_string(),
            attempt: self.attempt,
            msg,
        });
        true
    }
}

/// Reads one line into `buf` (without the newline), keeping at most
/// MAX_LINE_BYTES. Ok(None) at EOF; Ok(Some(true)) when the line was too long.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
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
            if buf.len() + data.len() > MAX_LINE_BYTES {
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
