//! `[random] sampler = "tpe"` end to end through the real coordinator and
//! database, with the fake worker's `curve` mode (validation accuracy
//! saturates at 10 × lr): proposals are rows written before their trials
//! start, a killed sweep continues the same sequence, `--dry-run` shows the
//! space and the startup draws, and bad settings are located errors.
use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, curve_run as command, sqlite_rows as query};

const SPACE: &str = "[random]\nsamples = 8\nsampler = \"tpe\"\nstartup = 3\nlr = { loguniform = [0.001, 0.099] }\nmomentum = { uniform = [0.5, 0.95] }\n";

fn scratch(random: &str) -> tempfile::TempDir {
    let dir = common::demo_dir();
    // One trial at a time: each proposal sees every earlier trial's results,
    // so the sequence does not depend on which of two workers finishes first.
    std::fs::write(
        dir.path().join("s.toml"),
        format!("[sweep]\nname = \"tp\"\ndataset = \"data\"\n[defaults]\nepochs = 3\n{random}\n[resources]\ncpu_workers = 1\n"),
    )
    .unwrap();
    dir
}

fn run(dir: &Path) -> Output {
    command(dir, "0.01").output().unwrap()
}

/// The sequence: k, sampler, trial ids.
fn sequence(dir: &Path) -> Vec<String> {
    query(
        dir,
        "SELECT k || ' ' || sampler || ' ' || trial_ids FROM proposals ORDER BY k",
    )
}

#[test]
fn tpe_proposes_after_the_startup_draws_and_writes_each_point_before_it_runs() {
    let dir = scratch(SPACE);
    let out = run(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 8 points: 3 random startup draws, then 5 TPE proposals modelled on the
    // final epoch (one worker: every earlier trial has finished).
    assert_eq!(
        query(
            dir.path(),
            "SELECT sampler, count(*), min(k), max(k), group_concat(DISTINCT budget), min(observations), max(observations) FROM proposals GROUP BY sampler ORDER BY sampler"
        ),
        ["random|3|0|2||0|0", "tpe|5|3|7|3|3|7"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status"
        ),
        ["done|8"]
    );
    // Each proposal's trial row existed before its attempt started.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM proposals p JOIN trials t ON t.id = json_extract(p.trial_ids, '$[0]')
               JOIN attempts a ON a.trial_id = t.id AND a.attempt = 1 WHERE p.time <= a.started_at"
        ),
        ["8"]
    );
    // The proposal's params are the trial's.
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) FROM proposals p JOIN trials t ON t.id = json_extract(p.trial_ids, '$[0]') WHERE abs(json_extract(p.params, '$.lr') - t.lr) < 1e-12"
        ),
        ["8"]
    );
    // TPE learns: its proposals' mean lr (the curve's ceiling is 10 × lr) is above the startup draws'.
    let means = query(
        dir.path(),
        "SELECT avg(json_extract(params, '$.lr')) FROM proposals GROUP BY sampler ORDER BY sampler",
    );
    let (random, tpe): (f64, f64) = (means[0].parse().unwrap(), means[1].parse().unwrap());
    assert!(tpe > random, "mean lr: startup {random}, tpe {tpe}");
    // A rerun proposes nothing new.
    let again = run(dir.path());
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(query(dir.path(), "SELECT count(*) FROM proposals"), ["8"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 to run, 8 already finished"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// kill -9 of the coordinator in the middle of the TPE phase, then the same
/// command: the sequence continues where it was (same points as a run never
/// interrupted), no point lost, none duplicated.
#[test]
fn a_killed_tpe_sweep_continues_the_same_sequence() {
    let whole = scratch(SPACE);
    assert_eq!(run(whole.path()).status.code(), Some(0));
    let expected = sequence(whole.path());
    assert_eq!(expected.len(), 8);

    let dir = scratch(SPACE);
    let mut child = command(dir.path(), "0.3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = if dir.path().join("r.db").exists() {
            Command::new("sqlite3")
                .arg(dir.path().join("r.db"))
                .arg("SELECT count(*) FROM proposals WHERE sampler = 'tpe'")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u32>()
                        .ok()
                })
                .unwrap_or(0)
        } else {
            0
        };
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no TPE proposal within 90 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = query(dir.path(), "SELECT count(*) FROM proposals")[0]
        .parse::<usize>()
        .unwrap();
    assert!(killed_at < 8, "killed after every point was proposed");
    let out = run(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sequence(dir.path()),
        expected,
        "the resumed sweep proposed other points"
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT status, count(*) FROM trials GROUP BY status"
        ),
        ["done|8"]
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*), count(DISTINCT trial_ids) FROM proposals"
        ),
        ["8|8"]
    );
}

