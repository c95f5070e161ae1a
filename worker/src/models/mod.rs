//! Backbones identical to torchvision's: same architecture, same parameter and
//! buffer names (`conv1.weight`, `layer1.0.downsample.0.weight`,
//! `features.0.weight`, `classifier.6.bias`, …), same BatchNorm eps/momentum
//! and the same from-scratch initialisation. torchvision's `num_batches_tracked`
//! buffers are the one difference: tch's BatchNorm has none (they only matter
//! when momentum is None), so the loader skips them. ResNet and VGG live here;
//! ConvNeXt, EfficientNet, MobileNetV3, RegNetY, ViT and Swin in their own modules,
//! built from the blocks in `layers` (each module's doc says what torchvision
//! sets for it: norms, activations, stochastic depth, dropout, inits).
//!
//! The *head* — the layer(s) sized by the class count — lives under one
//! prefix, `Net::head_prefix`: the class layer of torchvision's classifier
//! (`fc`, `classifier.6` VGG, `classifier.2` ConvNeXt, `classifier.1`
//! EfficientNet, `classifier.3` MobileNetV3, `heads.head` ViT, `head` Swin) with `head =
//! "original"`, or the MLP head that takes its place. That is what the
//! PyTorch transfer-learning recipe replaces: loading pretrained weights keeps
//! everything else (VGG's fc6/fc7, MobileNetV3's `classifier.0`, ConvNeXt's
//! LayerNorm `classifier.0` included), the head gets its own lr group
//! (`HEAD_GROUP`), and `freeze_backbone` trains the head only.
use sweep_protocol::config::Head;
use tch::Tensor;
use tch::nn::{self, Module, ModuleT};

mod convnext;
pub mod depth;
mod efficientnet;
mod layers;
mod mobilenet;
mod regnet;
mod swin;
pub mod vit;

/// Optimizer group of backbone parameters; the head is `HEAD_GROUP`.
pub const BACKBONE_GROUP: usize = 0;
pub const HEAD_GROUP: usize = 1;

fn conv_init() -> nn::Init {
    nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    }
}

fn conv(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias,
        ws_init: conv_init(),
        bs_init: nn::Init::Const(0.),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        eps: 1e-5,
        momentum: 0.1,
        ws_init: nn::Init::Const(1.),
        bs_init: nn::Init::Const(0.),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

/// torch.nn.Linear's default init: U(-1/√fan_in, 1/√fan_in) for weight and bias.
fn linear_torch(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let b = 1.0 / (cin as f64).sqrt();
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: nn::Init::Uniform { lo: -b, up: b },
            bs_init: Some(nn::Init::Uniform { lo: -b, up: b }),
            bias: true,
        },
    )
}

/// torchvision VGG's classifier init: N(0, 0.01), bias 0.
fn linear_vgg(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.,
                stdev: 0.01,
            },
            bs_init: Some(nn::Init::Const(0.)),
            bias: true,
        },
    )
}

#[derive(Debug)]
struct Downsample {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        let n = self.convs.len();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            ys = ys.apply(c).apply_t(b, train);
            if i + 1 < n {
                ys = ys.relu();
            }
        }
        let identity = match &self.downsample {
            Some(d) => xs.apply(&d.conv).apply_t(&d.bn, train),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu()
    }
}

#[derive(Debug)]
struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Block>>,
}

