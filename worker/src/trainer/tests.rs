use super::*;
use super::{checkpoint::*, failure::*, loader::*, scaler::*};
use crate::optim::{Algorithm, Hyper};
use sweep_protocol::trial_dir::TRAIN_STATE;

fn batch(idx: &[usize]) -> Result<data::Batch, String> {
    Ok(data::Batch {
        pixels: vec![0; idx.len()],
        labels: idx.iter().map(|&i| i as i64).collect(),
    })
}

#[test]
fn loader_delivers_every_batch_in_order() {
    let rx = spawn_loader((0..10).collect(), 4, 3, 1, batch);
    let got: Vec<Vec<i64>> = rx.iter().map(|b| b.unwrap().labels).collect();
    assert_eq!(got, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
}

#[test]
fn a_panic_in_the_loader_fails_the_epoch_instead_of_shortening_it() {
    let rx = spawn_loader((0..12).collect(), 4, 3, 7, |idx: &[usize]| {
        if idx[0] == 4 {
            panic!("index 99 out of range");
        }
        batch(idx)
    });
    let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
    assert_eq!(
        items.len(),
        2,
        "the batch before the panic, then the failure; nothing after"
    );
    assert!(items[0].is_ok());
    let Err(f) = &items[1] else {
        panic!("a failure, not a closed channel")
    };
    assert_eq!(f.class, ErrorClass::Internal);
    assert!(
        f.message.contains("epoch 7")
            && f.message.contains("batch 2")
            && f.message.contains("index 99 out of range"),
        "{}",
        f.message
    );
}

/// Pinned host memory is allocated on the loader thread: running out of
/// it is `oom` (a smaller batch may fit), like device memory.
#[test]
fn running_out_of_memory_in_the_loader_is_oom() {
    let rx = spawn_loader(
        (0..8).collect(),
        4,
        2,
        2,
        |_: &[usize]| -> Result<data::Batch, String> {
            panic!(
                "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB\\nException raised from malloc at alloc.cpp:1\")"
            )
        },
    );
    let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
    let Err(f) = &items[0] else {
        panic!("a failure")
    };
    assert_eq!(f.class, ErrorClass::Oom);
    assert!(
        f.message.contains("epoch 2 batch 1")
            && f.message
                .contains("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "{}",
        f.message
    );
    assert!(
        !f.message.contains("Exception raised from") && !f.message.contains("unwrap"),
        "{}",
        f.message
    );
}

#[test]
fn a_batch_error_is_a_data_failure_naming_the_epoch() {
    let rx = spawn_loader((0..8).collect(), 4, 2, 3, |_: &[usize]| {
        Err("cannot crop".to_string())
    });
    let items: Vec<Loaded<data::Batch>> = rx.iter().collect();
    assert_eq!(items.len(), 1);
    let Err(f) = &items[0] else {
        panic!("a data failure")
    };
    assert_eq!(f.class, ErrorClass::Data);
    assert!(
        f.message.contains("epoch 3") && f.message.contains("cannot crop"),
        "{}",
        f.message
    );
}

/// A tch call that fails panics with `unwrap`'s message around libtorch's:
/// the real messages of libtorch 2.11, obtained by making it fail.
fn torch_panic(f: impl FnOnce() -> Tensor + std::panic::UnwindSafe) -> String {
    let p = std::panic::catch_unwind(f).expect_err("libtorch should have refused");
    panic_message(&*p)
}

#[test]
fn libtorch_shape_and_argument_errors_are_config_errors() {
    let cases = [
        // A feature map the image size left at 1×1, pooled 2×2 (VGG below 32 px).
        torch_panic(|| {
            Tensor::zeros([1, 3, 1, 1], (Kind::Float, Device::Cpu)).max_pool2d(
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
            )
        }),
        // A convolution kernel larger than its input.
        torch_panic(|| {
            Tensor::zeros([1, 3, 2, 2], (Kind::Float, Device::Cpu)).conv2d(
                &Tensor::zeros([4, 3, 3, 3], (Kind::Float, Device::Cpu)),
                None::<Tensor>,
                [1, 1],
                [0, 0],
                [1, 1],
                1,
            )
        }),
        // A head whose sizes do not chain.
        torch_panic(|| {
            Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)).linear(
                &Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)),
                None::<Tensor>,
            )
        }),
        // A negative layer size.
        torch_panic(|| Tensor::zeros([-3, 4], (Kind::Float, Device::Cpu))),
        // A dropout probability out of range.
        torch_panic(|| Tensor::zeros([3], (Kind::Float, Device::Cpu)).dropout(1.5, true)),
    ];
    for raw in &cases {
        assert_eq!(classify_panic(raw), ErrorClass::Config, "{raw}");
        let clean = torch_message(raw);
        assert!(
            !clean.contains("Exception raised from") && !clean.contains("unwrap"),
            "{clean}"
        );
    }
    assert_eq!(
        classify_panic("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ErrorClass::Oom
    );
    // cuBLAS and cuDNN word running out of device memory their own way.
    assert_eq!(
        classify_panic(
            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
        ),
        ErrorClass::Oom
    );
    assert_eq!(
        classify_panic("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        ErrorClass::Oom
    );
    assert_eq!(
        classify_panic("called `Option::unwrap()` on a `None` value"),
        ErrorClass::Internal
    );
}

/// The whole training step with loss scaling on (the amp path, which on
/// a machine without CUDA runs in f32: the autocast flag only changes
/// CUDA operations): one read of loss, correct count and inf flag, the
/// step taken, the scale's good-step count advanced; then a batch whose
/// loss is NaN is skipped and halves the scale.
#[test]
fn a_train_step_under_loss_scaling_reads_once_and_steps() {
    let cfg = TrialConfig {
        image_size: 32,
        batch_size: 2,
        ..TrialConfig::default()
    };
    let (vs, net) = build_model(&cfg, Device::Cpu, 3).unwrap();
    let mut opt = Optimizer::for_var_store(&vs, optim::Hyper::from_config(&cfg), cfg.lr).unwrap();
    let mut scaler = GradScaler::new(true);
    let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let ys = Tensor::from_slice(&[0i64, 2]);
    let params = || -> Vec<Tensor> { vs.trainable_variables().iter().map(|t| t.copy()).collect() };
    let before = params();
    let out = train_step(&net, &mut opt, &mut scaler, &xs, &ys);
    assert!(
        out.loss.is_finite() && out.stepped && (0..=2).contains(&out.correct),
        "{out:?}"
    );
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 65536.0,
            good_steps: 1
        }
    );
    let stepped = params();
    assert!(
        before.iter().zip(&stepped).any(|(a, b)| !a.equal(b)),
        "the step changed the weights"
    );
    let out = train_step(&net, &mut opt, &mut scaler, &xs.full_like(f64::NAN), &ys);
    assert!(out.loss.is_nan() && !out.stepped, "{out:?}");
    assert!(
        stepped.iter().zip(&params()).all(|(a, b)| a.equal(b)),
        "a skipped step leaves the weights"
    );
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 32768.0,
            good_steps: 0
        }
    );
}

