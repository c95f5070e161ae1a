//! torchvision's Swin-T (`swin_t`): a 4×4/4 patch embedding (`features.0.0`
//! Conv2d, then NHWC and `features.0.2` LayerNorm), four stages of Swin
//! blocks (`features.1/3/5/7`, depths 2, 2, 6, 2; 3, 6, 12, 24 heads; width
//! 96 doubling per stage) with PatchMerging between them (`features.2/4/6`:
//! 2×2 neighbours concatenated, `norm` LayerNorm 4C, `reduction` Linear 4C →
//! 2C without bias), the final `norm` LayerNorm, global average pool; `head`
//! the class layer. Everything after the patch embedding runs NHWC, as
//! torchvision's does.
//!
//! A Swin block (`SwinTransformerBlock`): x + sd(attn(norm1(x))), then
//! x + sd(mlp(norm2(x))), `mlp.0` Linear 4C, exact GELU, `mlp.3` Linear C.
//! The attention (`attn`, torchvision's `shifted_window_attention`): the map
//! zero-padded at the bottom/right to a multiple of the 7×7 window; blocks
//! with an odd index shift it by (−3, −3) (`torch.roll`) unless the padded
//! map is no larger than a window; per window, `qkv` Linear, q scaled by
//! 1/√head_dim, q·kᵀ + the relative position bias
//! (`relative_position_bias_table` indexed by the `relative_position_index`
//! buffer, both in the state dict) + for shifted windows the mask (−100
//! between tokens from different regions of the shifted map), softmax, ·v,
//! `proj`; windows merged, the shift undone, the padding cut off.
//!
//! Stochastic depth "row", rate rising linearly from 0 at the first block to
//! 0.2 at the last (one module, two independent draws per block, as
//! torchvision's). LayerNorm eps 1e-5; dropout and attention dropout 0.
//! Inits as torchvision: every Linear trunc_normal(0.02) with zero bias, the
//! bias tables trunc_normal(0.02), the patch-embedding Conv2d PyTorch's own.
//!
//! Any image size works, as in torchvision (patch embedding floors, merging
//! and windows pad); the ImageNet weights were made at 224 px.
use super::layers::{ConvSpec, conv2d, layer_norm, normal, stochastic_depth, torch_bias};
use tch::nn;
use tch::{Device, Kind, Tensor};

const EPS: f64 = 1e-5;
const EMBED: i64 = 96;
const PATCH: i64 = 4;
const WINDOW: i64 = 7;
/// Blocks per stage (`features.1/3/5/7`).
pub(super) const DEPTHS: [usize; 4] = [2, 2, 6, 2];
const HEADS: [i64; 4] = [3, 6, 12, 24];
const SD_PROB: f64 = 0.2;
/// The features the class layer sees: 96 · 2³.
pub(super) const FEATURES: i64 = EMBED * 8;

fn lin(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    super::layers::linear(p, cin, cout, normal(0.02), nn::Init::Const(0.))
}

/// torchvision's `relative_position_index` for a `w`×`w` window: for the
/// token pair (i, j), (Δrow + w − 1) · (2w − 1) + (Δcol + w − 1), flattened.
pub(super) fn relative_position_index(w: i64, device: Device) -> Tensor {
    let n = w * w;
    let mut idx = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let dh = i / w - j / w + w - 1;
            let dw = i % w - j % w + w - 1;
            idx.push(dh * (2 * w - 1) + dw);
        }
    }
    Tensor::from_slice(&idx).to_device(device)
}

/// The shifted-window mask torchvision builds for a padded `h`×`w` map and
/// `shift` (rows, cols): (windows, 49, 49), 0 within a region, −100 across.
fn attention_mask(h: i64, w: i64, shift: (i64, i64), kind: Kind, device: Device) -> Tensor {
    // The region of each row (col): [0, h − W), [h − W, h − s), [h − s, h).
    let region = |len: i64, s: i64| -> Vec<i64> {
        (0..len)
            .map(|i| {
                if i < len - WINDOW {
                    0
                } else if i < len - s {
                    1
                } else {
                    2
                }
            })
            .collect()
    };
    let (rh, rw) = (region(h, shift.0), region(w, shift.1));
    let (nh, nw) = (h / WINDOW, w / WINDOW);
    let n = WINDOW * WINDOW;
    let mut ids = Vec::with_capacity((h * w) as usize);
    // Window by window (row-major), token by token inside a window.
    for wy in 0..nh {
        for wx in 0..nw {
            for ty in 0..WINDOW {
                for tx in 0..WINDOW {
                    let (y, x) = (wy * WINDOW + ty, wx * WINDOW + tx);
                    ids.push((rh[y as usize] * 3 + rw[x as usize]) as f32);
                }
            }
        }
    }
    let ids = Tensor::from_slice(&ids).reshape([nh * nw, n]);
    let diff = ids.unsqueeze(1) - ids.unsqueeze(2);
    diff.ne(0.0)
        .to_kind(Kind::Float)
        .g_mul_scalar(-100.0)
        .to_kind(kind)
        .to_device(device)
}

