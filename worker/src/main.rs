//! `sweep-worker`: the process that trains one trial. Started by the `sweep`
//! coordinator (never by hand in normal use) as
//!
//! - `sweep-worker --job JSON`: train one attempt (`WorkerJob`), protocol on stdout;
//! - `sweep-worker probe`: one JSON line of `ProbeInfo` (libtorch, CUDA);
//! - `sweep-worker predict --job JSON`: classify images (`PredictJob`);
//! - `sweep-worker check-weights --job JSON`: do the `[pretrained]` files of
//!   these trial configs load into their models (`sweep run` asks before it starts).
//!
//! Failure is reported as a protocol `error` message plus an exit code (130
//! when stopped by a signal, 2 for an unreadable job, 1 otherwise).
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
use clap::{Parser, Subcommand};
use std::sync::atomic::Ordering;
use sweep_protocol::{ErrorClass, PredictJob, WorkerJob, WorkerMessage, emit};
use sweep_worker::{predict, probe, trainer};

#[derive(Debug, Parser)]
#[command(
    name = "sweep-worker",
    version,
    about = "The libtorch side of sweep: trains one trial and speaks JSON lines on stdout"
)]
struct Cli {
    /// The job as JSON (`WorkerJob`): train one attempt.
    #[arg(long)]
    job: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print libtorch/CUDA facts as one JSON line.
    Probe,
    /// Classify images: one JSON line per image.
    Predict {
        /// The job as JSON (`PredictJob`).
        #[arg(long)]
        job: String,
    },
    /// Check that `[pretrained]` files load into their models: `--job` is a
    /// JSON array of trial configs; one JSON line per config with a weights
    /// file (`backbone`, `weights`, `error`: null when it loads); exit 2
    /// when one does not. `sweep run` asks this before starting anything.
    CheckWeights {
        #[arg(long)]
        job: String,
    },
}

extern "C" fn on_stop(_sig: libc::c_int) {
    trainer::STOP.store(true, Ordering::SeqCst);
}

fn main() {
    let cli = Cli::parse();
    let code = match (cli.command, cli.job) {
        (Some(Command::Probe), _) => {
            println!(
                "{}",
                serde_json::to_string(&probe::collect()).unwrap_or_default()
            );
            0
        }
        (Some(Command::Predict { job }), _) => run_predict(&job),
        (Some(Command::CheckWeights { job }), _) => run_check_weights(&job),
        (None, Some(job)) => run_train(&job),
        (None, None) => {
            sweep_protocol::log!(
                "sweep-worker: nothing to do; it is started by `sweep run` with --job JSON (see docs/protocol.md)"
            );
            2
        }
    };
    std::process::exit(code);
}

fn run_predict(job: &str) -> i32 {
    // `sweep predict | head -1` ends quietly.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let job: PredictJob = match serde_json::from_str(job) {
        Ok(j) => j,
        Err(e) => {
            sweep_protocol::log!("error: invalid predict --job JSON: {e}");
            return 2;
        }
    };
    match predict::run(&job) {
        Ok(()) => 0,
        Err(e) => {
            sweep_protocol::log!("error: {e}");
            2
        }
    }
}

fn run_check_weights(job: &str) -> i32 {
    let configs: Vec<sweep_protocol::TrialConfig> = match serde_json::from_str(job) {
        Ok(c) => c,
        Err(e) => {
            sweep_protocol::log!("error: invalid check-weights --job JSON: {e}");
            return 2;
        }
    };
    let mut refused = false;
    for cfg in &configs {
        let Some(path) = &cfg.pretrained else {
            continue;
        };
        let error = sweep_worker::weights::check(cfg)
            .err()
            .map(|e| e.to_string());
        refused |= error.is_some();
        let line = serde_json::json!({
            "backbone": cfg.backbone,
            "weights": path,
            "error": error,
        });
        println!("{line}");
    }
    if refused { 2 } else { 0 }
}

fn run_train(job: &str) -> i32 {
    let job: WorkerJob = match serde_json::from_str(job) {
        Ok(j) => j,
        Err(e) => {
            let _ = emit(&WorkerMessage::Error {
                class: ErrorClass::Config,
                message: format!("invalid --job JSON: {e}"),
            });
            return 2;
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
    // Protocol 2: `stop` requests on stdin, read without ever blocking training.
    sweep_worker::control::spawn_reader();
    match trainer::run(&job) {
        Ok(()) => 0,
        Err(f) => {
            sweep_protocol::log!("error ({}): {}", f.class.as_str(), f.message);
            let _ = emit(&WorkerMessage::Error {
                class: f.class,
                message: f.message,
            });
            if f.class == ErrorClass::Interrupted {
                130
            } else {
                1
            }
        }
    }
}
