//! How a trial fails: the [`Failure`] the worker reports (an `ErrorClass` and
//! a message), and the reading of libtorch panics into one. Never retries or
//! recovers: it only names what went wrong.
use std::any::Any;
use sweep_protocol::message::ErrorClass;

#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    pub(super) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

pub(super) fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Fragments of libtorch errors that mean the trial's settings cannot work
/// (shapes or arguments libtorch rejects whatever the attempt), so that the
/// coordinator fails the trial instead of retrying it.
pub(super) const CONFIG_ERRORS: [&str; 9] = [
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

pub(super) fn classify_panic(msg: &str) -> ErrorClass {
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
pub(super) fn torch_message(raw: &str) -> String {
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
