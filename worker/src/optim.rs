//! SGD, Adam and AdamW written over tensors, so that their state can be
//! checkpointed (tch's `nn::Optimizer` wraps libtorch's C++ optimizers and
//! exposes none of it).
//!
//! The update rules are torch.optim's (PyTorch 2.11) single-tensor code paths
//! (`_single_tensor_sgd`, `_single_tensor_adam`; AdamW is Adam with
//! `decoupled_weight_decay=True`), op for op, with the same scalar arithmetic
//! in f64 on the host (`beta1 ** step`, `lr / bias_correction1`, …):
//!
//! - a parameter whose gradient is undefined is skipped: no state is created,
//!   its step count does not advance, weight decay does not touch it;
//! - [`Optimizer::zero_grad`] sets gradients to undefined (`set_to_none=True`);
//! - state is created lazily on the first step a parameter has a gradient, as
//!   torch does (SGD: `momentum_buffer = grad.clone()`; Adam: zeros, step 0).
//!
//! tch drops the defaulted `alpha`/`value` scalars of `add`, `addcmul` and
//! `addcdiv`. `x.add(y, alpha=a)` is therefore computed as `x.addcmul(y, a)`
//! with `a` a 0-dim tensor of the parameter's dtype, and `x.addcmul_(y, z,
//! value=v)` / `x.addcdiv_(y, z, value=v)` as `x.addcmul_(y * v, z)` /
//! `x.addcdiv_(y * v, z)`. libtorch's CPU kernels evaluate these to the same
//! bits (`self + v*t1*t2` and `self + v*t1/t2`, with `v*t1` rounded first; the
//! optimizer parity test, `worker/tests/optim_parity.rs`, checks it).
use std::collections::HashMap;
use sweep_protocol::config::{Optimizer as OptimizerKind, TrialConfig};
use tch::{Device, Kind, Tensor, nn};

/// Why an optimizer cannot be made, or saved state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A setting torch.optim's constructors refuse (they raise `ValueError`).
    #[error("invalid optimizer setting: {0}")]
    Invalid(String),
    /// The parameters given: one twice, an empty one, an unnamed one.
    #[error("{0}")]
    Params(String),
    /// Saved optimizer state that does not fit this optimizer's parameters.
    #[error("{0}")]
    State(String),
    /// libtorch refused an operation.
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

/// The update rule and its hyperparameters (everything but the learning rate,
/// which is per parameter group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    /// torch.optim.SGD (`maximize=False`).
    Sgd {
        momentum: f64,
        dampening: f64,
        nesterov: bool,
    },
    /// torch.optim.Adam (`amsgrad=False`); with `decoupled_weight_decay` it is
    /// torch.optim.AdamW.
    Adam {
        betas: [f64; 2],
        eps: f64,
        decoupled_weight_decay: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub algorithm: Algorithm,
    pub weight_decay: f64,
}

impl Hyper {
    /// The trial's optimizer: `optimizer`, `momentum`, `nesterov`,
    /// `weight_decay`, `betas`, `eps` (dampening is always 0).
    pub fn from_config(cfg: &TrialConfig) -> Hyper {
        let adam = |decoupled_weight_decay| Algorithm::Adam {
            betas: cfg.betas,
            eps: cfg.eps,
            decoupled_weight_decay,
        };
        let algorithm = match cfg.optimizer {
            OptimizerKind::Sgd => Algorithm::Sgd {
                momentum: cfg.momentum,
                dampening: 0.0,
                nesterov: cfg.nesterov,
            },
            OptimizerKind::Adam => adam(false),
            OptimizerKind::Adamw => adam(true),
        };
        Hyper {
            algorithm,
            weight_decay: cfg.weight_decay,
        }
    }

