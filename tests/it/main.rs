//! The root package's integration tests, one binary (as ripgrep and just do):
//! one link instead of one per file, and one pool of test threads, so a long
//! test no longer holds the others back. Each module is one subject; they
//! share the harness in `tests/common`. `tests/slurm.rs` stays a binary of its
//! own: its time-limit cases need the single-node cluster and the CPUs to
//! themselves, so it runs after this one, never beside it.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli_generate;
mod decoded_cache;
mod doc_links;
mod e2e;
mod exit_codes;
mod export;
mod export_kill;
mod export_live;
mod export_mlflow_http;
mod faults;
mod half_weights;
mod migrations;
mod no_libtorch;
mod pbt;
mod plots;
mod process_safety;
mod program;
mod program_reports;
mod promotion;
mod proptests;
mod retention;
mod scheduler;
mod serve;
mod spec_errors;
mod sql_examples;
mod stopping;
mod torchvision_parity;
mod tpe;
mod trial_ids;
mod unicode_plots;
