//! Population-based training (`[stopping] method = "pbt"`) end to end through
//! the real coordinator and database, with a `[program]` in plain shell whose
//! "model" is one number in a checkpoint file: each epoch it grows by a gain
//! that depends on the learning rate (best at 0.01), so what an exploit copies
//! and what the perturbed learning rate does next are both visible in the
//! recorded scores.
use crate::common;

use std::path::Path;
use std::process::Command;

use common::sqlite_rows as query;

/// The program: `sh train.sh LR EPOCHS`, resuming from `$SWEEP_TRIAL_DIR/state`
/// ("epoch weight"), stopping after `SWEEP_PAUSE_AFTER`.
const TRAIN: &str = r#"#!/bin/sh
set -eu
lr=$1 epochs=$2 out=$SWEEP_TRIAL_DIR
epoch=0 w=0
if [ -f "$out/state" ]; then read epoch w < "$out/state"; echo "resuming after epoch $epoch" >&2; fi
last=$epochs
if [ -n "${SWEEP_PAUSE_AFTER:-}" ] && [ "$SWEEP_PAUSE_AFTER" -lt "$epochs" ]; then last=$SWEEP_PAUSE_AFTER; fi
trap 'exit 0' TERM
while [ "$epoch" -lt "$last" ]; do
  sleep "${TRAIN_SLEEP:-0}"
  epoch=$((epoch + 1))
  w=$(awk -v w="$w" -v lr="$lr" 'BEGIN { d = log(lr) / log(10) + 2; if (d < 0) d = -d; printf "%.6f", w + 0.1 - 0.03 * d }')
  echo "{\"epoch\": $epoch, \"score\": $w}"
  echo "$epoch $w" > "$out/state.tmp" && mv "$out/state.tmp" "$out/state"
done
"#;

/// The gain of one epoch at learning rate `lr` (the program's formula).
fn gain(lr: f64) -> f64 {
    0.1 - 0.03 * (lr.log10() + 2.0).abs()
}

/// Writes `train.sh` and the sweep `s.toml` ("pbt-shell": 4 learning rates,
/// 4 epochs, interval 1, quantile 0.25, lr ×0.8 or ×1.2) into `dir`.
pub fn write_sweep(dir: &Path) {
    std::fs::write(dir.join("train.sh"), TRAIN).unwrap();
    let train = dir.join("train.sh");
    std::fs::write(
        dir.join("s.toml"),
        format!(
            r#"[sweep]
name = "pbt-shell"
metric = "score"

[program]
resumable = true
command = ["sh", {train:?}, "{{lr}}", "{{epochs}}"]

[defaults]
epochs = 4

[grid]
lr = [0.01, 0.003, 0.001, 0.0003]

[stopping]
method = "pbt"
interval = 1
quantile = 0.25

[stopping.perturb]
lr = [0.8, 1.2]
"#
        ),
    )
    .unwrap();
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path());
    dir
}

fn run(dir: &Path, sleep: &str) -> Command {
    let mut c = common::run_in(dir);
    c.env("TRAIN_SLEEP", sleep);
    c
}

/// (ordinal, epoch) → score, every epoch record.
fn scores(dir: &Path) -> std::collections::BTreeMap<(i64, i64), f64> {
    query(
        dir,
        "SELECT t.ordinal, m.epoch, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE m.split = 'epoch' AND m.name = 'score'",
    )
    .into_iter()
    .map(|r| {
        let f: Vec<&str> = r.split('|').collect();
        ((f[0].parse().unwrap(), f[1].parse().unwrap()), f[2].parse().unwrap())
    })
    .collect()
}