    /// The checks torch.optim's constructors make (they raise `ValueError`).
    pub fn validate(&self, lr: f64) -> Result<(), OptimError> {
        let bad = |what: &str| Err(OptimError::Invalid(what.to_string()));
        if lr.is_nan() || lr < 0.0 {
            return bad(&format!("learning rate {lr} (must be >= 0)"));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(&format!(
                "weight_decay {} (must be >= 0)",
                self.weight_decay
            ));
        }
        match self.algorithm {
            Algorithm::Sgd {
                momentum,
                dampening,
                nesterov,
            } => {
                if momentum.is_nan() || momentum < 0.0 {
                    return bad(&format!("momentum {momentum} (must be >= 0)"));
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return bad("nesterov needs momentum > 0 (and zero dampening)");
                }
            }
            Algorithm::Adam { betas, eps, .. } => {
                if eps.is_nan() || eps < 0.0 {
                    return bad(&format!("eps {eps} (must be >= 0)"));
                }
                for (i, b) in betas.iter().enumerate() {
                    if !(0.0..1.0).contains(b) {
                        return bad(&format!("betas[{i}] = {b} (must be in [0, 1))"));
                    }
                }
            }
        }
        Ok(())
    }

    /// `sgd`, `adam` or `adamw`: recorded in checkpoints so that a resume
    /// with another optimizer is refused.
    pub fn name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Sgd { .. } => "sgd",
            Algorithm::Adam {
                decoupled_weight_decay: false,
                ..
            } => "adam",
            Algorithm::Adam {
                decoupled_weight_decay: true,
                ..
            } => "adamw",
        }
    }
}

/// One parameter's optimizer state, exactly torch's `optimizer.state[p]`.
#[derive(Debug)]
pub enum ParamState {
    /// No step with a gradient yet (torch: empty state dict).
    Empty,
    /// SGD with momentum: `momentum_buffer`.
    Momentum(Tensor),
    /// Adam/AdamW: `step` (torch keeps it as a float32 scalar tensor; the
    /// count is what matters), `exp_avg`, `exp_avg_sq`.
    Adam {
        step: i64,
        exp_avg: Tensor,
        exp_avg_sq: Tensor,
    },
}

#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    group: usize,
    state: ParamState,
}

/// The scalar operands of one group for one step, as 0-dim tensors of the
/// parameters' dtype and device (see the module doc).
struct GroupScalars {
    neg_lr: Tensor,
    weight_decay: Tensor,
    momentum: Tensor,
    one_minus_dampening: Tensor,
}

pub struct Optimizer {
    hyper: Hyper,
    lrs: Vec<f64>,
    /// Each group's lr multiplier for [`Optimizer::set_base_lr`].
    scales: Vec<f64>,
    params: Vec<Param>,
    /// Holds the same parameters only for `zero_grad`: libtorch's
    /// `Optimizer::zero_grad()` resets gradients to undefined, which tch's
    /// `Tensor::zero_grad` (a fill with zeros) does not.
    grad_reset: tch::COptimizer,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("hyper", &self.hyper)
            .field("lrs", &self.lrs)
            .field("params", &self.params.len())
            .finish()
    }
}

/// Every variable of `vs` that requires grad: (name, tensor, `VarStore` group).
fn trainable(vs: &nn::VarStore) -> Result<Vec<(String, Tensor, usize)>, OptimError> {
    let vars = vs
        .variables_
        .lock()
        .map_err(|_| OptimError::Params("variable store lock poisoned".into()))?;
    // The store keeps names and groups apart; a variable is known by its storage.
    let mut names: HashMap<usize, &String> = HashMap::new();
    for (k, t) in &vars.named_variables {
        if t.numel() == 0 {
            return Err(OptimError::Params(format!(
                "parameter {k} is empty (shape {:?})",
                t.size()
            )));
        }
        names.insert(t.data_ptr() as usize, k);
    }
    let mut params = Vec::new();
    for var in &vars.trainable_variables {
        if !var.tensor.requires_grad() {
            continue;
        }
        let name = names
            .get(&(var.tensor.data_ptr() as usize))
            .ok_or_else(|| {
                OptimError::Params("a trainable variable has no name in the store".into())
            })?;
        params.push(((*name).clone(), var.tensor.shallow_clone(), var.group));
    }
    Ok(params)
}

const SLOTS: [&str; 4] = ["momentum_buffer", "step", "exp_avg", "exp_avg_sq"];

