//! Promotion-based ASHA (`[stopping] mode = "promote"`) end to end through
//! the real coordinator and database, with the fake worker's `curve` mode
//! (validation accuracy saturates at 10 × lr; a resumed attempt continues
//! after its last epoch) and with a `[program]` in plain shell.
use crate::common;

use std::path::Path;
use std::process::Command;

use common::{BIN, curve_run as command, sqlite_rows as query};

/// Demo data and a sweep `st` of 9 epochs over lr 0.09, 0.08, …, 0.01 (best
/// first), one trial at a time, promotion ASHA with rungs at epochs 1 and 3.
fn scratch() -> tempfile::TempDir {
    let lrs: Vec<String> = (1..=9).rev().map(|i| format!("0.0{i}")).collect();
    crate::stopping::scratch_with(
        &lrs,
        "method = \"asha\"\nmode = \"promote\"\nmin_epochs = 1\nreduction = 3",
    )
}

/// The outcome of the rule, worked out by hand for this order (best first,
/// one at a time): 0.09 and 0.08 pause at rung 0 with too few records; the
/// third record makes 0.09 the top third → promoted, it pauses at rung 1
/// alone; 0.08 is promoted at 6 records, 0.07 at 9; at rung 1 (3 records)
/// 0.09 is the top third → promoted to epoch 9, done. The rest end pruned
/// where they paused.
const EXPECTED_DECISIONS: [&str; 12] = [
    "0.01|1|0|stop",
    "0.02|1|0|stop",
    "0.03|1|0|stop",
    "0.04|1|0|stop",
    "0.05|1|0|stop",
    "0.06|1|0|stop",
    "0.07|1|0|promote",
    "0.07|3|1|stop",
    "0.08|1|0|promote",
    "0.08|3|1|stop",
    "0.09|1|0|promote",
    "0.09|3|1|promote",
];

fn decisions(dir: &Path) -> Vec<String> {
    query(
        dir,
        "SELECT t.lr, d.epoch, d.rung, d.action FROM decisions d JOIN trials t ON t.id = d.trial_id ORDER BY t.lr, d.epoch",
    )
}

#[test]
fn paused_trials_are_promoted_from_the_top_third_and_the_rest_pruned_at_the_end() {
    let dir = scratch();
    let out = command(dir.path(), "0.02")
        .env("FAKE_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("early stopping: asha (promote), min_epochs 1, reduction 3"),
        "{stderr}"
    );
    assert_eq!(decisions(dir.path()), EXPECTED_DECISIONS);
    assert_eq!(
        query(
            dir.path(),
            "SELECT lr, status, epochs_done FROM trials WHERE status = 'done'"
        ),
        ["0.09|done|9"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status"
        ),
        ["done|1", "pruned|8"]
    );
    // Every pause is an attempt that ended cleanly at its rung; a promotion is
    // the next attempt, which resumed after that epoch (no epoch trained twice).
    assert_eq!(
        query(
            dir.path(),
            "SELECT t.lr, count(*) FROM attempts a JOIN trials t ON t.id = a.trial_id GROUP BY t.id HAVING count(*) > 1 ORDER BY t.lr"
        ),
        ["0.07|2", "0.08|2", "0.09|3"]
    );
    let events = std::fs::read_to_string(dir.path().join("events")).unwrap();
    let pauses = events.lines().filter(|l| l.starts_with("pause ")).count();
    assert_eq!(pauses, 9 + 3, "9 at rung 0, 3 at rung 1: {events}");
    // The done trial's curve is whole: one validation value per epoch 1..=9,
    // the same values an unpaused run records (the fake curve: 0.9·(1 − 0.5^e)).
    let curve = query(
        dir.path(),
        "SELECT m.epoch, round(m.value, 6) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.lr = 0.09 AND m.split = 'valid' AND m.name = 'accuracy' ORDER BY m.epoch",
    );
    let expected: Vec<String> = (1..=9)
        .map(|e| {
            format!(
                "{e}|{}",
                ((0.9 * (1.0 - 0.5f64.powi(e))) * 1e6).round() / 1e6
            )
        })
        .collect();
    assert_eq!(curve, expected);
    // The paused-then-pruned trials end with a finish time and their reason.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM trials WHERE status = 'pruned' AND finished_at IS NULL"
        ),
        ["0"]
    );
    assert!(
        stderr.contains("pruned: paused at rung 0 (epoch 1)"),
        "{stderr}"
    );
    // `sweep show` lists the promotions.
    let id = query(dir.path(), "SELECT id FROM trials WHERE lr = 0.09").remove(0);
    let show = common::show(dir.path(), &id);
    assert!(show.contains("promote"), "{show}");
    // A rerun starts nothing.
    let again = command(dir.path(), "0.02").output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 to run, 9 already finished"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// kill -9 of the coordinator in the middle of a promotion sweep, then the
