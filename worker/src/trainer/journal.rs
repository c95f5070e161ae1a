//! The trial's outgoing messages: stdout to the coordinator, and the metric
//! records also to `journal.jsonl` so that a resume can replay them. Owns no
//! training state; a closed stdout is an `interrupted` failure, never a panic.
use super::checkpoint::write_atomic;
use super::*;
use sweep_protocol::trial_dir;

/// Every metric message also goes to `journal.jsonl` in the trial directory. A
/// coordinator killed before committing what it was sent would otherwise lose
/// those rows for good; on resume the worker replays the journal up to its
/// checkpoint epoch and the store's upserts drop what it already has.
pub(super) static JOURNAL: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

pub(super) fn journal(msg: &WorkerMessage) {
    if matches!(
        msg,
        WorkerMessage::TrainStep { .. } | WorkerMessage::Epoch { .. }
    ) && let Ok(mut guard) = JOURNAL.lock()
        && let Some(f) = guard.as_mut()
    {
        use std::io::Write;
        let line = serde_json::to_string(msg).unwrap_or_default();
        let _ = writeln!(f, "{line}");
        if matches!(msg, WorkerMessage::Epoch { .. }) {
            let _ = f.sync_data();
        }
    }
}

/// Writes one message on stdout. A closed stdout means the coordinator is
/// gone: stop rather than train for nobody.
pub(super) fn emit_msg(msg: &WorkerMessage) -> Result<(), Failure> {
    emit(msg).map_err(|e| {
        Failure::new(
            ErrorClass::Interrupted,
            format!("coordinator pipe closed: {e}"),
        )
    })
}

pub(super) fn emit_line(line: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .map_err(|e| {
            Failure::new(
                ErrorClass::Interrupted,
                format!("coordinator pipe closed: {e}"),
            )
        })
}

pub(super) fn send(msg: WorkerMessage) -> Result<(), Failure> {
    journal(&msg);
    emit_msg(&msg)
}

/// Replays the journal up to `replay_until` (the checkpoint's epoch) and keeps
/// only those lines: records of an epoch a kill interrupted are dropped, as
/// that epoch is trained again. A fresh start empties it.
pub(super) fn open_journal(dir: &Path, replay_until: Option<u32>) -> Result<(), Failure> {
    let path = dir.join(trial_dir::JOURNAL);
    let mut kept = String::new();
    if let Some(until) = replay_until {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Ok(msg) = sweep_protocol::message::parse_line(line) else {
                continue;
            };
            let epoch = match &msg {
                WorkerMessage::TrainStep { epoch, .. } | WorkerMessage::Epoch { epoch, .. } => {
                    *epoch
                }
                _ => continue,
            };
            if epoch <= until {
                // The line as it was sent: parsing and printing again could move
                // a float by one ulp (serde_json parses decimals best-effort).
                emit_line(line)?;
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    write_atomic(&path, kept.as_bytes())?;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| {
            Failure::new(
                ErrorClass::Internal,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
    if let Ok(mut g) = JOURNAL.lock() {
        *g = Some(f);
    }
    Ok(())
}
