//! The shared decoded-image cache from the command line: `sweep cache
//! build | ls | clear`, two builders at once, a build killed half-way, a
//! changed dataset, and real training that records the same metrics with and
//! without the cache (the coordinator builds it; the workers only map it).
use crate::common;

use common::{EXIT_BAD_INPUT, Scratch};

/// The demo data: 12 classes, 4 train + 1 valid + 1 test images each, 32 px.
fn scratch() -> Scratch {
    Scratch::new().with_demo(4, 32)
}

fn ls(s: &Scratch) -> String {
    s.sweep(&["cache", "ls"])
        .output()
        .expect_success()
        .stdout
        .clone()
}

/// Names of the finished caches and of the builds left in the cache folder.
fn entries(s: &Scratch) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    let mut tmp = Vec::new();
    for e in std::fs::read_dir(s.decoded_cache()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            if name.starts_with('.') {
                tmp.push(name)
            } else {
                done.push(name)
            }
        }
    }
    done.sort();
    (done, tmp)
}

#[test]
fn cache_build_ls_and_clear() {
    let s = scratch();
    assert!(ls(&s).contains("no decoded-image caches"));
    let b = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .output();
    assert!(
        b.expect_success()
            .stdout
            .contains("72 images at size 37 (built in"),
        "{}",
        b.stdout
    );
    let again = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .output();
    assert!(
        again.expect_success().stdout.contains("(already there)"),
        "{}",
        again.stdout
    );
    s.sweep(&[
        "cache",
        "build",
        "data",
        "--image-size",
        "32",
        "--cache-size",
        "original",
    ])
    .output()
    .expect_success();

    let listed = ls(&s);
    let data = std::fs::canonicalize(s.data())
        .unwrap()
        .display()
        .to_string();
    assert!(
        listed.contains(&data)
            && listed.contains(" 37 ")
            && listed.contains(" original ")
            && listed.contains(" 72 "),
        "{listed}"
    );
    assert!(
        listed.contains("2 cache(s)") && listed.contains("s ago"),
        "{listed}"
    );
    // 72 images of 37 px on the shorter side (the demo is square): 72 × 37 × 37 × 3 pixel bytes at least.
    let (done, tmp) = entries(&s);
    assert_eq!((done.len(), tmp.len()), (2, 0));

    s.sweep(&[
        "cache",
        "build",
        "data",
        "--image-size",
        "32",
        "--cache-size",
        "20",
    ])
    .output()
    .expect_error(
        EXIT_BAD_INPUT,
        &["--cache-size \"20\" is not a shorter side between the image size (32) and 8192"],
    );
    s.sweep(&["cache", "clear", "elsewhere"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &["no decoded-image cache of \"elsewhere\"", "sweep cache ls"],
        );
    let hash = done[0].split('-').next().unwrap().to_string();
    let cleared = s.sweep(&["cache", "clear", &hash]).output();
    assert!(
        cleared
            .expect_success()
            .stdout
            .contains(&format!("removed {hash}-37")),
        "{}",
        cleared.stdout
    );
    assert!(
        cleared.stdout.contains(&format!("removed {hash}-original")),
        "{}",
        cleared.stdout
    );
    assert_eq!(entries(&s), (vec![], vec![]));
    s.sweep(&["cache", "build", "data", "--image-size", "32"])
        .output()
        .expect_success();
    let by_path = s.sweep(&["cache", "clear", "data"]).output();
    assert!(
        by_path.expect_success().stdout.contains("removed"),
        "{}",
        by_path.stdout
    );
    assert!(ls(&s).contains("no decoded-image caches"));
    s.sweep(&["cache", "clear", "--all"])
        .output()
        .expect_success();
}

/// `sweep bench data`: every split is decoded into a cache of its own, but
/// epoch 1 counts the training split's decode alone (a training epoch, and
/// torchvision's that the bench is compared with, decodes no other), and
/// reports the rest; the bench leaves no cache behind.
#[test]
fn bench_data_counts_the_training_split_in_epoch_1() {
    let s = scratch();
    let out = s
        .sweep(&[
            "bench",
            "data",
            "data",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--json",
        ])
        .output();
    let v: serde_json::Value = serde_json::from_str(out.expect_success().stdout.trim()).unwrap();
    assert_eq!(
        (
            v["images"].as_u64(),
            v["decoded"].as_u64(),
            v["other_splits_images"].as_u64()
        ),
        (Some(48), Some(72), Some(24)),
        "{v}"
    );
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    let (decode, other, train) = (
        f("decode_s"),
        f("other_splits_decode_s"),
        f("epoch1_decode_s"),
    );
    assert!(other > 0.0 && other < decode, "{v}");
    assert!(
        (train + other - decode).abs() < 1e-9,
        "the decode splits into the training split's and the others': {v}"
    );
    let epoch1 = 48.0 / (train + f("epoch1_batches_s"));
    assert!(
        (f("epoch1_img_s") / epoch1 - 1.0).abs() < 1e-9,
        "epoch 1 is the training split's decode and its batches: {v}"
    );
    assert!(v["later_img_s"].as_f64().unwrap() > 0.0, "{v}");
    let text = s
        .sweep(&[
            "bench",
            "data",
            "data",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--threads",
            "1",
        ])
        .output();
    assert!(
        text.expect_success()
            .stdout
            .contains("validation and test splits (24 images) decoded"),
        "{}",
        text.stdout
    );
    assert!(
        !s.decoded_cache().exists() || entries(&s) == (vec![], vec![]),
        "{:?}",
        entries(&s)
    );
}

/// Two builders at once: one decodes, the other waits on the lock and opens
/// what the first built.
#[test]
fn concurrent_builders_make_one_cache() {
    let s = scratch();
    let a = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .spawn();
    let b = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .spawn();
    let (a, b) = (a.wait(), b.wait());
    let outs = [
        a.expect_success().stdout.clone(),
        b.expect_success().stdout.clone(),
    ];
    assert_eq!(
        outs.iter().filter(|o| o.contains("(built in")).count(),
        1,
        "{outs:?}"
    );
    assert_eq!(
        outs.iter()
            .filter(|o| o.contains("(already there)"))
            .count(),
        1,
        "{outs:?}"
    );
    let (done, tmp) = entries(&s);
    assert_eq!((done.len(), tmp.len()), (1, 0), "{done:?} {tmp:?}");
}

/// A build killed with SIGKILL half-way (paused after the train split by a
/// failpoint) leaves only its temporary folder: nothing reads it, `cache
/// clear` does not pull it from under a live build, and the next build
/// removes it and makes a whole cache.
#[test]
fn a_killed_build_leaves_no_usable_cache() {
    let s = scratch();
    let mut paused = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .env("SWEEP_CACHE_FAILPOINT", "pause-after-train")
        .spawn();
    loop {
        let line = paused
            .next_stderr_line()
            .expect("the build pauses at the failpoint");
        if line.contains("failpoint: decoded-image cache build paused") {
            break;
        }
    }
    let (done, tmp) = entries(&s);
    assert_eq!((done.len(), tmp.len()), (0, 1), "{done:?} {tmp:?}");
    assert!(ls(&s).contains("(a build in progress, or killed)"));
    let kept = s.sweep(&["cache", "clear", "--all"]).output();
    assert!(
        kept.expect_success().stdout.contains("a build is using it"),
        "{}",
        kept.stdout
    );
    assert_eq!(entries(&s).1.len(), 1, "a live build is not removed");

    let killed = paused.kill();
    assert_eq!(killed.signal, Some(libc::SIGKILL));
    assert_eq!(
        entries(&s).0.len(),
        0,
        "no finished cache after a killed build"
    );

    let b = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .output();
    assert!(
        b.expect_success().stdout.contains("(built in"),
        "{}",
        b.stdout
    );
    let (done, tmp) = entries(&s);
    assert_eq!(
        (done.len(), tmp.len()),
        (1, 0),
        "the next build removed the dead one's folder: {done:?} {tmp:?}"
    );
}

/// A changed image changes the content hash: a new cache, the old one kept
/// (other sweeps may still use it) until `cache clear`.
#[test]
fn a_changed_dataset_gets_a_new_cache() {
    let s = scratch();
    s.sweep(&["cache", "build", "data", "--image-size", "32"])
        .output()
        .expect_success();
    let class = std::fs::read_dir(s.data().join("train"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let img = std::fs::read_dir(&class)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    image::RgbImage::from_pixel(32, 32, image::Rgb([1, 2, 3]))
        .save(&img)
        .unwrap();
    let b = s
        .sweep(&["cache", "build", "data", "--image-size", "32"])
        .output();
    assert!(
        b.expect_success().stdout.contains("(built in"),
        "{}",
        b.stdout
    );
    let (done, _) = entries(&s);
    assert_eq!(done.len(), 2, "{done:?}");
    assert_ne!(done[0].split('-').next(), done[1].split('-').next());
}

type Row = (String, i64, i64, String, f64);

fn metrics(s: &Scratch) -> (Vec<Row>, Vec<(f64, f64)>) {
    let db = s.open_db();
    let rows = db.query::<Row>("SELECT split, epoch, step, name, value FROM metrics WHERE name IN ('loss', 'accuracy') ORDER BY split, epoch, step, name");
    let test = db.query::<(f64, f64)>("SELECT loss, accuracy FROM test_results");
    (rows, test)
}

/// Real training, the same seed: bit-identical metrics whether the workers
/// decode into their own memory (`SWEEP_DECODED_CACHE=off`) or map the shared
/// cache, which the coordinator builds before the first trial.
#[test]
fn the_same_seed_gives_the_same_metrics_with_and_without_the_cache() {
    let with = scratch();
    let without = scratch();
    for s in [&with, &without] {
        let file = s.sweep_file("same").tiny_training().write();
        let mut run = s.run(&file);
        if std::ptr::eq(s, &without) {
            run = run.env("SWEEP_DECODED_CACHE", "off");
        }
        let out = run.output();
        out.expect_success();
        let built = out.stderr.contains("decoded 72 images of");
        assert_eq!(built, std::ptr::eq(s, &with), "{}", out.stderr);
    }
    let trial = std::fs::read_dir(with.results().join("same"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let log = std::fs::read_to_string(trial.join("attempt-1.log")).unwrap();
    assert!(
        log.contains("mapped the decoded-image cache"),
        "the worker maps what the coordinator built:\n{log}"
    );
    assert!(
        !without.decoded_cache().exists(),
        "SWEEP_DECODED_CACHE=off builds nothing"
    );
    let (a, b) = (metrics(&with), metrics(&without));
    assert!(!a.0.is_empty() && a.1.len() == 1);
    assert_eq!(a, b, "metrics with the cache, then without");
}
