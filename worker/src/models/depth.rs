//! Layer-wise learning-rate decay (`layer_decay`): each parameter's depth,
//! counted from the input, and its learning-rate multiplier
//! `decay^(top − depth)`, the fine-tuning recipe of BEiT and ConvNeXt
//! (`get_num_layer_for_vit`, `get_num_layer_for_convnext` in their
//! `optim_factory.py`; timm's `param_groups_layer_decay` for the others): the
//! head learns at lr, the first layers at the smallest rate.
//!
//! Depth by family (torchvision names; the head — everything under
//! `head_prefix` — is always at the top):
//!
//! - ViT, as BEiT: `class_token`, `conv_proj`, `encoder.pos_embedding` 0,
//!   `encoder.layers.encoder_layer_i` i + 1, `encoder.ln` and the head 13.
//! - ConvNeXt, as ConvNeXt's own fine-tuning code (12 layers, stage-wise):
//!   stem 0, stage 1 (`features.1`) 1, the second downsample and stage 2
//!   (`features.2`, `.3`) 2, the third downsample 3, stage 3's blocks
//!   (`features.5.j`) 3 + ⌊j/3⌋, the last downsample and stage 4
//!   (`features.6`, `.7`) 12, `classifier.0` (the LayerNorm) and the head 13.
//! - Swin (`swin_t`), as SimMIM's Swin fine-tuning code (`get_swin_layer`,
//!   14 layers): the patch embedding (`features.0`) 0, block j of stage s
//!   (`features.{2s+1}.j`) at (blocks before stage s) + j + 1, the
//!   PatchMerging after stage s (`features.{2s+2}`) with that stage's last
//!   block, the final `norm` and the head 13.
//! - The others, block by block as timm: the stem 0 (`conv1`/`bn1`, VGG's
//!   first convolution, `features.0`, `stem`), then every block in order
//!   (a residual block, a VGG convolution with its BatchNorm, an MBConv or
//!   inverted residual, EfficientNet's and MobileNetV3's last 1×1
//!   convolution, VGG's fc6 and fc7, MobileNetV3's `classifier.0`), the head
//!   last.
//!
//! Must never depend on anything but the names: the spec documents it and the
//! parity test checks it against an independent Python implementation.
use super::Family;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Where one parameter sits before the blocks are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Unit {
    Stem,
    /// A block, ordered by (stage, index); numbered 1.. in this order.
    Block(u64, u64),
    /// A depth given directly (ConvNeXt's fixed table).
    Fixed(usize),
    Top,
}

/// ConvNeXt's fine-tuning code numbers 12 layers plus the head.
const CONVNEXT_TOP: usize = 13;

/// SimMIM numbers Swin's blocks 1..=12 and puts the rest at 13.
fn swin_top() -> usize {
    super::swin::DEPTHS.iter().sum::<usize>() + 1
}

/// Every parameter's depth and the head's (`top`).
#[derive(Debug, Clone)]
pub struct Depths {
    ids: HashMap<String, usize>,
    pub top: usize,
}

impl Depths {
    /// The depths of `names` (a model's variables) for `family`, whose head
    /// is every name under `head_prefix`.
    pub fn new(family: Family, head_prefix: &str, names: &[String]) -> Depths {
        let set: HashSet<&str> = names.iter().map(String::as_str).collect();
        let units: Vec<(&String, Unit)> = names
            .iter()
            .map(|n| (n, unit(family, head_prefix, n, &set)))
            .collect();
        let blocks: BTreeSet<Unit> = units
            .iter()
            .map(|(_, u)| *u)
            .filter(|u| matches!(u, Unit::Block(..)))
            .collect();
        let rank: HashMap<Unit, usize> = blocks
            .iter()
            .enumerate()
            .map(|(i, u)| (*u, i + 1))
            .collect();
        let top = match family {
            Family::ConvNeXt => CONVNEXT_TOP,
            Family::Swin => swin_top(),
            _ => blocks.len() + 1,
        };
        let ids = units
            .into_iter()
            .map(|(n, u)| {
                let id = match u {
                    Unit::Stem => 0,
                    Unit::Block(..) => rank[&u],
                    Unit::Fixed(d) => d,
                    Unit::Top => top,
                };
                (n.clone(), id)
            })
            .collect();
        Depths { ids, top }
    }

