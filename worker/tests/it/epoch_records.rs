//! What the worker records and decides, seen from outside (the `sweep-worker`
//! binary on a small demo dataset, CPU):
//!
//! - every batch is in some `train_step` record, the epoch's last partial
//!   `log_every` window included;
//! - `select` (val_accuracy or val_loss) chooses the `best` checkpoint, which
//!   is the one tested, and fills state.json's best fields;
//! - a configuration libtorch cannot train (a feature map pooled to nothing, a
//!   batch of one image under BatchNorm) fails with class `config`.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use sweep_protocol::config::{SelectMetric, TrialConfig};
use sweep_protocol::message::{ErrorClass, WorkerMessage, parse_line};

const WORKER: &str = env!("CARGO_BIN_EXE_sweep-worker");
/// Demo dataset, 6 training images per class × 12 classes.
const TRAIN_IMAGES: usize = 72;

fn dataset(root: &Path) -> PathBuf {
    let dir = root.join("data");
    sweep_dataset::demo::generate(
        &dir,
        &sweep_dataset::demo::DemoOptions {
            per_class: 6,
            image_size: 32,
            seed: 1,
        },
    )
    .unwrap();
    dir
}

fn config() -> TrialConfig {
    common::tiny_config()
}

struct Run {
    messages: Vec<WorkerMessage>,
    ok: bool,
    stderr: String,
}

fn run(data: &Path, out: &Path, config: TrialConfig, select: SelectMetric) -> Run {
    run_env(data, out, config, select, &[])
}