impl ResNet {
    fn new(p: &nn::Path, blocks: [usize; 4], bottleneck: bool) -> (ResNet, i64) {
        let expansion = if bottleneck { 4 } else { 1 };
        let conv1 = conv(p / "conv1", 3, 64, 7, 2, 3, false);
        let bn1 = bn(p / "bn1", 64);
        let mut inplanes = 64;
        let mut layers = Vec::new();
        for (li, (&n, planes)) in blocks.iter().zip([64i64, 128, 256, 512]).enumerate() {
            let lp = p / format!("layer{}", li + 1);
            let mut layer = Vec::new();
            for bi in 0..n {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let bp = &lp / bi;
                let out = planes * expansion;
                let downsample =
                    (bi == 0 && (stride != 1 || inplanes != out)).then(|| Downsample {
                        conv: conv(&bp / "downsample" / 0, inplanes, out, 1, stride, 0, false),
                        bn: bn(&bp / "downsample" / 1, out),
                    });
                let convs = if bottleneck {
                    vec![
                        (
                            conv(&bp / "conv1", inplanes, planes, 1, 1, 0, false),
                            bn(&bp / "bn1", planes),
                        ),
                        (
                            conv(&bp / "conv2", planes, planes, 3, stride, 1, false),
                            bn(&bp / "bn2", planes),
                        ),
                        (
                            conv(&bp / "conv3", planes, out, 1, 1, 0, false),
                            bn(&bp / "bn3", out),
                        ),
                    ]
                } else {
                    vec![
                        (
                            conv(&bp / "conv1", inplanes, planes, 3, stride, 1, false),
                            bn(&bp / "bn1", planes),
                        ),
                        (
                            conv(&bp / "conv2", planes, planes, 3, 1, 1, false),
                            bn(&bp / "bn2", planes),
                        ),
                    ]
                };
                layer.push(Block { convs, downsample });
                inplanes = out;
            }
            layers.push(layer);
        }
        (ResNet { conv1, bn1, layers }, 512 * expansion)
    }

    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in &self.layers {
            for block in layer {
                ys = block.forward(&ys, train);
            }
        }
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

#[derive(Debug)]
enum VggLayer {
    Conv(Box<(nn::Conv2D, nn::BatchNorm)>),
    Pool,
}

#[derive(Debug)]
struct Vgg {
    features: Vec<VggLayer>,
}

impl Vgg {
    fn new(p: &nn::Path, cfg: &[i64]) -> (Vgg, i64) {
        let fp = p / "features";
        let mut idx = 0;
        let mut cin = 3;
        let mut features = Vec::new();
        for &c in cfg {
            if c == 0 {
                features.push(VggLayer::Pool);
                idx += 1;
            } else {
                let cv = conv(&fp / idx, cin, c, 3, 1, 1, true);
                let b = bn(&fp / (idx + 1), c);
                features.push(VggLayer::Conv(Box::new((cv, b))));
                idx += 3; // conv, bn, relu
                cin = c;
            }
        }
        (Vgg { features }, 512 * 7 * 7)
    }

    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for l in &self.features {
            ys = match l {
                VggLayer::Conv(cb) => ys.apply(&cb.0).apply_t(&cb.1, train).relu(),
                VggLayer::Pool => ys.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            };
        }
        ys.adaptive_avg_pool2d([7, 7]).flatten(1, -1)
    }
}

#[derive(Debug)]
enum Backbone {
    ResNet(Box<ResNet>),
    Vgg(Vgg),
    ConvNeXt(Box<convnext::ConvNeXt>),
    EfficientNet(Box<efficientnet::EfficientNet>),
    MobileNetV3(Box<mobilenet::MobileNetV3>),
    RegNet(Box<regnet::RegNet>),
    Vit(Box<vit::Vit>),
    Swin(Box<swin::Swin>),
}

/// The architecture family: decides the head's layout and initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    ResNet,
    Vgg,
    ConvNeXt,
    EfficientNet,
    MobileNetV3,
    RegNet,
    Vit,
    Swin,
}

#[derive(Debug)]
enum HeadLayer {
    Linear(nn::Linear),
    Relu,
    Hardswish,
    Dropout(f64),
}

/// A backbone plus its classifier.
#[derive(Debug)]
pub struct Net {
    backbone: Backbone,
    head: Vec<HeadLayer>,
    pub family: Family,
    /// The layer(s) sized by the class count: every head parameter's name
    /// starts with `<prefix>.`. The original head's class layer (`fc`,
    /// `classifier.6` VGG, `classifier.2` ConvNeXt, `classifier.1`
    /// EfficientNet, `classifier.3` MobileNetV3, `heads.head` ViT, `head`
    /// Swin) or the MLP head that replaces it (`fc`, `classifier`,
    /// `classifier.2` ConvNeXt — its LayerNorm `classifier.0` stays —,
    /// `heads` ViT, `head` Swin).
    pub head_prefix: &'static str,
    /// Keep the backbone's BatchNorm in eval mode (frozen backbone).
    pub freeze_backbone: bool,
    /// Dropout and stochastic depth active in training (the default); the
    /// training-parity tests turn them off to compare one step exactly.
    pub stochastic: bool,
}

const VGG16: [i64; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];
const VGG19: [i64; 21] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

/// A backbone this worker cannot build, or not at this image size.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown backbone {name:?}; valid: {}", sweep_protocol::config::BACKBONES.join(", "))]
    Unknown { name: String },
    #[error("{0}")]
    ImageSize(String),
}

/// [`build_sized`] for 224-px inputs (the size only matters to a ViT).
pub fn build(root: &nn::Path, name: &str, classes: i64, head: &Head) -> Result<Net, BuildError> {
    build_sized(root, name, classes, head, 224)
}