/// Building the model is a function of the configuration alone: a head
/// with a negative layer size makes libtorch panic, and that is `config`.
#[test]
fn a_model_build_panic_is_a_config_error() {
    let cfg = TrialConfig {
        head: sweep_protocol::config::Head::Mlp {
            hidden: vec![-5],
            dropout: 0.0,
        },
        ..TrialConfig::default()
    };
    let Err(f) = build_model(&cfg, Device::Cpu, 3) else {
        panic!("a negative hidden size cannot build")
    };
    assert_eq!(f.class, ErrorClass::Config, "{}", f.message);
    assert!(f.message.contains("negative"), "{}", f.message);
}

#[test]
fn best_epoch_rules() {
    let mut s = State::new(SelectMetric::ValAccuracy);
    assert!(
        s.improves(SelectMetric::ValAccuracy, 9.0, 0.0),
        "the first epoch is the best so far"
    );
    s.best_epoch = 1;
    s.best_val_accuracy = 0.5;
    s.best_val_loss = Some(1.0);
    assert!(s.improves(SelectMetric::ValAccuracy, 2.0, 0.6));
    assert!(
        !s.improves(SelectMetric::ValAccuracy, 0.1, 0.5),
        "a tie keeps the earlier epoch"
    );
    assert!(!s.improves(SelectMetric::ValAccuracy, 0.1, 0.4));
    assert!(s.improves(SelectMetric::ValLoss, 0.9, 0.1));
    assert!(
        !s.improves(SelectMetric::ValLoss, 1.0, 0.9),
        "a tie keeps the earlier epoch"
    );
    assert!(!s.improves(SelectMetric::ValLoss, 1.1, 0.9));
    // An older worker's state.json has no loss: any loss beats none.
    let old: State =
        serde_json::from_str(r#"{"epoch":2,"step":8,"best_val_accuracy":0.5,"best_epoch":1}"#)
            .unwrap();
    assert_eq!(old.select, SelectMetric::ValAccuracy);
    assert!(old.improves(SelectMetric::ValLoss, 5.0, 0.0));
}

#[test]
fn epoch_seeds_differ_and_are_stable() {
    let seeds: std::collections::HashSet<i64> = (1..=50)
        .map(|e| epoch_seed(0, e))
        .chain((1..=50).map(|e| epoch_seed(1, e)))
        .collect();
    assert_eq!(seeds.len(), 100);
    assert!(seeds.iter().all(|&s| s >= 0));
    assert_eq!(epoch_seed(3, 2), epoch_seed(3, 2));
}

fn sgd(p: &Tensor) -> Optimizer {
    let h = Hyper {
        algorithm: Algorithm::Sgd {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
        },
        weight_decay: 0.0,
    };
    Optimizer::new(h, 0.5, vec![("p".into(), p.shallow_clone(), 0)]).unwrap()
}

/// What `train_step` does with the scaler after the forward pass.
fn step_on(scaler: &mut GradScaler, opt: &mut Optimizer, loss: &Tensor) -> bool {
    let found = scaler
        .backward(opt, loss)
        .expect("amp checks the gradients");
    let loss = loss.double_value(&[]);
    scaler.step(opt, loss.is_finite() && found.double_value(&[0]) == 0.0)
}

/// The mixed-precision path on CPU (no autocast needed to test the scaler):
/// an overflowing step is skipped and halves the scale, a good step is
/// taken on unscaled gradients, 2000 good steps double the scale.
#[test]
fn grad_scaler_skips_non_finite_steps_and_unscales() {
    let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
    let mut opt = sgd(&p);
    let mut scaler = GradScaler::new(true);

    // d/dp of sum(p * 1e36) is 1e36; × 65536 overflows f32.
    let stepped = step_on(&mut scaler, &mut opt, &(&p * 1e36).sum(Kind::Float));
    assert!(!stepped);
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 32768.0,
            good_steps: 0
        }
    );
    assert_eq!(
        Vec::<f32>::try_from(&p).unwrap(),
        vec![1.0, -2.0],
        "a skipped step leaves the parameters"
    );
    // Gradient 3 per element; lr 0.5.
    assert!(step_on(&mut scaler, &mut opt, &(&p * 3.0).sum(Kind::Float)));
    assert_eq!(
        Vec::<f32>::try_from(&p).unwrap(),
        vec![-0.5, -3.5],
        "the step used the unscaled gradient"
    );
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 32768.0,
            good_steps: 1
        }
    );
    scaler.restore(ScalerState {
        scale: 32768.0,
        good_steps: 1999,
    });
    assert!(step_on(&mut scaler, &mut opt, &(&p * 0.0).sum(Kind::Float)));
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 65536.0,
            good_steps: 0
        }
    );
    let nan = step_on(&mut scaler, &mut opt, &(&p * f64::NAN).sum(Kind::Float));
    assert!(!nan);
    assert_eq!(
        scaler.state(),
        ScalerState {
            scale: 32768.0,
            good_steps: 0
        }
    );
}

