//! `sweep worker`: the process that trains one trial. Parses its job, installs
//! the stop-signal handler, runs the trainer and reports failure as a protocol
//! `error` message plus an exit code (130 when stopped by a signal, 1 otherwise).
use crate::config::WorkerJob;
use crate::protocol::{ErrorClass, WorkerMessage, emit};
use crate::train::trainer;
use std::sync::atomic::Ordering;

extern "C" fn on_stop(_sig: libc::c_int) {
    trainer::STOP.store(true, Ordering::SeqCst);
}

pub fn main(job: Option<&str>, probe: bool) -> i32 {
    if probe {
        let n = if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 };
        println!("{}", serde_json::json!({ "cuda_devices": n }));
        return 0;
    }
    let job: WorkerJob = match job.map(serde_json::from_str) {
        Some(Ok(j)) => j,
        Some(Err(e)) => {
            let _ = emit(&WorkerMessage::Error { class: ErrorClass::Config, message: format!("invalid --job JSON: {e}") });
            return 2;
        }
        None => return 2,
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
    match trainer::run(&job) {
        Ok(()) => 0,
        Err(f) => {
            crate::log!("error ({}): {}", f.class.as_str(), f.message);
            let _ = emit(&WorkerMessage::Error { class: f.class, message: f.message });
            if f.class == ErrorClass::Interrupted { 130 } else { 1 }
        }
    }
}