/// Builds `name` with `classes` outputs under `root` for `image_size`-px
/// inputs. Backbone variables go in `BACKBONE_GROUP`, head variables in
/// `HEAD_GROUP`.
pub fn build_sized(
    root: &nn::Path,
    name: &str,
    classes: i64,
    head: &Head,
    image_size: i64,
) -> Result<Net, BuildError> {
    let bp = root.set_group(BACKBONE_GROUP);
    let (backbone, feat, family) = match name {
        "resnet18" | "resnet34" | "resnet50" | "resnet101" => {
            let (blocks, bottleneck) = match name {
                "resnet18" => ([2, 2, 2, 2], false),
                "resnet34" => ([3, 4, 6, 3], false),
                "resnet50" => ([3, 4, 6, 3], true),
                _ => ([3, 4, 23, 3], true),
            };
            let (m, f) = ResNet::new(&bp, blocks, bottleneck);
            (Backbone::ResNet(Box::new(m)), f, Family::ResNet)
        }
        "vgg16_bn" => {
            let (m, f) = Vgg::new(&bp, &VGG16);
            (Backbone::Vgg(m), f, Family::Vgg)
        }
        "vgg19_bn" => {
            let (m, f) = Vgg::new(&bp, &VGG19);
            (Backbone::Vgg(m), f, Family::Vgg)
        }
        _ if convnext::config(name).is_some() => {
            let (depths, sd) = convnext::config(name).unwrap_or(([0; 4], 0.0));
            let (m, f) = convnext::ConvNeXt::new(&bp, depths, sd);
            (Backbone::ConvNeXt(Box::new(m)), f, Family::ConvNeXt)
        }
        "efficientnet_b0" | "efficientnet_v2_s" => {
            let Some((m, f)) = efficientnet::EfficientNet::new(&bp, name) else {
                return Err(BuildError::Unknown { name: name.into() });
            };
            (Backbone::EfficientNet(Box::new(m)), f, Family::EfficientNet)
        }
        "mobilenet_v3_large" => {
            let (m, f) = mobilenet::MobileNetV3::large(&bp);
            (Backbone::MobileNetV3(Box::new(m)), f, Family::MobileNetV3)
        }
        "regnet_y_3_2gf" => {
            let (m, f) = regnet::RegNet::y_3_2gf(&bp);
            (Backbone::RegNet(Box::new(m)), f, Family::RegNet)
        }
        "vit_b_16" => {
            vit::check_image_size(image_size).map_err(BuildError::ImageSize)?;
            let (m, f) = vit::Vit::b_16(&bp, image_size);
            (Backbone::Vit(Box::new(m)), f, Family::Vit)
        }
        "swin_t" => {
            let (m, f) = swin::Swin::t(&bp);
            (Backbone::Swin(Box::new(m)), f, Family::Swin)
        }
        other => {
            return Err(BuildError::Unknown { name: other.into() });
        }
    };
    let hroot = root.set_group(HEAD_GROUP);
    // Hidden layers of an MLP head: torch.nn.Linear's init (VGG: its own).
    let lin = |p: nn::Path, i: i64, o: i64| {
        if family == Family::Vgg {
            linear_vgg(p, i, o)
        } else {
            linear_torch(p, i, o)
        }
    };
    let mut layers = Vec::new();
    let head_prefix = match head {
        Head::Original => match family {
            Family::ResNet => {
                // ResNet's `fc` is a bare Linear, not a Sequential.
                layers.push(HeadLayer::Linear(linear_torch(
                    &hroot / "fc",
                    feat,
                    classes,
                )));
                "fc"
            }
            Family::Vgg => {
                // fc6 and fc7 are pretrained layers like the backbone's (its lr
                // group; frozen with it); only fc8, sized by the class count, is the head.
                let body = &bp / "classifier";
                layers.push(HeadLayer::Linear(lin(&body / 0, feat, 4096)));
                layers.push(HeadLayer::Relu);
                layers.push(HeadLayer::Dropout(0.5));
                layers.push(HeadLayer::Linear(lin(&body / 3, 4096, 4096)));
                layers.push(HeadLayer::Relu);
                layers.push(HeadLayer::Dropout(0.5));
                layers.push(HeadLayer::Linear(lin(
                    &hroot / "classifier" / 6,
                    4096,
                    classes,
                )));
                "classifier.6"
            }
            Family::ConvNeXt => {
                let p = &hroot / "classifier" / 2;
                layers.push(HeadLayer::Linear(convnext::class_layer(p, feat, classes)));
                "classifier.2"
            }
            Family::EfficientNet => {
                layers.push(HeadLayer::Dropout(efficientnet::DROPOUT));
                let p = &hroot / "classifier" / 1;
                layers.push(HeadLayer::Linear(efficientnet::class_layer(
                    p, feat, classes,
                )));
                "classifier.1"
            }
            Family::MobileNetV3 => {
                // classifier.0 (960 → 1280) is pretrained, as VGG's fc6/fc7.
                let last = mobilenet::LAST_CHANNEL;
                let body = &bp / "classifier" / 0;
                layers.push(HeadLayer::Linear(mobilenet::linear(body, feat, last)));
                layers.push(HeadLayer::Hardswish);
                layers.push(HeadLayer::Dropout(mobilenet::DROPOUT));
                let p = &hroot / "classifier" / 3;
                layers.push(HeadLayer::Linear(mobilenet::linear(p, last, classes)));
                "classifier.3"
            }
            Family::RegNet => {
                let p = &hroot / "fc";
                layers.push(HeadLayer::Linear(regnet::class_layer(p, feat, classes)));
                "fc"
            }
            Family::Vit => {
                let p = &hroot / "heads" / "head";
                layers.push(HeadLayer::Linear(vit::class_layer(p, feat, classes)));
                "heads.head"
            }
            Family::Swin => {
                let p = &hroot / "head";
                layers.push(HeadLayer::Linear(swin::class_layer(p, feat, classes)));
                "head"
            }
        },
        Head::Mlp { hidden, dropout } => {
            let prefix = match family {
                Family::ResNet | Family::RegNet => "fc",
                Family::Vgg | Family::EfficientNet | Family::MobileNetV3 => "classifier",
                Family::ConvNeXt => "classifier.2",
                Family::Vit => "heads",
                Family::Swin => "head",
            };
            let mut hp = hroot.clone();
            for part in prefix.split('.') {
                hp = &hp / part;
            }
            let mut idx = 0;
            let mut cin = feat;
            for &h in hidden {
                layers.push(HeadLayer::Linear(lin(&hp / idx, cin, h)));
                layers.push(HeadLayer::Relu);
                idx += 2;
                if *dropout > 0.0 {
                    layers.push(HeadLayer::Dropout(*dropout));
                    idx += 1;
                }
                cin = h;
            }
            layers.push(HeadLayer::Linear(lin(&hp / idx, cin, classes)));
            prefix
        }
    };
    Ok(Net {
        backbone,
        head: layers,
        family,
        head_prefix,
        freeze_backbone: false,
        stochastic: true,
    })
}

