//! The worker ↔ coordinator protocol: one JSON object per line on the worker's
//! stdout, tagged by `"type"`, flushed at once. Human logs go to stderr.
//!
//! This module owns the message types and the line parser. It must never panic
//! on any input: a malformed line is a `ProtocolError` the caller logs as a
//! warning naming the trial. Documented in `docs/protocol.md`; bump
//! `PROTOCOL_VERSION` on any incompatible change.
use serde::{Deserialize, Serialize};
use std::io::Write;

/// 2: the coordinator writes `CoordinatorMessage` lines on the worker's stdin
/// (a worker must stop on `stop`; a version-1 worker would train on).
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// A user program's metric record (`[program]`): the coordinator turns
    /// each JSON-object line of the program's stdout with an integer `epoch`
    /// and/or `step` into one of these ([`parse_record`]). `sweep-worker`
    /// never sends it.
    Record {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
        /// Every other numeric field, by the name the program gave it.
        values: std::collections::BTreeMap<String, f64>,
    },
    Done {
        epochs: u32,
        wall_s: f64,
        images_per_s: f64,
        best_val_accuracy: f64,
        /// Where the attempt's time went (absent from workers before it was added).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timings: Option<Timings>,
    },
    Error {
        class: ErrorClass,
        message: String,
    },
}

/// Where one attempt's time went, in seconds, as the worker measured it
/// (stored in `attempts.timings`). The start-up before `hello` (process
/// start, loading libtorch) is the coordinator's to measure:
/// `attempts.hello_at - attempts.started_at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Scanning the dataset and mapping (or decoding) its three splits.
    pub data_s: f64,
    /// Building the model and optimizer, and restoring a checkpoint on resume.
    pub model_s: f64,
    /// Training steps: forward, backward, optimizer step.
    pub train_s: f64,
    /// Training waiting for the loader thread's next batch.
    pub batch_wait_s: f64,
    /// Validation after every epoch (batch assembly included).
    pub valid_s: f64,
    /// Writing the epoch checkpoints (`train_state`, `last`, `best`, `state.json`).
    pub checkpoint_s: f64,
    /// Loading the best checkpoint and evaluating the test split.
    pub test_s: f64,
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

/// How the coordinator reads one stdout line of a user's program (`[program]`).
#[derive(Debug, Clone, PartialEq)]
pub enum ProgramLine {
    /// A metric record, and the names of fields it dropped (not finite
    /// numbers: strings, booleans, nested values, NaN, ±Infinity), which the
    /// caller reports as a warning.
    Record(WorkerMessage, Vec<String>),
    /// Not a JSON object: a line of the program's own log.
    Log,
    /// A JSON object that is not a record, and why (kept as a log line, with a warning).
    NotARecord(String),
}

/// Reads one stdout line of a user's program. A JSON object with an integer
/// `epoch` and/or `step` (≥ 0) is a record of its other numeric fields;
/// anything else is the program's log. Python's `json.dumps` writes a
/// diverged value as a bare `NaN`/`Infinity`, which is not JSON: such a
/// field is dropped (and named), the rest of the record kept. Never panics.
pub fn parse_program_line(line: &str) -> ProgramLine {
    let t = line.trim();
    if !(t.starts_with('{') && t.ends_with('}')) || t.len() > MAX_LINE_BYTES {
        return ProgramLine::Log;
    }
    let obj = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t) {
        Ok(o) => o,
        Err(_) => match serde_json::from_str(&non_finite_as_null(t)) {
            Ok(o) => o,
            Err(_) => return ProgramLine::Log,
        },
    };
    let index = |key: &str| -> Result<Option<u64>, String> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("`{key}` must be an integer ≥ 0, got {v}")),
        }
    };
    let (epoch, step) = match (index("epoch"), index("step")) {
        (Ok(e), Ok(s)) => (e, s),
        (Err(why), _) | (_, Err(why)) => return ProgramLine::NotARecord(why),
    };
    if epoch.is_none() && step.is_none() {
        return ProgramLine::NotARecord(
            "a JSON line without an integer `epoch` or `step` is not a metric record".into(),
        );
    }
    let epoch = match epoch.map(u32::try_from).transpose() {
        Ok(e) => e,
        Err(_) => return ProgramLine::NotARecord("`epoch` is too large".into()),
    };
    let mut values = std::collections::BTreeMap::new();
    let mut skipped = Vec::new();
    for (k, v) in obj {
        if k == "epoch" || k == "step" {
            continue;
        }
        match v.as_f64().filter(|f| f.is_finite()) {
            Some(f) => {
                values.insert(k, f);
            }
            None => skipped.push(k),
        }
    }
    ProgramLine::Record(
        WorkerMessage::Record {
            epoch,
            step,
            values,
        },
        skipped,
    )
}

