//! The resolved configuration of one trial: what the coordinator hands a worker.
//!
//! This type is the contract between the coordinator's spec
//! (`sweep::spec::plan`, which builds and validates it) and the worker's
//! trainer (`sweep_worker::trainer`, which obeys it). It is serialised as JSON
//! on the worker's command line and stored in the `trials.params` column; its canonical JSON is hashed
//! into the trial id, so field order and names are part of the identity.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Whether a worker on a CUDA device turns on cuDNN's autotuner
/// (`torch.backends.cudnn.benchmark`): it does, and `sweep show` says so.
pub const CUDNN_BENCHMARK: bool = true;

pub const BACKBONES: [&str; 14] = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg16_bn",
    "vgg19_bn",
    "convnext_tiny",
    "convnext_small",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "mobilenet_v3_large",
    "regnet_y_3_2gf",
    "vit_b_16",
    "swin_t",
];

/// The sweep-file keys of `TrialConfig`, in declaration order: the one list that
/// the spec's key check, the report columns and "which keys vary" derive from.
/// `seed` and `pretrained` are set by `[sweep]` and `[pretrained]`, not per trial.
pub const PARAM_KEYS: [&str; 25] = [
    "backbone",
    "lr",
    "epochs",
    "image_size",
    "batch_size",
    "optimizer",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "step_size",
    "gamma",
    "head",
    "freeze_backbone",
    "backbone_lr_scale",
    "augment",
    "skip_bad_images",
    "amp",
    "log_every",
    "max_batches",
    "betas",
    "eps",
    "cache_size",
    "channels_last",
    "layer_decay",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    None,
    Step,
    Cosine,
}

/// `head = "original"` or `head = { hidden = [512, 512], dropout = 0.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    Original,
    Mlp { hidden: Vec<i64>, dropout: f64 },
}

