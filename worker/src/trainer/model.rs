//! The trial's network: built from the configuration, pretrained weights
//! loaded, backbone frozen, channels-last as asked. A libtorch refusal here
//! is the configuration's fault (`config`).
use super::failure::{classify_panic, panic_message, torch_message};
use super::*;

/// The network and its variables: backbone, head, pretrained weights, frozen
/// backbone. All of it follows from the configuration, so what libtorch
/// rejects while building (a negative layer size, …) is a config error.
pub(super) fn build_model(
    cfg: &TrialConfig,
    device: Device,
    classes: i64,
) -> Result<(nn::VarStore, Net), Failure> {
    let mut vs = nn::VarStore::new(device);
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        models::build_sized(
            &vs.root(),
            &cfg.backbone,
            classes,
            &cfg.head,
            i64::from(cfg.image_size),
        )
    }));
    let mut net = match built {
        Ok(net) => net.map_err(|m| Failure::new(ErrorClass::Config, m.to_string()))?,
        Err(p) => {
            let raw = panic_message(&*p);
            let class = if classify_panic(&raw) == ErrorClass::Oom {
                ErrorClass::Oom
            } else {
                ErrorClass::Config
            };
            return Err(Failure::new(
                class,
                format!(
                    "cannot build {} with head {:?}: {}",
                    cfg.backbone,
                    cfg.head,
                    torch_message(&raw)
                ),
            ));
        }
    };
    if let Some(p) = &cfg.pretrained {
        let r = weights::load_into(&mut vs, p, net.head_prefix)
            .map_err(|m| Failure::new(ErrorClass::Config, m.to_string()))?;
        sweep_protocol::log!(
            "loaded {} tensors from {} ({} head tensors re-initialised)",
            r.loaded,
            p.display(),
            r.head_skipped
        );
    }
    if cfg.freeze_backbone {
        net.freeze_backbone = true;
        let prefix = format!("{}.", net.head_prefix);
        for (k, t) in vs.variables() {
            if !(k.starts_with(&prefix) || k == net.head_prefix) {
                let _ = t.set_requires_grad(false);
            }
        }
    }
    Ok((vs, net))
}

/// Gives every 4-d variable (convolution weights) channels-last strides, as
/// `model.to(memory_format=torch.channels_last)` does; the inputs already
/// arrive channels-last (an NHWC buffer viewed as NCHW), so convolutions run
/// in NHWC (tensor cores under amp) without layout conversions.
pub(super) fn to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = v.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                v.set_data(&cl);
            }
        }
    })
}

/// The optimizer over the trainable variables, each parameter at the base lr
/// × its multiplier: `backbone_lr_scale` for the backbone's, × `layer_decay ^
/// (top − depth)` with layer-wise decay (see [`crate::models::depth`]); the
/// head's is 1. What `train_epoch` then sets with `set_base_lr`.
pub fn optimizer(cfg: &TrialConfig, vs: &nn::VarStore, net: &Net) -> Result<Optimizer, Failure> {
    let names: Vec<String> = vs.variables().into_keys().collect();
    let depths = net.depths(&names);
    let decay = cfg.layer_decay;
    let bls = cfg.backbone_lr_scale;
    let scale = |name: &str, group: usize| {
        let backbone = if group == models::BACKBONE_GROUP {
            bls
        } else {
            1.0
        };
        backbone * depths.scale(name, decay)
    };
    let opt = Optimizer::for_var_store_scaled(vs, optim::Hyper::from_config(cfg), cfg.lr, scale)
        .map_err(|m| Failure::new(ErrorClass::Config, m.to_string()))?;
    if decay != 1.0 {
        sweep_protocol::log!(
            "layer_decay {decay}: {} depths, lr × {decay}^{} at the input (× {:.3e}) to × 1 at the head ({})",
            depths.top + 1,
            depths.top,
            decay.powf(depths.top as f64),
            net.head_prefix
        );
    }
    Ok(opt)
}
