//! The worker: the only crate of the workspace that touches libtorch. It
//! trains one trial (or runs `predict`, or probes the machine) and speaks the
//! protocol of `sweep-protocol` on stdout; it never opens the database.
//!
//! - [`trainer`]: one attempt of one trial: data, model, epochs, checkpoints.
//! - [`models`]: the torchvision-identical backbones and the heads.
//! - [`weights`], [`pth`]: `.safetensors` and `torch.save` readers.
//! - [`predict`]: classify image files with a trial's checkpoint.
//! - [`probe`]: libtorch, CUDA and cuDNN facts for `sweep doctor` and the launcher.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod autocast;
pub mod control;
pub mod models;
pub mod optim;
pub mod predict;
pub mod probe;
pub mod pth;
pub mod trainer;
pub mod weights;

/// An `[N, H, W, 3]` u8 batch as a host tensor ready for `device`. For CUDA
/// the pixels are copied once, straight from `pixels` into page-locked
/// (pinned) memory, so that the copy to the device can be asynchronous; the
/// trainer calls this on its loader thread, so the training thread never
/// copies a pixel. On the CPU it is a plain copy.
pub fn host_pixels(pixels: &[u8], n: usize, s: u32, device: tch::Device) -> tch::Tensor {
    use tch::{Device, Kind, Tensor};
    let (n, s) = (n as i64, s as i64);
    assert_eq!(
        pixels.len() as i64,
        n * s * s * 3,
        "a batch of {n} images of {s} px"
    );
    if device.is_cuda() {
        // SAFETY: the view borrows `pixels` (contiguous, the asserted size)
        // only until `_pin_memory` has copied it; the view is dropped here.
        // `_pin_memory` with the device is what `pin_memory()` does without
        // the deprecated device argument (which makes libtorch warn on every call).
        let view = unsafe {
            Tensor::from_blob(
                pixels.as_ptr(),
                &[n, s, s, 3],
                &[s * s * 3, s * 3, 3, 1],
                Kind::Uint8,
                Device::Cpu,
            )
        };
        view.internal_pin_memory(device)
    } else {
        Tensor::from_slice(pixels).view([n, s, s, 3])
    }
}

/// A host batch of `n` images of `s` px that `fill` writes in place (every
/// byte; see `sweep_dataset::imagefolder::train_batch_into`). On the CPU it
/// writes straight into the tensor's memory: no zeroed buffer and no copy a
/// batch. For CUDA it writes into `staging` (kept by the caller from batch
/// to batch), copied once into pinned memory by [`host_pixels`].
pub fn host_batch<T, E>(
    n: usize,
    s: u32,
    device: tch::Device,
    staging: &mut Vec<u8>,
    fill: impl FnOnce(&mut [u8]) -> Result<T, E>,
) -> Result<(tch::Tensor, T), E> {
    use tch::{Device, Kind, Tensor};
    let len = n * (s as usize) * (s as usize) * 3;
    if device.is_cuda() {
        staging.resize(len, 0);
        let made = fill(&mut staging[..])?;
        return Ok((host_pixels(staging, n, s, device), made));
    }
    let t = Tensor::empty(
        [n as i64, s as i64, s as i64, 3],
        (Kind::Uint8, Device::Cpu),
    );
    // SAFETY: `t` is a fresh, contiguous u8 tensor of exactly `len` bytes that
    // nothing else refers to while the slice lives.
    let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, len) };
    let made = fill(out)?;
    Ok((t, made))
}

/// A host batch from [`host_pixels`] as the network's input on `device`: an
/// `[N, 3, H, W]` float tensor normalised with ImageNet mean/std on the
/// device. On CUDA nothing here waits for the device: the pixels come from
/// pinned memory (an asynchronous copy) and mean/std are made on the device
/// once a thread, since a copy from ordinary host memory would synchronise
/// the stream at every batch. Contiguous NCHW,
/// unless `channels_last` (the weights are channels-last too): the NHWC
/// batch viewed as NCHW already has channels-last strides, and fed to NCHW
/// weights it would make every convolution mix layouts.
pub fn device_input(host: &tch::Tensor, device: tch::Device, channels_last: bool) -> tch::Tensor {
    use tch::Kind;
    let t = if device.is_cuda() {
        host.to_device_(device, Kind::Uint8, true, false)
    } else {
        host.shallow_clone()
    };
    let t = t.permute([0, 3, 1, 2]);
    // Reordered while still u8: a quarter of the bytes of the float tensor.
    let t = if channels_last { t } else { t.contiguous() };
    let t = t.to_kind(Kind::Float) / 255.0;
    let (mean, std) = imagenet_stats(device);
    (t - mean) / std
}

