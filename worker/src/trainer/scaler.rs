//! One optimisation step ([`train_step`]) and the dynamic loss scaling of
//! mixed precision ([`GradScaler`], torch.amp.GradScaler's rules). Knows
//! nothing of epochs, data or checkpoints.
use super::*;

/// What one [`train_step`] did.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// The batch's mean cross-entropy (before the step).
    pub loss: f64,
    /// Correct top-1 predictions in the batch (before the step).
    pub correct: i64,
    /// Whether the optimizer stepped: not when the loss is not finite (the
    /// caller reports it), nor when the loss scaler found inf/NaN gradients.
    pub stepped: bool,
}

/// One optimisation step on one batch, as the trainer takes it: forward in
/// training mode (under autocast when loss scaling is on), cross-entropy in
/// f32, backward, optimizer step through the scaler. The host reads from the
/// device once (loss, correct count and, under amp, the inf/NaN flag
/// together), where torch's GradScaler reads once too: every read makes the
/// host wait until the device has run everything queued before it. A step
/// whose loss is not finite is not taken.
pub fn train_step(
    net: &Net,
    opt: &mut Optimizer,
    scaler: &mut GradScaler,
    xs: &Tensor,
    ys: &Tensor,
) -> StepOutcome {
    let logits = crate::autocast::cuda(scaler.enabled, || net.forward_t(xs, true));
    let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(ys);
    let correct = logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Int64);
    let found_inf = scaler.backward(opt, &loss);
    let mut read = vec![
        loss.detach().to_kind(Kind::Double),
        correct.to_kind(Kind::Double),
    ];
    // `found_inf` has one element in one dimension; the others none.
    read.extend(
        found_inf
            .as_ref()
            .map(|f| f.reshape([]).to_kind(Kind::Double)),
    );
    let values = Vec::<f64>::try_from(Tensor::stack(&read, 0).to_device(tch::Device::Cpu))
        .expect("a 1-d f64 tensor");
    let (loss_v, correct) = (values[0], values[1] as i64);
    let finite_grads = values.get(2).is_none_or(|&f| f == 0.0);
    let stepped = scaler.step(opt, loss_v.is_finite() && finite_grads);
    StepOutcome {
        loss: loss_v,
        correct,
        stepped,
    }
}

/// `amp` scales the loss only on CUDA. `SWEEP_TEST_CPU_LOSS_SCALING=1` scales
/// it on the CPU too, so that the test suite runs the amp training loop on a
/// machine without a GPU: autocast changes only CUDA operations, and a scale
/// that is a power of two leaves f32 gradients as they were.
pub(super) fn cpu_loss_scaling() -> bool {
    std::env::var_os("SWEEP_TEST_CPU_LOSS_SCALING").is_some_and(|v| v == "1")
}

/// The loss scaler's state, checkpointed with the optimizer's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    /// Steps since the last inf/NaN (torch's `_growth_tracker`).
    pub good_steps: u32,
}

/// Dynamic loss scaling for mixed precision, by torch.amp.GradScaler's rules
/// (init_scale 2^16, growth_factor 2, backoff_factor 0.5, growth_interval
/// 2000): the loss is multiplied by the scale before backward; the gradients
/// are divided by it again and checked for inf/NaN with one device-to-host
/// read per step; a step with inf/NaN gradients is skipped and halves the
/// scale, 2000 good steps in a row double it.
#[derive(Debug)]
pub struct GradScaler {
    pub enabled: bool,
    pub(super) scale: f64,
    pub(super) good_steps: u32,
}

impl GradScaler {
    const INIT_SCALE: f64 = 65536.0;
    const GROWTH_FACTOR: f64 = 2.0;
    const BACKOFF_FACTOR: f64 = 0.5;
    const GROWTH_INTERVAL: u32 = 2000;

    pub fn new(enabled: bool) -> Self {
        GradScaler {
            enabled,
            scale: Self::INIT_SCALE,
            good_steps: 0,
        }
    }

    pub fn state(&self) -> ScalerState {
        ScalerState {
            scale: self.scale,
            good_steps: self.good_steps,
        }
    }

    pub fn restore(&mut self, s: ScalerState) {
        self.scale = s.scale;
        self.good_steps = s.good_steps;
    }

    /// Zeroes the gradients and runs backward (on the scaled loss under
    /// amp, then unscales the gradients and checks them). Under amp returns
    /// the inf/NaN flag, still on the device; nothing here reads it.
    pub fn backward(&self, opt: &mut Optimizer, loss: &Tensor) -> Option<Tensor> {
        opt.zero_grad();
        if !self.enabled {
            loss.backward();
            return None;
        }
        (loss * self.scale).backward();
        Some(unscale_and_check(&opt.grads(), 1.0 / self.scale))
    }

    /// After [`GradScaler::backward`]: the optimizer steps unless the loss or
    /// the gradients were not finite, and under amp the scale follows (a
    /// skipped step halves it). Returns whether the step was taken.
    pub fn step(&mut self, opt: &mut Optimizer, finite: bool) -> bool {
        if finite {
            opt.step();
        }
        if self.enabled {
            self.update(!finite);
        }
        finite
    }

    /// torch's `_amp_update_scale_`.
    pub(super) fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= Self::BACKOFF_FACTOR;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                let grown = self.scale * Self::GROWTH_FACTOR;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.good_steps = 0;
            }
        }
    }
}

/// Multiplies every gradient by `inv_scale` in place and returns a
/// one-element flag on the gradients' device, non-zero when any of them was
/// not finite, with libtorch's fused kernel
/// (`_amp_foreach_non_finite_check_and_unscale_`, what torch.amp.GradScaler
/// calls): one kernel a gradient, no read by the host. As in torch, the check
/// is on the scaled values and `inv_scale` is the f32 of the f64 reciprocal
/// of the scale.
pub(super) fn unscale_and_check(grads: &[Tensor], inv_scale: f64) -> Tensor {
    let device = grads.first().map_or(tch::Device::Cpu, |g| g.device());
    tch::no_grad(|| {
        let mut found_inf = Tensor::zeros([1], (Kind::Float, device));
        let inv = Tensor::full([1], inv_scale as f32 as f64, (Kind::Float, device));
        for g in grads {
            let mut g = g.shallow_clone();
            g.internal_amp_non_finite_check_and_unscale(&mut found_inf, &inv);
        }
        found_inf
    })
}
