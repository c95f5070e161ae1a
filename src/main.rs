//! `sweep`: parse the command line, run one command, map the outcome to an
//! exit code (0 ok, 1 some trials failed, 2 bad input, 130 interrupted).
mod cli;
mod commands;
mod config;
mod datagen;
mod doctor;
mod html;
mod launcher;
mod plan;
mod plot;
mod predict;
mod protocol;
mod report;
mod scheduler;
mod show;
mod spec;
mod store;
mod train;
mod worker;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Worker(_)) {
        // `sweep status | head -1` should end quietly, like any Unix tool, not panic
        // on a broken pipe. (The worker keeps SIGPIPE ignored: it handles a closed
        // stdout as "coordinator gone".)
        // SAFETY: restoring the default disposition of one signal at start-up.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let db = cli.db;
    let result = match cli.command {
        Command::Run(a) => commands::run(a, db),
        Command::Report(a) => commands::report(a, db),
        Command::Status(a) => commands::status(a, db),
        Command::Show(a) => commands::show(a, db),
        Command::Plot(a) => commands::plot(a, db),
        Command::Data(d) => commands::data(d),
        Command::Doctor(a) => commands::doctor(a.json, db),
        Command::Predict(a) => commands::predict(a, db),
        Command::Worker(w) => Ok(worker::main(w.job.as_deref(), w.probe)),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code
        }
    };
    std::process::exit(code);
}