impl Optimizer {
    /// `params`: (name, tensor, group). Every group starts at `lr`. Fails
    /// (with torch's constructor checks) on invalid hyperparameters.
    pub fn new(
        hyper: Hyper,
        lr: f64,
        params: Vec<(String, Tensor, usize)>,
    ) -> Result<Optimizer, OptimError> {
        hyper.validate(lr)?;
        let mut grad_reset = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
        let mut seen = std::collections::HashSet::new();
        let mut list = Vec::with_capacity(params.len());
        for (name, tensor, group) in params {
            if !seen.insert(name.clone()) {
                return Err(OptimError::Params(format!("parameter {name} given twice")));
            }
            grad_reset.add_parameters(&tensor, 0)?;
            list.push(Param {
                name,
                tensor,
                group,
                state: ParamState::Empty,
            });
        }
        let groups = list.iter().map(|p| p.group + 1).max().unwrap_or(1);
        Ok(Optimizer {
            hyper,
            lrs: vec![lr; groups],
            scales: vec![1.0; groups],
            params: list,
            grad_reset,
        })
    }

    /// Every variable of `vs` that requires grad (frozen ones are left out),
    /// in its `VarStore` group, named as in the store.
    pub fn for_var_store(
        vs: &nn::VarStore,
        hyper: Hyper,
        lr: f64,
    ) -> Result<Optimizer, OptimError> {
        Optimizer::new(hyper, lr, trainable(vs)?)
    }

    /// Every variable of `vs` that requires grad, each with its own lr
    /// multiplier `scale(name, VarStore group)`: the parameters of equal
    /// multipliers form one group (numbered in the order of their first
    /// parameter), whose lr [`Optimizer::set_base_lr`] sets to base ×
    /// multiplier — torch.optim with one param group per multiplier, `lr =
    /// base * multiplier` (layer-wise lr decay, `backbone_lr_scale`).
    pub fn for_var_store_scaled(
        vs: &nn::VarStore,
        hyper: Hyper,
        lr: f64,
        scale: impl Fn(&str, usize) -> f64,
    ) -> Result<Optimizer, OptimError> {
        let mut scales: Vec<f64> = Vec::new();
        let mut params = trainable(vs)?;
        for (name, _, group) in &mut params {
            let s = scale(name, *group);
            if !(s.is_finite() && s >= 0.0) {
                return Err(OptimError::Params(format!(
                    "parameter {name}: lr multiplier {s} is not a finite number ≥ 0"
                )));
            }
            *group = match scales.iter().position(|x| x.to_bits() == s.to_bits()) {
                Some(g) => g,
                None => {
                    scales.push(s);
                    scales.len() - 1
                }
            };
        }
        let mut opt = Optimizer::new(hyper, lr, params)?;
        opt.scales = scales;
        opt.set_base_lr(lr);
        Ok(opt)
    }

    /// Every group's lr = `lr` × its multiplier (1 unless built by
    /// [`Optimizer::for_var_store_scaled`]).
    pub fn set_base_lr(&mut self, lr: f64) {
        for (g, l) in self.lrs.iter_mut().enumerate() {
            *l = lr * self.scales.get(g).copied().unwrap_or(1.0);
        }
    }

    /// The lr a parameter gets at the next step.
    pub fn lr_of(&self, name: &str) -> Option<f64> {
        let p = self.params.iter().find(|p| p.name == name)?;
        self.lrs.get(p.group).copied()
    }

    pub fn hyper(&self) -> Hyper {
        self.hyper
    }

    pub fn set_lr(&mut self, group: usize, lr: f64) {
        if let Some(l) = self.lrs.get_mut(group) {
            *l = lr;
        }
    }

    pub fn lr(&self, group: usize) -> Option<f64> {
        self.lrs.get(group).copied()
    }