#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    table: Tensor,
    index: Tensor,
    heads: i64,
    shift: i64,
}

impl Attention {
    fn new(p: &nn::Path, dim: i64, heads: i64, shift: i64) -> Attention {
        let table = p.var(
            "relative_position_bias_table",
            &[(2 * WINDOW - 1) * (2 * WINDOW - 1), heads],
            normal(0.02),
        );
        // A buffer (torchvision's `register_buffer`): in the state dict, not trained.
        let index = p.add(
            "relative_position_index",
            relative_position_index(WINDOW, p.device()),
            false,
        );
        Attention {
            qkv: lin(p / "qkv", dim, 3 * dim),
            proj: lin(p / "proj", dim, dim),
            table,
            index,
            heads,
            shift,
        }
    }

    /// torchvision's `shifted_window_attention` on NHWC `xs` (dropouts 0).
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, h, w, c) = xs.size4().expect("Swin features are NHWC");
        let pad_r = (WINDOW - w % WINDOW) % WINDOW;
        let pad_b = (WINDOW - h % WINDOW) % WINDOW;
        let x = if pad_r > 0 || pad_b > 0 {
            xs.constant_pad_nd([0, 0, 0, pad_r, 0, pad_b])
        } else {
            xs.shallow_clone()
        };
        let (ph, pw) = (h + pad_b, w + pad_r);
        // No shift when the padded map is no larger than a window.
        let shift = (
            if WINDOW >= ph { 0 } else { self.shift },
            if WINDOW >= pw { 0 } else { self.shift },
        );
        let shifted = shift.0 + shift.1 > 0;
        let x = if shifted {
            x.roll([-shift.0, -shift.1], [1, 2])
        } else {
            x
        };
        let (nh, nw) = (ph / WINDOW, pw / WINDOW);
        let windows = nh * nw;
        let n = WINDOW * WINDOW;
        let x = x
            .reshape([b, nh, WINDOW, nw, WINDOW, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b * windows, n, c]);
        let d = c / self.heads;
        let qkv = x
            .apply(&self.qkv)
            .reshape([b * windows, n, 3, self.heads, d])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let q = q * (d as f64).powf(-0.5);
        let bias = self
            .table
            .index_select(0, &self.index)
            .reshape([n, n, -1])
            .permute([2, 0, 1])
            .contiguous()
            .unsqueeze(0);
        let mut attn = q.matmul(&k.transpose(-2, -1)) + bias;
        if shifted {
            let mask = attention_mask(ph, pw, shift, attn.kind(), attn.device());
            attn = (attn.reshape([b, windows, self.heads, n, n]) + mask.unsqueeze(1).unsqueeze(0))
                .reshape([-1, self.heads, n, n]);
        }
        let x = attn
            .softmax(-1, None::<Kind>)
            .matmul(&v)
            .transpose(1, 2)
            .reshape([b * windows, n, c])
            .apply(&self.proj);
        let x = x
            .reshape([b, nh, nw, WINDOW, WINDOW, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, ph, pw, c]);
        let x = if shifted {
            x.roll([shift.0, shift.1], [1, 2])
        } else {
            x
        };
        x.narrow(1, 0, h).narrow(2, 0, w).contiguous()
    }
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    mlp_0: nn::Linear,
    mlp_3: nn::Linear,
    sd: f64,
}

impl Block {
    fn new(p: &nn::Path, dim: i64, heads: i64, shift: i64, sd: f64) -> Block {
        Block {
            norm1: layer_norm(p / "norm1", dim, EPS),
            attn: Attention::new(&(p / "attn"), dim, heads, shift),
            norm2: layer_norm(p / "norm2", dim, EPS),
            mlp_0: lin(p / "mlp" / 0, dim, 4 * dim),
            mlp_3: lin(p / "mlp" / 3, 4 * dim, dim),
            sd,
        }
    }

    fn forward(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let on = train && drop;
        let a = self.attn.forward(&xs.apply(&self.norm1));
        let x = xs + stochastic_depth(a, self.sd, on);
        let m = x
            .apply(&self.norm2)
            .apply(&self.mlp_0)
            .gelu("none")
            .apply(&self.mlp_3);
        &x + stochastic_depth(m, self.sd, on)
    }
}

/// torchvision's `PatchMerging` (v1): pad to even, concatenate the 2×2
/// neighbours (x0 even/even, x1 odd rows, x2 odd cols, x3 odd/odd), norm,
/// reduce.
#[derive(Debug)]
struct Merging {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
}

impl Merging {
    fn new(p: &nn::Path, dim: i64) -> Merging {
        Merging {
            norm: layer_norm(p / "norm", 4 * dim, EPS),
            reduction: super::layers::linear_no_bias(
                p / "reduction",
                4 * dim,
                2 * dim,
                normal(0.02),
            ),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (_, h, w, _) = xs.size4().expect("Swin features are NHWC");
        let x = if h % 2 == 1 || w % 2 == 1 {
            xs.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2])
        } else {
            xs.shallow_clone()
        };
        let (ph, pw) = (h + h % 2, w + w % 2);
        let at = |r: i64, c: i64| x.slice(1, r, ph, 2).slice(2, c, pw, 2);
        Tensor::cat(&[at(0, 0), at(1, 0), at(0, 1), at(1, 1)], -1)
            .apply(&self.norm)
            .apply(&self.reduction)
    }
}