impl Net {
    /// The depth of each of `names` (this net's variables) for layer-wise
    /// lr decay: see [`depth`].
    pub fn depths(&self, names: &[String]) -> depth::Depths {
        depth::Depths::new(self.family, self.head_prefix, names)
    }

    /// What the head sees: pooled (and for ConvNeXt, normalised) features.
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let train = train && !self.freeze_backbone;
        let drop = self.stochastic;
        match &self.backbone {
            Backbone::ResNet(m) => m.features(xs, train),
            Backbone::Vgg(m) => m.features(xs, train),
            Backbone::ConvNeXt(m) => m.features(xs, train, drop),
            Backbone::EfficientNet(m) => m.features(xs, train, drop),
            Backbone::MobileNetV3(m) => m.features(xs, train),
            Backbone::RegNet(m) => m.features(xs, train),
            Backbone::Vit(m) => m.features(xs),
            Backbone::Swin(m) => m.features(xs, train, drop),
        }
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.features(xs, train);
        for l in &self.head {
            ys = match l {
                HeadLayer::Linear(m) => m.forward(&ys),
                HeadLayer::Relu => ys.relu(),
                HeadLayer::Hardswish => ys.hardswish(),
                HeadLayer::Dropout(p) => ys.dropout(*p, train && self.stochastic),
            };
        }
        ys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn names(name: &str, head: &Head) -> Vec<(String, Vec<i64>)> {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = build(&vs.root(), name, 12, head).unwrap();
        let mut v: Vec<_> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.size()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn resnet18_names_match_torchvision() {
        let v = names("resnet18", &Head::Original);
        let has = |n: &str, s: &[i64]| {
            assert!(
                v.iter().any(|(k, sz)| k == n && sz == s),
                "missing {n} {s:?}"
            )
        };
        has("conv1.weight", &[64, 3, 7, 7]);
        has("bn1.running_mean", &[64]);
        has("layer2.0.downsample.0.weight", &[128, 64, 1, 1]);
        has("layer4.1.bn2.running_var", &[512]);
        has("fc.weight", &[12, 512]);
        // 62 parameters + 40 BN buffers (running_mean/var), as in torchvision minus num_batches_tracked.
        assert_eq!(v.len(), 102);
    }

    #[test]
    fn vgg_head_indices() {
        let v = names("vgg16_bn", &Head::Original);
        assert!(
            v.iter()
                .any(|(k, s)| k == "features.0.weight" && s == &[64, 3, 3, 3])
        );
        assert!(
            v.iter()
                .any(|(k, s)| k == "features.41.running_mean" && s == &[512])
        );
        assert!(
            v.iter()
                .any(|(k, s)| k == "classifier.6.weight" && s == &[12, 4096])
        );
        let m = names(
            "resnet50",
            &Head::Mlp {
                hidden: vec![512, 512],
                dropout: 0.0,
            },
        );
        assert!(
            m.iter()
                .any(|(k, s)| k == "fc.0.weight" && s == &[512, 2048])
        );
        assert!(m.iter().any(|(k, s)| k == "fc.4.weight" && s == &[12, 512]));
    }

    /// name → optimizer group of every trainable variable.
    fn groups(vs: &nn::VarStore) -> Vec<(String, usize)> {
        let v = vs.variables_.lock().unwrap();
        let mut out: Vec<(String, usize)> = v
            .named_variables
            .iter()
            .filter_map(|(k, t)| {
                v.trainable_variables
                    .iter()
                    .find(|var| var.tensor.data_ptr() == t.data_ptr())
                    .map(|var| (k.clone(), var.group))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_head_is_what_the_class_count_sizes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), "vgg16_bn", 12, &Head::Original).unwrap();
        assert_eq!(net.head_prefix, "classifier.6");
        let g = groups(&vs);
        for (k, group) in &g {
            let want = if k.starts_with("classifier.6.") {
                HEAD_GROUP
            } else {
                BACKBONE_GROUP
            };
            assert_eq!(*group, want, "{k}");
        }
        assert!(g.iter().any(|(k, _)| k == "classifier.3.weight"));

        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(
            &vs.root(),
            "vgg16_bn",
            12,
            &Head::Mlp {
                hidden: vec![4096, 4096],
                dropout: 0.5,
            },
        )
        .unwrap();
        assert_eq!(net.head_prefix, "classifier");
        assert!(
            groups(&vs)
                .iter()
                .all(|(k, group)| (*group == HEAD_GROUP) == k.starts_with("classifier."))
        );

        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), "resnet18", 12, &Head::Original).unwrap();
        assert_eq!(net.head_prefix, "fc");
        assert!(
            groups(&vs)
                .iter()
                .all(|(k, group)| (*group == HEAD_GROUP) == k.starts_with("fc."))
        );
    }

    #[test]
    fn vgg_takes_small_inputs() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(
            &vs.root(),
            "vgg16_bn",
            5,
            &Head::Mlp {
                hidden: vec![],
                dropout: 0.0,
            },
        )
        .unwrap();
        let y = tch::no_grad(|| {
            net.forward_t(
                &Tensor::zeros([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu)),
                false,
            )
        });
        assert_eq!(y.size(), vec![2, 5]);
    }

    /// torchvision's state_dict sizes (less `num_batches_tracked`) and the
    /// class layer `head = "original"` replaces, per newer backbone.
    const NEWER: [(&str, usize, &str); 8] = [
        ("convnext_tiny", 182, "classifier.2"),
        ("convnext_small", 344, "classifier.2"),
        ("efficientnet_b0", 311, "classifier.1"),
        ("efficientnet_v2_s", 672, "classifier.1"),
        ("mobilenet_v3_large", 266, "classifier.3"),
        ("regnet_y_3_2gf", 426, "fc"),
        ("vit_b_16", 152, "heads.head"),
        ("swin_t", 185, "head"),
    ];

    /// Every newer backbone: torchvision's number of tensors; the original
    /// head is exactly its class layer (the only `HEAD_GROUP` variables,
    /// sized by the class count), the MLP head replaces what the docs say;
    /// and a 32-px batch (ViT built for 32 px) gives (batch, classes) logits.
    #[test]
    fn newer_backbones_heads_and_groups() {
        for (name, count, class_layer) in NEWER {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = build_sized(&vs.root(), name, 12, &Head::Original, 32).unwrap();
            assert_eq!(net.head_prefix, class_layer, "{name}");
            let g = groups(&vs);
            let vars = vs.variables();
            assert_eq!(
                vars.len(),
                count,
                "{name}: tensors vs torchvision's state_dict"
            );
            let head: Vec<String> = g
                .iter()
                .filter(|(_, group)| *group == HEAD_GROUP)
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(
                head,
                [
                    format!("{class_layer}.bias"),
                    format!("{class_layer}.weight")
                ],
                "{name}"
            );
            assert_eq!(vars[&format!("{class_layer}.weight")].size()[0], 12);
            let y = tch::no_grad(|| {
                net.forward_t(
                    &Tensor::zeros([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu)),
                    false,
                )
            });
            assert_eq!(y.size(), [2, 12], "{name}");

            let vs = nn::VarStore::new(Device::Cpu);
            let net = build_sized(&vs.root(), name, 12, &Head::default(), 32).unwrap();
            let want = match name {
                "convnext_tiny" | "convnext_small" => "classifier.2",
                "efficientnet_b0" | "efficientnet_v2_s" | "mobilenet_v3_large" => "classifier",
                "regnet_y_3_2gf" => "fc",
                "swin_t" => "head",
                _ => "heads",
            };
            assert_eq!(net.head_prefix, want, "{name}");
            let g = groups(&vs);
            for (k, group) in &g {
                assert_eq!(
                    *group == HEAD_GROUP,
                    k.starts_with(&format!("{want}.")),
                    "{name}: {k}"
                );
            }
            // Two hidden layers and the class layer.
            assert_eq!(
                g.iter().filter(|(_, gr)| *gr == HEAD_GROUP).count(),
                6,
                "{name}"
            );
            if name.starts_with("convnext") {
                // The LayerNorm before the classifier stays (pretrained, backbone).
                assert!(
                    g.iter()
                        .any(|(k, gr)| k == "classifier.0.weight" && *gr == BACKBONE_GROUP)
                );
            }
        }
    }

    #[test]
    fn vit_needs_a_multiple_of_16() {
        let vs = nn::VarStore::new(Device::Cpu);
        let Err(e) = build_sized(&vs.root(), "vit_b_16", 3, &Head::Original, 100) else {
            panic!("100 px is not a multiple of 16")
        };
        assert!(e.to_string().contains("multiple of 16"), "{e}");
        let vs = nn::VarStore::new(Device::Cpu);
        build_sized(&vs.root(), "vit_b_16", 3, &Head::Original, 384).unwrap();
        assert_eq!(
            vs.variables()["encoder.pos_embedding"].size(),
            [1, 24 * 24 + 1, 768]
        );
    }

    /// torchvision's per-block stochastic-depth rates: ConvNeXt's and Swin's
    /// rise linearly from 0 to the model's rate at the last block; EfficientNet's
    /// are rate · index / count (never reaching it).
    #[test]
    fn stochastic_depth_rates_are_torchvisions() {
        assert_eq!(convnext::config("convnext_tiny"), Some(([3, 3, 9, 3], 0.1)));
        assert_eq!(
            convnext::config("convnext_small"),
            Some(([3, 3, 27, 3], 0.4))
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let (m, _) = convnext::ConvNeXt::new(&vs.root(), [3, 3, 9, 3], 0.1);
        let rates = m.block_rates();
        assert_eq!(rates.len(), 18);
        assert_eq!(rates[0], 0.0);
        assert!((rates[17] - 0.1).abs() < 1e-12);
        assert!((rates[5] - 0.1 * 5.0 / 17.0).abs() < 1e-12);
        let vs = nn::VarStore::new(Device::Cpu);
        let (m, _) = efficientnet::EfficientNet::new(&vs.root(), "efficientnet_b0").unwrap();
        let rates = m.block_rates();
        assert_eq!(rates.len(), 16);
        assert!((rates[15] - 0.2 * 15.0 / 16.0).abs() < 1e-12);
        // Swin-T: 12 blocks, 0 to 0.2 linearly, as ConvNeXt.
        let vs = nn::VarStore::new(Device::Cpu);
        let (m, _) = swin::Swin::t(&vs.root());
        let rates = m.block_rates();
        assert_eq!(rates.len(), 12);
        assert_eq!(rates[0], 0.0);
        assert!((rates[11] - 0.2).abs() < 1e-12);
        assert!((rates[4] - 0.2 * 4.0 / 11.0).abs() < 1e-12);
    }
}