/// Lineage rows: (ordinal, epoch, donor ordinal, new lr, changes).
fn lineage(dir: &Path) -> Vec<(i64, i64, i64, f64, String)> {
    query(
        dir,
        "SELECT t.ordinal, l.epoch, d.ordinal, json_extract(l.params, '$.lr'), l.changes FROM lineage l JOIN trials t ON t.id = l.trial_id JOIN trials d ON d.id = l.donor_id ORDER BY l.epoch, t.ordinal",
    )
    .into_iter()
    .map(|r| {
        let f: Vec<&str> = r.splitn(5, '|').collect();
        (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].to_string(),
        )
    })
    .collect()
}

#[test]
fn the_bottom_quantile_copies_the_top_and_trains_on_with_a_perturbed_lr() {
    let dir = scratch();
    let out = run(dir.path(), "0").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("early stopping: pbt, interval 1, quantile 0.25, perturbs lr"),
        "{stderr}"
    );
    // 4 trials pause at epochs 1, 2 and 3; each time ⌈4 · 0.25⌉ = 1 exploits.
    assert_eq!(
        query(
            dir.path(),
            "SELECT epoch, action, count(*) FROM decisions WHERE method = 'pbt' GROUP BY epoch, action ORDER BY epoch, action"
        ),
        [
            "1|exploit|1",
            "1|promote|3",
            "2|exploit|1",
            "2|promote|3",
            "3|exploit|1",
            "3|promote|3"
        ]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, epochs_done, count(*) FROM trials GROUP BY status, epochs_done"
        ),
        ["done|4|4"]
    );
    let s = scores(dir.path());
    let l = lineage(dir.path());
    assert_eq!(l.len(), 3, "{l:?}");
    for (trial, epoch, donor, lr, changes) in &l {
        let at = |t: i64| s[&(t, *epoch)];
        let all: Vec<f64> = (0..4).map(at).collect();
        // The worst at that epoch copied the best…
        assert_eq!(
            at(*trial),
            all.iter().copied().fold(f64::INFINITY, f64::min),
            "{l:?}"
        );
        assert_eq!(
            at(*donor),
            all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "{l:?}"
        );
        // …took its lr times 0.8 or 1.2…
        let donor_lr: f64 = serde_json::from_str::<serde_json::Value>(changes).unwrap()["lr"][0]
            .as_f64()
            .unwrap();
        assert!(
            [0.8, 1.2].iter().any(|f| (donor_lr * f - lr).abs() < 1e-12),
            "{donor_lr} → {lr}"
        );
        // …and its next epoch starts from the donor's checkpoint, at the new lr.
        let next = s[&(*trial, epoch + 1)];
        assert!(
            (next - (at(*donor) + gain(*lr))).abs() < 2e-6,
            "trial {trial} epoch {}: {next} ≠ {} + gain({lr})",
            epoch + 1,
            at(*donor)
        );
    }
    // The first exploit: lr 0.0003 (ordinal 3, the worst) copies 0.01 (ordinal 0).
    assert_eq!((l[0].0, l[0].1, l[0].2), (3, 1, 0), "{l:?}");
    // Each trial ran 4 attempts, each resuming after the last (nothing retrained).
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM attempts GROUP BY trial_id"
        ),
        ["4", "4", "4", "4"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*), count(DISTINCT trial_id || '/' || epoch) FROM metrics WHERE split = 'epoch' AND name = 'score'"
        ),
        ["16|16"]
    );
    // The exploiting trial's program got the new lr (its params file and argv).
    let (id, last_lr) = {
        let r = query(
            dir.path(),
            "SELECT l.trial_id, json_extract(l.params, '$.lr') FROM lineage l ORDER BY l.epoch DESC LIMIT 1",
        )
        .remove(0);
        let (a, b) = r.split_once('|').unwrap();
        (a.to_string(), b.parse::<f64>().unwrap())
    };
    let params: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join("results/pbt-shell")
                .join(&id)
                .join("params.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let got = params["lr"].as_f64().unwrap();
    assert!((got - last_lr).abs() < 1e-12 * last_lr, "{got} ≠ {last_lr}");
    assert!(
        stderr.contains(&format!("trial {id}: exploits ")),
        "{stderr}"
    );
    // `sweep show` tells the lineage.
    let show = common::show(dir.path(), &id);
    assert!(
        show.contains("pbt lineage")
            && show.contains("took the checkpoint of trial")
            && show.contains("lr "),
        "{show}"
    );
    assert!(show.contains("exploit"), "{show}");
}

