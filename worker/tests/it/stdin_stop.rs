//! Protocol 2 with the real worker (resnet18 on a tiny demo dataset, CPU): a
//! `stop` line on stdin, sent while the worker trains on, ends it at the next
//! batch boundary with a clean exit, its last epoch checkpoint kept, the best
//! checkpoint tested when asked, and `done` reporting the epochs trained.
use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use sweep_protocol::config::{SelectMetric, TrialConfig, WorkerJob};
use sweep_protocol::message::{WorkerMessage, parse_line};

const WORKER: &str = env!("CARGO_BIN_EXE_sweep-worker");

fn job(data: &Path, out: &Path) -> WorkerJob {
    let config = TrialConfig {
        epochs: 50,
        batch_size: 4,
        max_batches: 2,
        ..common::tiny_config()
    };
    common::job(data, out, config, SelectMetric::ValAccuracy)
}

fn stop_after_first_epoch(
    test: bool,
) -> (
    Vec<WorkerMessage>,
    std::process::ExitStatus,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sweep_dataset::demo::generate(
        &data,
        &sweep_dataset::demo::DemoOptions {
            per_class: 4,
            image_size: 32,
            seed: 1,
        },
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(WORKER)
        .args(["--job", &serde_json::to_string(&job(&data, &out)).unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut messages = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let msg = parse_line(&line.unwrap()).unwrap();
        if matches!(msg, WorkerMessage::Epoch { epoch: 1, .. }) {
            // The worker is already in epoch 2: it does not wait for this.
            writeln!(
                stdin,
                "{}",
                serde_json::json!({"type": "stop", "after_epoch": 1, "test": test})
            )
            .unwrap();
            stdin.flush().unwrap();
        }
        messages.push(msg);
    }
    let status = child.wait().unwrap();
    (messages, status, out, dir)
}

#[test]
fn a_stop_line_ends_training_cleanly_and_keeps_the_last_epoch_checkpoint() {
    let (messages, status, out, _dir) = stop_after_first_epoch(true);
    assert!(status.success(), "exit {status:?}: {messages:?}");
    let epochs: Vec<u32> = messages
        .iter()
        .filter_map(|m| {
            if let WorkerMessage::Epoch { epoch, .. } = m {
                Some(*epoch)
            } else {
                None
            }
        })
        .collect();
    assert!(!epochs.is_empty() && epochs.len() < 50, "epochs {epochs:?}");
    let Some(WorkerMessage::Done { epochs: done, .. }) = messages.last() else {
        panic!("last message is not done: {messages:?}")
    };
    assert_eq!(
        *done,
        *epochs.last().unwrap(),
        "done reports the epochs trained"
    );
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, WorkerMessage::Test { .. })),
        "tested on request: {messages:?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, WorkerMessage::Error { .. })),
        "{messages:?}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["epoch"],
        serde_json::json!(done),
        "the last committed epoch is the one kept"
    );
    assert!(out.join("last.safetensors").exists() && out.join("best.safetensors").exists());
}

#[test]
fn without_test_a_stopped_worker_sends_done_and_no_test() {
    let (messages, status, _out, _dir) = stop_after_first_epoch(false);
    assert!(status.success(), "exit {status:?}: {messages:?}");
    assert!(
        matches!(messages.last(), Some(WorkerMessage::Done { .. })),
        "{messages:?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, WorkerMessage::Test { .. })),
        "{messages:?}"
    );
}
