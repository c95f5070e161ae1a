//! `[resources] keep_precision = "half"`: once a trial is done its kept
//! weights are float16 (half the bytes), `sweep predict` on them agrees with
//! the float32 weights, a trial that may still resume is never rewritten,
//! `sweep gc --keep-precision half` does it for older sweeps, and a bad value
//! is a located error. Real worker, tiny data.
use crate::common;

use common::{EXIT_BAD_INPUT, Scratch};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The dtypes the safetensors header of `path` declares (e.g. {"F16"}).
fn dtypes(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    header
        .tensors()
        .values()
        .map(|t| format!("{:?}", t.dtype))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".safetensors"))
        .collect();
    v.sort();
    v
}

fn trial_dirs(s: &Scratch, sweep: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(s.results().join(sweep))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn id(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// The first test image of each of the first `n` classes.
fn test_images(s: &Scratch, n: usize) -> Vec<PathBuf> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(s.data().join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    classes
        .iter()
        .take(n)
        .map(|c| {
            let mut f: Vec<PathBuf> = std::fs::read_dir(c)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            f.sort();
            f.remove(0)
        })
        .collect()
}

/// `sweep predict --trial TRIAL`: per image, the predicted class and the softmax of the logits.
fn predict(s: &Scratch, trial: &str, images: &[PathBuf]) -> Vec<(String, Vec<f64>)> {
    let out = s
        .sweep(&["predict", "--trial", trial, "--results"])
        .arg(s.results())
        .args(images)
        .output();
    out.expect_success();
    out.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let logits: Vec<f64> = v["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|x| (x - max).exp()).sum();
            (
                v["pred"].as_str().unwrap().to_string(),
                logits.iter().map(|x| (x - max).exp() / sum).collect(),
            )
        })
        .collect()
}

/// Same top-1 class for every image and every probability within 1e-2.
#[track_caller]
fn agree(full: &[(String, Vec<f64>)], half: &[(String, Vec<f64>)]) {
    assert_eq!(full.len(), half.len());
    let most = full
        .iter()
        .zip(half)
        .flat_map(|((_, f), (_, h))| f.iter().zip(h).map(|(a, b)| (a - b).abs()))
        .fold(0.0, f64::max);
    eprintln!(
        "float16 vs float32 weights: {} images, largest probability difference {most:.2e}",
        full.len()
    );
    for ((pf, f), (ph, h)) in full.iter().zip(half) {
        assert_eq!(pf, ph, "top-1 class: float32 {f:?} vs float16 {h:?}");
        for (a, b) in f.iter().zip(h) {
            assert!((a - b).abs() < 1e-2, "probabilities {f:?} vs {h:?}");
        }
    }
}

/// The same one-trial sweep, run in its own scratch folder with `resources`.
fn one_trial(resources: &str) -> (Scratch, PathBuf) {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("halfw")
        .tiny_training()
        .grid("lr = [0.01]")
        .resources(resources)
        .write();
    s.run(&file).output().expect_success();
    let dir = trial_dirs(&s, "halfw").remove(0);
    (s, dir)
}

#[test]
fn a_done_trial_keeps_float16_weights_of_half_the_size_that_predict_like_float32() {
    let (half, half_dir) = one_trial("keep_precision = \"half\"");
    let (full, full_dir) = one_trial("keep_precision = \"full\"");
    // The same trial (same parameters and seed, on copies of the same data): only the precision kept differs.
    let params = |s: &Scratch| -> String { s.open_db().scalar("SELECT params FROM trials") };
    assert_eq!(params(&half), params(&full));
    assert_eq!(
        checkpoints(&half_dir),
        ["best.safetensors"],
        "no temporary left behind"
    );
    let (h, f) = (
        half_dir.join("best.safetensors"),
        full_dir.join("best.safetensors"),
    );
    assert_eq!(dtypes(&h), set(&["F16"]));
    assert_eq!(dtypes(&f), set(&["F32"]));
    let ratio =
        std::fs::metadata(&h).unwrap().len() as f64 / std::fs::metadata(&f).unwrap().len() as f64;
    assert!(
        (0.49..0.51).contains(&ratio),
        "float16 / float32 size: {ratio}"
    );

    let (half_trial, full_trial) = (id(&half_dir), id(&full_dir));
    let images = test_images(&half, 6);
    agree(
        &predict(&full, &full_trial, &images),
        &predict(&half, &half_trial, &images),
    );

    // The trial's record says what is on disk.
    let show = half
        .sweep(&["show", &half_trial, "--results"])
        .arg(half.results())
        .output();
    assert!(
        show.expect_success()
            .stdout
            .contains("checkpoints: best.safetensors (")
            && show.stdout.contains("float16)"),
        "{}",
        show.stdout
    );
    let show = full
        .sweep(&["show", &full_trial, "--results"])
        .arg(full.results())
        .output();
    assert!(
        show.expect_success().stdout.contains("float32)"),
        "{}",
        show.stdout
    );
}

/// The bytes of every checkpoint in `dir`, by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    checkpoints(dir)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
        .collect()
}

