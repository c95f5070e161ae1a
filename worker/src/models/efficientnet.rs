//! torchvision's EfficientNet (`efficientnet_b0`, `efficientnet_v2_s`):
//! `features.0` a 3×3/2 Conv2dNormActivation (SiLU), `features.1..=k` the
//! stages of MBConv (and, V2, FusedMBConv) blocks, `features.k+1` the 1×1
//! head conv (SiLU), then average pool; `classifier.0` dropout 0.2 and
//! `classifier.1` the class layer.
//!
//! MBConv: 1×1 expand (if the ratio is not 1) → k×k depthwise → SE (squeeze
//! to max(1, in/4), SiLU, sigmoid) → 1×1 project (no activation); FusedMBConv:
//! k×k expand → 1×1 project (or one k×k conv at ratio 1). A residual only at
//! stride 1 with equal widths, through stochastic depth ("row") at rate
//! 0.2 · block index / block count. BatchNorm: PyTorch's defaults for B0,
//! eps 1e-3 for V2 (momentum 0.1 both), as torchvision sets them.
use super::layers::{Act, ConvNormAct, ConvSpec, Norm, SqueezeExcite, TORCH_BN, stochastic_depth};
use tch::Tensor;
use tch::nn;

#[derive(Debug, Clone, Copy)]
struct Stage {
    fused: bool,
    expand: i64,
    k: i64,
    stride: i64,
    cin: i64,
    cout: i64,
    n: usize,
}

const fn mb(expand: i64, k: i64, stride: i64, cin: i64, cout: i64, n: usize) -> Stage {
    Stage {
        fused: false,
        expand,
        k,
        stride,
        cin,
        cout,
        n,
    }
}

const fn fused(expand: i64, k: i64, stride: i64, cin: i64, cout: i64, n: usize) -> Stage {
    Stage {
        fused: true,
        ..mb(expand, k, stride, cin, cout, n)
    }
}

const B0: [Stage; 7] = [
    mb(1, 3, 1, 32, 16, 1),
    mb(6, 3, 2, 16, 24, 2),
    mb(6, 5, 2, 24, 40, 2),
    mb(6, 3, 2, 40, 80, 3),
    mb(6, 5, 1, 80, 112, 3),
    mb(6, 5, 2, 112, 192, 4),
    mb(6, 3, 1, 192, 320, 1),
];

const V2_S: [Stage; 6] = [
    fused(1, 3, 1, 24, 24, 2),
    fused(4, 3, 2, 24, 48, 4),
    fused(4, 3, 2, 48, 64, 4),
    mb(4, 3, 2, 64, 128, 6),
    mb(6, 3, 1, 128, 160, 9),
    mb(6, 3, 2, 160, 256, 15),
];

pub(super) const STOCHASTIC_DEPTH: f64 = 0.2;
pub(super) const DROPOUT: f64 = 0.2;