/// The fused check covers every gradient, not just the first: an inf in
/// the last of three is found, and finite gradients come back unscaled.
#[test]
fn unscale_and_check_sees_every_gradient() {
    let grads = || {
        [
            Tensor::from_slice(&[4.0f32, -8.0]),
            Tensor::from_slice(&[2.0f32]),
            Tensor::from_slice(&[16.0f32, 0.0, 1.0]),
        ]
    };
    let g = grads();
    let finite = |g: &[Tensor]| unscale_and_check(g, 0.25).double_value(&[0]) == 0.0;
    assert!(finite(&g));
    assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), vec![1.0, -2.0]);
    assert_eq!(Vec::<f32>::try_from(&g[1]).unwrap(), vec![0.5]);
    assert_eq!(Vec::<f32>::try_from(&g[2]).unwrap(), vec![4.0, 0.0, 0.25]);
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        let g = grads();
        let _ = g[2].get(1).fill_(bad as f64);
        assert!(!finite(&g), "{bad} in the last gradient");
    }
    assert!(finite(&[]));
}

/// `best` becomes a second name of `last` when the epoch is the best, and
/// keeps its bytes when `last` is written again.
#[test]
fn best_is_a_link_of_last_that_outlives_the_next_last() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (last, best) = (
        dir.path().join("last.safetensors"),
        dir.path().join("best.safetensors"),
    );
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
    save_vs(&vs, &last).unwrap();
    link_or_save(&vs, &last, &best).unwrap();
    assert_eq!(
        std::fs::metadata(&best).unwrap().ino(),
        std::fs::metadata(&last).unwrap().ino()
    );
    assert!(!dir.path().join("best.tmp.safetensors").exists());
    tch::no_grad(|| {
        let _ = w.shallow_clone().fill_(2.0);
    });
    save_vs(&vs, &last).unwrap();
    let read = |p: &Path| {
        Tensor::read_safetensors(p)
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == "w")
            .unwrap()
            .1
    };
    assert_eq!(Vec::<f32>::try_from(read(&best)).unwrap(), vec![1.0; 3]);
    assert_eq!(Vec::<f32>::try_from(read(&last)).unwrap(), vec![2.0; 3]);
    // A second best epoch replaces the link.
    link_or_save(&vs, &last, &best).unwrap();
    assert_eq!(Vec::<f32>::try_from(read(&best)).unwrap(), vec![2.0; 3]);
}

