//! Acceptance test of exact resume: a trial SIGKILLed during its second epoch
//! and run again (it resumes from `train_state.safetensors`) records exactly
//! the metric values of the same trial run without interruption, bit for bit,
//! for SGD (momentum, weight decay), Adam and AdamW, and ends with the same
//! checkpoints. CPU, one torch thread; resnet18 at 32 px with a dropout head
//! and augmentation on, so that the optimizer state, the torch generator
//! (dropout), the data order and the augmentation all have to continue as if
//! nothing had happened.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use sweep_protocol::config::{Head, Optimizer, TrialConfig, WorkerJob};

const WORKER: &str = env!("CARGO_BIN_EXE_sweep-worker");

fn dataset(root: &Path) -> PathBuf {
    let dir = root.join("data");
    sweep_dataset::demo::generate(
        &dir,
        &sweep_dataset::demo::DemoOptions {
            per_class: 6,
            image_size: 32,
            seed: 0,
        },
    )
    .unwrap();
    dir
}

fn job(data: &Path, out: &Path, optimizer: Optimizer) -> String {
    let (lr, weight_decay) = match optimizer {
        Optimizer::Sgd => (0.02, 1e-4),
        Optimizer::Adam => (1e-3, 1e-4),
        Optimizer::Adamw => (1e-3, 0.05),
    };
    let config = TrialConfig {
        backbone: "resnet18".into(),
        lr,
        epochs: 2,
        image_size: 32,
        batch_size: 8,
        optimizer,
        momentum: 0.9,
        weight_decay,
        head: Head::Mlp {
            hidden: vec![32],
            dropout: 0.5,
        },
        log_every: 1,
        max_batches: 5,
        seed: 3,
        ..TrialConfig::default()
    };
    let job = WorkerJob {
        trial: "resume".into(),
        sweep: "exact".into(),
        dataset: data.to_path_buf(),
        out_dir: out.to_path_buf(),
        threads: 1,
        config,
        select: Default::default(),
        dataset_hash: None,
        pause_after: None,
    };
    serde_json::to_string(&job).unwrap()
}

/// The worker's stdout lines; the run must succeed.
fn run_to_end(job: &str) -> Vec<String> {
    let out = Command::new(WORKER).args(["--job", job]).output().unwrap();
    assert!(
        out.status.success(),
        "worker failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Runs the worker and SIGKILLs it once it has reported epoch 1 and two
/// batches of epoch 2; returns what it printed.
fn run_and_kill_in_epoch_2(job: &str) -> Vec<String> {
    let mut child = Command::new(WORKER)
        .args(["--job", job])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut seen_epoch_1 = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen_epoch_1 |= v["type"] == "epoch" && v["epoch"] == 1;
        let in_epoch_2 =
            v["type"] == "train_step" && v["epoch"] == 2 && v["batch"].as_u64().unwrap() >= 2;
        lines.push(line);
        if seen_epoch_1 && in_epoch_2 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the worker must die by SIGKILL during epoch 2 (it ended with {status})"
    );
    lines
}

/// Metric records (train_step, epoch, test, done) keyed by what identifies
/// them, with the wall-clock fields (timings, throughput) left out.
fn records(lines: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lines {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = match v["type"].as_str().unwrap() {
            "train_step" => format!("train_step e{} b{}", v["epoch"], v["batch"]),
            "epoch" => format!("epoch e{}", v["epoch"]),
            "test" | "confusion" | "done" => v["type"].as_str().unwrap().to_string(),
            _ => continue,
        };
        let o = v.as_object_mut().unwrap();
        for timing in ["images_per_s", "seconds", "wall_s", "timings"] {
            o.remove(timing);
        }
        let value = serde_json::to_string(&v).unwrap();
        if let Some(before) = out.insert(key.clone(), value.clone()) {
            assert_eq!(before, value, "{key} reported twice with different values");
        }
    }
    out
}

fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect()
}

