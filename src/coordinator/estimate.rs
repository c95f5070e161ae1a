//! What a sweep will need before it starts: parameters of a backbone, the
//! memory of a CPU trial (for `cpu_workers = "auto"`) and the bytes its
//! checkpoints will take (the free-space check before the first trial).
use crate::spec::{Keep, KeepPrecision, SweepPlan};
use sweep_protocol::Head;

/// What the estimates here know of a backbone (torchvision's architectures).
struct BackboneFacts {
    /// Trainable parameters without the classifier.
    params: u64,
    /// The width of the features the classifier sees.
    features: u64,
    /// Bytes of activations a CPU training step keeps per 224-px image:
    /// 1.5 times what real workers used (`sweep run`, peak RSS, 2026-11-30:
    /// resnet18 47 MB an image, resnet50 118 MB; "Memory of a CPU trial" in
    /// docs/benchmarks/2026-11-30-sweep-vs-pytorch.md).
    activations_224: f64,
}

fn backbone(name: &str) -> Option<BackboneFacts> {
    let (params, features, activations_224) = match name {
        "resnet18" => (11_176_512, 512, 70e6),
        "resnet34" => (21_284_672, 512, 100e6),
        "resnet50" => (23_508_032, 2048, 180e6),
        "resnet101" => (42_500_160, 2048, 300e6),
        "vgg16_bn" => (14_723_136, 512 * 7 * 7, 200e6),
        "vgg19_bn" => (20_035_392, 512 * 7 * 7, 220e6),
        // Measured with PyTorch's models (same libtorch kernels), 1.5 times
        // the peak RSS per image: bench/backbone_memory.py, 2026-12-07.
        "convnext_tiny" => (27_820_128, 768, 195e6),
        "convnext_small" => (49_454_688, 768, 315e6),
        "efficientnet_b0" => (4_007_548, 1280, 215e6),
        "efficientnet_v2_s" => (20_177_488, 1280, 240e6),
        // Without its classifier.0 (960 → 1280), which the original head adds.
        "mobilenet_v3_large" => (2_971_952, 960, 90e6),
        "regnet_y_3_2gf" => (17_923_338, 1512, 245e6),
        "vit_b_16" => (85_798_656, 768, 220e6),
        "swin_t" => (27_519_354, 768, 230e6),
        _ => return None,
    };
    Some(BackboneFacts {
        params,
        features,
        activations_224,
    })
}

fn linear(i: u64, o: u64) -> u64 {
    i * o + o
}

/// Parameters of `backbone` with `head` over `classes` classes (exact for
/// torchvision's models; `None` for an unknown backbone).
pub fn parameters(backbone: &str, head: &Head, classes: u64) -> Option<u64> {
    let BackboneFacts {
        params: body,
        features,
        ..
    } = self::backbone(backbone)?;
    let head = match head {
        Head::Original if backbone.starts_with("vgg") => {
            linear(features, 4096) + linear(4096, 4096) + linear(4096, classes)
        }
        Head::Original if backbone == "mobilenet_v3_large" => {
            linear(features, 1280) + linear(1280, classes)
        }
        Head::Original => linear(features, classes),
        Head::Mlp { hidden, .. } => {
            let mut dims = vec![features];
            dims.extend(hidden.iter().map(|&h| h.max(0) as u64));
            dims.push(classes);
            dims.windows(2).map(|w| linear(w[0], w[1])).sum()
        }
    };
    Some(body + head)
}

/// A rough upper bound of one CPU training process's memory, for
/// `cpu_workers = "auto"`: libtorch, oneDNN and the allocator's caches
/// (800 MB), four copies of the parameters (weights, gradients, two
/// optimizer slots) and the activations kept for backward
/// ([`BackboneFacts::activations_224`], scaled by the image's area). An
/// unknown backbone counts as 300 MB an image and 150 M parameters.
pub fn cpu_trial_memory(config: &sweep_protocol::TrialConfig, classes: u64) -> u64 {
    let params = parameters(&config.backbone, &config.head, classes).unwrap_or(150_000_000);
    let area = (config.image_size as f64 / 224.0).powi(2);
    let per_image = backbone(&config.backbone).map_or(300e6, |b| b.activations_224);
    let activations = (config.batch_size as f64 * area * per_image) as u64;
    800_000_000 + 16 * params + activations
}

