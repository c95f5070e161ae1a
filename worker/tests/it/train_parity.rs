//! Training steps against PyTorch: the worker's resnet18 and vgg16_bn at
//! 32 px, from the same initial weights (torchvision's, BatchNorm statistics
//! randomised), on the same fixed batches of 4 (random images, no
//! augmentation), 20 steps of SGD with momentum
//! and of AdamW in train mode (BatchNorm on batch statistics, running
//! statistics updated; vgg16_bn with a dropout head) through
//! `trainer::train_step`, the function the trainer itself calls. The loss of
//! every step, the final weights and the BatchNorm running statistics must
//! agree with torchvision + torch.optim (tests/train_reference.py, run with
//! the project's PyTorch via `SWEEP_PYTHON`; a missing Python fails the test).
//!
//! Tolerance: none; losses (f32, as computed) and every final tensor must be
//! bit-identical, and they are. Both sides run the same libtorch kernels in
//! the same order at the same thread count (one), and `optim` matches
//! torch.optim bit for bit (optim_parity.rs), so any difference means a
//! different computation. A nonzero tolerance would not be meaningful here:
//! PyTorch against itself at 1 and at 2 threads (rounding-level differences
//! only) already ends these 20 steps with tensors differing by 0.4× (resnet18,
//! SGD) to 2× (vgg16_bn) their own scale, 1e-4 in the calmest case (resnet18,
//! AdamW) (vgg16_bn's conv biases feed BatchNorm, so their gradient is
//! pure rounding noise that AdamW turns into lr-sized steps; resnet18 at
//! 32 px normalises layer4 over 4 values per channel), about as far apart as
//! a real mistake would put them. On a mismatch the message lists the steps
//! and tensors that differ and by how much.
use crate::common;
use common::python;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use sweep_protocol::config::Head;
use sweep_worker::models::{self, BACKBONE_GROUP, HEAD_GROUP};
use sweep_worker::optim::{Algorithm, Hyper, Optimizer};
use sweep_worker::trainer::{GradScaler, train_step};
use tch::{Device, Tensor, nn};

const THREADS: i32 = 1;

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn hyper(spec: &serde_json::Value, opt: &str) -> (Hyper, f64) {
    let h = &spec["optimizers"][opt];
    let f = |k: &str| h[k].as_f64().unwrap();
    let algorithm = match opt {
        "sgd" => Algorithm::Sgd {
            momentum: f("momentum"),
            dampening: 0.0,
            nesterov: false,
        },
        "adamw" => Algorithm::Adam {
            betas: [
                h["betas"][0].as_f64().unwrap(),
                h["betas"][1].as_f64().unwrap(),
            ],
            eps: f("eps"),
            decoupled_weight_decay: true,
        },
        other => panic!("unknown optimizer {other}"),
    };
    (
        Hyper {
            algorithm,
            weight_decay: f("weight_decay"),
        },
        f("lr"),
    )
}

/// The worker's side: 20 steps from the reference's initial state; losses and final variables.
fn train(
    dir: &Path,
    spec: &serde_json::Value,
    model: &str,
    head: &Head,
    opt: &str,
) -> (Vec<f32>, HashMap<String, Tensor>) {
    let vs = nn::VarStore::new(Device::Cpu);
    let classes = spec["classes"].as_i64().unwrap();
    let net = models::build(&vs.root(), model, classes, head).unwrap();
    let init = read(&dir.join(format!("{model}_init.safetensors")));
    let vars = vs.variables();
    assert_eq!(
        vars.len(),
        init.len(),
        "{model}: variables vs torchvision's state_dict (less num_batches_tracked)"
    );
    tch::no_grad(|| {
        for (name, var) in &vars {
            let src = init
                .get(name)
                .unwrap_or_else(|| panic!("{model}: {name} not in torchvision's state_dict"));
            var.shallow_clone().copy_(src);
        }
    });
    let (h, lr) = hyper(spec, opt);
    let mut optimizer = Optimizer::for_var_store(&vs, h, lr).unwrap();
    optimizer.set_lr(
        BACKBONE_GROUP,
        lr * spec["backbone_lr_scale"].as_f64().unwrap(),
    );
    optimizer.set_lr(HEAD_GROUP, lr);
    let mut scaler = GradScaler::new(false);
    let batches = read(&dir.join(format!("{model}_batches.safetensors")));
    tch::manual_seed(spec["dropout_seed"].as_i64().unwrap());
    let losses = (0..spec["steps"].as_i64().unwrap())
        .map(|k| {
            let out = train_step(
                &net,
                &mut optimizer,
                &mut scaler,
                &batches["x"].get(k),
                &batches["y"].get(k),
            );
            assert!(
                out.stepped,
                "{model}/{opt}: step {k} not taken (loss {})",
                out.loss
            );
            // The loss is an f32 tensor; as f32 again, exactly its value.
            out.loss as f32
        })
        .collect();
    (losses, vs.variables())
}