    /// `name`'s depth (None: not one of the names given).
    pub fn depth(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }

    /// `name`'s lr multiplier: `decay^(top − depth)` (1 for the head, and
    /// for every parameter when `decay` is 1). `powf`, the C library's
    /// `pow`, is what Python's `decay ** n` computes, to the bit.
    pub fn scale(&self, name: &str, decay: f64) -> f64 {
        let d = self.depth(name).unwrap_or(self.top);
        decay.powf((self.top - d.min(self.top)) as f64)
    }
}

fn num(s: Option<&&str>) -> Option<u64> {
    s.and_then(|s| s.parse().ok())
}

fn unit(family: Family, head_prefix: &str, name: &str, names: &HashSet<&str>) -> Unit {
    let in_head = name == head_prefix
        || name
            .strip_prefix(head_prefix)
            .is_some_and(|r| r.starts_with('.'));
    if in_head {
        return Unit::Top;
    }
    let p: Vec<&str> = name.split('.').collect();
    let first = p[0];
    match family {
        Family::ResNet => match first {
            "conv1" | "bn1" => Unit::Stem,
            _ => match (
                first.strip_prefix("layer").and_then(|s| s.parse().ok()),
                num(p.get(1)),
            ) {
                (Some(s), Some(b)) => Unit::Block(s, b),
                _ => Unit::Top,
            },
        },
        Family::Vgg => match (first, num(p.get(1))) {
            ("features", Some(k)) => {
                // A BatchNorm (it has running statistics) goes with the
                // convolution before it.
                let is_bn = names.contains(format!("features.{k}.running_mean").as_str());
                let conv = if is_bn { k.saturating_sub(1) } else { k };
                if conv == 0 {
                    Unit::Stem
                } else {
                    Unit::Block(0, conv)
                }
            }
            ("classifier", Some(k)) => Unit::Block(1, k),
            _ => Unit::Top,
        },
        Family::ConvNeXt => match (first, num(p.get(1))) {
            ("features", Some(stage)) => Unit::Fixed(match stage {
                0 => 0,
                1 => 1,
                2 | 3 => 2,
                4 => 3,
                5 => 3 + num(p.get(2)).unwrap_or(0) as usize / 3,
                _ => 12,
            }),
            _ => Unit::Top,
        },
        Family::EfficientNet => match (first, num(p.get(1))) {
            ("features", Some(0)) => Unit::Stem,
            ("features", Some(s)) => match (num(p.get(2)), p.get(3)) {
                (Some(b), Some(&"block")) => Unit::Block(s, b),
                // The last 1×1 convolution, after every block.
                _ => Unit::Block(u64::MAX, 0),
            },
            _ => Unit::Top,
        },
        Family::MobileNetV3 => match (first, num(p.get(1))) {
            ("features", Some(0)) => Unit::Stem,
            ("features", Some(i)) => Unit::Block(i, 0),
            ("classifier", Some(0)) => Unit::Block(u64::MAX, 0),
            _ => Unit::Top,
        },
        Family::RegNet => match first {
            "stem" => Unit::Stem,
            "trunk_output" => {
                let stage = p
                    .get(1)
                    .and_then(|s| s.strip_prefix("block"))
                    .and_then(|s| s.parse().ok());
                let block = p
                    .get(2)
                    .and_then(|s| s.rsplit_once('-'))
                    .and_then(|(_, b)| b.parse().ok());
                match (stage, block) {
                    (Some(s), Some(b)) => Unit::Block(s, b),
                    _ => Unit::Top,
                }
            }
            _ => Unit::Top,
        },
        Family::Vit => match first {
            "class_token" | "conv_proj" => Unit::Stem,
            "encoder" if name == super::vit::POS_EMBEDDING => Unit::Stem,
            "encoder" if p.get(1) == Some(&"layers") => match p
                .get(2)
                .and_then(|l| l.strip_prefix("encoder_layer_"))
                .and_then(|i| i.parse().ok())
            {
                Some(i) => Unit::Block(0, i),
                None => Unit::Top,
            },
            _ => Unit::Top,
        },
        Family::Swin => match (first, num(p.get(1))) {
            ("features", Some(0)) => Unit::Stem,
            ("features", Some(k)) => {
                let stage = ((k - 1) / 2) as usize;
                let before: usize = super::swin::DEPTHS[..stage.min(4)].iter().sum();
                if k % 2 == 1 {
                    Unit::Fixed(before + num(p.get(2)).unwrap_or(0) as usize + 1)
                } else {
                    // The merging after stage `stage`: with its last block.
                    Unit::Fixed(before + super::swin::DEPTHS[stage.min(3)])
                }
            }
            _ => Unit::Top,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::build_sized;
    use sweep_protocol::Head;
    use tch::{Device, nn};

    fn depths(name: &str, head: &Head) -> (Depths, Vec<String>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build_sized(&vs.root(), name, 7, head, 32).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        (net.depths(&names), names)
    }

    fn check(d: &Depths, want: &[(&str, usize)]) {
        for (n, id) in want {
            assert_eq!(d.depth(n), Some(*id), "{n}");
        }
    }

    /// ViT as BEiT numbers it: 14 layers, the embeddings at 0, block i at
    /// i + 1, the final LayerNorm with the head at 13.
    #[test]
    fn vit_depths_are_beits() {
        let (d, names) = depths("vit_b_16", &Head::Original);
        assert_eq!(d.top, 13);
        check(
            &d,
            &[
                ("class_token", 0),
                ("conv_proj.weight", 0),
                ("encoder.pos_embedding", 0),
                ("encoder.layers.encoder_layer_0.ln_1.weight", 1),
                ("encoder.layers.encoder_layer_11.mlp.3.bias", 12),
                ("encoder.ln.weight", 13),
                ("heads.head.weight", 13),
            ],
        );
        assert!(names.iter().all(|n| d.depth(n).is_some()));
        let s = d.scale("encoder.layers.encoder_layer_0.ln_1.weight", 0.65);
        assert_eq!(s, 0.65f64.powf(12.0));
        assert_eq!(d.scale("heads.head.bias", 0.65), 1.0);
        assert_eq!(d.scale("class_token", 1.0), 1.0);
    }

    /// ConvNeXt as its fine-tuning code numbers it (12 layers, stage 3 in
    /// groups of three blocks), whatever the head.
    #[test]
    fn convnext_depths_are_convnexts() {
        for (head, class_layer) in [
            (Head::Original, "classifier.2.weight"),
            (Head::default(), "classifier.2.4.weight"),
        ] {
            let (d, _) = depths("convnext_tiny", &head);
            check(&d, &[(class_layer, 13)]);
            assert_eq!(d.top, 13);
            check(
                &d,
                &[
                    ("features.0.0.weight", 0),
                    ("features.1.2.block.0.weight", 1),
                    ("features.2.1.weight", 2),
                    ("features.3.0.layer_scale", 2),
                    ("features.4.0.weight", 3),
                    ("features.5.0.block.3.weight", 3),
                    ("features.5.3.block.3.weight", 4),
                    ("features.5.8.block.5.bias", 5),
                    ("features.6.1.weight", 12),
                    ("features.7.2.block.0.weight", 12),
                    ("classifier.0.weight", 13),
                ],
            );
        }
        let (d, _) = depths("convnext_small", &Head::Original);
        check(&d, &[("features.5.26.block.0.weight", 11)]);
    }

    /// Swin-T as SimMIM numbers it: 14 layers, the patch embedding 0, the
    /// 12 blocks 1..=12, each PatchMerging with the block before it, the
    /// final norm with the head at 13.
    #[test]
    fn swin_depths_are_simmims() {
        for (head, class_layer) in [
            (Head::Original, "head.weight"),
            (Head::default(), "head.4.weight"),
        ] {
            let (d, names) = depths("swin_t", &head);
            assert_eq!(d.top, 13);
            assert!(names.iter().all(|n| d.depth(n).is_some()));
            check(
                &d,
                &[
                    ("features.0.0.weight", 0),
                    ("features.0.2.bias", 0),
                    ("features.1.0.norm1.weight", 1),
                    ("features.1.1.attn.relative_position_bias_table", 2),
                    ("features.2.reduction.weight", 2),
                    ("features.2.norm.bias", 2),
                    ("features.3.0.attn.qkv.weight", 3),
                    ("features.3.1.mlp.3.bias", 4),
                    ("features.4.reduction.weight", 4),
                    ("features.5.0.norm2.weight", 5),
                    ("features.5.5.attn.proj.weight", 10),
                    ("features.6.norm.weight", 10),
                    ("features.7.0.mlp.0.weight", 11),
                    ("features.7.1.attn.qkv.bias", 12),
                    ("norm.weight", 13),
                    (class_layer, 13),
                ],
            );
            assert_eq!(d.scale("features.0.0.weight", 0.9), 0.9f64.powf(13.0));
        }
    }

    /// The CNNs block by block: stem 0, every block in order, head last.
    #[test]
    fn cnn_depths_go_block_by_block() {
        let (d, _) = depths("resnet18", &Head::Original);
        assert_eq!(d.top, 9);
        check(
            &d,
            &[
                ("conv1.weight", 0),
                ("bn1.running_mean", 0),
                ("layer1.0.conv1.weight", 1),
                ("layer1.1.bn2.bias", 2),
                ("layer2.0.downsample.0.weight", 3),
                ("layer4.1.conv2.weight", 8),
                ("fc.weight", 9),
            ],
        );
        let (d, _) = depths("vgg16_bn", &Head::Original);
        // 13 convolutions (the first is the stem), fc6, fc7, the head.
        assert_eq!(d.top, 15);
        check(
            &d,
            &[
                ("features.0.weight", 0),
                ("features.1.running_var", 0),
                ("features.3.weight", 1),
                ("features.4.bias", 1),
                ("features.40.weight", 12),
                ("features.41.weight", 12),
                ("classifier.0.weight", 13),
                ("classifier.3.bias", 14),
                ("classifier.6.weight", 15),
            ],
        );
        let (d, _) = depths("efficientnet_b0", &Head::Original);
        // 16 MBConv blocks and the last convolution.
        assert_eq!(d.top, 18);
        check(
            &d,
            &[
                ("features.0.0.weight", 0),
                ("features.1.0.block.0.0.weight", 1),
                ("features.2.1.block.3.1.running_mean", 3),
                ("features.7.0.block.3.0.weight", 16),
                ("features.8.0.weight", 17),
                ("features.8.1.bias", 17),
                ("classifier.1.weight", 18),
            ],
        );
        let (d, _) = depths("mobilenet_v3_large", &Head::Original);
        assert_eq!(d.top, 18);
        check(
            &d,
            &[
                ("features.0.0.weight", 0),
                ("features.1.block.0.0.weight", 1),
                ("features.15.block.3.1.weight", 15),
                ("features.16.0.weight", 16),
                ("classifier.0.weight", 17),
                ("classifier.3.weight", 18),
            ],
        );
        // The MLP head replaces the whole classifier: all of it at the top.
        let (d, _) = depths("mobilenet_v3_large", &Head::default());
        assert_eq!(d.top, 17);
        check(
            &d,
            &[("classifier.0.weight", 17), ("classifier.4.bias", 17)],
        );
        let (d, _) = depths("regnet_y_3_2gf", &Head::Original);
        // 2 + 5 + 13 + 1 blocks.
        assert_eq!(d.top, 22);
        check(
            &d,
            &[
                ("stem.0.weight", 0),
                ("trunk_output.block1.block1-0.proj.0.weight", 1),
                ("trunk_output.block1.block1-1.f.a.0.weight", 2),
                ("trunk_output.block3.block3-12.f.se.fc1.weight", 20),
                ("trunk_output.block4.block4-0.f.c.1.running_var", 21),
                ("fc.bias", 22),
            ],
        );
    }
}