/// torchvision's `_make_divisible(v, 8)`.
pub(super) fn make_divisible(v: f64, divisor: i64) -> i64 {
    let mut new_v = divisor.max(((v + divisor as f64 / 2.0) as i64) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

#[derive(Debug)]
struct MbBlock {
    layers: Vec<ConvNormAct>,
    /// Index in `layers` before which the SE runs (MBConv only).
    se: Option<(usize, SqueezeExcite)>,
    residual: bool,
    sd: f64,
}

impl MbBlock {
    fn new(p: &nn::Path, s: &Stage, cin: i64, stride: i64, sd: f64, norm: Norm) -> MbBlock {
        let b = p / "block";
        let exp = make_divisible((cin * s.expand) as f64, 8);
        let mut layers = Vec::new();
        let mut se = None;
        if s.fused {
            if exp != cin {
                let spec = ConvSpec::k(s.k).stride(stride);
                layers.push(ConvNormAct::new(&(&b / 0), cin, exp, spec, norm, Act::Silu));
                let spec = ConvSpec::k(1);
                layers.push(ConvNormAct::new(
                    &(&b / 1),
                    exp,
                    s.cout,
                    spec,
                    norm,
                    Act::None,
                ));
            } else {
                let spec = ConvSpec::k(s.k).stride(stride);
                layers.push(ConvNormAct::new(
                    &(&b / 0),
                    cin,
                    s.cout,
                    spec,
                    norm,
                    Act::Silu,
                ));
            }
        } else {
            let mut i = 0;
            if exp != cin {
                layers.push(ConvNormAct::new(
                    &(&b / i),
                    cin,
                    exp,
                    ConvSpec::k(1),
                    norm,
                    Act::Silu,
                ));
                i += 1;
            }
            let dw = ConvSpec::k(s.k).stride(stride).groups(exp);
            layers.push(ConvNormAct::new(&(&b / i), exp, exp, dw, norm, Act::Silu));
            i += 1;
            let squeeze = (cin / 4).max(1);
            se = Some((
                layers.len(),
                SqueezeExcite::new(&(&b / i), exp, squeeze, Act::Silu, false, true),
            ));
            i += 1;
            layers.push(ConvNormAct::new(
                &(&b / i),
                exp,
                s.cout,
                ConvSpec::k(1),
                norm,
                Act::None,
            ));
        }
        MbBlock {
            layers,
            se,
            residual: stride == 1 && cin == s.cout,
            sd,
        }
    }

    fn forward(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            if let Some((at, se)) = &self.se
                && *at == i
            {
                ys = se.forward(&ys);
            }
            ys = l.forward(&ys, train);
        }
        if self.residual {
            stochastic_depth(ys, self.sd, train && drop) + xs
        } else {
            ys
        }
    }
}

#[derive(Debug)]
pub(super) struct EfficientNet {
    stem: ConvNormAct,
    stages: Vec<Vec<MbBlock>>,
    last: ConvNormAct,
}

impl EfficientNet {
    /// `efficientnet_b0` or `efficientnet_v2_s` under `p` (`features`), and its feature width.
    pub(super) fn new(p: &nn::Path, name: &str) -> Option<(EfficientNet, i64)> {
        let (setting, last_channel, norm): (&[Stage], i64, Norm) = match name {
            "efficientnet_b0" => (&B0, 4 * 320, TORCH_BN),
            "efficientnet_v2_s" => (
                &V2_S,
                1280,
                Norm {
                    eps: 1e-3,
                    momentum: 0.1,
                },
            ),
            _ => return None,
        };
        let f = p / "features";
        let stem_spec = ConvSpec::k(3).stride(2);
        let stem = ConvNormAct::new(&(&f / 0), 3, setting[0].cin, stem_spec, norm, Act::Silu);
        let total: usize = setting.iter().map(|s| s.n).sum();
        let mut id = 0usize;
        let mut stages = Vec::new();
        for (si, s) in setting.iter().enumerate() {
            let sp = &f / (si + 1);
            let blocks = (0..s.n)
                .map(|i| {
                    let (cin, stride) = if i == 0 {
                        (s.cin, s.stride)
                    } else {
                        (s.cout, 1)
                    };
                    let sd = STOCHASTIC_DEPTH * id as f64 / total as f64;
                    id += 1;
                    MbBlock::new(&(&sp / i), s, cin, stride, sd, norm)
                })
                .collect();
            stages.push(blocks);
        }
        let cin = setting[setting.len() - 1].cout;
        let last = ConvNormAct::new(
            &(&f / (setting.len() + 1)),
            cin,
            last_channel,
            ConvSpec::k(1),
            norm,
            Act::Silu,
        );
        Some((EfficientNet { stem, stages, last }, last_channel))
    }

    /// Each block's stochastic-depth rate, in order.
    #[cfg(test)]
    pub(super) fn block_rates(&self) -> Vec<f64> {
        self.stages.iter().flatten().map(|b| b.sd).collect()
    }

    pub(super) fn features(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let mut ys = self.stem.forward(xs, train);
        for stage in &self.stages {
            for b in stage {
                ys = b.forward(&ys, train, drop);
            }
        }
        super::layers::pool_flatten(self.last.forward(&ys, train))
    }
}

/// torchvision's EfficientNet Linear init: U(±1/√out_features), bias 0.
pub(super) fn class_layer(p: nn::Path, cin: i64, classes: i64) -> nn::Linear {
    let r = 1.0 / (classes as f64).sqrt();
    super::layers::linear(
        p,
        cin,
        classes,
        nn::Init::Uniform { lo: -r, up: r },
        nn::Init::Const(0.),
    )
}
