//! Lines from the coordinator on stdin (protocol 2): a reader thread parses
//! them and sets flags that the trainer checks at batch boundaries, so
//! training never waits on the coordinator. This works wherever the worker's
//! stdin is a pipe from the coordinator: a local child, or `srun` (which
//! forwards its stdin to the task).
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use sweep_protocol::{CoordinatorMessage, parse_coordinator_line};

/// 1 + the epoch after which the coordinator asked to stop; 0: no request.
static STOP_AFTER: AtomicU32 = AtomicU32::new(0);
/// Test the best checkpoint before exiting on a stop request.
static TEST_ON_STOP: AtomicBool = AtomicBool::new(false);

/// Starts the stdin reader (once per process). End of input ends it quietly:
/// a worker started without a coordinator pipe just never gets a request.
pub fn spawn_reader() {
    let _ = std::thread::Builder::new()
        .name("coordinator-stdin".into())
        .spawn(|| {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match parse_coordinator_line(&line) {
                    Ok(CoordinatorMessage::Stop { after_epoch, test }) => {
                        sweep_protocol::log!(
                            "coordinator: stop after epoch {after_epoch}{}",
                            if test { ", then test" } else { "" }
                        );
                        TEST_ON_STOP.store(test, Ordering::SeqCst);
                        STOP_AFTER.store(after_epoch.saturating_add(1), Ordering::SeqCst);
                    }
                    Err(e) => {
                        let shown: String = line.chars().take(120).collect();
                        sweep_protocol::log!("warning: ignored a line on stdin ({e}): {shown}");
                    }
                }
            }
        });
}

/// The coordinator's stop request, if any: (after which epoch, test first?).
pub fn stop_requested() -> Option<(u32, bool)> {
    match STOP_AFTER.load(Ordering::SeqCst) {
        0 => None,
        n => Some((n - 1, TEST_ON_STOP.load(Ordering::SeqCst))),
    }
}