impl Default for Head {
    fn default() -> Self {
        Head::Mlp {
            hidden: vec![512, 512],
            dropout: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialConfig {
    pub backbone: String,
    pub lr: f64,
    pub epochs: u32,
    pub image_size: u32,
    pub batch_size: u32,
    pub optimizer: Optimizer,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Step schedule: multiply lr by `gamma` every `step_size` epochs.
    pub step_size: u32,
    pub gamma: f64,
    pub head: Head,
    pub freeze_backbone: bool,
    /// Backbone lr = lr × this (head keeps lr). 1.0 = one group.
    pub backbone_lr_scale: f64,
    /// Train-time augmentations, applied in order: "random_resized_crop", "hflip".
    pub augment: Vec<String>,
    pub skip_bad_images: bool,
    pub amp: bool,
    /// Record running train loss/accuracy every this many batches.
    pub log_every: u32,
    /// Stop each epoch after this many batches (0 = all). For smoke tests and benchmarks.
    pub max_batches: u32,
    pub seed: u64,
    /// Pretrained weights for this backbone (`.safetensors` or torchvision `.pth`).
    pub pretrained: Option<PathBuf>,
    // Fields added after 0.1.0 go below, each with `#[serde(default,
    // skip_serializing_if = ...)]`: while it holds its default it is not
    // serialised, so it stays out of the trial id (ids must never change; see
    // tests/trial_ids.rs) and out of `trials.params`.
    /// Adam/AdamW (β1, β2), torch's defaults (0.9, 0.999).
    #[serde(default = "default_betas", skip_serializing_if = "is_default_betas")]
    pub betas: [f64; 2],
    /// Adam/AdamW ε, torch's default 1e-8.
    #[serde(default = "default_eps", skip_serializing_if = "is_default_eps")]
    pub eps: f64,
    /// The shorter side of the decoded images the trial crops from (`None`:
    /// round(image_size·256/224), torchvision's Resize ratio), or the
    /// original resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<CacheSize>,
    /// Run the network in the channels-last memory layout (NHWC), which
    /// tensor cores prefer under amp.
    #[serde(default, skip_serializing_if = "is_false")]
    pub channels_last: bool,
    /// Layer-wise lr decay: a parameter at depth d of a network whose head
    /// is at depth `top` learns at lr × `layer_decay^(top − d)` (also ×
    /// `backbone_lr_scale` in the backbone); 1.0 = off. Depths as BEiT and
    /// ConvNeXt fine-tune (see the worker's `models::depth`).
    #[serde(default = "default_layer_decay", skip_serializing_if = "is_one")]
    pub layer_decay: f64,
}

pub fn default_layer_decay() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `cache_size = 292` (pixels, the shorter side) or `cache_size = "original"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CacheSize {
    Short(u32),
    Named(CacheSizeName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSizeName {
    /// No resize at decode time: crops come from the full resolution.
    Original,
}

impl CacheSize {
    pub const ORIGINAL: CacheSize = CacheSize::Named(CacheSizeName::Original);
}

/// The stored shorter side for an image size: torchvision's 256/224 ratio.
pub fn default_cache_short(image_size: u32) -> u32 {
    ((image_size as f64) * 256.0 / 224.0).round() as u32
}

impl TrialConfig {
    /// The shorter side the decoded images are stored at (`None`: original).
    pub fn cache_short(&self) -> Option<u32> {
        match self.cache_size {
            None => Some(default_cache_short(self.image_size)),
            Some(CacheSize::Short(s)) => Some(s),
            Some(CacheSize::Named(CacheSizeName::Original)) => None,
        }
    }
}

pub fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}

fn is_default_betas(b: &[f64; 2]) -> bool {
    *b == default_betas()
}

pub fn default_eps() -> f64 {
    1e-8
}

fn is_default_eps(e: &f64) -> bool {
    *e == default_eps()
}

impl Default for TrialConfig {
    fn default() -> Self {
        TrialConfig {
            backbone: "resnet18".into(),
            lr: 0.01,
            epochs: 10,
            image_size: 224,
            batch_size: 32,
            optimizer: Optimizer::Sgd,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: Schedule::None,
            step_size: 7,
            gamma: 0.1,
            head: Head::default(),
            freeze_backbone: false,
            backbone_lr_scale: 1.0,
            augment: vec!["random_resized_crop".into(), "hflip".into()],
            skip_bad_images: false,
            amp: false,
            log_every: 100,
            max_batches: 0,
            seed: 0,
            pretrained: None,
            betas: default_betas(),
            eps: default_eps(),
            cache_size: None,
            channels_last: false,
            layer_decay: default_layer_decay(),
        }
    }
}

/// `sweep predict`: which network, which weights, which images. The coordinator
/// resolves a trial id to this; `sweep-worker predict --job JSON` runs it and
/// prints one JSON line per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictJob {
    pub backbone: String,
    pub head: Head,
    pub weights: PathBuf,
    /// Class names (a trial) or "0".."N-1" (a bare weights file).
    pub classes: Vec<String>,
    /// Print class names (true) or class indices (false) as `pred`.
    pub named_classes: bool,
    pub image_size: u32,
    pub paths: Vec<PathBuf>,
}

/// What `sweep-worker probe` prints (one JSON object): the libtorch side of
/// `sweep doctor`, and the CUDA device count the local launcher schedules on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub worker_version: String,
    pub protocol: u32,
    pub libtorch: String,
    pub libtorch_lib: String,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cpu_threads: i32,
}

/// Everything a worker needs for one attempt, passed as one JSON argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerJob {
    pub trial: String,
    pub sweep: String,
    pub dataset: PathBuf,
    /// `results/<sweep>/<trial>/`: checkpoints live here.
    pub out_dir: PathBuf,
    /// torch intra-op threads (0 = let the worker decide).
    pub threads: u32,
    pub config: TrialConfig,
    /// `[sweep] metric`: which validation figure picks the best checkpoint.
    #[serde(default)]
    pub select: SelectMetric,
    /// The dataset's content hash as the coordinator computed it. With it the
    /// worker maps the shared decoded-image cache of (hash, cache size),
    /// building it if it is missing; without it the worker decodes the
    /// dataset into its own memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_hash: Option<String>,
    /// Promotion-based early stopping: train up to this epoch, keep its
    /// checkpoint and end with `done` (exit 0) without testing; the trial is
    /// paused, and a later attempt resumes it exactly from that checkpoint.
    /// `None`: train to `config.epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after: Option<u32>,
}

/// What picks a trial's best checkpoint (the one tested and kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectMetric {
    /// Highest validation accuracy (ties: the earlier epoch).
    #[default]
    ValAccuracy,
    /// Lowest validation loss (ties: the earlier epoch).
    ValLoss,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PARAM_KEYS is the one list of sweep parameters: it must name exactly the
    /// fields of TrialConfig (in order) but `seed` and `pretrained`.
    #[test]
    fn param_keys_are_the_config_fields() {
        let c = TrialConfig {
            betas: [0.8, 0.9],
            eps: 1e-6,
            cache_size: Some(CacheSize::ORIGINAL),
            channels_last: true,
            // Left out of the JSON at its default (1.0), like the two above.
            layer_decay: 0.75,
            ..TrialConfig::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let mut fields: Vec<(usize, &str)> = v
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (json.find(&format!("\"{k}\":")).unwrap(), k.as_str()))
            .collect();
        fields.sort();
        let fields: Vec<&str> = fields
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| !matches!(*k, "seed" | "pretrained"))
            .collect();
        assert_eq!(fields, PARAM_KEYS);
    }