#[test]
fn train_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TRAIN_STATE);
    // Floats whose shortest decimal has 17 digits, the ones a best-effort parser may miss.
    let state = State {
        epoch: 3,
        step: 12,
        best_val_accuracy: 0.1 + 0.2,
        best_epoch: 2,
        best_val_loss: Some(1.0 / 3.0),
        select: SelectMetric::ValLoss,
    };
    let scaler = ScalerState {
        scale: 1024.0,
        good_steps: 7,
    };
    let meta = TrainMeta {
        format: TRAIN_STATE_FORMAT,
        bits: FloatBits::of(&state, &scaler),
        state,
        optimizer: "adamw".into(),
        scaler,
        rng_seed: 9,
    };
    let w = Tensor::from_slice(&[1.5f32, -0.25, 3.0]).view([3, 1]);
    let step = Tensor::from_slice(&[5i64]);
    write_train_state(
        &path,
        &meta,
        vec![
            ("model.fc.weight".into(), w.shallow_clone()),
            ("optim.fc.weight.step".into(), step),
        ],
    )
    .unwrap();
    let back = read_train_state(&path).unwrap();
    assert_eq!(back.meta.state, meta.state);
    assert_eq!(
        back.meta.state.best_val_loss.map(f64::to_bits),
        Some((1.0f64 / 3.0).to_bits())
    );
    assert_eq!(back.meta.scaler, meta.scaler);
    assert_eq!(back.meta.optimizer, "adamw");
    assert!(back.model["fc.weight"].equal(&w));
    assert_eq!(back.optim["fc.weight.step"].int64_value(&[0]), 5);
    assert!(!dir.path().join("train_state.tmp.safetensors").exists());
}

