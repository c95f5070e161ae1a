//! torchvision's ViT-B/16 (`vit_b_16`): `conv_proj` 16×16/16 patches to 768
//! channels, `class_token` prepended, `encoder.pos_embedding` added, twelve
//! pre-norm encoder blocks (`encoder.layers.encoder_layer_{i}`: `ln_1`,
//! `self_attention` — `nn.MultiheadAttention`'s packed `in_proj_weight`/
//! `in_proj_bias` and `out_proj`, 12 heads —, `ln_2`, `mlp.0` Linear 3072,
//! exact GELU, `mlp.3` Linear 768), `encoder.ln`, the class token's output;
//! `heads.head` the class layer. LayerNorm eps 1e-6; dropout and attention
//! dropout 0 (torchvision's defaults for vit_b_16).
//!
//! **Image size.** torchvision builds a ViT for one `image_size` (224 for
//! the ImageNet weights): `encoder.pos_embedding` holds (image_size/16)² + 1
//! positions. This model is built for the trial's `image_size` (a multiple of
//! 16) and, when a weights file's position embeddings were made for another
//! size, the loader resizes them with [`interpolate_pos_embedding`], exactly
//! torchvision's `interpolate_embeddings` (bicubic, align_corners=True, the
//! class token's embedding kept), so 384-px fine-tuning and small test sizes
//! start from the 224-px weights as in torchvision.
use super::layers::{layer_norm, normal};
use tch::nn;
use tch::{Kind, Tensor};

pub(super) const PATCH: i64 = 16;
const HIDDEN: i64 = 768;
const MLP: i64 = 3072;
const HEADS: i64 = 12;
const LAYERS: usize = 12;
const EPS: f64 = 1e-6;
/// The name torchvision gives the position embeddings.
pub const POS_EMBEDDING: &str = "encoder.pos_embedding";

fn xavier_uniform(fan_in: i64, fan_out: i64) -> nn::Init {
    let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

#[derive(Debug)]
struct EncoderBlock {
    ln_1: nn::LayerNorm,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    ln_2: nn::LayerNorm,
    mlp_0: nn::Linear,
    mlp_3: nn::Linear,
}

impl EncoderBlock {
    fn new(p: &nn::Path) -> EncoderBlock {
        let a = p / "self_attention";
        let o = 1.0 / (HIDDEN as f64).sqrt();
        let mlp =
            |q: nn::Path, i, o| super::layers::linear(q, i, o, xavier_uniform(i, o), normal(1e-6));
        EncoderBlock {
            ln_1: layer_norm(p / "ln_1", HIDDEN, EPS),
            in_proj_weight: a.var(
                "in_proj_weight",
                &[3 * HIDDEN, HIDDEN],
                xavier_uniform(HIDDEN, 3 * HIDDEN),
            ),
            in_proj_bias: a.var("in_proj_bias", &[3 * HIDDEN], nn::Init::Const(0.)),
            out_proj: super::layers::linear(
                &a / "out_proj",
                HIDDEN,
                HIDDEN,
                nn::Init::Uniform { lo: -o, up: o },
                nn::Init::Const(0.),
            ),
            ln_2: layer_norm(p / "ln_2", HIDDEN, EPS),
            mlp_0: mlp(p / "mlp" / 0, HIDDEN, MLP),
            mlp_3: mlp(p / "mlp" / 3, MLP, HIDDEN),
        }
    }

    /// Self-attention as `nn.MultiheadAttention(batch_first=True)` computes it
    /// with `need_weights=False`: packed projection, per-head scaled
    /// dot-product attention, output projection.
    fn attention(&self, xs: &Tensor) -> Tensor {
        let (n, l, e) = xs.size3().expect("ViT tokens are (batch, seq, hidden)");
        let d = e / HEADS;
        let qkv = xs
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .reshape([n, l, 3, HEADS, d])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let att = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        );
        att.transpose(1, 2).reshape([n, l, e]).apply(&self.out_proj)
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = self.attention(&xs.apply(&self.ln_1)) + xs;
        let y = x
            .apply(&self.ln_2)
            .apply(&self.mlp_0)
            .gelu("none")
            .apply(&self.mlp_3);
        x + y
    }
}

