//! The worker ↔ coordinator protocol: one JSON object per line on the worker's
//! stdout, tagged by `"type"`, flushed at once. Human logs go to stderr.
//!
//! This module owns the message types and the line parser. It must never panic
//! on any input: a malformed line is a `ProtocolError` the caller logs as a
//! warning naming the trial. Documented in `docs/protocol.md`; bump
//! `PROTOCOL_VERSION` on any incompatible change.
use serde::{Deserialize, Serialize};
use std::io::Write;

pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line the coordinator accepts; longer lines are rejected, not buffered forever.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    Hello {
        protocol: u32,
        trial: String,
        pid: u32,
        libtorch: String,
        device: String,
        cuda: bool,
        threads: i32,
    },
    Data {
        classes: Vec<String>,
        /// split → per-class counts, in `classes` order.
        counts: Vec<SplitCounts>,
        skipped: usize,
        decode_s: f64,
    },
    Resumed {
        from_epoch: u32,
    },
    TrainStep {
        epoch: u32,
        /// Batch index within the epoch, 1-based.
        batch: u32,
        /// Global step since the start of training, 1-based.
        step: u64,
        loss: f64,
        accuracy: f64,
        lr: f64,
        images_per_s: f64,
    },
    Epoch {
        epoch: u32,
        train_loss: f64,
        train_accuracy: f64,
        val_loss: f64,
        val_accuracy: f64,
        step: u64,
        seconds: f64,
        images_per_s: f64,
    },
    Checkpoint {
        epoch: u32,
        kind: String,
        path: String,
    },
    Test {
        loss: f64,
        accuracy: f64,
        n: usize,
        per_class: Vec<ClassAccuracy>,
        /// Epoch of the best-validation checkpoint the test ran on.
        epoch: u32,
    },
    Confusion {
        classes: Vec<String>,
        /// matrix[true][pred]
        matrix: Vec<Vec<u64>>,
    },
    Misclassified {
        items: Vec<Misclassified>,
    },
    Done {
        epochs: u32,
        wall_s: f64,
        images_per_s: f64,
        best_val_accuracy: f64,
    },
    Error {
        class: ErrorClass,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub split: String,
    pub counts: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub class: String,
    pub correct: u64,
    pub total: u64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misclassified {
    pub file: String,
    pub truth: String,
    pub pred: String,
    pub prob: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Oom,
    Data,
    Nan,
    Config,
    Interrupted,
    Internal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Oom => "oom",
            ErrorClass::Data => "data",
            ErrorClass::Nan => "nan",
            ErrorClass::Config => "config",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("line of {0} bytes exceeds the {MAX_LINE_BYTES}-byte limit")]
    TooLong(usize),
    #[error("not a protocol message: {0}")]
    Malformed(String),
}

/// Parses one stdout line of a worker. Never panics.
pub fn parse_line(line: &str) -> Result<WorkerMessage, ProtocolError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLong(line.len()));
    }
    serde_json::from_str(line.trim_end()).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Writes one message as a line on stdout and flushes. Errors (a closed pipe:
/// the coordinator died) are returned so the worker can stop.
pub fn emit(msg: &WorkerMessage) -> std::io::Result<()> {
    let mut line = serde_json::to_string(msg).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_kind() {
        let msgs = vec![
            WorkerMessage::TrainStep {
                epoch: 1,
                batch: 100,
                step: 100,
                loss: 0.5,
                accuracy: 0.75,
                lr: 0.01,
                images_per_s: 321.0,
            },
            WorkerMessage::Error { class: ErrorClass::Oom, message: "CUDA out of memory".into() },
            WorkerMessage::Done { epochs: 2, wall_s: 1.5, images_per_s: 10.0, best_val_accuracy: 0.5 },
        ];
        for m in msgs {
            let line = serde_json::to_string(&m).unwrap();
            assert_eq!(parse_line(&line).unwrap(), m);
        }
    }

    #[test]
    fn tagged_format_is_stable() {
        let line = r#"{"type":"resumed","from_epoch":3}"#;
        assert_eq!(parse_line(line).unwrap(), WorkerMessage::Resumed { from_epoch: 3 });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for line in ["", "{", "null", "[1,2]", r#"{"type":"nope"}"#, r#"{"type":"epoch"}"#, "\u{0}\u{ffff}"] {
            assert!(parse_line(line).is_err(), "{line:?}");
        }
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(parse_line(&long), Err(ProtocolError::TooLong(MAX_LINE_BYTES + 1)));
    }
}