/// [`run`] with these environment variables set for the worker.
fn run_env(
    data: &Path,
    out: &Path,
    config: TrialConfig,
    select: SelectMetric,
    env: &[(&str, &str)],
) -> Run {
    let job = common::job(data, out, config, select);
    let out = Command::new(WORKER)
        .envs(env.iter().copied())
        .args(["--job", &serde_json::to_string(&job).unwrap()])
        .output()
        .unwrap();
    let messages = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| parse_line(l).unwrap())
        .collect();
    Run {
        messages,
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// (epoch, batch, loss, accuracy) of every train_step record.
fn train_steps(run: &Run) -> Vec<(u32, u32, f64, f64)> {
    run.messages
        .iter()
        .filter_map(|m| match m {
            WorkerMessage::TrainStep {
                epoch,
                batch,
                loss,
                accuracy,
                ..
            } => Some((*epoch, *batch, *loss, *accuracy)),
            _ => None,
        })
        .collect()
}

/// (epoch, train_loss, train_accuracy, val_loss, val_accuracy) of every epoch record.
fn epochs(run: &Run) -> Vec<(u32, f64, f64, f64, f64)> {
    run.messages
        .iter()
        .filter_map(|m| match m {
            WorkerMessage::Epoch {
                epoch,
                train_loss,
                train_accuracy,
                val_loss,
                val_accuracy,
                ..
            } => Some((
                *epoch,
                *train_loss,
                *train_accuracy,
                *val_loss,
                *val_accuracy,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn every_batch_is_in_a_train_step_record() {
    let _memory = crate::memory_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    // 72 images in batches of 8: 9 batches an epoch. log_every 4: windows of
    // 4, 4 and the partial 1; log_every 100: one partial window of all 9.
    for (log_every, n_epochs, want) in [(4u32, 2, vec![4u32, 8, 9]), (100, 1, vec![9])] {
        let r = run(
            &data,
            &dir.path().join(format!("log{log_every}")),
            TrialConfig {
                epochs: n_epochs,
                log_every,
                ..config()
            },
            SelectMetric::ValAccuracy,
        );
        assert!(r.ok, "{}", r.stderr);
        let steps = train_steps(&r);
        assert_eq!(epochs(&r).len(), n_epochs as usize);
        for (epoch, train_loss, train_accuracy, ..) in epochs(&r) {
            let windows: Vec<_> = steps.iter().filter(|s| s.0 == epoch).collect();
            assert_eq!(
                windows.iter().map(|s| s.1).collect::<Vec<_>>(),
                want,
                "log_every {log_every}, epoch {epoch}: batches recorded"
            );
            // Window means weighted by their images give the epoch's: no batch left out.
            let mut prev = 0u32;
            let (mut loss, mut correct) = (0.0, 0.0);
            for &&(_, batch, l, a) in &windows {
                let images = ((batch as usize * 8).min(TRAIN_IMAGES) - prev as usize * 8) as f64;
                loss += l * images;
                correct += a * images;
                prev = batch;
            }
            assert!(
                (loss / TRAIN_IMAGES as f64 - train_loss).abs() < 1e-9 * train_loss,
                "epoch {epoch}: {loss} vs {train_loss}"
            );
            assert!(
                (correct / TRAIN_IMAGES as f64 - train_accuracy).abs() < 1e-9,
                "epoch {epoch}: {correct} vs {train_accuracy}"
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// With test/ a copy of valid/, the test figures are the validation figures
/// of whichever checkpoint was tested: they tell which epoch's weights that was.
#[test]
fn select_decides_the_best_checkpoint_and_what_is_tested() {
    let _memory = crate::memory_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    std::fs::remove_dir_all(data.join("test")).unwrap();
    copy_dir(&data.join("valid"), &data.join("test"));
    let mut chosen = Vec::new();
    for select in [SelectMetric::ValLoss, SelectMetric::ValAccuracy] {
        let out = dir.path().join(format!("{select:?}"));
        let r = run(
            &data,
            &out,
            TrialConfig {
                epochs: 4,
                lr: 0.05,
                log_every: 100,
                max_batches: 4,
                ..config()
            },
            select,
        );
        assert!(r.ok, "{}", r.stderr);
        let eps = epochs(&r);
        assert_eq!(eps.len(), 4);
        // The rule, independently: strictly better replaces, ties keep the earlier epoch.
        let mut best = eps[0];
        let mut improving = vec![1u32];
        for &e in &eps[1..] {
            let better = match select {
                SelectMetric::ValLoss => e.3 < best.3,
                SelectMetric::ValAccuracy => e.4 > best.4,
            };
            if better {
                best = e;
                improving.push(e.0);
            }
        }
        let best_marks: Vec<u32> = r
            .messages
            .iter()
            .filter_map(|m| match m {
                WorkerMessage::Checkpoint { epoch, kind, .. } if kind == "best" => Some(*epoch),
                _ => None,
            })
            .collect();
        assert_eq!(
            best_marks, improving,
            "{select:?}: `best` checkpoints written"
        );
        let (test_epoch, test_loss, test_accuracy) = r
            .messages
            .iter()
            .find_map(|m| match m {
                WorkerMessage::Test {
                    epoch,
                    loss,
                    accuracy,
                    ..
                } => Some((*epoch, *loss, *accuracy)),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            test_epoch, best.0,
            "{select:?}: the test message names the best epoch"
        );
        assert_eq!(
            (test_loss, test_accuracy),
            (best.3, best.4),
            "{select:?}: the tested weights are epoch {}'s",
            best.0
        );
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["best_epoch"], best.0, "{select:?}: {state}");
        assert_eq!(
            state["best_val_loss"].as_f64(),
            Some(best.3),
            "{select:?}: {state}"
        );
        assert_eq!(
            state["best_val_accuracy"].as_f64(),
            Some(best.4),
            "{select:?}: {state}"
        );
        let done = r.messages.iter().find_map(|m| match m {
            WorkerMessage::Done {
                best_val_accuracy, ..
            } => Some(*best_val_accuracy),
            _ => None,
        });
        assert_eq!(done, Some(best.4));
        chosen.push((
            select,
            best.0,
            eps.iter().map(|e| (e.3, e.4)).collect::<Vec<_>>(),
        ));
    }
    eprintln!("best epoch by select (val_loss, val_accuracy per epoch): {chosen:?}");
}

fn error_of(r: &Run) -> (ErrorClass, String) {
    assert!(!r.ok);
    match r.messages.last() {
        Some(WorkerMessage::Error { class, message }) => (*class, message.clone()),
        other => panic!("the last message is not an error: {other:?}\n{}", r.stderr),
    }
}

#[test]
fn configurations_libtorch_cannot_train_are_config_errors() {
    let _memory = crate::memory_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    // VGG halves the image five times: 16 px reach 1×1 before the last max-pool.
    let r = run(
        &data,
        &dir.path().join("vgg16"),
        TrialConfig {
            backbone: "vgg16_bn".into(),
            image_size: 16,
            ..config()
        },
        SelectMetric::ValAccuracy,
    );
    let (class, message) = error_of(&r);
    assert_eq!(class, ErrorClass::Config, "{message}");
    assert!(
        message.contains("Output size is too small") && message.contains("image_size 16"),
        "{message}"
    );
    assert!(!message.contains("Exception raised from"), "{message}");
    // 72 images in batches of 71 leave a last batch of one; at 32 px resnet18's
    // last BatchNorm sees 1×1 maps, so one value per channel.
    let r = run(
        &data,
        &dir.path().join("single"),
        TrialConfig {
            batch_size: 71,
            ..config()
        },
        SelectMetric::ValAccuracy,
    );
    let (class, message) = error_of(&r);
    assert_eq!(class, ErrorClass::Config, "{message}");
    assert!(
        message.contains("single image") && message.contains("batch_size 71"),
        "{message}"
    );
}

/// The amp training loop on the CPU (`SWEEP_TEST_CPU_LOSS_SCALING=1`: loss
/// scaling without autocast, which changes only CUDA operations): it trains
/// and records as without amp, to the digit, since a loss scale that is a
/// power of two leaves f32 gradients unchanged; and a trial whose every
/// step is NaN fails as `nan` after its first epoch, its steps skipped
/// rather than applied.
#[test]
fn the_amp_loop_with_loss_scaling_records_what_f32_training_does() {
    let _memory = crate::memory_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cfg = TrialConfig {
        epochs: 2,
        log_every: 4,
        ..config()
    };
    let plain = run(
        &data,
        &dir.path().join("plain"),
        cfg.clone(),
        SelectMetric::ValAccuracy,
    );
    assert!(plain.ok, "{}", plain.stderr);
    let scaled = [("SWEEP_TEST_CPU_LOSS_SCALING", "1")];
    let amp = run_env(
        &data,
        &dir.path().join("amp"),
        TrialConfig {
            amp: true,
            ..cfg.clone()
        },
        SelectMetric::ValAccuracy,
        &scaled,
    );
    assert!(amp.ok, "{}", amp.stderr);
    assert_eq!(train_steps(&amp), train_steps(&plain));
    assert_eq!(epochs(&amp), epochs(&plain));
    // An lr this large makes every loss infinite or NaN after the first steps.
    let diverged = run_env(
        &data,
        &dir.path().join("diverge"),
        TrialConfig {
            amp: true,
            lr: 1e30,
            ..cfg
        },
        SelectMetric::ValAccuracy,
        &scaled,
    );
    let (class, message) = error_of(&diverged);
    assert_eq!(class, ErrorClass::Nan, "{message}");
}

/// Every newer family at 32 px (ViT built for 32), torchvision's own head,
/// two batches: amp on the CPU (loss scaling, as above) records what f32
/// training does, to the digit; `channels_last` (NHWC weights and inputs,
/// so NHWC convolution kernels: depthwise, grouped, squeeze-excitation,
/// LayerNorm2d's permutes) computes the first step's loss, a forward pass of
/// the same weights, within 1e-4 of the contiguous run's (other kernels
/// round differently), and trains and evaluates to the end with finite
/// losses. Later steps are not compared: after one SGD step these random
/// networks, BatchNorm over a few values at 32 px, amplify that rounding to
/// 1e-3 by the second step (and their eval-mode losses, on barely updated
/// running statistics, are in the thousands). A `view` that assumed
/// contiguous memory, or an op that refuses the layout, fails the run.
#[test]
fn newer_families_train_with_amp_and_channels_last() {
    let _memory = crate::memory_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let scaled = [("SWEEP_TEST_CPU_LOSS_SCALING", "1")];
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-6);
    for backbone in [
        "convnext_tiny",
        "efficientnet_b0",
        "efficientnet_v2_s",
        "mobilenet_v3_large",
        "regnet_y_3_2gf",
        "vit_b_16",
        "swin_t",
    ] {
        let cfg = TrialConfig {
            backbone: backbone.into(),
            head: sweep_protocol::config::Head::Original,
            max_batches: 2,
            log_every: 1,
            ..config()
        };
        let out = |name: &str| dir.path().join(format!("{backbone}-{name}"));
        let plain = run(&data, &out("plain"), cfg.clone(), SelectMetric::ValAccuracy);
        assert!(plain.ok, "{backbone}: {}", plain.stderr);
        assert_eq!(train_steps(&plain).len(), 2, "{backbone}");
        let amp = run_env(
            &data,
            &out("amp"),
            TrialConfig {
                amp: true,
                ..cfg.clone()
            },
            SelectMetric::ValAccuracy,
            &scaled,
        );
        assert!(amp.ok, "{backbone} amp: {}", amp.stderr);
        assert_eq!(train_steps(&amp), train_steps(&plain), "{backbone} amp");
        assert_eq!(epochs(&amp), epochs(&plain), "{backbone} amp");
        let cl = run(
            &data,
            &out("cl"),
            TrialConfig {
                channels_last: true,
                ..cfg
            },
            SelectMetric::ValAccuracy,
        );
        assert!(cl.ok, "{backbone} channels_last: {}", cl.stderr);
        let (got, want) = (train_steps(&cl), train_steps(&plain));
        assert_eq!(got.len(), want.len(), "{backbone} channels_last");
        assert!(
            close(got[0].2, want[0].2),
            "{backbone} channels_last: first train loss {} vs {}",
            got[0].2,
            want[0].2
        );
        assert!(got.iter().all(|g| g.2.is_finite()), "{backbone}: {got:?}");
        let e = epochs(&cl);
        assert_eq!(e.len(), 1, "{backbone} channels_last");
        assert!(
            e[0].1.is_finite() && e[0].3.is_finite(),
            "{backbone}: {e:?}"
        );
    }
}
