//! The worker: the only crate of the workspace that touches libtorch. It
//! trains one trial (or runs `predict`, or probes the machine) and speaks the
//! protocol of `sweep-protocol` on stdout; it never opens the database.
//!
//! - [`trainer`]: one attempt of one trial: data, model, epochs, checkpoints.
//! - [`models`]: the torchvision-identical backbones and the heads.
//! - [`weights`], [`pth`]: `.safetensors` and `torch.save` readers.
//! - [`predict`]: classify image files with a trial's checkpoint.
//! - [`probe`]: libtorch, CUDA and cuDNN facts for `sweep doctor` and the launcher.
pub mod control;
pub mod models;
pub mod optim;
pub mod predict;
pub mod probe;
pub mod pth;
pub mod trainer;
pub mod weights;

/// Normalises an `[N, H, W, 3]` u8 buffer into an `[N, 3, H, W]` float tensor
/// with ImageNet mean/std, on `device`.
pub fn to_input(pixels: &[u8], n: usize, s: u32, device: tch::Device) -> tch::Tensor {
    use tch::{Kind, Tensor};
    let t = Tensor::from_slice(pixels).view([n as i64, s as i64, s as i64, 3]);
    // `_pin_memory` with the device is what `pin_memory()` does without the
    // deprecated device argument (which makes libtorch warn on every call).
    let t = if device.is_cuda() { t.internal_pin_memory(device).to_device_(device, Kind::Uint8, true, false) } else { t };
    let t = t.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406]).view([1, 3, 1, 1]).to_device(device);
    let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225]).view([1, 3, 1, 1]).to_device(device);
    (t - mean) / std
}