/// `freeze_backbone` for every newer family: one training step with the
/// default MLP head changes the head and nothing else — no backbone weight,
/// no BatchNorm running statistic (the frozen backbone's BatchNorm stays in
/// eval mode) — and only the head's variables are trainable.
#[test]
fn freeze_backbone_trains_only_the_head_of_every_newer_backbone() {
    for backbone in [
        "convnext_tiny",
        "efficientnet_b0",
        "mobilenet_v3_large",
        "regnet_y_3_2gf",
        "vit_b_16",
        "swin_t",
    ] {
        let cfg = TrialConfig {
            backbone: backbone.into(),
            image_size: 32,
            batch_size: 2,
            freeze_backbone: true,
            lr: 0.1,
            ..TrialConfig::default()
        };
        let (vs, net) = build_model(&cfg, Device::Cpu, 3).unwrap();
        let prefix = format!("{}.", net.head_prefix);
        let mut opt =
            Optimizer::for_var_store(&vs, optim::Hyper::from_config(&cfg), cfg.lr).unwrap();
        let mut scaler = GradScaler::new(false);
        let before: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.copy()))
            .collect();
        let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let out = train_step(
            &net,
            &mut opt,
            &mut scaler,
            &xs,
            &Tensor::from_slice(&[0i64, 2]),
        );
        assert!(out.stepped, "{backbone}: {out:?}");
        let after = vs.variables();
        let mut head_moved = 0;
        for (k, b) in &before {
            let head = k.starts_with(&prefix);
            assert_eq!(after[k].requires_grad(), head, "{backbone}: {k} trainable");
            if head {
                head_moved += usize::from(!after[k].equal(b));
            } else {
                assert!(after[k].equal(b), "{backbone}: frozen {k} changed");
            }
        }
        assert!(head_moved >= 3, "{backbone}: the head's weights trained");
    }
}

/// Swin's `relative_position_index` buffers (int64, never trained) travel
/// with the weights: through the training state a resumed trial reads back
/// (bit for bit, still int64) and through `best.safetensors` loaded by the
/// pretrained rules (`sweep predict`, `[pretrained]`). Each fresh model has
/// its buffers zeroed first, so only the file can restore them.
#[test]
fn swin_buffers_round_trip_through_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrialConfig {
        backbone: "swin_t".into(),
        image_size: 32,
        head: sweep_protocol::config::Head::Original,
        ..TrialConfig::default()
    };
    let name = "features.5.3.attn.relative_position_index";
    let (vs, _) = build_model(&cfg, Device::Cpu, 3).unwrap();
    assert_eq!(vs.variables()[name].kind(), Kind::Int64);
    let fresh = || {
        let (vs, net) = build_model(&cfg, Device::Cpu, 3).unwrap();
        tch::no_grad(|| {
            for (k, t) in vs.variables() {
                if k.ends_with("relative_position_index") {
                    let _ = t.shallow_clone().fill_(0);
                }
            }
        });
        (vs, net)
    };
    let same = |a: &nn::VarStore, what: &str| {
        let want = vs.variables();
        let got = a.variables();
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, t) in &want {
            assert!(
                got[k].kind() == t.kind() && got[k].equal(t),
                "{what}: {k} differs"
            );
        }
    };

    let state = State {
        epoch: 1,
        step: 2,
        best_val_accuracy: 0.5,
        best_epoch: 1,
        best_val_loss: None,
        select: SelectMetric::ValAccuracy,
    };
    let scaler = ScalerState {
        scale: 1.0,
        good_steps: 0,
    };
    let meta = TrainMeta {
        format: TRAIN_STATE_FORMAT,
        bits: FloatBits::of(&state, &scaler),
        state,
        optimizer: "sgd".into(),
        scaler,
        rng_seed: 1,
    };
    let path = dir.path().join(TRAIN_STATE);
    let tensors = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .collect();
    write_train_state(&path, &meta, tensors).unwrap();
    let back = read_train_state(&path).unwrap();
    let (resumed, _) = fresh();
    load_weights(&resumed, &back.model).unwrap();
    same(&resumed, "training state");

    let best = dir.path().join("best.safetensors");
    save_vs(&vs, &best).unwrap();
    let (mut loaded, net) = fresh();
    crate::weights::load(&mut loaded, &best, net.head_prefix).unwrap();
    same(&loaded, "best.safetensors");
}