fn check(optimizer: Optimizer) {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (straight, interrupted) = (dir.path().join("straight"), dir.path().join("interrupted"));

    let reference = records(&run_to_end(&job(&data, &straight, optimizer)));
    assert_eq!(
        reference
            .keys()
            .filter(|k| k.starts_with("train_step"))
            .count(),
        10,
        "5 batches × 2 epochs, log_every 1"
    );

    let killed = run_and_kill_in_epoch_2(&job(&data, &interrupted, optimizer));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(interrupted.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"], 1, "the kill came during epoch 2");
    let resumed = run_to_end(&job(&data, &interrupted, optimizer));
    assert!(
        resumed
            .iter()
            .any(|l| l.contains(r#""type":"resumed","from_epoch":1"#)),
        "the second run resumed after epoch 1"
    );

    // The resumed run's records (epoch 1 replayed from its journal, then its
    // own) and the killed run's must all be the uninterrupted run's.
    let after = records(&resumed);
    let mut union = records(&killed);
    assert!(
        union.keys().any(|k| k.starts_with("train_step e2")),
        "the killed run trained part of epoch 2"
    );
    for (k, v) in &after {
        if let Some(before) = union.insert(k.clone(), v.clone()) {
            assert_eq!(
                &before, v,
                "{k}: the killed run and the resumed run disagree"
            );
        }
    }
    for (name, recs) in [("resumed run", &after), ("union of both runs", &union)] {
        let missing: Vec<&String> = reference
            .keys()
            .filter(|k| !recs.contains_key(*k))
            .collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
        for (k, v) in recs {
            assert_eq!(
                reference.get(k),
                Some(v),
                "{optimizer:?}, {name}: {k} differs from the uninterrupted run"
            );
        }
    }
    // The same weights, BatchNorm statistics and optimizer state at the end.
    for file in [
        "last.safetensors",
        "best.safetensors",
        "train_state.safetensors",
    ] {
        assert_eq!(
            tensors(&straight.join(file)),
            tensors(&interrupted.join(file)),
            "{optimizer:?}: {file} differs"
        );
    }
    let state = tensors(&straight.join("train_state.safetensors"));
    let slots: Vec<&String> = state.keys().filter(|k| k.starts_with("optim.")).collect();
    assert!(
        slots.len() >= 62,
        "{optimizer:?}: the optimizer state is checkpointed ({} entries)",
        slots.len()
    );
}

#[test]
fn sgd_resumes_exactly() {
    check(Optimizer::Sgd);
}

#[test]
fn adam_resumes_exactly() {
    check(Optimizer::Adam);
}

#[test]
fn adamw_resumes_exactly() {
    check(Optimizer::Adamw);
}

/// Promotion-based stopping pauses a trial at a rung (`pause_after`): the
/// worker trains to that epoch, keeps its checkpoint and ends with `done`
/// (exit 0) without testing; the next attempt, promoted, resumes from it and
/// records exactly what an uninterrupted run does, with the same final
/// weights and optimizer state.
#[test]
fn a_trial_paused_at_a_rung_and_promoted_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (straight, paused) = (dir.path().join("straight"), dir.path().join("paused"));
    let reference = records(&run_to_end(&job(&data, &straight, Optimizer::Adam)));

    let mut first: serde_json::Value =
        serde_json::from_str(&job(&data, &paused, Optimizer::Adam)).unwrap();
    first["pause_after"] = 1.into();
    let before = run_to_end(&first.to_string());
    let types: Vec<String> = before
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert!(
        !types.contains(&"\"test\"".to_string()),
        "a pause does not test: {types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("\"done\""));
    assert!(
        !before.iter().any(|l| l.contains(r#""epoch":2"#)),
        "nothing of epoch 2 was trained before the pause"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(paused.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"], 1);

    let after = run_to_end(&job(&data, &paused, Optimizer::Adam));
    assert!(
        after
            .iter()
            .any(|l| l.contains(r#""type":"resumed","from_epoch":1"#)),
        "the promoted attempt resumed after epoch 1"
    );
    let mut union = records(&before);
    union.remove("done");
    for (k, v) in records(&after) {
        if let Some(b) = union.insert(k.clone(), v.clone()) {
            assert_eq!(b, v, "{k}: the paused and the promoted attempt disagree");
        }
    }
    assert_eq!(union, reference, "paused + promoted = uninterrupted");
    for file in [
        "last.safetensors",
        "best.safetensors",
        "train_state.safetensors",
    ] {
        assert_eq!(
            tensors(&straight.join(file)),
            tensors(&paused.join(file)),
            "{file} differs"
        );
    }
}