/// same command again (twice, at different points): every decision the
/// uninterrupted run takes, taken once, and the same outcome.
#[test]
fn a_coordinator_killed_mid_promotion_resumes_paused_trials_and_decides_the_same() {
    let dir = scratch();
    for wanted in [3u32, 9] {
        common::kill_after_decisions(dir.path(), command(dir.path(), "0.3"), wanted);
        if wanted == 3 {
            // Killed with trials paused at rung 0: `sweep status` counts them.
            let paused = query(
                dir.path(),
                "SELECT count(*) FROM trials WHERE status = 'paused'",
            );
            assert_ne!(
                paused,
                ["0"],
                "0.09 and 0.08 paused before the third record"
            );
            let status = Command::new(BIN)
                .args(["--db", "r.db", "status"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            let status = String::from_utf8_lossy(&status.stdout);
            let line = status.lines().next().unwrap_or("");
            assert!(
                line.contains(&format!("paused {}, ", paused[0])),
                "{status}"
            );
        }
    }
    let out = command(dir.path(), "0.02").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(decisions(dir.path()), EXPECTED_DECISIONS, "{stderr}");
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status"
        ),
        ["done|1", "pruned|8"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT lr, epochs_done FROM trials WHERE status = 'done'"
        ),
        ["0.09|9"]
    );
    // Nothing was trained past its rung and then thrown away: the done
    // trial's epochs are each recorded once.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*), count(DISTINCT m.epoch) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.lr = 0.09 AND m.split = 'valid' AND m.name = 'accuracy'"
        ),
        ["9|9"]
    );
}

/// A `[program]` declared `resumable` is paused through SWEEP_PAUSE_AFTER
/// (the shell example stops after that epoch and resumes from its own
/// checkpoint file); one that is not cannot ask for promotion.
#[test]
fn a_resumable_program_is_paused_and_promoted_and_a_plain_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::shell_example("")
        .replace("method = \"asha\"", "method = \"asha\"\nmode = \"promote\"");
    assert!(text.contains("resumable = true"), "the example declares it");
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        text.replace("resumable = true", "resumable = false"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--db",
            "r.db",
            "run",
            "plain.toml",
            "--results",
            "results",
            "--plain",
        ])
        .current_dir(dir.path())
        .env("TRAIN_SLEEP", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not declared resumable") && stderr.contains("plain.toml:"),
        "{stderr}"
    );
    assert!(!dir.path().join("r.db").exists(), "nothing written");

    std::fs::write(dir.path().join("s.toml"), &text).unwrap();
    let out = Command::new(BIN)
        .args([
            "--db",
            "r.db",
            "run",
            "s.toml",
            "--results",
            "results",
            "--plain",
        ])
        .current_dir(dir.path())
        .env("TRAIN_SLEEP", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // 6 learning rates, rungs at 1 and 3 of 9: 6 pauses at rung 0, the top
    // 2 promoted; at rung 1 the better of the two goes on to epoch 9 (lr 0.01,
    // the example's best).
    assert_eq!(
        query(
            dir.path(),
            "SELECT lr, status, epochs_done FROM trials WHERE status = 'done'"
        ),
        ["0.01|done|9"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT action, count(*) FROM decisions GROUP BY action ORDER BY action"
        ),
        ["promote|3", "stop|5"]
    );
    // The program resumed rather than restarted: every attempt after the first
    // logged where it resumed, and the done trial recorded each epoch once.
    let id = query(dir.path(), "SELECT id FROM trials WHERE status = 'done'").remove(0);
    let log3 = std::fs::read_to_string(
        dir.path()
            .join("results/shell-curve")
            .join(&id)
            .join("attempt-3.log"),
    )
    .unwrap();
    assert!(log3.contains("resuming after epoch 3"), "{log3}");
    assert_eq!(
        query(
            dir.path(),
            &format!(
                "SELECT count(*), count(DISTINCT epoch) FROM metrics WHERE trial_id = '{id}' AND split = 'epoch' AND name = 'val_acc'"
            )
        ),
        ["9|9"]
    );
}

/// Every stopping method, run once straight and once killed with -9 twice
/// along the way (then rerun): the same decisions, each taken once, and the
/// same outcome. (ASHA in stop mode has its own test in `stopping.rs`;
/// promotion ASHA above.)
#[test]
fn every_method_decides_the_same_after_kill_9_as_without() {
    for method in [
        "method = \"hyperband\"\nmin_epochs = 1\nreduction = 3",
        "method = \"hyperband\"\nmode = \"promote\"\nmin_epochs = 1\nreduction = 3",
        "method = \"median\"\nmin_epochs = 2",
        "method = \"auto\"",
    ] {
        let fresh = || {
            let dir = scratch();
            let text = std::fs::read_to_string(dir.path().join("s.toml")).unwrap();
            let head = text.split("[stopping]").next().unwrap().to_string();
            std::fs::write(
                dir.path().join("s.toml"),
                format!("{head}[stopping]\n{method}\n"),
            )
            .unwrap();
            dir
        };
        let (straight, killed) = common::straight_and_killed(
            fresh,
            |dir, slow| command(dir, if slow { "0.25" } else { "0.02" }),
            &[2, 5],
        );
        let summary = |dir: &Path| {
            (
                common::decisions_by_lr(dir),
                query(dir, "SELECT lr, status FROM trials ORDER BY lr"),
            )
        };
        let (a, b) = (summary(straight.path()), summary(killed.path()));
        assert!(!a.0.is_empty(), "{method}: some decisions");
        assert_eq!(a, b, "{method}: killed twice and resumed ≠ straight");
    }
}
