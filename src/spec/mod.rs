//! The sweep file: TOML → raw structs with spans (`raw`) → a validated
//! `SweepPlan` (`plan`), the only thing the coordinator accepts. Every user
//! mistake is found here with `file:line:col`, before anything is written or
//! launched. `id` names trials. Must never import the coordinator, the store
//! or the reports.
pub mod id;
pub mod plan;
pub mod program;
pub mod raw;
pub mod search;
pub mod slurm;

pub use plan::{
    CpuWorkers, GpuSelection, Keep, KeepPrecision, METRICS, Objective, PARAM_KEYS,
    PBT_BUILTIN_KEYS, Pbt, Perturb, PlannedTrial, Resources, StopMethod, Stopping, SweepPlan, load,
};
pub use raw::SpecError;

/// The `[resources]` setting `key` of a sweep file stored in the database
/// (`sweeps.toml`, perhaps written by an older or newer sweep), read with
/// `parse` (`default` when the file leaves it out); `None` when the file
/// says something this version does not know. The spec is the one reader of
/// sweep-file TOML, also for `sweep gc`.
pub fn resources_setting<T>(
    toml_text: &str,
    key: &str,
    default: T,
    parse: fn(&str) -> Option<T>,
) -> Option<T> {
    let v: toml::Value = toml::from_str(toml_text).ok()?;
    match v.get("resources").and_then(|r| r.get(key)) {
        None => Some(default),
        Some(k) => parse(k.as_str()?),
    }
}