/// Checkpoint bytes of one trial: (while it trains, once it is done).
/// Training holds best + last weights and the training state (weights plus
/// one moment buffer for SGD with momentum, two for Adam/AdamW); a finished
/// trial holds what `keep` keeps: f32, but 2 bytes a parameter for the
/// weights files with `keep_precision = "half"` (the training state stays f32).
pub fn checkpoint_bytes(
    config: &sweep_protocol::TrialConfig,
    classes: u64,
    keep: Keep,
    precision: KeepPrecision,
) -> Option<(u64, u64)> {
    let weights = 4 * parameters(&config.backbone, &config.head, classes)?;
    let moments = match config.optimizer {
        sweep_protocol::Optimizer::Sgd if config.momentum == 0.0 => 0,
        sweep_protocol::Optimizer::Sgd => 1,
        _ => 2,
    };
    let training = weights * (3 + moments);
    // best.safetensors / last.safetensors once done.
    let kept = match precision {
        KeepPrecision::Full => weights,
        KeepPrecision::Half => weights / 2,
    };
    let done = match keep {
        Keep::Best => kept,
        Keep::BestLast => 2 * kept,
        Keep::All => 2 * kept + weights * (1 + moments),
    };
    Some((training, done))
}

/// Bytes the sweep's checkpoints will take at most: every trial still to run
/// finished and kept as `keep` says, plus `slots` trials mid-training.
pub fn sweep_estimate<'a>(
    plan: &SweepPlan,
    to_run: impl Iterator<Item = &'a sweep_protocol::TrialConfig>,
    classes: u64,
    slots: usize,
) -> u64 {
    let mut done = 0;
    let mut training = Vec::new();
    for c in to_run {
        if let Some((t, d)) = checkpoint_bytes(
            c,
            classes,
            plan.resources.keep,
            plan.resources.keep_precision,
        ) {
            done += d;
            training.push(t);
        }
    }
    training.sort_unstable_by(|a, b| b.cmp(a));
    done + training.iter().take(slots).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_torchvision() {
        // torchvision's 1000-class models, as `sum(p.numel() for p in m.parameters())` prints.
        for (b, n) in [
            ("resnet18", 11_689_512),
            ("resnet34", 21_797_672),
            ("resnet50", 25_557_032),
            ("resnet101", 44_549_160),
            ("vgg16_bn", 138_365_992),
            ("vgg19_bn", 143_678_248),
            ("convnext_tiny", 28_589_128),
            ("convnext_small", 50_223_688),
            ("efficientnet_b0", 5_288_548),
            ("efficientnet_v2_s", 21_458_488),
            ("mobilenet_v3_large", 5_483_032),
            ("regnet_y_3_2gf", 19_436_338),
            ("vit_b_16", 86_567_656),
            ("swin_t", 28_288_354),
        ] {
            assert_eq!(parameters(b, &Head::Original, 1000), Some(n), "{b}");
        }
        // The default head: 512 → 512 → 512 → 12.
        assert_eq!(
            parameters("resnet18", &Head::default(), 12),
            Some(11_176_512 + 512 * 512 + 512 + 512 * 512 + 512 + 512 * 12 + 12)
        );
        assert_eq!(parameters("alexnet", &Head::Original, 10), None);
    }

    /// The memory estimate grows with the image area and batch, and a
    /// 224-px ResNet-50 at batch 32 comes out at several GB, a 64-px
    /// ResNet-18 under 1.5 GB.
    #[test]
    fn cpu_trial_memory_scales_with_images_and_batch() {
        let cfg = |backbone: &str, image_size: u32, batch_size: u32| sweep_protocol::TrialConfig {
            backbone: backbone.into(),
            image_size,
            batch_size,
            ..Default::default()
        };
        let big = cpu_trial_memory(&cfg("resnet50", 224, 32), 12);
        let small = cpu_trial_memory(&cfg("resnet18", 64, 32), 12);
        assert!((5_000_000_000..8_000_000_000).contains(&big), "{big}");
        assert!((700_000_000..1_500_000_000).contains(&small), "{small}");
        assert!(cpu_trial_memory(&cfg("resnet18", 64, 64), 12) > small);
        assert!(cpu_trial_memory(&cfg("resnet34", 64, 32), 12) > small);
    }

    /// The estimate against the peak RSS of real CPU workers (`sweep run`
    /// under `/usr/bin/time -v`, one trial, 2 torch threads, `head =
    /// "original"`, 12 classes, 3 batches, validation and test included;
    /// 2026-11-30): above every one, by at least 10 %, and not more than
    /// twice it (an estimate far above the truth runs fewer trials than fit).
    #[test]
    fn cpu_trial_memory_covers_measured_workers() {
        let measured_kib = [
            ("resnet18", 64, 32, 714_104u64),
            ("resnet34", 64, 32, 922_112),
            ("resnet18", 224, 8, 974_804),
            ("resnet18", 224, 32, 2_094_652),
            ("resnet34", 224, 32, 2_678_324),
            ("resnet50", 224, 8, 2_153_588),
            ("resnet50", 224, 32, 4_994_616),
            ("resnet101", 224, 16, 4_738_228),
            ("vgg16_bn", 224, 8, 3_637_152),
            ("vgg19_bn", 224, 8, 4_116_896),
            ("vgg19_bn", 224, 16, 4_551_148),
        ];
        for (backbone, image_size, batch_size, kib) in measured_kib {
            let cfg = sweep_protocol::TrialConfig {
                backbone: backbone.into(),
                image_size,
                batch_size,
                head: Head::Original,
                ..Default::default()
            };
            let ratio = cpu_trial_memory(&cfg, 12) as f64 / (kib * 1024) as f64;
            assert!(
                (1.1..2.0).contains(&ratio),
                "{backbone} {image_size} px batch {batch_size}: estimate / measured = {ratio:.2}"
            );
        }
    }

    /// The newer backbones' estimates against the peak RSS of PyTorch
    /// training the same model at 224 px, 2 threads, SGD with momentum
    /// (bench/backbone_memory.py, 2026-12-07; a Python process, so a little
    /// above what the worker needs): the same bounds as above.
    #[test]
    fn cpu_trial_memory_covers_measured_pytorch() {
        let measured_gb = [
            ("convnext_tiny", 8, 1.96),
            ("convnext_tiny", 16, 2.98),
            ("convnext_small", 8, 2.72),
            ("convnext_small", 16, 4.39),
            ("efficientnet_b0", 8, 1.80),
            ("efficientnet_b0", 16, 2.94),
            ("efficientnet_v2_s", 8, 2.41),
            ("efficientnet_v2_s", 16, 3.67),
            ("mobilenet_v3_large", 8, 1.37),
            ("mobilenet_v3_large", 16, 1.83),
            ("regnet_y_3_2gf", 8, 2.26),
            ("regnet_y_3_2gf", 16, 3.55),
            ("vit_b_16", 8, 2.86),
            ("vit_b_16", 16, 4.04),
            ("swin_t", 8, 2.16),
            ("swin_t", 16, 3.39),
        ];
        for (backbone, batch_size, gb) in measured_gb {
            let cfg = sweep_protocol::TrialConfig {
                backbone: backbone.into(),
                image_size: 224,
                batch_size,
                head: Head::Original,
                ..Default::default()
            };
            let ratio = cpu_trial_memory(&cfg, 10) as f64 / (gb * 1e9);
            assert!(
                (1.1..2.0).contains(&ratio),
                "{backbone} batch {batch_size}: estimate / measured = {ratio:.2}"
            );
        }
    }

    #[test]
    fn estimate_counts_finished_trials_as_kept_and_running_ones_whole() {
        let c = sweep_protocol::TrialConfig {
            backbone: "resnet18".into(),
            head: Head::Original,
            optimizer: sweep_protocol::Optimizer::Adam,
            ..Default::default()
        };
        let w = 4 * parameters("resnet18", &Head::Original, 12).unwrap();
        let full = KeepPrecision::Full;
        assert_eq!(checkpoint_bytes(&c, 12, Keep::Best, full), Some((5 * w, w)));
        assert_eq!(
            checkpoint_bytes(&c, 12, Keep::All, full),
            Some((5 * w, 5 * w))
        );
        let sgd = sweep_protocol::TrialConfig {
            optimizer: sweep_protocol::Optimizer::Sgd,
            momentum: 0.0,
            ..c.clone()
        };
        assert_eq!(
            checkpoint_bytes(&sgd, 12, Keep::BestLast, full),
            Some((3 * w, 2 * w))
        );
        // Half precision halves the kept weights files, never the training state.
        let half = KeepPrecision::Half;
        assert_eq!(
            checkpoint_bytes(&c, 12, Keep::Best, half),
            Some((5 * w, w / 2))
        );
        assert_eq!(
            checkpoint_bytes(&sgd, 12, Keep::BestLast, half),
            Some((3 * w, w))
        );
        assert_eq!(
            checkpoint_bytes(&c, 12, Keep::All, half),
            Some((5 * w, 4 * w))
        );
    }
}
