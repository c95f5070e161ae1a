//! Building blocks of the newer backbones, each the op torchvision uses, under
//! torchvision's module names: `Conv2dNormActivation` (`<p>.0` conv, `<p>.1`
//! BatchNorm), `SqueezeExcitation` (`fc1`, `fc2`), `LayerNorm2d`,
//! `StochasticDepth` in "row" mode, and the activations (exact GELU, SiLU,
//! Hardswish, Hardsigmoid). Nothing here knows a whole model.
use tch::Tensor;
use tch::nn;

/// The activation after a convolution or inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    None,
    Relu,
    Silu,
    Hardswish,
}

impl Act {
    pub(super) fn apply(self, xs: Tensor) -> Tensor {
        match self {
            Act::None => xs,
            Act::Relu => xs.relu(),
            Act::Silu => xs.silu(),
            Act::Hardswish => xs.hardswish(),
        }
    }
}

/// BatchNorm settings; torchvision's differ per family (EfficientNetV2: eps
/// 1e-3; MobileNetV3: eps 1e-3, momentum 0.01; the rest PyTorch's defaults).
#[derive(Debug, Clone, Copy)]
pub(super) struct Norm {
    pub eps: f64,
    pub momentum: f64,
}

pub(super) const TORCH_BN: Norm = Norm {
    eps: 1e-5,
    momentum: 0.1,
};

pub(super) fn batch_norm(p: nn::Path, c: i64, n: Norm) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            eps: n.eps,
            momentum: n.momentum,
            ws_init: nn::Init::Const(1.),
            bs_init: nn::Init::Const(0.),
            ..Default::default()
        },
    )
}

/// kaiming_normal_(mode="fan_out") as torchvision's CNNs initialise convolutions.
pub(super) fn kaiming_fan_out() -> nn::Init {
    nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    }
}

/// Conv2d's own bias init, U(±1/√fan_in): where torchvision leaves a bias alone.
pub(super) fn torch_bias(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ConvSpec {
    pub k: i64,
    pub stride: i64,
    pub groups: i64,
    pub bias: bool,
    pub ws: nn::Init,
    pub bs: nn::Init,
}

impl ConvSpec {
    /// A bias-free `k`×`k` convolution, torchvision's "same" padding, kaiming fan-out.
    pub(super) fn k(k: i64) -> ConvSpec {
        ConvSpec {
            k,
            stride: 1,
            groups: 1,
            bias: false,
            ws: kaiming_fan_out(),
            bs: nn::Init::Const(0.),
        }
    }
    pub(super) fn stride(self, stride: i64) -> ConvSpec {
        ConvSpec { stride, ..self }
    }
    pub(super) fn groups(self, groups: i64) -> ConvSpec {
        ConvSpec { groups, ..self }
    }
}

pub(super) fn conv2d(p: nn::Path, cin: i64, cout: i64, s: ConvSpec, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        cin,
        cout,
        s.k,
        nn::ConvConfig {
            stride: s.stride,
            padding,
            groups: s.groups,
            bias: s.bias,
            ws_init: s.ws,
            bs_init: s.bs,
            ..Default::default()
        },
    )
}

/// torchvision's `Conv2dNormActivation`: conv (`<p>.0`, padding (k-1)/2, no
/// bias), BatchNorm (`<p>.1`), activation.
#[derive(Debug)]
pub(super) struct ConvNormAct {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: Act,
}

impl ConvNormAct {
    pub(super) fn new(p: &nn::Path, cin: i64, cout: i64, s: ConvSpec, n: Norm, act: Act) -> Self {
        ConvNormAct {
            conv: conv2d(p / 0, cin, cout, s, (s.k - 1) / 2),
            bn: batch_norm(p / 1, cout, n),
            act,
        }
    }
    pub(super) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.act
            .apply(xs.apply(&self.conv).apply_t(&self.bn, train))
    }
}

/// torchvision's `SqueezeExcitation`: avgpool → fc1 (1×1 conv) → `act` →
/// fc2 → sigmoid (or hardsigmoid, MobileNetV3) → scale the input.
#[derive(Debug)]
pub(super) struct SqueezeExcite {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    act: Act,
    hard: bool,
}

impl SqueezeExcite {
    /// `zero_bias`: whether torchvision's init loop zeroes these convs'
    /// biases (EfficientNet, MobileNetV3) or leaves Conv2d's own (RegNet).
    pub(super) fn new(
        p: &nn::Path,
        c: i64,
        squeeze: i64,
        act: Act,
        hard: bool,
        zero_bias: bool,
    ) -> Self {
        let spec = |fan_in: i64| ConvSpec {
            bias: true,
            bs: if zero_bias {
                nn::Init::Const(0.)
            } else {
                torch_bias(fan_in)
            },
            ..ConvSpec::k(1)
        };
        SqueezeExcite {
            fc1: conv2d(p / "fc1", c, squeeze, spec(c), 0),
            fc2: conv2d(p / "fc2", squeeze, c, spec(squeeze), 0),
            act,
            hard,
        }
    }
    pub(super) fn forward(&self, xs: &Tensor) -> Tensor {
        let s = self
            .act
            .apply(xs.adaptive_avg_pool2d([1, 1]).apply(&self.fc1))
            .apply(&self.fc2);
        let s = if self.hard {
            s.hardsigmoid()
        } else {
            s.sigmoid()
        };
        s * xs
    }
}

/// `nn.LayerNorm` over the last dimension.
pub(super) fn layer_norm(p: nn::Path, c: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![c],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// torchvision's `LayerNorm2d`: LayerNorm over channels of an NCHW tensor.
pub(super) fn layer_norm_2d(ln: &nn::LayerNorm, xs: &Tensor) -> Tensor {
    xs.permute([0, 2, 3, 1]).apply(ln).permute([0, 3, 1, 2])
}

/// torchvision's `StochasticDepth(p, "row")`: in training, each sample's
/// residual branch is dropped with probability `p` and the kept ones scaled
/// by 1/(1-p); the identity in eval or at p = 0.
pub(super) fn stochastic_depth(xs: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return xs;
    }
    let survival = 1.0 - p;
    let mut size = vec![1i64; xs.dim()];
    size[0] = xs.size()[0];
    let mut noise = Tensor::empty(size.as_slice(), (xs.kind(), xs.device()));
    let _ = noise.bernoulli_float_(survival);
    if survival > 0.0 {
        let _ = noise.g_div_scalar_(survival);
    }
    xs * noise
}

/// `Linear` with explicit inits (tch's defaults are not torch's).
pub(super) fn linear(p: nn::Path, cin: i64, cout: i64, ws: nn::Init, bs: nn::Init) -> nn::Linear {
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: ws,
            bs_init: Some(bs),
            bias: true,
        },
    )
}

/// `Linear(bias=False)` with an explicit weight init.
pub(super) fn linear_no_bias(p: nn::Path, cin: i64, cout: i64, ws: nn::Init) -> nn::Linear {
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: ws,
            bs_init: None,
            bias: false,
        },
    )
}

/// N(0, std) — also torchvision's `trunc_normal_(std)` for the stds it uses
/// (0.02, √(1/768)): its cut is at ±2 absolute, 50+ standard deviations out.
pub(super) fn normal(std: f64) -> nn::Init {
    nn::Init::Randn {
        mean: 0.,
        stdev: std,
    }
}

/// The pooled feature vector of a CNN: global average pool, flatten.
pub(super) fn pool_flatten(xs: Tensor) -> Tensor {
    xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
}