/// `NaN`, `Infinity` and `-Infinity` outside strings replaced by `null`.
fn non_finite_as_null(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|tok| rest.starts_with(tok));
        match token {
            Some(tok) => {
                out.push_str("null");
                rest = &rest[tok.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod program_line_tests {
    use super::*;

    type Parsed = (Option<u32>, Option<u64>, Vec<(String, f64)>, Vec<String>);

    fn record(line: &str) -> Parsed {
        match parse_program_line(line) {
            ProgramLine::Record(
                WorkerMessage::Record {
                    epoch,
                    step,
                    values,
                },
                skipped,
            ) => (epoch, step, values.into_iter().collect(), skipped),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn records_logs_and_non_records() {
        let (e, s, v, k) = record(r#"{"epoch": 3, "val_acc": 0.81, "val_loss": 0.52}"#);
        assert_eq!((e, s), (Some(3), None));
        assert_eq!(v, [("val_acc".into(), 0.81), ("val_loss".into(), 0.52)]);
        assert!(k.is_empty());
        let (e, s, v, _) = record(r#"  {"step":1200,"epoch":2,"loss":1}  "#);
        assert_eq!((e, s, v), (Some(2), Some(1200), vec![("loss".into(), 1.0)]));
        for log in ["epoch 3 done", "", "[1, 2]", "{not json}", "{\"epoch\": 1"] {
            assert_eq!(parse_program_line(log), ProgramLine::Log, "{log}");
        }
        for (line, why) in [
            (r#"{"val_acc": 0.8}"#, "without an integer"),
            (r#"{"epoch": "3", "a": 1}"#, "`epoch` must be an integer"),
            (r#"{"epoch": 1.5, "a": 1}"#, "`epoch` must be an integer"),
            (r#"{"step": -1, "a": 1}"#, "`step` must be an integer"),
            (r#"{"epoch": 99999999999, "a": 1}"#, "too large"),
        ] {
            match parse_program_line(line) {
                ProgramLine::NotARecord(w) => assert!(w.contains(why), "{line}: {w}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn non_numbers_and_non_finite_values_are_dropped_by_name() {
        let (_, _, v, k) = record(
            r#"{"epoch": 1, "note": "NaN here", "ok": true, "val_loss": NaN, "x": -Infinity, "y": 2}"#,
        );
        assert_eq!(v, [("y".into(), 2.0)]);
        assert_eq!(k, ["note", "ok", "val_loss", "x"]);
    }
}

/// A human log line on stderr that never panics: `eprintln!` panics when
/// stderr cannot be written (the attempt log on a full disk), which would turn
/// a clear ENOSPC error into a crash.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
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
            WorkerMessage::Error {
                class: ErrorClass::Oom,
                message: "CUDA out of memory".into(),
            },
            WorkerMessage::Done {
                epochs: 2,
                wall_s: 1.5,
                images_per_s: 10.0,
                best_val_accuracy: 0.5,
                timings: None,
            },
            WorkerMessage::Done {
                epochs: 2,
                wall_s: 1.5,
                images_per_s: 10.0,
                best_val_accuracy: 0.5,
                timings: Some(Timings {
                    data_s: 0.25,
                    model_s: 0.5,
                    train_s: 1.0,
                    batch_wait_s: 0.125,
                    valid_s: 0.75,
                    checkpoint_s: 0.375,
                    test_s: 0.0625,
                }),
            },
        ];
        for m in msgs {
            let line = serde_json::to_string(&m).unwrap();
            assert_eq!(parse_line(&line).unwrap(), m);
        }
    }

    /// A `done` line of a worker that predates `timings` still parses.
    #[test]
    fn done_without_timings_parses() {
        let line = r#"{"type":"done","epochs":2,"wall_s":1.5,"images_per_s":10.0,"best_val_accuracy":0.5}"#;
        assert_eq!(
            parse_line(line).unwrap(),
            WorkerMessage::Done {
                epochs: 2,
                wall_s: 1.5,
                images_per_s: 10.0,
                best_val_accuracy: 0.5,
                timings: None
            }
        );
    }

    #[test]
    fn tagged_format_is_stable() {
        let line = r#"{"type":"resumed","from_epoch":3}"#;
        assert_eq!(
            parse_line(line).unwrap(),
            WorkerMessage::Resumed { from_epoch: 3 }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for line in [
            "",
            "{",
            "null",
            "[1,2]",
            r#"{"type":"nope"}"#,
            r#"{"type":"epoch"}"#,
            "\u{0}\u{ffff}",
        ] {
            assert!(parse_line(line).is_err(), "{line:?}");
        }
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(
            parse_line(&long),
            Err(ProtocolError::TooLong(MAX_LINE_BYTES + 1))
        );
    }
}

/// Property tests: `parse_line` must never panic, whatever a worker prints, and
/// every message a worker can emit parses back to itself. 64 cases per
/// property by default; set SWEEP_PROPTEST_CASES for more.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    fn config() -> Config {
        let cases = std::env::var("SWEEP_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// Finite floats only: JSON has no NaN or infinity (serde_json writes them
    /// as `null`, which then does not parse as a number).
    fn finite() -> impl Strategy<Value = f64> {
        use proptest::num::f64 as f;
        f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,12}",
            "[a-z_]{0,8}",
            Just(String::new()),
            Just("\"\\\u{0}\u{2028}\n".to_string())
        ]
    }

    fn class() -> impl Strategy<Value = ErrorClass> {
        prop_oneof![
            Just(ErrorClass::Oom),
            Just(ErrorClass::Data),
            Just(ErrorClass::Nan),
            Just(ErrorClass::Config),
            Just(ErrorClass::Interrupted),
            Just(ErrorClass::Internal),
        ]
    }

    pub(super) fn message() -> impl Strategy<Value = WorkerMessage> {
        prop_oneof![
            (
                any::<u32>(),
                text(),
                any::<u32>(),
                text(),
                text(),
                any::<bool>(),
                any::<i32>()
            )
                .prop_map(|(protocol, trial, pid, libtorch, device, cuda, threads)| {
                    WorkerMessage::Hello {
                        protocol,
                        trial,
                        pid,
                        libtorch,
                        device,
                        cuda,
                        threads,
                    }
                }),
            (
                prop::collection::vec(text(), 0..4),
                prop::collection::vec((text(), prop::collection::vec(any::<usize>(), 0..4)), 0..3),
                any::<usize>(),
                finite()
            )
                .prop_map(|(classes, counts, skipped, decode_s)| WorkerMessage::Data {
                    classes,
                    counts: counts
                        .into_iter()
                        .map(|(split, counts)| SplitCounts { split, counts })
                        .collect(),
                    skipped,
                    decode_s,
                }),
            any::<u32>().prop_map(|from_epoch| WorkerMessage::Resumed { from_epoch }),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                finite(),
                finite(),
                finite(),
                finite()
            )
                .prop_map(|(epoch, batch, step, loss, accuracy, lr, images_per_s)| {
                    WorkerMessage::TrainStep {
                        epoch,
                        batch,
                        step,
                        loss,
                        accuracy,
                        lr,
                        images_per_s,
                    }
                }),
            (
                any::<u32>(),
                finite(),
                finite(),
                finite(),
                finite(),
                any::<u64>(),
                finite(),
                finite()
            )
                .prop_map(
                    |(
                        epoch,
                        train_loss,
                        train_accuracy,
                        val_loss,
                        val_accuracy,
                        step,
                        seconds,
                        images_per_s,
                    )| WorkerMessage::Epoch {
                        epoch,
                        train_loss,
                        train_accuracy,
                        val_loss,
                        val_accuracy,
                        step,
                        seconds,
                        images_per_s,
                    }
                ),
            (any::<u32>(), text(), text())
                .prop_map(|(epoch, kind, path)| WorkerMessage::Checkpoint { epoch, kind, path }),
            (
                finite(),
                finite(),
                any::<usize>(),
                prop::collection::vec((text(), any::<u64>(), any::<u64>(), finite()), 0..4),
                any::<u32>()
            )
                .prop_map(|(loss, accuracy, n, per_class, epoch)| {
                    WorkerMessage::Test {
                        loss,
                        accuracy,
                        n,
                        per_class: per_class
                            .into_iter()
                            .map(|(class, correct, total, accuracy)| ClassAccuracy {
                                class,
                                correct,
                                total,
                                accuracy,
                            })
                            .collect(),
                        epoch,
                    }
                }),
            (
                prop::collection::vec(text(), 0..4),
                prop::collection::vec(prop::collection::vec(any::<u64>(), 0..4), 0..4)
            )
                .prop_map(|(classes, matrix)| WorkerMessage::Confusion { classes, matrix }),
            prop::collection::vec((text(), text(), text(), finite()), 0..4).prop_map(|items| {
                WorkerMessage::Misclassified {
                    items: items
                        .into_iter()
                        .map(|(file, truth, pred, prob)| Misclassified {
                            file,
                            truth,
                            pred,
                            prob,
                        })
                        .collect(),
                }
            }),
            (
                any::<u32>(),
                finite(),
                finite(),
                finite(),
                prop::option::of(prop::array::uniform7(finite()))
            )
                .prop_map(|(epochs, wall_s, images_per_s, best_val_accuracy, t)| {
                    WorkerMessage::Done {
                        epochs,
                        wall_s,
                        images_per_s,
                        best_val_accuracy,
                        timings: t.map(
                            |[
                                data_s,
                                model_s,
                                train_s,
                                batch_wait_s,
                                valid_s,
                                checkpoint_s,
                                test_s,
                            ]| Timings {
                                data_s,
                                model_s,
                                train_s,
                                batch_wait_s,
                                valid_s,
                                checkpoint_s,
                                test_s,
                            },
                        ),
                    }
                }),
            (class(), text()).prop_map(|(class, message)| WorkerMessage::Error { class, message }),
        ]
    }

    /// Equal, except that a float may come back a couple of ULPs off:
    /// serde_json's default float parser is fast rather than exact (its
    /// `float_roundtrip` feature is off), e.g. 2.8929183583080553e-41.
    fn same(a: &WorkerMessage, b: &WorkerMessage) -> bool {
        fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            use serde_json::Value as V;
            match (a, b) {
                (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
                    match (x.as_f64(), y.as_f64()) {
                        (Some(x), Some(y)) => {
                            x == y
                                || (x.signum() == y.signum()
                                    && (x.to_bits() as i128 - y.to_bits() as i128).abs() <= 2)
                        }
                        _ => false,
                    }
                }
                (V::Array(x), V::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
                }
                (V::Object(x), V::Object(y)) => {
                    x.len() == y.len()
                        && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
                }
                _ => a == b,
            }
        }
        match (serde_json::to_value(a), serde_json::to_value(b)) {
            (Ok(x), Ok(y)) => close(&x, &y),
            _ => false,
        }
    }

    /// One edit of a line: (kind, position, payload).
    fn mutate(line: &str, edits: &[(u8, usize, String)]) -> String {
        let mut chars: Vec<char> = line.chars().collect();
        for (kind, pos, payload) in edits {
            let at = if chars.is_empty() {
                0
            } else {
                pos % (chars.len() + 1)
            };
            match kind % 6 {
                0 => chars.splice(at..at, payload.chars()).for_each(drop),
                1 => {
                    let end = (at + payload.chars().count().max(1)).min(chars.len());
                    chars.drain(at.min(end)..end);
                }
                2 => chars.truncate(at),
                3 => {
                    // Overwrite one character with a JSON-significant one.
                    const SIGNIFICANT: [char; 12] =
                        ['{', '}', '[', ']', '"', ':', ',', '-', '0', 'e', '\\', 'n'];
                    if at < chars.len() {
                        chars[at] = SIGNIFICANT[payload.len() % SIGNIFICANT.len()];
                    }
                }
                4 => {
                    // Replace a number with a huge, negative or fractional one.
                    const NUMBERS: [&str; 8] = [
                        "-1",
                        "1e999",
                        "18446744073709551616",
                        "0.5",
                        "-0",
                        "1e-400",
                        "9223372036854775808",
                        "4294967296",
                    ];
                    let s: String = chars.iter().collect();
                    let replaced = s.replacen(
                        |c: char| c.is_ascii_digit(),
                        NUMBERS[payload.len() % NUMBERS.len()],
                        1,
                    );
                    chars = replaced.chars().collect();
                }
                _ => {
                    // Rename or drop the type tag / a key.
                    let s: String = chars.iter().collect();
                    chars = s
                        .replacen("\"type\"", &format!("\"{payload}\""), 1)
                        .chars()
                        .collect();
                }
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn parse_line_never_panics_on_arbitrary_text(line in "\\PC{0,200}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn parse_line_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            // The coordinator decodes worker output lossily, then parses.
            let _ = parse_line(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn parse_line_never_panics_on_json_like_text(line in "[{}\\[\\]\":,0-9a-z_ .eE+-]{0,120}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn generated_messages_roundtrip(msg in message()) {
            let line = serde_json::to_string(&msg).unwrap();
            prop_assert!(!line.contains('\n'), "a message must be one line: {line}");
            let back = parse_line(&line);
            prop_assert!(back.as_ref().is_ok_and(|m| same(m, &msg)), "{line}\nparsed as {back:?}");
            // The trailing newline (and CR) a worker writes is accepted too.
            let back = parse_line(&format!("{line}\r\n"));
            prop_assert!(back.as_ref().is_ok_and(|m| same(m, &msg)), "{line}\nparsed as {back:?}");
        }

        #[test]
        fn mutated_messages_never_panic(msg in message(), edits in prop::collection::vec((any::<u8>(), any::<usize>(), "\\PC{0,6}"), 1..6)) {
            let line = serde_json::to_string(&msg).unwrap();
            let mutated = mutate(&line, &edits);
            if let Ok(m) = parse_line(&mutated) {
                // Whatever still parses is a well-formed message: it roundtrips again.
                let again = serde_json::to_string(&m).unwrap();
                prop_assert!(parse_line(&again).is_ok(), "{again}");
            }
        }

        #[test]
        fn non_finite_numbers_never_panic(msg in message(), pick in 0usize..3) {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][pick];
            let msg = match msg {
                WorkerMessage::Epoch { epoch, step, .. } => WorkerMessage::Epoch {
                    epoch, train_loss: bad, train_accuracy: bad, val_loss: bad, val_accuracy: bad, step, seconds: bad, images_per_s: bad,
                },
                other => other,
            };
            let line = serde_json::to_string(&msg).unwrap();
            let _ = parse_line(&line);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [200, 100_000] {
            let line = format!("{{\"type\":\"data\",\"classes\":{}", "[".repeat(depth));
            assert!(parse_line(&line).is_err());
            let line = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            assert!(parse_line(&line).is_err());
        }
    }
}

/// A line from the coordinator on the worker's **stdin** (protocol 2), one
/// JSON object per line. The worker reads them on a thread of its own and
/// never waits for one; unknown or malformed lines are logged and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CoordinatorMessage {
    /// Early stopping decided after `after_epoch`: stop at the next batch
    /// boundary (the last committed epoch checkpoint is kept), test the best
    /// checkpoint when `test` is true, send `done` and exit 0.
    Stop {
        after_epoch: u32,
        #[serde(default)]
        test: bool,
    },
}

/// Parses one stdin line from the coordinator. Never panics.
pub fn parse_coordinator_line(line: &str) -> Result<CoordinatorMessage, ProtocolError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLong(line.len()));
    }
    serde_json::from_str(line.trim_end()).map_err(|e| ProtocolError::Malformed(e.to_string()))
}
