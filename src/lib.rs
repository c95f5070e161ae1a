//! `sweep`, the coordinator: a hyperparameter-sweep orchestrator for image
//! classification. This crate never links libtorch; training happens in the
//! `sweep-worker` process (crate `worker/`), reached through the launcher.
//!
//! The flow, one module per stage (a stage imports only from stages after it,
//! and from the shared crates `sweep-protocol` and `sweep-dataset`):
//!
//! ```text
//! sweeps/*.toml ─► spec (raw → validated SweepPlan, file:line:col errors)
//!               ─► coordinator (dispatcher ─► launcher ─► worker process)
//!                     └─ protocol lines ─► store::recorder (the only writer)
//!               ─► store (SQLite: schema, recorder, every SQL query)
//!               ─► report (rank, show, plot, html: read-only)
//! ```
//! `cli` parses, `commands` turns each subcommand into work, `error` maps
//! every failure to its exit code.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod cache_commands;
pub mod cli;
pub mod commands;
pub mod coordinator;
pub mod dataset;
pub mod doctor;
pub mod error;
pub mod preflight;
pub mod spec;

/// The store and the views are crates of their own (`store/`, `report/`), so
/// that the compiler holds the layering: neither can import the spec or the
/// coordinator. Re-exported so the flow still reads `sweep::store::…`.
pub use sweep_report as report;
pub use sweep_store as store;
pub use sweep_trialfiles as trialfiles;