/// kill -9 of the coordinator twice during a PBT sweep, then the same
/// command again: the same decisions, the same lineage (donors, perturbed
/// values) and the same scores as an uninterrupted run.
#[test]
fn a_pbt_sweep_killed_twice_decides_and_trains_the_same() {
    let (straight, killed) = common::straight_and_killed(
        scratch,
        |dir, slow| run(dir, if slow { "0.3" } else { "0" }),
        &[3, 7],
    );
    let summary = |dir: &Path| {
        (
            query(
                dir,
                "SELECT t.ordinal, d.epoch, d.action, round(d.value, 6) FROM decisions d JOIN trials t ON t.id = d.trial_id ORDER BY t.ordinal, d.epoch",
            ),
            lineage(dir),
            scores(dir)
                .into_iter()
                .map(|(k, v)| (k, (v * 1e6).round() as i64))
                .collect::<Vec<_>>(),
            query(dir, "SELECT ordinal, status FROM trials ORDER BY ordinal"),
        )
    };
    let (a, b) = (summary(straight.path()), summary(killed.path()));
    assert_eq!(a.1.len(), 3);
    assert_eq!(a, b, "killed twice and resumed ≠ straight");
}

/// The built-in trainer (real libtorch, tiny data): with the factor 1.0 the
/// exploiting trial ends up with exactly the donor's parameters and, at the
/// exploit, exactly its checkpoint (weights, optimizer state, counters), so
/// from then on it must record what the donor records, bit for bit.
#[test]
fn the_builtin_trainer_resumes_exactly_from_the_copied_checkpoint() {
    let s = common::Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("pbt-real")
        .tiny_training()
        .grid("lr = [0.01, 0.0001]")
        .resources("cpu_workers = 1")
        .table("stopping", "method = \"pbt\"\ninterval = 1\nquantile = 0.5")
        .table("stopping.perturb", "lr = [1.0]")
        .write();
    let out = s.run(&file).output();
    out.expect_success();
    let db = s.open_db();
    let l: Vec<(String, i64, String)> = db.query("SELECT trial_id, epoch, donor_id FROM lineage");
    assert_eq!(l.len(), 1, "{}", out.stderr);
    let (trial, epoch, donor) = &l[0];
    assert_eq!(*epoch, 1);
    let after = |t: &str| -> Vec<(String, String, i64, Option<i64>, f64)> {
        db.query_with(
            "SELECT split, name, epoch, step, value FROM metrics WHERE trial_id = ? AND epoch = 2 AND name IN ('loss', 'accuracy') ORDER BY split, name, step",
            &[t],
        )
    };
    let (mine, theirs) = (after(trial), after(donor));
    assert!(!mine.is_empty());
    assert_eq!(mine, theirs, "epoch 2 after the copy ≠ the donor's epoch 2");
    // Its epoch 1 is its own (a different lr), and it tested the donor's line.
    let first = |t: &str| -> f64 {
        db.scalar_with(
            "SELECT value FROM metrics WHERE trial_id = ? AND epoch = 1 AND split = 'valid' AND name = 'loss'",
            &[t],
        )
    };
    assert_ne!(first(trial), first(donor));
    let test = |t: &str| -> (f64, f64) {
        db.query_with::<(f64, f64)>(
            "SELECT accuracy, loss FROM test_results WHERE trial_id = ?",
            &[t],
        )
        .remove(0)
    };
    assert_eq!(test(trial), test(donor));
    assert_eq!(
        db.count("SELECT count(*) FROM attempts WHERE resumed_from_epoch = 1"),
        2,
        "both resumed after epoch 1"
    );
}