#[test]
fn resnet18_and_vgg16_bn_train_like_pytorch() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    tch::set_num_threads(THREADS);
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/train_reference.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir.path())
        .arg(THREADS.to_string())
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "train_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("train_reference.json")).unwrap())
            .unwrap();
    let torch_losses = read(&dir.path().join("losses.safetensors"));
    let models = [
        ("resnet18", Head::Original),
        (
            "vgg16_bn",
            Head::Mlp {
                hidden: vec![64],
                dropout: 0.5,
            },
        ),
    ];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (model, head) in &models {
        let init = read(&dir.path().join(format!("{model}_init.safetensors")));
        for opt in ["sgd", "adamw"] {
            let (losses, vars) = train(dir.path(), &spec, model, head, opt);
            let want = Vec::<f32>::try_from(&torch_losses[&format!("{model}.{opt}")]).unwrap();
            assert_eq!(losses.len(), want.len());
            let (mut loss_worst, mut loss_exact) = (0.0f64, 0);
            for (k, (got, w)) in losses.iter().zip(&want).enumerate() {
                let rel = f64::from((got - w).abs() / w.abs().max(1e-12));
                loss_worst = loss_worst.max(rel);
                loss_exact += usize::from(got == w);
                if got != w {
                    failures.push(format!(
                        "{model}/{opt}: loss at step {} is {got}, torch {w} (relative {rel:.2e})",
                        k + 1
                    ));
                }
            }
            let fin = read(&dir.path().join(format!("{model}_{opt}_final.safetensors")));
            assert_eq!(
                fin.len(),
                vars.len(),
                "{model}/{opt}: final state_dict size"
            );
            let (mut worst, mut worst_name, mut exact, mut moved) = (0.0f64, String::new(), 0, 0);
            for (name, w) in &fin {
                let got = vars
                    .get(name)
                    .unwrap_or_else(|| panic!("{model}: {name} missing"));
                let scale = w.abs().max().double_value(&[]).max(1e-12);
                let rel = (got - w).abs().max().double_value(&[]) / scale;
                if rel > worst {
                    (worst, worst_name) = (rel, name.clone());
                }
                exact += usize::from(got.equal(w));
                if !got.equal(w) {
                    failures.push(format!(
                        "{model}/{opt}: {name} differs from torch by {rel:.2e} of its scale"
                    ));
                }
                moved += usize::from(!init[name].equal(w));
            }
            // The comparison is only worth something if training changed things.
            assert!(
                moved * 10 > fin.len() * 9,
                "{model}/{opt}: only {moved} of {} tensors changed in 20 steps",
                fin.len()
            );
            report.push(format!(
                "{model}/{opt}: losses {:.4} → {:.4}; loss max rel Δ {loss_worst:.2e} ({loss_exact}/{} identical); \
                 weights+BN stats max rel Δ {worst:.2e} ({worst_name}), {exact}/{} tensors identical",
                want[0],
                want[want.len() - 1],
                want.len(),
                fin.len()
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The newer backbones, two SGD steps each against torchvision +
/// torch.optim (tests/train_step_reference.py): 32-px batches of 4 in train
/// mode (BatchNorm on batch statistics, running statistics updated),
/// torchvision's own head, dropout and stochastic depth off (`stochastic =
/// false` here, p = 0 there), the backbone at lr × 0.1. Not bit-identical as
/// above (ViT's attention, LayerNorm2d's permutes and the grouped
/// convolutions order their sums differently from torch's modules), so with
/// tolerances: each loss within 1e-4 relative; each final tensor within 1e-4
/// of its scale; and, for every parameter the steps moved, the worker's
/// update (final − initial) within 1e-2 of torch's update — a wrong
/// gradient, a wrong BatchNorm momentum or a missing parameter group moves
/// these by O(1).
#[test]
fn newer_backbones_train_like_pytorch() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    let models = [
        "convnext_tiny",
        "efficientnet_b0",
        "efficientnet_v2_s",
        "mobilenet_v3_large",
        "regnet_y_3_2gf",
        "vit_b_16",
        "swin_t",
    ];
    tch::set_num_threads(THREADS);
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/train_step_reference.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir.path())
        .arg(THREADS.to_string())
        .args(models)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "train_step_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("train_step_reference.json")).unwrap(),
    )
    .unwrap();
    let torch_losses = read(&dir.path().join("losses.safetensors"));
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for model in models {
        let vs = nn::VarStore::new(Device::Cpu);
        let classes = spec["classes"].as_i64().unwrap();
        let image = spec["image"].as_i64().unwrap();
        let mut net =
            models::build_sized(&vs.root(), model, classes, &Head::Original, image).unwrap();
        net.stochastic = false;
        assert_eq!(net.head_prefix, spec["head"][model].as_str().unwrap());
        let init = read(&dir.path().join(format!("{model}_init.safetensors")));
        let vars = vs.variables();
        assert_eq!(
            vars.len(),
            init.len(),
            "{model}: variables vs torchvision's state_dict"
        );
        tch::no_grad(|| {
            for (name, var) in &vars {
                let src = init
                    .get(name)
                    .unwrap_or_else(|| panic!("{model}: {name} not in torchvision's state_dict"));
                var.shallow_clone().copy_(src);
            }
        });
        let sgd = &spec["sgd"];
        let lr = sgd["lr"].as_f64().unwrap();
        let h = Hyper {
            algorithm: Algorithm::Sgd {
                momentum: sgd["momentum"].as_f64().unwrap(),
                dampening: 0.0,
                nesterov: false,
            },
            weight_decay: sgd["weight_decay"].as_f64().unwrap(),
        };
        let mut optimizer = Optimizer::for_var_store(&vs, h, lr).unwrap();
        optimizer.set_lr(
            BACKBONE_GROUP,
            lr * spec["backbone_lr_scale"].as_f64().unwrap(),
        );
        optimizer.set_lr(HEAD_GROUP, lr);
        let mut scaler = GradScaler::new(false);
        let batches = read(&dir.path().join(format!("{model}_batches.safetensors")));
        let want = Vec::<f32>::try_from(&torch_losses[model]).unwrap();
        for (k, w) in want.iter().enumerate() {
            let out = train_step(
                &net,
                &mut optimizer,
                &mut scaler,
                &batches["x"].get(k as i64),
                &batches["y"].get(k as i64),
            );
            let rel = (out.loss - f64::from(*w)).abs() / f64::from(w.abs()).max(1e-12);
            if rel > 1e-4 {
                failures.push(format!(
                    "{model}: loss at step {} is {}, torch {w} (relative {rel:.2e})",
                    k + 1,
                    out.loss
                ));
            }
        }
        let fin = read(&dir.path().join(format!("{model}_final.safetensors")));
        let vars = vs.variables();
        let (mut worst, mut worst_update, mut moved) = (0.0f64, 0.0f64, 0);
        for (name, w) in &fin {
            let got = &vars[name];
            let scale = w.abs().max().double_value(&[]).max(1e-12);
            let rel = (got - w).abs().max().double_value(&[]) / scale;
            worst = worst.max(rel);
            if rel > 1e-4 {
                failures.push(format!(
                    "{model}: {name} differs from torch by {rel:.2e} of its scale"
                ));
            }
            let step = (w - &init[name]).abs().max().double_value(&[]);
            if step > 0.0 {
                moved += 1;
                let urel = (got - w).abs().max().double_value(&[]) / step;
                worst_update = worst_update.max(urel);
                if urel > 1e-2 {
                    failures.push(format!(
                        "{model}: {name}'s update differs from torch's by {urel:.2e} of its size"
                    ));
                }
            }
        }
        assert!(
            moved * 10 > fin.len() * 9,
            "{model}: only {moved} of {} tensors changed",
            fin.len()
        );
        report.push(format!(
            "{model}: losses {want:?}; weights max rel Δ {worst:.2e}, updates max rel Δ {worst_update:.2e} ({moved}/{} moved)",
            fin.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
