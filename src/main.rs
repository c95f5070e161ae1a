//! `sweep`: parse the command line, run one command, map the outcome to an
//! exit code (0 ok, 1 some trials failed, 2 bad input, 130 interrupted).
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
use clap::Parser;
use sweep::cli::{Cli, Command};
use sweep::commands;

fn main() {
    let cli = Cli::parse();
    // `sweep status | head -1` should end quietly, like any Unix tool, not
    // panic on a broken pipe. The long-running commands keep SIGPIPE
    // ignored (Rust's default): `sweep run` writes stop lines to trial
    // processes that may have just died, and `serve`/`export` write to
    // sockets a client may close; a closed pipe there is an error to
    // handle, never the end of the coordinator.
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Serve(_) | Command::Export(_)
    ) {
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
        Command::Serve(a) => commands::serve(a, db),
        Command::Data(d) => commands::data(d),
        Command::Doctor(a) => commands::doctor(a.json, db),
        Command::Predict(a) => commands::predict(a, db),
        Command::Gc(a) => commands::gc(a, db),
        Command::Export(e) => commands::export(e, db),
        Command::Completions { shell } => commands::completions(shell),
        Command::Generate(g) => commands::generate(g),
        Command::Cache(c) => sweep::cache_commands::cache(c),
        Command::Bench(b) => sweep::cache_commands::bench(b),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            sweep_protocol::log!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