#[derive(Debug)]
enum Stage {
    Blocks(Vec<Block>),
    Merge(Merging),
}

#[derive(Debug)]
pub(super) struct Swin {
    embed: (nn::Conv2D, nn::LayerNorm),
    stages: Vec<Stage>,
    norm: nn::LayerNorm,
}

impl Swin {
    /// Swin-T under `p` (`features`, `norm`) and its feature width.
    pub(super) fn t(p: &nn::Path) -> (Swin, i64) {
        let f = p / "features";
        let fan_in = 3 * PATCH * PATCH;
        let embed_spec = ConvSpec {
            k: PATCH,
            stride: PATCH,
            groups: 1,
            bias: true,
            ws: torch_bias(fan_in),
            bs: torch_bias(fan_in),
        };
        let embed = (
            conv2d(&f / 0 / 0, 3, EMBED, embed_spec, 0),
            layer_norm(&f / 0 / 2, EMBED, EPS),
        );
        let total: usize = DEPTHS.iter().sum();
        let mut id = 0usize;
        let mut stages = Vec::new();
        for (s, (&n, &heads)) in DEPTHS.iter().zip(&HEADS).enumerate() {
            let dim = EMBED << s;
            let sp = &f / (1 + 2 * s);
            let blocks = (0..n)
                .map(|i| {
                    let sd = SD_PROB * id as f64 / (total as f64 - 1.0);
                    id += 1;
                    let shift = if i % 2 == 0 { 0 } else { WINDOW / 2 };
                    Block::new(&(&sp / i), dim, heads, shift, sd)
                })
                .collect();
            stages.push(Stage::Blocks(blocks));
            if s + 1 < DEPTHS.len() {
                stages.push(Stage::Merge(Merging::new(&(&f / (2 + 2 * s)), dim)));
            }
        }
        let norm = layer_norm(p / "norm", FEATURES, EPS);
        (
            Swin {
                embed,
                stages,
                norm,
            },
            FEATURES,
        )
    }

    /// Each block's stochastic-depth rate, in order.
    #[cfg(test)]
    pub(super) fn block_rates(&self) -> Vec<f64> {
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::Blocks(b) => Some(b.iter().map(|b| b.sd)),
                Stage::Merge(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Through `flatten`: what `head` sees.
    pub(super) fn features(&self, xs: &Tensor, train: bool, drop: bool) -> Tensor {
        let mut ys = xs
            .apply(&self.embed.0)
            .permute([0, 2, 3, 1])
            .apply(&self.embed.1);
        for s in &self.stages {
            ys = match s {
                Stage::Blocks(b) => b.iter().fold(ys, |y, b| b.forward(&y, train, drop)),
                Stage::Merge(m) => m.forward(&ys),
            };
        }
        ys.apply(&self.norm)
            .permute([0, 3, 1, 2])
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }
}

/// The class layer `head`: trunc_normal(0.02), bias 0, as torchvision.
pub(super) fn class_layer(p: nn::Path, cin: i64, classes: i64) -> nn::Linear {
    lin(p, cin, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index torchvision computes with meshgrid for a 2×2 window, by hand:
    /// tokens (0,0) (0,1) (1,0) (1,1); (Δr + 1) · 3 + (Δc + 1).
    #[test]
    fn relative_position_index_is_torchvisions() {
        let idx = Vec::<i64>::try_from(&relative_position_index(2, Device::Cpu)).unwrap();
        assert_eq!(idx, [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
        let idx = Vec::<i64>::try_from(&relative_position_index(7, Device::Cpu)).unwrap();
        assert_eq!(idx.len(), 49 * 49);
        assert_eq!(idx[0], 6 * 13 + 6);
        assert_eq!(*idx.iter().max().unwrap(), 13 * 13 - 1);
    }

    /// A 14×14 map shifted by 3: windows are 2×2; only the last row/column of
    /// windows mixes regions, so window 0 is all zeros and window 3 (bottom
    /// right, four regions) masks most pairs.
    #[test]
    fn the_shift_mask_separates_regions() {
        let m = attention_mask(14, 14, (3, 3), Kind::Float, Device::Cpu);
        assert_eq!(m.size(), [4, 49, 49]);
        assert_eq!(m.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let masked = |w: i64| m.get(w).ne(0.0).sum(Kind::Int64).int64_value(&[]);
        // Window 1 (top right): cols split 4 + 3 → 2·(28·21) masked pairs.
        assert_eq!(masked(1), 2 * 28 * 21);
        // Window 3: regions 16, 12, 12, 9 tokens.
        let same: i64 = [16i64, 12, 12, 9].iter().map(|k| k * k).sum();
        assert_eq!(masked(3), 49 * 49 - same);
        assert_eq!(m.min().double_value(&[]), -100.0);
    }
}