/// ImageNet mean and std as `[1, 3, 1, 1]` tensors on `device`, made once a
/// thread and device.
fn imagenet_stats(device: tch::Device) -> (tch::Tensor, tch::Tensor) {
    use std::cell::RefCell;
    use tch::Tensor;
    thread_local! {
        static STATS: RefCell<Vec<(tch::Device, Tensor, Tensor)>> = const { RefCell::new(Vec::new()) };
    }
    STATS.with(|cell| {
        let mut stats = cell.borrow_mut();
        if let Some((_, m, s)) = stats.iter().find(|(d, _, _)| *d == device) {
            return (m.shallow_clone(), s.shallow_clone());
        }
        let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406])
            .view([1, 3, 1, 1])
            .to_device(device);
        let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225])
            .view([1, 3, 1, 1])
            .to_device(device);
        stats.push((device, mean.shallow_clone(), std.shallow_clone()));
        (mean, std)
    })
}

/// A batch's labels on `device`. For CUDA they go through pinned memory and
/// an asynchronous copy: from ordinary memory the copy would wait for every
/// kernel queued before it.
pub fn device_labels(labels: &[i64], device: tch::Device) -> tch::Tensor {
    let t = tch::Tensor::from_slice(labels);
    if device.is_cuda() {
        t.internal_pin_memory(device)
            .to_device_(device, tch::Kind::Int64, true, false)
    } else {
        t
    }
}

/// Normalises an `[N, H, W, 3]` u8 buffer into a contiguous `[N, 3, H, W]`
/// float tensor with ImageNet mean/std, on `device`.
pub fn to_input(pixels: &[u8], n: usize, s: u32, device: tch::Device) -> tch::Tensor {
    device_input(&host_pixels(pixels, n, s, device), device, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The host batch keeps the pixels as `[N, H, W, 3]`, and the input is
    /// `[N, 3, H, W]`, channel by channel normalised with ImageNet mean/std.
    #[test]
    fn input_is_channels_first_and_normalised() {
        let (n, s) = (2usize, 2u32);
        let pixels: Vec<u8> = (0..n * 4 * 3).map(|i| (i * 10) as u8).collect();
        let host = host_pixels(&pixels, n, s, Device::Cpu);
        assert_eq!(host.size(), [2, 2, 2, 3]);
        let x = device_input(&host, Device::Cpu, false);
        assert_eq!(x.size(), [2, 3, 2, 2]);
        let (mean, std) = ([0.485f64, 0.456, 0.406], [0.229f64, 0.224, 0.225]);
        for img in 0..2i64 {
            for c in 0..3i64 {
                for y in 0..2i64 {
                    for xx in 0..2i64 {
                        let raw = pixels[(((img * 2 + y) * 2 + xx) * 3 + c) as usize] as f64;
                        let want = (raw / 255.0 - mean[c as usize]) / std[c as usize];
                        let got = x.double_value(&[img, c, y, xx]);
                        assert!(
                            (got - want).abs() < 1e-5,
                            "image {img} channel {c} ({y},{xx}): {got} vs {want}"
                        );
                    }
                }
            }
        }
        assert_eq!(x.kind(), Kind::Float);
        assert!(to_input(&pixels, n, s, Device::Cpu).equal(&x));
    }

    /// Unless channels-last is asked for, the network's input is a contiguous
    /// NCHW tensor, as a PyTorch script's is: an NHWC buffer merely viewed as
    /// NCHW has channels-last strides, and with NCHW weights every
    /// convolution then mixes layouts (15–25 % slower training on the CPU).
    #[test]
    fn the_input_is_contiguous_nchw() {
        let (n, s) = (2usize, 4u32);
        let pixels: Vec<u8> = (0..n * 16 * 3).map(|i| (i * 3) as u8).collect();
        let host = host_pixels(&pixels, n, s, Device::Cpu);
        let x = device_input(&host, Device::Cpu, false);
        assert_eq!(x.size(), [2, 3, 4, 4]);
        assert!(x.is_contiguous(), "strides {:?}", x.stride());
        // Channels-last: the same values, NHWC in memory.
        let cl = device_input(&host, Device::Cpu, true);
        assert!(cl.equal(&x));
        assert_eq!(cl.stride(), [48, 1, 12, 3]);
    }

    /// `host_batch` on the CPU fills the tensor's own memory: the tensor
    /// [`host_pixels`] makes from the same bytes, whatever was there before.
    #[test]
    fn a_host_batch_filled_in_place_is_the_copied_one() {
        let (n, s) = (3usize, 5u32);
        let pixels: Vec<u8> = (0..n * 25 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut staging = Vec::new();
        for _ in 0..3 {
            let (t, tag) = host_batch(n, s, Device::Cpu, &mut staging, |out| {
                out.copy_from_slice(&pixels);
                Ok::<_, String>("filled")
            })
            .unwrap();
            assert_eq!(tag, "filled");
            assert!(t.equal(&host_pixels(&pixels, n, s, Device::Cpu)));
        }
        assert!(staging.is_empty(), "the CPU path needs no staging buffer");
        let e = host_batch(n, s, Device::Cpu, &mut staging, |_| {
            Err::<(), _>("no".to_string())
        })
        .unwrap_err();
        assert_eq!(e, "no");
    }

    #[test]
    #[should_panic(expected = "a batch of 2 images of 2 px")]
    fn a_short_buffer_is_refused_before_any_tensor_is_made() {
        let _ = host_pixels(&[0u8; 5], 2, 2, Device::Cpu);
    }
}
