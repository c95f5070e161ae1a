//! `sweep_worker::optim` against torch.optim, step by step: the same initial
//! parameters and the same gradients give the same parameters and the same
//! optimizer state (momentum buffers, Adam moments, step counts) after every
//! step, within 1e-6, for SGD (plain, momentum, Nesterov, weight decay), Adam
//! (with and without L2 decay) and AdamW, with two parameter groups, an lr
//! change half way, a parameter that misses a gradient once and one that never
//! gets one. Reference: tests/optim_reference.py, run with the project's
//! PyTorch (`SWEEP_PYTHON`); a missing Python fails the test.
use crate::common;
use common::python;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use sweep_worker::optim::{Algorithm, Hyper, Optimizer, ParamState};
use tch::{Kind, Tensor};

const TOLERANCE: f64 = 1e-6;

fn reference(dir: &Path) -> (serde_json::Value, HashMap<String, Tensor>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/optim_reference.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "optim_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec =
        serde_json::from_slice(&std::fs::read(dir.join("optim_cases.json")).unwrap()).unwrap();
    let tensors = Tensor::read_safetensors(dir.join("optim_reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    (spec, tensors)
}

fn hyper(case: &serde_json::Value) -> Hyper {
    let f = |k: &str| case[k].as_f64().unwrap();
    let betas = || {
        [
            case["betas"][0].as_f64().unwrap(),
            case["betas"][1].as_f64().unwrap(),
        ]
    };
    let algorithm = match case["optimizer"].as_str().unwrap() {
        "sgd" => Algorithm::Sgd {
            momentum: f("momentum"),
            dampening: 0.0,
            nesterov: case["nesterov"].as_bool().unwrap(),
        },
        "adam" => Algorithm::Adam {
            betas: betas(),
            eps: f("eps"),
            decoupled_weight_decay: false,
        },
        "adamw" => Algorithm::Adam {
            betas: betas(),
            eps: f("eps"),
            decoupled_weight_decay: true,
        },
        other => panic!("unknown optimizer {other}"),
    };
    Hyper {
        algorithm,
        weight_decay: f("weight_decay"),
    }
}

/// Largest |a − b| over the elements; a shape mismatch fails.
fn max_diff(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn sgd_adam_adamw_match_torch_optim_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, want) = reference(dir.path());
    let steps = spec["steps"].as_u64().unwrap() as usize;
    let halve_from = spec["halve_lr_from"].as_u64().unwrap() as usize;
    let params = spec["params"].as_object().unwrap();
    let mut report = Vec::new();
    let mut compared = 0usize;
    for case in spec["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let lrs: Vec<f64> = case["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let vars: Vec<(String, Tensor, usize)> = params
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    want[&format!("init.{n}")].copy().set_requires_grad(true),
                    p["group"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let tensors: HashMap<String, Tensor> = vars
            .iter()
            .map(|(n, t, _)| (n.clone(), t.shallow_clone()))
            .collect();
        let mut opt = Optimizer::new(hyper(case), lrs[0], vars).unwrap();
        let mut worst = 0.0f64;
        let mut exact = (0usize, 0usize);
        for k in 0..steps {
            for (g, lr) in lrs.iter().enumerate() {
                opt.set_lr(g, if k >= halve_from { lr * 0.5 } else { *lr });
            }
            opt.zero_grad();
            // Gradients through autograd, as in training: d/dp Σ p·g = g exactly.
            let mut loss: Option<Tensor> = None;
            for (n, p) in &tensors {
                if let Some(g) = want.get(&format!("grad.{k}.{n}")) {
                    let term = (p * g).sum(Kind::Float);
                    loss = Some(match loss {
                        Some(l) => l + term,
                        None => term,
                    });
                }
            }
            loss.unwrap().backward();
            for (n, p) in &tensors {
                assert_eq!(
                    p.grad().defined(),
                    want.contains_key(&format!("grad.{k}.{n}")),
                    "{name} step {k} {n}: gradient presence"
                );
            }
            opt.step();
            for (n, p) in &tensors {
                let mut check = |what: String, got: &Tensor| {
                    let w = want
                        .get(&what)
                        .unwrap_or_else(|| panic!("{what}: torch has no such tensor"));
                    let d = max_diff(&what, got, w);
                    assert!(d <= TOLERANCE, "{what}: differs from torch.optim by {d:e}");
                    worst = worst.max(d);
                    exact.0 += usize::from(got.equal(w));
                    exact.1 += 1;
                };
                check(format!("{name}.{k}.param.{n}"), p);
                let prefix = format!("{name}.{k}.state.{n}.");
                let torch_slots: Vec<&String> =
                    want.keys().filter(|key| key.starts_with(&prefix)).collect();
                match opt.state(n).unwrap() {
                    ParamState::Empty => assert!(
                        torch_slots.is_empty(),
                        "{name} step {k} {n}: torch has state {torch_slots:?}, we have none"
                    ),
                    ParamState::Momentum(buf) => {
                        assert_eq!(torch_slots.len(), 1, "{name} step {k} {n}: {torch_slots:?}");
                        check(format!("{prefix}momentum_buffer"), buf);
                    }
                    ParamState::Adam {
                        step,
                        exp_avg,
                        exp_avg_sq,
                    } => {
                        assert_eq!(torch_slots.len(), 3, "{name} step {k} {n}: {torch_slots:?}");
                        let torch_step = want[&format!("{prefix}step")].double_value(&[0]);
                        assert_eq!(*step as f64, torch_step, "{name} step {k} {n}: step count");
                        check(format!("{prefix}exp_avg"), exp_avg);
                        check(format!("{prefix}exp_avg_sq"), exp_avg_sq);
                    }
                }
            }
        }
        compared += exact.1;
        report.push(format!(
            "{name}: max |Δ| = {worst:.3e}, bit-identical {}/{}",
            exact.0, exact.1
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(compared > 300, "only {compared} tensors compared");
}
