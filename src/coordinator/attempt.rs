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

/// How long a program's stdout is still read after it exited (the lines
/// in the pipe), before what keeps the pipe open is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

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
    if let Some(p) = &spec.program
        && let Err(e) = write_params(&p.params.0, &p.params.1)
    {
        return AttemptResult::failed(
            FailureClass::Worker(sweep_protocol::ErrorClass::Internal),
            format!("cannot write {}: {e}", p.params.0.display()),
        );
    }
    let begun = std::time::Instant::now();
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
        program: spec
            .program
            .as_ref()
            .map(|_| ProgramOutput::new(&spec.log_path)),
    };
    let is_program = relay.program.is_some();
    let mut exit = attempt.exit;
    let mut exited = None;
    let read = async {
        let read = relay.read_all(attempt.stdout);
        if !is_program {
            return read.await;
        }
        // A program's stdout may stay open after it ended: a child it left
        // in the background holds the pipe. Its exit ends the reading: what
        // it printed last is drained, then whatever still holds the pipe goes.
        tokio::pin!(read);
        tokio::select! {
            _ = &mut read => {}
            s = &mut exit => {
                exited = Some(s);
                if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut read).await.is_err() {
                    reap_group(control.as_ref()).await;
                    read.await;
                }
            }
        }
    };
    let timed_out = match policy.timeout {
        Some(t) => tokio::time::timeout(t, read).await.is_err(),
        None => {
            read.await;
            false
        }
    };
    let placed = relay.placed;
    let program = relay.program.take();
    if timed_out {
        control.kill();
    }
    let status = match exited {
        Some(s) => s,
        None => match tokio::time::timeout(EXIT_WAIT, &mut exit).await {
            Ok(s) => s,
            Err(_) => {
                control.kill();
                exit.await
            }
        },
    };
    match status {
        Ok(s) => result.exit = s,
        Err(e) => result.message = Some(format!("wait failed: {e}")),
    }
    if !placed {
        record_placement(recorder, &trial, policy.attempt, control.as_ref());
    }
    if let Some(out) = program {
        // Whatever the program left running in its group goes with it: its
        // slot (and GPU memory) is free only once the whole group is gone.
        reap_group(control.as_ref()).await;
        if !timed_out && result.exit.code == Some(0) && result.class.is_none() {
            let done = WorkerMessage::Done {
                epochs: out.last_epoch,
                wall_s: begun.elapsed().as_secs_f64(),
                // A program reports no throughput of its own (stored as NULL).
                images_per_s: f64::NAN,
                best_val_accuracy: f64::NAN,
                timings: None,
            };
            result.done = true;
            let _ = ev.send(Event::Message {
                trial: trial.clone(),
                msg: done.clone(),
            });
            recorder.send(StoreEvent::Worker {
                trial: trial.clone(),
                attempt: policy.attempt,
                msg: done,
            });
        }
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
    if spec.program.is_some()
        && let Some(m) = &mut result.message
        && !result.done
    {
        // The program's own last words say more than an exit code.
        let tail = log_tail(&spec.log_path, 20);
        if !tail.is_empty() {
            m.push_str(":\n");
            m.push_str(&tail);
        }
    }
    result
}

/// Writes a program's parameters file (`SWEEP_PARAMS`) in its trial folder.
fn write_params(path: &std::path::Path, json: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    sweep_trialfiles::write_atomic(&path.with_extension("json.tmp"), path, json.as_bytes())
}

/// The last `n` lines of an attempt log (at most its last 16 KiB).
fn log_tail(path: &std::path::Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// After a program's process ended: SIGKILL to what is left of its process
/// group, and wait (up to 10 s) until none of it runs.
async fn reap_group(control: &dyn super::launcher::AttemptControl) {
    for _ in 0..100 {
        if !control.group_alive() {
            return;
        }
        control.kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What is read from a program's stdout besides records: its log lines go
/// to the attempt log; warnings about non-records are capped.
struct ProgramOutput {
    log: Option<std::fs::File>,
    last_epoch: u32,
    warned: u32,
}

/// Warnings about one attempt's unusable JSON lines, at most.
const PROGRAM_WARNINGS: u32 = 5;

impl ProgramOutput {
    fn new(log: &std::path::Path) -> ProgramOutput {
        ProgramOutput {
            log: std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
                .ok(),
            last_epoch: 0,
            warned: 0,
        }
    }

    fn log_line(&mut self, line: &str) {
        use std::io::Write;
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
    }
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
    /// A user's program (`[program]`), not the worker, is speaking.
    program: Option<ProgramOutput>,
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
                Ok(Some(false)) if self.program.is_some() => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    self.program_line(&line);
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

    /// One stdout line of a user's program: a record, or a line of its log.
    fn program_line(&mut self, line: &str) {
        use sweep_protocol::ProgramLine;
        let Some(out) = self.program.as_mut() else {
            return;
        };
        let warning = match sweep_protocol::parse_program_line(line) {
            ProgramLine::Log => {
                out.log_line(line);
                None
            }
            ProgramLine::NotARecord(why) => {
                out.log_line(line);
                let shown: String = line.chars().take(120).collect();
                Some(format!("{why}; kept as a log line: {shown}"))
            }
            ProgramLine::Record(msg, dropped) => {
                if let WorkerMessage::Record {
                    epoch: Some(e),
                    step: None,
                    ..
                } = &msg
                {
                    out.last_epoch = out.last_epoch.max(*e);
                }
                let w = (!dropped.is_empty()).then(|| {
                    format!(
                        "record field(s) {} not recorded: a metric is a finite number",
                        dropped.join(", ")
                    )
                });
                self.on_message(msg);
                w
            }
        };
        if let Some(w) = warning
            && let Some(out) = self.program.as_mut()
        {
            out.warned += 1;
            match out.warned {
                n if n < PROGRAM_WARNINGS => self.warn(w),
                PROGRAM_WARNINGS => self.warn(format!(
                    "{w} (further such warnings of this attempt are not shown)"
                )),
                _ => {}
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