    /// The parameters' gradients (defined ones only), for loss scaling.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.tensor.grad())
            .filter(|g| g.defined())
            .collect()
    }

    /// Sets every gradient to undefined (torch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        if let Err(e) = self.grad_reset.zero_grad() {
            panic!("zero_grad: {e}");
        }
    }

    pub fn state(&self, name: &str) -> Option<&ParamState> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.state)
    }

    fn scalars(&self, group: usize, kind: Kind, device: Device) -> GroupScalars {
        let lr = self.lrs.get(group).copied().unwrap_or(0.0);
        let t = |v: f64| Tensor::scalar_tensor(v, (kind, device));
        let (momentum, dampening) = match self.hyper.algorithm {
            Algorithm::Sgd {
                momentum,
                dampening,
                ..
            } => (momentum, dampening),
            Algorithm::Adam { .. } => (0.0, 0.0),
        };
        GroupScalars {
            neg_lr: t(-lr),
            weight_decay: t(self.hyper.weight_decay),
            momentum: t(momentum),
            one_minus_dampening: t(1.0 - dampening),
        }
    }

    /// One optimisation step over every parameter that has a gradient.
    pub fn step(&mut self) {
        tch::no_grad(|| {
            let mut scalars: HashMap<(usize, Kind, Device), GroupScalars> = HashMap::new();
            let hyper = self.hyper;
            for i in 0..self.params.len() {
                let grad = self.params[i].tensor.grad();
                if !grad.defined() {
                    continue;
                }
                let (group, kind, device) = (
                    self.params[i].group,
                    self.params[i].tensor.kind(),
                    self.params[i].tensor.device(),
                );
                let lr = self.lrs.get(group).copied().unwrap_or(0.0);
                let key = (group, kind, device);
                let s = scalars
                    .entry(key)
                    .or_insert_with(|| self.scalars(group, kind, device));
                let p = &mut self.params[i];
                match hyper.algorithm {
                    Algorithm::Sgd {
                        momentum,
                        dampening,
                        nesterov,
                    } => sgd(
                        p,
                        grad,
                        s,
                        hyper.weight_decay,
                        momentum,
                        dampening,
                        nesterov,
                    ),
                    Algorithm::Adam {
                        betas,
                        eps,
                        decoupled_weight_decay,
                    } => adam(
                        p,
                        grad,
                        s,
                        lr,
                        hyper.weight_decay,
                        betas,
                        eps,
                        decoupled_weight_decay,
                    ),
                }
            }
        })
    }

    /// The state as named tensors, `<param>.<slot>` with slot one of
    /// `momentum_buffer`, `step` (int64, shape [1]), `exp_avg`, `exp_avg_sq`.
    /// Parameters without state have no entry.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            match &p.state {
                ParamState::Empty => {}
                ParamState::Momentum(buf) => {
                    out.push((format!("{}.momentum_buffer", p.name), buf.shallow_clone()))
                }
                ParamState::Adam {
                    step,
                    exp_avg,
                    exp_avg_sq,
                } => {
                    out.push((format!("{}.step", p.name), Tensor::from_slice(&[*step])));
                    out.push((format!("{}.exp_avg", p.name), exp_avg.shallow_clone()));
                    out.push((format!("{}.exp_avg_sq", p.name), exp_avg_sq.shallow_clone()));
                }
            }
        }
        out
    }

    /// Restores what [`Optimizer::state_tensors`] returned (tensors may be on
    /// any device; they are copied to the parameter's). Every entry must name
    /// a parameter of this optimizer, with the slots its algorithm uses and
    /// the parameter's shape; anything else is an error and nothing is changed.
    pub fn load_state_tensors(
        &mut self,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<(), OptimError> {
        let mut by_param: HashMap<&str, HashMap<&str, &Tensor>> = HashMap::new();
        for (key, t) in tensors {
            let (name, slot) = key
                .rsplit_once('.')
                .filter(|(_, s)| SLOTS.contains(s))
                .ok_or_else(|| OptimError::State(format!("unknown optimizer state entry {key}")))?;
            by_param.entry(name).or_default().insert(slot, t);
        }
        let mut states = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let Some(slots) = by_param.remove(p.name.as_str()) else {
                states.push(ParamState::Empty);
                continue;
            };
            let like = |slot: &str| -> Result<Tensor, OptimError> {
                let t = slots.get(slot).ok_or_else(|| {
                    OptimError::State(format!("optimizer state of {} lacks {slot}", p.name))
                })?;
                if t.size() != p.tensor.size() {
                    return Err(OptimError::State(format!(
                        "optimizer state {}.{slot} has shape {:?}, the parameter {:?}",
                        p.name,
                        t.size(),
                        p.tensor.size()
                    )));
                }
                // The parameter's kind, device and memory layout (channels-last
                // weights keep channels-last state, as a fresh buffer has),
                // whatever the saved tensor's.
                let mut d = p.tensor.zeros_like();
                tch::no_grad(|| d.copy_(t));
                Ok(d.detach())
            };
            let state = match self.hyper.algorithm {
                Algorithm::Sgd { .. } if slots.len() == 1 => {
                    ParamState::Momentum(like("momentum_buffer")?)
                }
                Algorithm::Adam { .. } if slots.len() == 3 => {
                    let step = slots.get("step").ok_or_else(|| {
                        OptimError::State(format!("optimizer state of {} lacks step", p.name))
                    })?;
                    let step = step.f_int64_value(&[0]).map_err(|e| {
                        OptimError::State(format!("optimizer state {}.step: {e}", p.name))
                    })?;
                    ParamState::Adam {
                        step,
                        exp_avg: like("exp_avg")?,
                        exp_avg_sq: like("exp_avg_sq")?,
                    }
                }
                _ => {
                    let mut got: Vec<&str> = slots.keys().copied().collect();
                    got.sort();
                    return Err(OptimError::State(format!(
                        "optimizer state of {} has slots {got:?}, which {} does not use",
                        p.name,
                        self.hyper.name()
                    )));
                }
            };
            states.push(state);
        }
        if let Some(name) = by_param.keys().next() {
            return Err(OptimError::State(format!(
                "optimizer state names {name}, which is not a parameter being optimized"
            )));
        }
        for (p, s) in self.params.iter_mut().zip(states) {
            p.state = s;
        }
        Ok(())
    }
}

