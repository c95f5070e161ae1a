//! The sweep file: TOML → raw structs with spans (`raw`) → a validated
//! `SweepPlan` (`plan`), the only thing the coordinator accepts. Every user
//! mistake is found here with `file:line:col`, before anything is written or
//! launched. `id` names trials. Must never import the coordinator, the store
//! or the reports.
pub mod id;
pub mod plan;
pub mod raw;
pub mod search;
pub mod slurm;

pub use plan::{
    CpuWorkers, GpuSelection, Keep, KeepPrecision, METRICS, PARAM_KEYS, PlannedTrial, Resources,
    StopMethod, Stopping, SweepPlan, load,
};
pub use raw::SpecError;