    #[test]
    fn cache_size_serde_forms() {
        let c: CacheSize = serde_json::from_str("292").unwrap();
        assert_eq!(c, CacheSize::Short(292));
        let o: CacheSize = serde_json::from_str(r#""original""#).unwrap();
        assert_eq!(o, CacheSize::ORIGINAL);
        assert_eq!(serde_json::to_string(&o).unwrap(), r#""original""#);
        assert!(serde_json::from_str::<CacheSize>(r#""huge""#).is_err());
        // Defaults stay out of the JSON, so trial ids do not change.
        let j = serde_json::to_string(&TrialConfig::default()).unwrap();
        assert!(
            !j.contains("cache_size") && !j.contains("channels_last"),
            "{j}"
        );
        assert_eq!(TrialConfig::default().cache_short(), Some(256));
        assert_eq!(
            TrialConfig {
                image_size: 64,
                ..TrialConfig::default()
            }
            .cache_short(),
            Some(73)
        );
    }

    #[test]
    fn head_serde_forms() {
        let h: Head = serde_json::from_str(r#""original""#).unwrap();
        assert_eq!(h, Head::Original);
        let j = serde_json::to_string(&Head::default()).unwrap();
        assert_eq!(j, r#"{"mlp":{"hidden":[512,512],"dropout":0.0}}"#);
    }
}

/// The parameters of one trial: the built-in trainer's config, or a user
/// program's own parameters (`[program]`: any names, the values as the sweep
/// file gives them, `seed` included). Serialised as the JSON object stored in
/// `trials.params` and hashed into the trial id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TrialParams {
    Builtin(TrialConfig),
    Program(serde_json::Map<String, serde_json::Value>),
}

impl TrialParams {
    pub fn builtin(&self) -> Option<&TrialConfig> {
        match self {
            TrialParams::Builtin(c) => Some(c),
            TrialParams::Program(_) => None,
        }
    }

    pub fn builtin_mut(&mut self) -> Option<&mut TrialConfig> {
        match self {
            TrialParams::Builtin(c) => Some(c),
            TrialParams::Program(_) => None,
        }
    }

    /// Every parameter as a JSON object (what `trials.params` holds).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            TrialParams::Builtin(c) => match serde_json::to_value(c) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            },
            TrialParams::Program(m) => m.clone(),
        }
    }

    /// A program parameter (or config field) as a number, when it is one.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self {
            // Left out of the JSON at its default.
            TrialParams::Builtin(c) if key == "layer_decay" => Some(c.layer_decay),
            TrialParams::Builtin(c) => serde_json::to_value(c).ok()?.get(key)?.as_f64(),
            TrialParams::Program(m) => m.get(key)?.as_f64(),
        }
    }

    /// The same parameters with `key` set to the number `v` (an integer
    /// where the value was one: rounded), or `None` when `key` is not a
    /// number here or the result is not a valid config.
    pub fn with_number(&self, key: &str, v: f64) -> Option<TrialParams> {
        let mut m = self.to_json();
        let float = serde_json::Value::from(1.0);
        let old = match (m.get(key), self) {
            (Some(old), _) => old,
            (None, TrialParams::Builtin(_)) if self.number(key).is_some() => &float,
            (None, _) => return None,
        };
        let new = if old.is_i64() || old.is_u64() {
            serde_json::Value::from(v.round() as i64)
        } else if old.is_f64() {
            serde_json::Value::from(serde_json::Number::from_f64(v)?)
        } else {
            return None;
        };
        m.insert(key.to_string(), new);
        Some(match self {
            TrialParams::Builtin(_) => {
                TrialParams::Builtin(serde_json::from_value(serde_json::Value::Object(m)).ok()?)
            }
            TrialParams::Program(_) => TrialParams::Program(m),
        })
    }

    /// The trial's epoch budget: the config's `epochs`, or a program's
    /// integer `epochs` parameter (`None`: the program decides alone).
    pub fn epochs(&self) -> Option<u32> {
        match self {
            TrialParams::Builtin(c) => Some(c.epochs),
            TrialParams::Program(m) => m
                .get("epochs")?
                .as_u64()
                .and_then(|e| u32::try_from(e).ok()),
        }
    }

    pub fn seed(&self) -> u64 {
        match self {
            TrialParams::Builtin(c) => c.seed,
            TrialParams::Program(m) => m.get("seed").and_then(|s| s.as_u64()).unwrap_or(0),
        }
    }
}

/// A parameter value as people read it: a string bare (`resnet18`, not
/// `"resnet18"`), anything else as compact JSON (`0.01`, `[512, 256]`).
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The parameters whose values differ between trials (`params`: each trial's
/// parameters as JSON objects), in the order of [`PARAM_KEYS`], then `seed`
/// and `pretrained`, then any other key alphabetically. The one answer to
/// "which parameters vary" for the plan, the report's columns and the charts.
pub fn varying_keys(params: &[&serde_json::Map<String, serde_json::Value>]) -> Vec<String> {
    let order: Vec<&str> = PARAM_KEYS
        .iter()
        .copied()
        .chain(["seed", "pretrained"])
        .collect();
    let keys: std::collections::BTreeSet<&String> = params.iter().flat_map(|p| p.keys()).collect();
    let first = params.first();
    let mut out: Vec<String> = keys
        .into_iter()
        .filter(|k| {
            params
                .iter()
                .any(|p| p.get(*k) != first.and_then(|f| f.get(*k)))
        })
        .cloned()
        .collect();
    out.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    out
}

#[cfg(test)]
mod varying_tests {
    use super::varying_keys;
    use serde_json::json;

    #[test]
    fn only_keys_that_differ_in_param_order_then_the_rest() {
        let a = json!({"zeta": 1, "lr": 0.1, "backbone": "resnet18", "seed": 0, "alpha": 1});
        let b = json!({"zeta": 2, "lr": 0.2, "backbone": "resnet18", "seed": 1, "alpha": 2});
        let c = json!({"zeta": 2, "lr": 0.2, "backbone": "resnet18", "seed": 1, "extra": true});
        let maps: Vec<_> = [&a, &b, &c]
            .iter()
            .map(|v| v.as_object().unwrap())
            .collect();
        assert_eq!(
            varying_keys(&maps),
            ["lr", "seed", "alpha", "extra", "zeta"]
        );
        assert!(varying_keys(&maps[..1]).is_empty());
        assert!(varying_keys(&[]).is_empty());
    }
}
