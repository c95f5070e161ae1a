//! torchvision's ConvNeXt (`convnext_tiny`, `convnext_small`): a 4×4/4
//! patchify stem with LayerNorm2d (`features.0`), four stages of CNBlocks
//! (`features.1/3/5/7`) with LayerNorm2d + 2×2/2 downsampling between them
//! (`features.2/4/6`), global average pool and `classifier.0` (LayerNorm2d).
//! The class layer, `classifier.2`, is the model's head (see `super::build`).
//!
//! A CNBlock: 7×7 depthwise conv → LayerNorm (channels-last, eps 1e-6) →
//! Linear 4× → exact GELU → Linear → × `layer_scale` (init 1e-6) →
//! stochastic depth ("row", rate rising linearly from 0 at the first block to
//! `stochastic_depth_prob` at the last: 0.1 tiny, 0.4 small) → + input.
//! Conv and Linear weights N(0, 0.02), biases 0, as torchvision.
use super::layers::{ConvSpec, conv2d, layer_norm, layer_norm_2d, normal, stochastic_depth};
use tch::Tensor;
use tch::nn;

const EPS: f64 = 1e-6;

fn spec(k: i64, stride: i64, groups: i64) -> ConvSpec {
    ConvSpec {
        k,
        stride,
        groups,
        bias: true,
        ws: normal(0.02),
        bs: nn::Init::Const(0.),
    }
}

fn lin(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    super::layers::linear(p, cin, cout, normal(0.02), nn::Init::Const(0.))
}

#[derive(Debug)]
struct CnBlock {
    dw: nn::Conv2D,
    norm: nn::LayerNorm,
    pw1: nn::Linear,
    pw2: nn::Linear,
    layer_scale: Tensor,
    sd: f64,
}

impl CnBlock {
    fn new(p: &nn::Path, dim: i64, sd: f64) -> CnBlock {
        let b = p / "block";
        CnBlock {
            dw: conv2d(&b / 0, dim, dim, spec(7, 1, dim), 3),
            norm: layer_norm(&b / 2, dim, EPS),
            pw1: lin(&b / 3, dim, 4 * dim),
            pw2: lin(&b / 5, 4 * dim, dim),
            layer_scale: p.var("layer_scale", &[dim, 1, 1], nn::Init::Const(1e-6)),
            sd,
        }
    }

    fn forward(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let ys = xs
            .apply(&self.dw)
            .permute([0, 2, 3, 1])
            .apply(&self.norm)
            .apply(&self.pw1)
            .gelu("none")
            .apply(&self.pw2)
            .permute([0, 3, 1, 2]);
        let ys = &self.layer_scale * ys;
        stochastic_depth(ys, self.sd, train && drop) + xs
    }
}

#[derive(Debug)]
enum Stage {
    Blocks(Vec<CnBlock>),
    Downsample(Box<(nn::LayerNorm, nn::Conv2D)>),
}

#[derive(Debug)]
pub(super) struct ConvNeXt {
    stem: (nn::Conv2D, nn::LayerNorm),
    stages: Vec<Stage>,
    head_norm: nn::LayerNorm,
}

/// (depths, stochastic_depth_prob) of the variants torchvision ships.
pub(super) fn config(name: &str) -> Option<([usize; 4], f64)> {
    match name {
        "convnext_tiny" => Some(([3, 3, 9, 3], 0.1)),
        "convnext_small" => Some(([3, 3, 27, 3], 0.4)),
        _ => None,
    }
}

impl ConvNeXt {
    /// The backbone under `p` (`features`, `classifier.0`) and its feature width.
    pub(super) fn new(p: &nn::Path, depths: [usize; 4], sd_prob: f64) -> (ConvNeXt, i64) {
        let dims = [96i64, 192, 384, 768];
        let f = p / "features";
        let stem = (
            conv2d(&f / 0 / 0, 3, dims[0], spec(4, 4, 1), 0),
            layer_norm(&f / 0 / 1, dims[0], EPS),
        );
        let total: usize = depths.iter().sum();
        let mut id = 0usize;
        let mut stages = Vec::new();
        for (s, (&n, &dim)) in depths.iter().zip(&dims).enumerate() {
            let sp = &f / (1 + 2 * s);
            let blocks = (0..n)
                .map(|i| {
                    let sd = sd_prob * id as f64 / (total as f64 - 1.0);
                    id += 1;
                    CnBlock::new(&(&sp / i), dim, sd)
                })
                .collect();
            stages.push(Stage::Blocks(blocks));
            if s < 3 {
                let dp = &f / (2 + 2 * s);
                stages.push(Stage::Downsample(Box::new((
                    layer_norm(&dp / 0, dim, EPS),
                    conv2d(&dp / 1, dim, dims[s + 1], spec(2, 2, 1), 0),
                ))));
            }
        }
        let head_norm = layer_norm(p / "classifier" / 0, dims[3], EPS);
        (
            ConvNeXt {
                stem,
                stages,
                head_norm,
            },
            dims[3],
        )
    }

    /// Each block's stochastic-depth rate, in order.
    #[cfg(test)]
    pub(super) fn block_rates(&self) -> Vec<f64> {
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::Blocks(b) => Some(b.iter().map(|b| b.sd)),
                Stage::Downsample(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Through `classifier.1` (flatten): what the class layer sees.
    pub(super) fn features(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let mut ys = layer_norm_2d(&self.stem.1, &xs.apply(&self.stem.0));
        for s in &self.stages {
            ys = match s {
                Stage::Blocks(b) => b.iter().fold(ys, |y, b| b.forward(&y, train, drop)),
                Stage::Downsample(d) => layer_norm_2d(&d.0, &ys).apply(&d.1),
            };
        }
        let ys = ys.adaptive_avg_pool2d([1, 1]);
        layer_norm_2d(&self.head_norm, &ys).flatten(1, -1)
    }
}

/// The class layer (`classifier.2`), initialised as torchvision does.
pub(super) fn class_layer(p: nn::Path, cin: i64, classes: i64) -> nn::Linear {
    lin(p, cin, classes)
}
