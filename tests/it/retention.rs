//! What a finished sweep leaves on disk: `[resources] keep` (best by
//! default), pruned trials without checkpoints, `sweep gc` for sweeps run
//! with more, disk use in `sweep status`, and a warning before a sweep whose
//! checkpoints will not fit. Real worker, tiny data.
use crate::common;

use common::Scratch;
use common::prerequisites::Tmpfs;
use std::path::Path;

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn checkpoints(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".safetensors"))
        .collect()
}

fn trial_dirs(s: &Scratch, sweep: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(s.results().join(sweep))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn a_done_trial_keeps_only_its_best_weights_by_default_and_predict_still_works() {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("keepbest")
        .tiny_training()
        .grid("lr = [0.01, 0.02]")
        .write();
    s.run(&file).output().expect_success();
    let dirs = trial_dirs(&s, "keepbest");
    assert_eq!(dirs.len(), 2);
    for d in &dirs {
        assert_eq!(
            checkpoints(d),
            vec!["best.safetensors"],
            "{}: {:?}",
            d.display(),
            files(d)
        );
        assert!(d.join("state.json").exists(), "counters stay");
    }
    let trial = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
    let img = std::fs::read_dir(s.data().join("test/rat"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let line = s
        .sweep(&["predict", "--trial", &trial, "--results"])
        .arg(s.results())
        .arg(&img)
        .output()
        .expect_success()
        .json();
    assert!(line["pred"].is_string(), "{line}");
    // status reports what the sweep holds on disk.
    let status = s
        .sweep(&["status", "--sweep", "keepbest", "--results"])
        .arg(s.results())
        .output();
    assert!(
        status.expect_success().stdout.contains("disk: ") && status.stdout.contains("MB in"),
        "{}",
        status.stdout
    );
}

#[test]
fn keep_all_keeps_the_resume_state_and_gc_removes_it_later() {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("keepall")
        .tiny_training()
        .grid("lr = [0.01]")
        .resources("keep = \"all\"")
        .write();
    s.run(&file).output().expect_success();
    let dir = trial_dirs(&s, "keepall").remove(0);
    assert_eq!(
        checkpoints(&dir),
        vec![
            "best.safetensors",
            "last.safetensors",
            "train_state.safetensors"
        ]
    );

    // The sweep's own keep is "all": plain gc leaves it alone.
    let out = s.sweep(&["gc", "--results"]).arg(s.results()).output();
    assert!(
        out.expect_success()
            .stdout
            .contains("sweep keepall (keep = \"all\"): freed 0 B in 0 file(s)"),
        "{}",
        out.stdout
    );
    // A dry run says what it would free and frees nothing.
    let out = s
        .sweep(&["gc", "--keep", "best+last", "--dry-run", "--results"])
        .arg(s.results())
        .output();
    assert!(
        out.expect_success().stdout.contains("would free") && out.stdout.contains("in 1 file(s)"),
        "{}",
        out.stdout
    );
    assert_eq!(checkpoints(&dir).len(), 3);
    let out = s
        .sweep(&["gc", "--sweep", "keepall", "--keep", "best", "--results"])
        .arg(s.results())
        .output();
    assert!(
        out.expect_success().stdout.contains("freed") && out.stdout.contains("in 2 file(s)"),
        "{}",
        out.stdout
    );
    assert_eq!(checkpoints(&dir), vec!["best.safetensors"]);
    // A second gc has nothing left to do.
    let out = s
        .sweep(&["gc", "--keep", "best", "--results"])
        .arg(s.results())
        .output();
    assert!(
        out.expect_success()
            .stdout
            .contains("freed 0 B in 0 file(s) in all"),
        "{}",
        out.stdout
    );
}

#[test]
fn best_and_last_and_a_bad_keep_value() {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("keeplast")
        .tiny_training()
        .grid("lr = [0.01]")
        .resources("keep = \"best+last\"")
        .write();
    s.run(&file).output().expect_success();
    assert_eq!(
        checkpoints(&trial_dirs(&s, "keeplast")[0]),
        vec!["best.safetensors", "last.safetensors"]
    );

    let bad = s
        .sweep_file("badkeep")
        .tiny_training()
        .resources("keep = \"latest\"")
        .write();
    let out = s.run(&bad).output();
    out.expect_error(
        2,
        &[
            "unknown `keep` \"latest\"",
            "\"best\", \"best+last\", \"all\"",
        ],
    );
    assert!(
        out.stderr.contains("badkeep.toml:"),
        "file:line:col: {}",
        out.stderr
    );
}

#[test]
fn a_sweep_whose_checkpoints_will_not_fit_is_warned_about_before_it_starts() {
    let s = Scratch::new().with_demo(4, 32);
    let Some(fs) = Tmpfs::mount(s.path("small"), "8m") else {
        return;
    };
    // Two resnet18 trials need about 2 × 47 MB kept and 235 MB while training;
    // the fake worker writes nothing, so the run itself succeeds.
    let file = s
        .sweep_file("tight")
        .tiny_training()
        .grid("lr = [0.01, 0.02]")
        .write();
    let out = s.run(&file).results(&fs.path).fake_worker("ok").output();
    out.expect_success();
    assert!(
        out.stderr
            .contains("warning: the checkpoints of this sweep may need up to")
            && out.stderr.contains("free"),
        "{}",
        out.stderr
    );
    // With room to spare there is no warning.
    let out = s
        .run(&s.sweep_file("roomy").tiny_training().write())
        .fake_worker("ok")
        .output();
    assert!(
        !out.expect_success().stderr.contains("may need up to"),
        "{}",
        out.stderr
    );
}
