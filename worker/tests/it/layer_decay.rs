//! Layer-wise lr decay (`layer_decay`) against torch.optim with the param
//! groups of the fine-tuning recipes, built independently in Python
//! (tests/layer_decay_reference.py: BEiT's numbering for vit_b_16,
//! ConvNeXt's for convnext_tiny, SimMIM's for swin_t, timm's block by block
//! for resnet18), with
//! `backbone_lr_scale` 0.1 on top.
//!
//! The optimizer is the trainer's own (`trainer::optimizer` from a
//! `TrialConfig`). Checked: every parameter's lr equals the reference's to
//! the bit (a parameter at a wrong depth gets another power of the decay);
//! then two SGD steps (momentum, weight decay) in train mode (dropout and stochastic depth off) from
//! the same weights on the same batches: resnet18 bit-identical (as in
//! train_parity.rs), convnext_tiny, vit_b_16 and swin_t within the tolerances of
//! `newer_backbones_train_like_pytorch` (losses 1e-4 relative, each
//! parameter's update within 1e-2 of torch's, or within 4 ulps of its
//! weights: the deepest layers' updates are that small).
use crate::common;
use common::python;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use sweep_protocol::config::{Head, Optimizer as OptName, TrialConfig};
use sweep_worker::models;
use sweep_worker::trainer::{GradScaler, optimizer, train_step};
use tch::{Device, Tensor, nn};

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

#[test]
fn layer_decay_matches_the_recipes_param_groups_in_torch() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    tch::set_num_threads(1);
    let models = ["resnet18", "convnext_tiny", "vit_b_16", "swin_t"];
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/layer_decay_reference.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir.path())
        .arg("1")
        .args(models)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "layer_decay_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("layer_decay_reference.json")).unwrap(),
    )
    .unwrap();
    let torch_losses = read(&dir.path().join("losses.safetensors"));
    let sgd = &spec["sgd"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for model in models {
        let cfg = TrialConfig {
            backbone: model.into(),
            lr: f(&sgd["lr"]),
            optimizer: OptName::Sgd,
            momentum: f(&sgd["momentum"]),
            weight_decay: f(&sgd["weight_decay"]),
            head: Head::Original,
            image_size: spec["image"].as_u64().unwrap() as u32,
            backbone_lr_scale: f(&spec["backbone_lr_scale"]),
            layer_decay: f(&spec["layer_decay"]),
            ..TrialConfig::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let classes = spec["classes"].as_i64().unwrap();
        let mut net = models::build_sized(
            &vs.root(),
            model,
            classes,
            &cfg.head,
            i64::from(cfg.image_size),
        )
        .unwrap();
        net.stochastic = false;
        assert_eq!(net.head_prefix, spec["head"][model].as_str().unwrap());
        let init = read(&dir.path().join(format!("{model}_init.safetensors")));
        tch::no_grad(|| {
            for (name, var) in &vs.variables() {
                var.shallow_clone().copy_(&init[name]);
            }
        });
        let mut opt = optimizer(&cfg, &vs, &net).unwrap_or_else(|e| panic!("{}", e.message));
        // What the trainer does at the start of every epoch.
        opt.set_base_lr(cfg.lr);
        let lrs = spec["lrs"][model].as_object().unwrap();
        let mut distinct: Vec<u64> = Vec::new();
        for (name, bits) in lrs {
            let want = f64::from_bits(bits.as_u64().unwrap());
            let got = opt.lr_of(name);
            if got != Some(want) {
                failures.push(format!("{model}: {name} at lr {got:?}, torch {want:e}"));
            }
            if !distinct.contains(&want.to_bits()) {
                distinct.push(want.to_bits());
            }
        }
        let mut scaler = GradScaler::new(false);
        let batches = read(&dir.path().join(format!("{model}_batches.safetensors")));
        let want = Vec::<f32>::try_from(&torch_losses[model]).unwrap();
        let exact = model == "resnet18";
        for (k, w) in want.iter().enumerate() {
            let out = train_step(
                &net,
                &mut opt,
                &mut scaler,
                &batches["x"].get(k as i64),
                &batches["y"].get(k as i64),
            );
            let rel = (out.loss - f64::from(*w)).abs() / f64::from(w.abs()).max(1e-12);
            if (exact && out.loss as f32 != *w) || rel > 1e-4 {
                failures.push(format!(
                    "{model}: loss at step {} is {}, torch {w}",
                    k + 1,
                    out.loss
                ));
            }
        }
        let fin = read(&dir.path().join(format!("{model}_final.safetensors")));
        let vars = vs.variables();
        let mut worst_update = 0.0f64;
        for (name, w) in &fin {
            let got = &vars[name];
            if exact {
                if !got.equal(w) {
                    failures.push(format!("{model}: {name} differs from torch"));
                }
                continue;
            }
            let step = (w - &init[name]).abs().max().double_value(&[]);
            if step > 0.0 {
                // A deep layer's update can be a few ulps of its weights:
                // rounding of the weights themselves is allowed too.
                let ulps = 4.0 * f64::from(f32::EPSILON) * w.abs().max().double_value(&[]);
                let diff = (got - w).abs().max().double_value(&[]);
                let urel = diff / step;
                worst_update = worst_update.max(urel);
                if diff > ulps && urel > 1e-2 {
                    failures.push(format!(
                        "{model}: {name}'s update differs from torch's by {urel:.2e} of its size"
                    ));
                }
            }
        }
        report.push(format!(
            "{model}: {} lr groups, {} parameters; losses {want:?}; updates max rel Δ {worst_update:.2e}",
            distinct.len(),
            lrs.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