/// `_single_tensor_sgd` for one parameter.
fn sgd(
    p: &mut Param,
    grad: Tensor,
    s: &GroupScalars,
    weight_decay: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
) {
    // grad = grad.add(param, alpha=weight_decay)
    let mut d_p = if weight_decay != 0.0 {
        grad.addcmul(&p.tensor, &s.weight_decay)
    } else {
        grad
    };
    if momentum != 0.0 {
        let buf = match &mut p.state {
            ParamState::Momentum(buf) => {
                // buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                let _ = buf.g_mul_scalar_(momentum);
                if dampening == 0.0 {
                    let _ = buf.g_add_(&d_p);
                } else {
                    let _ = buf.addcmul_(&d_p, &s.one_minus_dampening);
                }
                buf.shallow_clone()
            }
            state => {
                // buf = grad.detach().clone()
                let buf = d_p.detach().copy();
                *state = ParamState::Momentum(buf.shallow_clone());
                buf
            }
        };
        // grad = grad.add(buf, alpha=momentum) if nesterov else buf
        d_p = if nesterov {
            d_p.addcmul(&buf, &s.momentum)
        } else {
            buf
        };
    }
    // param.add_(grad, alpha=-lr)
    let _ = p.tensor.addcmul_(&d_p, &s.neg_lr);
}