#[test]
fn gc_rewrites_older_sweeps_dry_run_first_and_never_a_trial_that_can_resume() {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("older")
        .tiny_training()
        .grid("lr = [0.01, 0.02]")
        .resources("keep = \"best+last\"")
        .write();
    s.run(&file).output().expect_success();
    let dirs = trial_dirs(&s, "older");
    let (done, other) = (&dirs[0], &dirs[1]);
    let images = test_images(&s, 6);
    let before = predict(&s, &id(done), &images);
    let done_bytes = contents(done);
    let gc = |extra: &[&str]| {
        s.sweep(&["gc", "--results"])
            .arg(s.results())
            .args(extra)
            .output()
    };

    // The other trial is made one that may still resume, in each resumable status in turn.
    let db = s.open_db();
    for status in ["failed", "interrupted", "running", "queued"] {
        db.execute(&format!(
            "UPDATE trials SET status = '{status}' WHERE id = '{}'",
            id(other)
        ));
        let other_bytes = contents(other);

        // A dry run says what it would rewrite and what that saves, and writes nothing.
        let out = gc(&["--keep-precision", "half", "--dry-run"]);
        assert!(
            out.expect_success()
                .stdout
                .contains("(keep = \"best+last\", keep_precision = \"half\"): would free 0 B in 0 file(s), would rewrite 2 file(s) as float16 saving "),
            "{status}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(
                "would free 0 B in 0 file(s) in all, would rewrite 2 file(s) as float16 saving "
            ),
            "{}",
            out.stdout
        );
        assert_eq!(contents(done), done_bytes, "{status}: a dry run wrote");
        assert_eq!(contents(other), other_bytes, "{status}: a dry run wrote");
    }

    // For real: the done trial's best and last become float16; the resumable one is untouched.
    let other_bytes = contents(other);
    let out = gc(&["--keep-precision", "half"]);
    assert!(
        out.expect_success()
            .stdout
            .contains("rewrote 2 file(s) as float16 saving "),
        "{}",
        out.stdout
    );
    let saved = out.stdout.lines().last().unwrap().to_string();
    assert!(saved.contains("MB"), "bytes saved are reported: {saved}");
    for f in ["best.safetensors", "last.safetensors"] {
        assert_eq!(dtypes(&done.join(f)), set(&["F16"]), "{f}");
    }
    assert_eq!(
        contents(other),
        other_bytes,
        "a trial that can resume was rewritten"
    );
    agree(&before, &predict(&s, &id(done), &images));

    // Nothing is left to do; plain gc (the sweep's own keep_precision is full) says nothing of float16.
    let out = gc(&["--keep-precision", "half"]);
    assert!(
        out.expect_success()
            .stdout
            .contains("rewrote 0 file(s) as float16 saving 0 B"),
        "{}",
        out.stdout
    );
    let out = gc(&[]);
    assert!(
        !out.expect_success().stdout.contains("float16"),
        "{}",
        out.stdout
    );
    // A bad value is refused by the argument parser.
    gc(&["--keep-precision", "quarter"]).expect_error(EXIT_BAD_INPUT, &["quarter", "full", "half"]);
}

#[test]
fn an_interrupted_trial_stays_float32_until_it_is_done() {
    let s = Scratch::new().with_demo(4, 32);
    let file = s
        .sweep_file("resumable")
        .tiny_training()
        .defaults("epochs = 4")
        .grid("lr = [0.01]")
        .resources("keep_precision = \"half\"")
        .write();
    let mut run = s.run(&file).spawn();
    run.wait_for_stderr_line("an epoch completed", |l| {
        l.contains("] epoch ") && l.contains("val acc")
    });
    run.signal(libc::SIGINT);
    let out = run.wait();
    assert_eq!(out.code, Some(130), "{}", out.report());
    let dir = trial_dirs(&s, "resumable").remove(0);
    let status: String = s.open_db().scalar("SELECT status FROM trials");
    assert_eq!(status, "interrupted");
    assert_eq!(
        checkpoints(&dir),
        [
            "best.safetensors",
            "last.safetensors",
            "train_state.safetensors"
        ]
    );
    for f in checkpoints(&dir) {
        assert_eq!(
            dtypes(&dir.join(&f)),
            set(&["F32"]),
            "{f} of an interrupted trial"
        );
    }
    // gc leaves it alone too.
    s.sweep(&["gc", "--keep-precision", "half", "--results"])
        .arg(s.results())
        .output()
        .expect_success();
    assert_eq!(dtypes(&dir.join("best.safetensors")), set(&["F32"]));

    // Resumed and finished: now its best weights are float16.
    let out = s.run(&file).output();
    out.expect_success();
    let status: String = s.open_db().scalar("SELECT status FROM trials");
    assert_eq!(status, "done");
    assert!(
        s.open_db()
            .count("SELECT MAX(resumed_from_epoch) FROM attempts")
            >= 1,
        "it resumed from its float32 state"
    );
    assert_eq!(checkpoints(&dir), ["best.safetensors"]);
    assert_eq!(dtypes(&dir.join("best.safetensors")), set(&["F16"]));
}

#[test]
fn a_bad_keep_precision_is_a_located_error_and_nothing_is_written() {
    let s = Scratch::new().with_demo(4, 32);
    for (value, says) in [
        ("\"quarter\"", "unknown `keep_precision` \"quarter\""),
        ("16", "invalid type"),
        ("\"Half\"", "unknown `keep_precision` \"Half\""),
    ] {
        let bad = s
            .sweep_file("badprec")
            .tiny_training()
            .resources(&format!("keep_precision = {value}"))
            .write();
        let out = s.run(&bad).output();
        out.expect_error(EXIT_BAD_INPUT, &[says]);
        let text = std::fs::read_to_string(&bad).unwrap();
        let line = text
            .lines()
            .position(|l| l.starts_with("keep_precision"))
            .unwrap()
            + 1;
        let col = text.lines().nth(line - 1).unwrap().find(value).unwrap() + 1;
        assert!(
            out.stderr.contains(&format!("badprec.toml:{line}:{col}:")),
            "{value}: file:line:col {line}:{col}: {}",
            out.stderr
        );
        if value.starts_with('"') {
            assert!(out.stderr.contains("\"full\", \"half\""), "{}", out.stderr);
        }
    }
    assert!(!s.results().exists(), "a refused sweep file wrote results");
    assert!(!s.db().exists(), "a refused sweep file wrote a database");
}
