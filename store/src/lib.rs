//! The SQLite store: the only module with SQL in it. `db` opens and migrates;
//! `recorder` is the only writer while a sweep runs; `queries` is the read
//! side for reports; `model` holds the enums stored as text and the rows
//! shared by writer and readers; `scan` reads big result sets past sqlx's
//! per-row cost.
//!
//! Must never import from the spec, the coordinator or the reports.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod db;
pub mod export_queries;
pub mod lineage;
pub mod model;
pub mod proposals;
pub mod queries;
pub mod recorder;
pub mod scan;
pub mod serve_queries;

pub use model::{FailureClass, SweepStatus, TrialStatus};

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