/// BOHB (TPE proposals with Hyperband's budgets), run once straight and once
/// killed with -9 twice along the way, then rerun: the same proposals (points
/// and the rung results they were modelled on), the same decisions, each
/// taken once, and the same outcome.
#[test]
fn a_bohb_sweep_killed_twice_proposes_and_decides_the_same() {
    let fresh = || {
        let dir = scratch(SPACE);
        let path = dir.path().join("s.toml");
        // 9 epochs: rungs at 1 and 3 below the last, so that some are stopped.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("epochs = 3", "epochs = 9");
        std::fs::write(
            &path,
            format!("{text}[stopping]\nmethod = \"hyperband\"\nmin_epochs = 1\nreduction = 3\n"),
        )
        .unwrap();
        dir
    };
    let (straight, killed) = common::straight_and_killed(
        fresh,
        |dir, slow| command(dir, if slow { "0.25" } else { "0.01" }),
        &[2, 5],
    );
    let summary = |dir: &Path| {
        (
            query(
                dir,
                "SELECT k, sampler, params, budget, observations FROM proposals ORDER BY k",
            ),
            common::decisions_by_lr(dir),
            query(dir, "SELECT lr, status FROM trials ORDER BY lr"),
        )
    };
    let (a, b) = (summary(straight.path()), summary(killed.path()));
    assert_eq!(a.0.len(), 8, "8 points: {:?}", a.0);
    assert!(
        a.0.iter().any(|p| p.contains("|tpe|")),
        "TPE proposed: {:?}",
        a.0
    );
    assert!(
        a.1.iter().any(|d| d.ends_with("|stop")),
        "hyperband stopped some: {:?}",
        a.1
    );
    assert_eq!(a, b, "BOHB killed twice and resumed ≠ straight");
}

#[test]
fn dry_run_prints_the_space_and_the_startup_draws() {
    let dir = scratch(SPACE);
    let out = Command::new(BIN)
        .args(["run", "s.toml", "--dry-run"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("3 trials planned"), "{stdout}");
    assert!(stdout.contains("sampler tpe: 3 random startup draws (above), then 5 points proposed while the sweep runs"), "{stdout}");
    assert!(
        stdout.contains("lr        loguniform [0.001, 0.099]"),
        "{stdout}"
    );
    assert!(stdout.contains("momentum  uniform [0.5, 0.95]"), "{stdout}");
    assert!(!dir.path().join("r.db").exists());
}

#[test]
fn bad_sampler_settings_are_located_errors() {
    for (random, line, col, says) in [
        (
            "[random]\nsamples = 4\nsampler = \"bayes\"\nlr = { uniform = [0.01, 0.1] }\n",
            8,
            11,
            "unknown sampler \"bayes\"",
        ),
        (
            "[random]\nsamples = 4\nsampler = \"tpe\"\nstartup = 5\nlr = { uniform = [0.01, 0.1] }\n",
            9,
            11,
            "`startup` must be an integer between 1 and `samples` (4), got 5",
        ),
        (
            "[random]\nsamples = 4\nstartup = 2\nlr = { uniform = [0.01, 0.1] }\n",
            8,
            11,
            "`startup` applies to sampler = \"tpe\" only",
        ),
        (
            "[grid]\nbackbone = [\"resnet18\"]\n[random]\nsamples = 4\nsampler = \"tpe\"\nlr = { uniform = [0.01, 0.1] }\n",
            7,
            1,
            "[grid] cannot be combined with sampler = \"tpe\"",
        ),
        (
            "[random]\nsamples = 4\nsampler = \"tpe\"\nlr = { uniform = [0.0, 0.1] }\n",
            9,
            6,
            "`lr` must be > 0",
        ),
    ] {
        let dir = scratch(random);
        let out = Command::new(BIN)
            .args(["--db", "r.db", "run", "s.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("s.toml:{line}:{col}: {says}")),
            "expected s.toml:{line}:{col}: {says}\n{stderr}"
        );
        assert!(
            !dir.path().join("r.db").exists(),
            "nothing written on bad input"
        );
    }
}

/// Proposed trials join Hyperband's brackets round-robin by their position,
/// like planned ones (bracket 1 of 2 has its first rung at the last epoch:
/// no decision there).
#[test]
fn tpe_proposals_are_spread_over_hyperband_brackets() {
    let dir = scratch(&format!(
        "{SPACE}[stopping]\nmethod = \"hyperband\"\nmin_epochs = 1\nreduction = 3\n"
    ));
    let out = run(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Trials 3..7 are the proposals; 3, 5 and 7 are in bracket 1.
    assert_eq!(
        query(
            dir.path(),
            "SELECT group_concat(p.k) FROM proposals p WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.trial_id = json_extract(p.trial_ids, '$[0]'))"
        ),
        ["1,3,5,7"]
    );
    assert_eq!(
        query(dir.path(), "SELECT DISTINCT bracket FROM decisions"),
        ["0"]
    );
}
