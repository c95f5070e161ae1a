//! torchvision's RegNetY-3.2GF (`regnet_y_3_2gf`): `stem` a 3×3/2
//! Conv2dNormActivation (ReLU, 32 wide), `trunk_output.block1..4` stages of
//! `block{s}-{i}` residual bottlenecks, average pool, `fc` the class layer.
//!
//! A block: `f.a` 1×1 → `f.b` 3×3 grouped (group width 24, the stride here)
//! → `f.se` SE (squeeze to round(0.25 · block input width), ReLU, sigmoid) →
//! `f.c` 1×1 (no activation); plus `proj` (1×1, stride, BatchNorm) when the
//! width or stride changes; ReLU after the sum. The stage widths and depths
//! are what torchvision's `BlockParams.from_init_params(depth=21, w_0=80,
//! w_a=42.63, w_m=2.66, group_width=24, se_ratio=0.25)` computes:
//! depths [2, 5, 13, 1], widths [72, 216, 576, 1512]. BatchNorm: PyTorch's
//! defaults; convs N(0, √(2/fan_out)), `fc` N(0, 0.01), as torchvision.
use super::layers::{Act, ConvNormAct, ConvSpec, SqueezeExcite, TORCH_BN, normal};
use tch::Tensor;
use tch::nn;

const DEPTHS: [usize; 4] = [2, 5, 13, 1];
const WIDTHS: [i64; 4] = [72, 216, 576, 1512];
const GROUP_WIDTH: i64 = 24;
const SE_RATIO: f64 = 0.25;
const STEM: i64 = 32;

#[derive(Debug)]
struct Block {
    proj: Option<ConvNormAct>,
    a: ConvNormAct,
    b: ConvNormAct,
    se: SqueezeExcite,
    c: ConvNormAct,
}

impl Block {
    fn new(p: &nn::Path, win: i64, wout: i64, stride: i64) -> Block {
        let f = p / "f";
        let proj = (win != wout || stride != 1).then(|| {
            let s = ConvSpec::k(1).stride(stride);
            ConvNormAct::new(&(p / "proj"), win, wout, s, TORCH_BN, Act::None)
        });
        let wb = wout; // bottleneck multiplier 1
        let groups = wb / GROUP_WIDTH;
        let bs = ConvSpec::k(3).stride(stride).groups(groups);
        let se_width = (SE_RATIO * win as f64).round() as i64;
        Block {
            proj,
            a: ConvNormAct::new(&(&f / "a"), win, wb, ConvSpec::k(1), TORCH_BN, Act::Relu),
            b: ConvNormAct::new(&(&f / "b"), wb, wb, bs, TORCH_BN, Act::Relu),
            se: SqueezeExcite::new(&(&f / "se"), wb, se_width, Act::Relu, false, false),
            c: ConvNormAct::new(&(&f / "c"), wb, wout, ConvSpec::k(1), TORCH_BN, Act::None),
        }
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.a.forward(xs, train);
        let ys = self.b.forward(&ys, train);
        let ys = self.c.forward(&self.se.forward(&ys), train);
        let shortcut = match &self.proj {
            Some(p) => p.forward(xs, train),
            None => xs.shallow_clone(),
        };
        (shortcut + ys).relu()
    }
}

#[derive(Debug)]
pub(super) struct RegNet {
    stem: ConvNormAct,
    blocks: Vec<Block>,
}

impl RegNet {
    /// `regnet_y_3_2gf` under `p` (`stem`, `trunk_output`) and its feature width.
    pub(super) fn y_3_2gf(p: &nn::Path) -> (RegNet, i64) {
        let stem = ConvNormAct::new(
            &(p / "stem"),
            3,
            STEM,
            ConvSpec::k(3).stride(2),
            TORCH_BN,
            Act::Relu,
        );
        let t = p / "trunk_output";
        let mut win = STEM;
        let mut blocks = Vec::new();
        for (s, (&depth, &wout)) in DEPTHS.iter().zip(&WIDTHS).enumerate() {
            let sp = &t / format!("block{}", s + 1);
            for i in 0..depth {
                let stride = if i == 0 { 2 } else { 1 };
                blocks.push(Block::new(
                    &(&sp / format!("block{}-{i}", s + 1)),
                    win,
                    wout,
                    stride,
                ));
                win = wout;
            }
        }
        (RegNet { stem, blocks }, WIDTHS[3])
    }

    pub(super) fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward(xs, train);
        for b in &self.blocks {
            ys = b.forward(&ys, train);
        }
        super::layers::pool_flatten(ys)
    }
}

/// torchvision's RegNet Linear init: N(0, 0.01), bias 0.
pub(super) fn class_layer(p: nn::Path, cin: i64, classes: i64) -> nn::Linear {
    super::layers::linear(p, cin, classes, normal(0.01), nn::Init::Const(0.))
}
