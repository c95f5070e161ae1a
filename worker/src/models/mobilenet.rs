//! torchvision's MobileNetV3-Large (`mobilenet_v3_large`): `features.0` a
//! 3×3/2 Conv2dNormActivation (Hardswish), `features.1..=15` inverted
//! residual blocks, `features.16` the 1×1 conv to 960 (Hardswish), average
//! pool; `classifier.0` Linear(960, 1280), Hardswish, dropout 0.2, and
//! `classifier.3` the class layer.
//!
//! An inverted residual: 1×1 expand (if wider) → k×k depthwise → SE
//! (squeeze to make_divisible(exp/4, 8), ReLU, hardsigmoid) where the table
//! says → 1×1 project; ReLU or Hardswish per block; a residual at stride 1
//! with equal widths (no stochastic depth). BatchNorm eps 1e-3, momentum
//! 0.01, as torchvision sets them.
use super::efficientnet::make_divisible;
use super::layers::{Act, ConvNormAct, ConvSpec, Norm, SqueezeExcite, normal};
use tch::Tensor;
use tch::nn;

const NORM: Norm = Norm {
    eps: 1e-3,
    momentum: 0.01,
};

pub(super) const LAST_CHANNEL: i64 = 1280;
pub(super) const DROPOUT: f64 = 0.2;

/// (in, kernel, expanded, out, SE, Hardswish, stride): torchvision's table.
#[rustfmt::skip]
const LARGE: [(i64, i64, i64, i64, bool, bool, i64); 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];

#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvNormAct>,
    dw: ConvNormAct,
    se: Option<SqueezeExcite>,
    project: ConvNormAct,
    residual: bool,
}

impl InvertedResidual {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match &self.expand {
            Some(e) => e.forward(xs, train),
            None => xs.shallow_clone(),
        };
        ys = self.dw.forward(&ys, train);
        if let Some(se) = &self.se {
            ys = se.forward(&ys);
        }
        ys = self.project.forward(&ys, train);
        if self.residual { ys + xs } else { ys }
    }
}

#[derive(Debug)]
pub(super) struct MobileNetV3 {
    stem: ConvNormAct,
    blocks: Vec<InvertedResidual>,
    last: ConvNormAct,
}

impl MobileNetV3 {
    /// The large variant under `p` (`features`) and its pooled width (960).
    pub(super) fn large(p: &nn::Path) -> (MobileNetV3, i64) {
        let f = p / "features";
        let stem = ConvNormAct::new(
            &(&f / 0),
            3,
            16,
            ConvSpec::k(3).stride(2),
            NORM,
            Act::Hardswish,
        );
        let blocks = LARGE
            .iter()
            .enumerate()
            .map(|(i, &(cin, k, exp, cout, use_se, hs, stride))| {
                let b = &f / (i + 1) / "block";
                let act = if hs { Act::Hardswish } else { Act::Relu };
                let mut j = 0;
                let expand = (exp != cin).then(|| {
                    j += 1;
                    ConvNormAct::new(&(&b / 0), cin, exp, ConvSpec::k(1), NORM, act)
                });
                let dw_spec = ConvSpec::k(k).stride(stride).groups(exp);
                let dw = ConvNormAct::new(&(&b / j), exp, exp, dw_spec, NORM, act);
                j += 1;
                let se = use_se.then(|| {
                    j += 1;
                    let squeeze = make_divisible((exp / 4) as f64, 8);
                    SqueezeExcite::new(&(&b / (j - 1)), exp, squeeze, Act::Relu, true, true)
                });
                let project =
                    ConvNormAct::new(&(&b / j), exp, cout, ConvSpec::k(1), NORM, Act::None);
                InvertedResidual {
                    expand,
                    dw,
                    se,
                    project,
                    residual: stride == 1 && cin == cout,
                }
            })
            .collect();
        let last = ConvNormAct::new(&(&f / 16), 160, 960, ConvSpec::k(1), NORM, Act::Hardswish);
        (MobileNetV3 { stem, blocks, last }, 960)
    }

    pub(super) fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward(xs, train);
        for b in &self.blocks {
            ys = b.forward(&ys, train);
        }
        super::layers::pool_flatten(self.last.forward(&ys, train))
    }
}

/// torchvision's MobileNetV3 Linear init: N(0, 0.01), bias 0.
pub(super) fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    super::layers::linear(p, cin, cout, normal(0.01), nn::Init::Const(0.))
}
