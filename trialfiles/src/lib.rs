//! A trial folder on disk, for everyone above the worker: what stays once a
//! trial is done ([`retention`]), the float16 rewrite of kept weights
//! ([`precision`]) and the `keep` settings themselves ([`Keep`],
//! [`KeepPrecision`]). The file names are `sweep_protocol::trial_dir`'s.
//!
//! A crate of its own so that the coordinator (which applies it after a trial)
//! and the views (`sweep show` lists what a trial holds) share it without the
//! views depending on the coordinator.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
mod keep;
pub mod precision;
pub mod retention;

pub use keep::{Keep, KeepPrecision};