#[derive(Debug)]
pub(super) struct Vit {
    conv_proj: nn::Conv2D,
    class_token: Tensor,
    pos_embedding: Tensor,
    layers: Vec<EncoderBlock>,
    ln: nn::LayerNorm,
}

/// Why a ViT cannot be built for an image size.
pub(super) fn check_image_size(image_size: i64) -> Result<(), String> {
    if image_size < PATCH || image_size % PATCH != 0 {
        return Err(format!(
            "vit_b_16 needs image_size to be a multiple of {PATCH} (torchvision's patch size), not {image_size}; use e.g. 224 or 384"
        ));
    }
    Ok(())
}

impl Vit {
    /// ViT-B/16 for `image_size`×`image_size` inputs under `p`, and its feature width.
    pub(super) fn b_16(p: &nn::Path, image_size: i64) -> (Vit, i64) {
        let fan_in = 3 * PATCH * PATCH;
        let conv_proj = nn::conv2d(
            p / "conv_proj",
            3,
            HIDDEN,
            PATCH,
            nn::ConvConfig {
                stride: PATCH,
                ws_init: normal((1.0 / fan_in as f64).sqrt()),
                bs_init: nn::Init::Const(0.),
                ..Default::default()
            },
        );
        let seq = (image_size / PATCH).pow(2) + 1;
        let e = p / "encoder";
        let layers = (0..LAYERS)
            .map(|i| EncoderBlock::new(&(&e / "layers" / format!("encoder_layer_{i}"))))
            .collect();
        (
            Vit {
                conv_proj,
                class_token: p.var("class_token", &[1, 1, HIDDEN], nn::Init::Const(0.)),
                pos_embedding: e.var("pos_embedding", &[1, seq, HIDDEN], normal(0.02)),
                layers,
                ln: layer_norm(&e / "ln", HIDDEN, EPS),
            },
            HIDDEN,
        )
    }

    /// The class token's encoder output: what `heads` sees.
    pub(super) fn features(&self, xs: &Tensor) -> Tensor {
        let (n, _, h, w) = xs.size4().expect("images are NCHW");
        let patches = xs
            .apply(&self.conv_proj)
            .reshape([n, HIDDEN, (h / PATCH) * (w / PATCH)])
            .permute([0, 2, 1]);
        let tokens = Tensor::cat(&[self.class_token.expand([n, -1, -1], false), patches], 1);
        let mut x = tokens + &self.pos_embedding;
        for l in &self.layers {
            x = l.forward(&x);
        }
        x.apply(&self.ln).select(1, 0)
    }
}

/// torchvision's `interpolate_embeddings` for one tensor: position
/// embeddings (1, n² + 1, D) made for one image size, resized to (1, m² + 1,
/// D) by bicubic interpolation of the n×n grid (align_corners=True), the
/// class token's row kept. `None` when `from` is not such a tensor.
pub fn interpolate_pos_embedding(from: &Tensor, to_seq: i64) -> Option<Tensor> {
    let (one, seq, d) = from.size3().ok()?;
    let n = ((seq - 1) as f64).sqrt().round() as i64;
    let m = ((to_seq - 1) as f64).sqrt().round() as i64;
    if one != 1 || n * n != seq - 1 || m * m != to_seq - 1 || n == 0 || m == 0 {
        return None;
    }
    let kind = from.kind();
    let from = from.to_kind(Kind::Float);
    let token = from.narrow(1, 0, 1);
    let grid = from
        .narrow(1, 1, seq - 1)
        .permute([0, 2, 1])
        .reshape([1, d, n, n]);
    let resized = grid
        .upsample_bicubic2d([m, m], true, None, None)
        .reshape([1, d, m * m])
        .permute([0, 2, 1]);
    Some(Tensor::cat(&[token, resized], 1).to_kind(kind))
}

/// The class layer `heads.head`: torchvision initialises it to zeros.
pub(super) fn class_layer(p: nn::Path, cin: i64, classes: i64) -> nn::Linear {
    super::layers::linear(p, cin, classes, nn::Init::Const(0.), nn::Init::Const(0.))
}
