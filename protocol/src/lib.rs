//! The contract between the `sweep` coordinator and a worker process, and
//! nothing else: serde types only, no libtorch, no database, no I/O beyond
//! writing one message line.
//!
//! - [`config`]: `TrialConfig` (one trial's resolved parameters), `WorkerJob`
//!   (what one attempt gets on its command line), `PredictJob`, `ProbeInfo`.
//! - [`message`]: the JSON-lines messages a worker prints on stdout.
//!
//! Any program that reads `--job JSON` and speaks [`message`] can be a worker
//! (`SWEEP_WORKER_CMD`); `docs/protocol.md` is the human description.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod config;
pub mod message;
pub mod trial_dir;

pub use config::{
    BACKBONES, Head, Optimizer, PARAM_KEYS, PredictJob, ProbeInfo, Schedule, SelectMetric,
    TrialConfig, TrialParams, WorkerJob,
};
pub use message::{
    ClassAccuracy, ErrorClass, Misclassified, PROTOCOL_VERSION, ProgramLine, ProtocolError,
    SplitCounts, Timings, WorkerMessage, emit, parse_line, parse_program_line,
};
pub use message::{CoordinatorMessage, parse_coordinator_line};