/// `_single_tensor_adam` (`amsgrad=False`, `capturable=False`) for one parameter.
#[allow(clippy::too_many_arguments)]
fn adam(
    p: &mut Param,
    grad: Tensor,
    s: &GroupScalars,
    lr: f64,
    weight_decay: f64,
    betas: [f64; 2],
    eps: f64,
    decoupled: bool,
) {
    if !matches!(p.state, ParamState::Adam { .. }) {
        p.state = ParamState::Adam {
            step: 0,
            exp_avg: p.tensor.zeros_like(),
            exp_avg_sq: p.tensor.zeros_like(),
        };
    }
    let ParamState::Adam {
        step,
        exp_avg,
        exp_avg_sq,
    } = &mut p.state
    else {
        unreachable!("set just above")
    };
    let [beta1, beta2] = betas;
    *step += 1;
    let mut grad = grad;
    if weight_decay != 0.0 {
        if decoupled {
            // param.mul_(1 - lr * weight_decay)
            let _ = p.tensor.g_mul_scalar_(1.0 - lr * weight_decay);
        } else {
            // grad = grad.add(param, alpha=weight_decay)
            grad = grad.addcmul(&p.tensor, &s.weight_decay);
        }
    }
    // exp_avg.lerp_(grad, 1 - beta1)
    let _ = exp_avg.lerp_(&grad, 1.0 - beta1);
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    let _ = exp_avg_sq.g_mul_scalar_(beta2);
    let _ = exp_avg_sq.addcmul_(&(&grad * (1.0 - beta2)), &grad);
    // Python floats: `beta ** step` and `x ** 0.5` are C pow() on doubles.
    let step = *step as f64;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(0.5);
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    let mut denom = exp_avg_sq.sqrt() / bias_correction2_sqrt;
    let _ = denom.g_add_scalar_(eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    let _ = p.tensor.addcdiv_(&(&*exp_avg * (-step_size)), &denom);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(algorithm: Algorithm) -> Hyper {
        Hyper {
            algorithm,
            weight_decay: 0.0,
        }
    }

    #[test]
    fn torch_constructor_checks() {
        let sgd = |momentum, nesterov| {
            hyper(Algorithm::Sgd {
                momentum,
                dampening: 0.0,
                nesterov,
            })
        };
        assert!(sgd(0.9, true).validate(0.1).is_ok());
        assert!(
            sgd(0.0, true)
                .validate(0.1)
                .unwrap_err()
                .to_string()
                .contains("nesterov")
        );
        assert!(
            sgd(0.9, false)
                .validate(-1.0)
                .unwrap_err()
                .to_string()
                .contains("learning rate")
        );
        let adam = |b1, eps| {
            hyper(Algorithm::Adam {
                betas: [b1, 0.999],
                eps,
                decoupled_weight_decay: false,
            })
        };
        assert!(
            adam(1.0, 1e-8)
                .validate(0.1)
                .unwrap_err()
                .to_string()
                .contains("betas[0]")
        );
        assert!(
            adam(0.9, -1.0)
                .validate(0.1)
                .unwrap_err()
                .to_string()
                .contains("eps")
        );
        assert!(
            Hyper {
                algorithm: Algorithm::Sgd {
                    momentum: 0.0,
                    dampening: 0.0,
                    nesterov: false
                },
                weight_decay: -1.0
            }
            .validate(0.1)
            .is_err()
        );
    }

    /// A resumed optimizer's buffers have the parameter's layout, as a fresh
    /// one's do: channels-last weights (`channels_last = true`) must not get
    /// the contiguous layout of the checkpoint, which would make every update
    /// mix layouts.
    #[test]
    fn restored_state_takes_the_parameter_layout() {
        let w = Tensor::arange(24, (Kind::Float, Device::Cpu))
            .view([2, 2, 2, 3])
            .contiguous()
            .permute([0, 3, 1, 2])
            .set_requires_grad(true);
        let h = Hyper {
            algorithm: Algorithm::Sgd {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
        };
        let mut fresh = Optimizer::new(h, 0.1, vec![("w".into(), w.shallow_clone(), 0)]).unwrap();
        fresh.zero_grad();
        (&w * 2.0).sum(Kind::Float).backward();
        fresh.step();
        let Some(ParamState::Momentum(buf)) = fresh.state("w") else {
            panic!("no momentum buffer")
        };
        assert_eq!(
            buf.stride(),
            w.stride(),
            "a fresh buffer follows the parameter"
        );
        let saved: HashMap<String, Tensor> = fresh
            .state_tensors()
            .into_iter()
            .map(|(k, t)| (k, t.contiguous()))
            .collect();
        assert_ne!(saved["w.momentum_buffer"].stride(), w.stride());
        let mut resumed = Optimizer::new(h, 0.1, vec![("w".into(), w.shallow_clone(), 0)]).unwrap();
        resumed.load_state_tensors(&saved).unwrap();
        let Some(ParamState::Momentum(back)) = resumed.state("w") else {
            panic!("no momentum buffer")
        };
        assert_eq!(
            back.stride(),
            w.stride(),
            "the restored buffer follows the parameter too"
        );
        assert!(back.equal(buf));
    }

    #[test]
    fn params_without_grad_are_skipped_and_state_round_trips() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let h = Hyper {
            algorithm: Algorithm::Adam {
                betas: [0.9, 0.999],
                eps: 1e-8,
                decoupled_weight_decay: true,
            },
            weight_decay: 0.1,
        };
        let mut opt = Optimizer::new(
            h,
            0.01,
            vec![
                ("a".into(), a.shallow_clone(), 0),
                ("b".into(), b.shallow_clone(), 1),
            ],
        )
        .unwrap();
        opt.zero_grad();
        (&a * 2.0).sum(Kind::Float).backward();
        opt.step();
        assert!(matches!(
            opt.state("a"),
            Some(ParamState::Adam { step: 1, .. })
        ));
        assert!(
            matches!(opt.state("b"), Some(ParamState::Empty)),
            "b had no gradient: no state"
        );
        assert_eq!(
            Vec::<f32>::try_from(&b).unwrap(),
            vec![3.0],
            "no decay without a gradient"
        );
        opt.zero_grad();
        assert!(!a.grad().defined(), "zero_grad sets gradients to undefined");
        let saved: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        assert_eq!(saved.len(), 3);
        let mut again = Optimizer::new(
            h,
            0.01,
            vec![
                ("a".into(), a.shallow_clone(), 0),
                ("b".into(), b.shallow_clone(), 1),
            ],
        )
        .unwrap();
        again.load_state_tensors(&saved).unwrap();
        assert!(matches!(
            again.state("a"),
            Some(ParamState::Adam { step: 1, .. })
        ));
        let mut wrong = saved;
        wrong.insert(
            "c.exp_avg".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        assert!(
            again
                .load_state_tensors(&wrong)
                .unwrap_err()
                .to_string()
                .contains("c")
        );
    }

    /// Each parameter's multiplier: equal multipliers share a group, and
    /// `set_base_lr` puts every group at base × multiplier; a plain SGD step
    /// moves each parameter by exactly its own lr × gradient.
    #[test]
    fn scaled_groups_follow_the_base_lr() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        for (name, group) in [("a", 0), ("b", 0), ("c", 1), ("d", 1)] {
            let _ = root.set_group(group).var(name, &[2], nn::Init::Const(1.0));
        }
        let scale = |name: &str, group: usize| match (name, group) {
            ("a", 0) => 0.25,
            ("b", 0) | ("c", 1) => 0.5,
            _ => 1.0,
        };
        let h = Hyper {
            algorithm: Algorithm::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::for_var_store_scaled(&vs, h, 0.1, scale).unwrap();
        assert_eq!(opt.lrs.len(), 3, "three distinct multipliers");
        for (n, want) in [("a", 0.025), ("b", 0.05), ("c", 0.05), ("d", 0.1)] {
            assert_eq!(opt.lr_of(n), Some(want), "{n}");
        }
        opt.set_base_lr(2.0);
        for (n, want) in [("a", 0.5), ("b", 1.0), ("c", 1.0), ("d", 2.0)] {
            assert_eq!(opt.lr_of(n), Some(want), "{n}");
        }
        let vars = vs.variables();
        let loss = ["a", "b", "c", "d"]
            .iter()
            .map(|n| vars[*n].sum(Kind::Float))
            .fold(Tensor::from(0.0f32), |acc, t| acc + t);
        opt.zero_grad();
        loss.backward();
        opt.step();
        for (n, want) in [("a", 0.5f32), ("b", 0.0), ("c", 0.0), ("d", -1.0)] {
            assert_eq!(Vec::<f32>::try_from(&vars[n]).unwrap(), [want, want], "{n}");
        }
        assert!(Optimizer::for_var_store_scaled(&vs, h, 0.1, |_, _| f64::NAN).is_err());
    }
}
