//! `sweep predict`: run a trained trial, or any torchvision-named weights file,
//! on image files and print one JSON line per image.
//!
//! Preprocessing is the eval transform of training (`Resize(R)` +
//! `CenterCrop(S)`, ImageNet mean/std), except that an image already S×S is
//! used as is, so logits can be compared with torchvision's exactly.
use crate::{models, to_input, trainer, weights};
use std::path::Path;
use sweep_dataset::imagefolder as data;
use sweep_protocol::PredictJob;
use tch::Kind;
use tch::nn::{self, ModuleT};

/// Why `predict` stopped: the model, the weights, an image, or stdout.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Model(#[from] models::BuildError),
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    /// A weights file that does not exist, has an unknown extension, or
    /// whose classifier does not fit the classes and head asked for.
    #[error("{0}")]
    WeightsFile(String),
    /// An image that cannot be read or resized.
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(serde::Serialize)]
struct Line<'a> {
    file: String,
    pred: serde_json::Value,
    prob: f64,
    logits: &'a [f32],
}

/// Prints one JSON line per image; returns an error naming the first bad file or weight problem.
pub fn run(m: &PredictJob) -> Result<(), PredictError> {
    let (files, named_classes) = (&m.paths, m.named_classes);
    let device = trainer::device();
    let mut vs = nn::VarStore::new(device);
    let net = models::build_sized(
        &vs.root(),
        &m.backbone,
        m.classes.len() as i64,
        &m.head,
        i64::from(m.image_size),
    )?;
    let ext = m.weights.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !m.weights.is_file() {
        return Err(PredictError::WeightsFile(format!(
            "weights file {} does not exist",
            m.weights.display()
        )));
    }
    if !matches!(ext, "safetensors" | "pth" | "pt") {
        return Err(PredictError::WeightsFile(format!(
            "weights file {} is neither .safetensors nor .pth/.pt",
            m.weights.display()
        )));
    }
    // Predicting with a freshly initialised layer would be meaningless: the
    // weights' classifier must fit the class count and head exactly.
    let report = weights::load(&mut vs, &m.weights, net.head_prefix)?;
    if !report.replaced.is_empty() {
        let detail = report
            .replaced
            .iter()
            .map(|(n, model, file)| match file {
                Some(f) => format!("{n}: file {f:?} vs model {model:?}"),
                None => format!("{n}: not in the file"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PredictError::WeightsFile(format!(
            "the classifier in {} does not match {} classes with this head ({detail}); pass the class count and --head the weights were trained with",
            m.weights.display(),
            m.classes.len()
        )));
    }
    let s = m.image_size;
    let mut out = std::io::stdout().lock();
    for f in files {
        let pixels = preprocess(f, s)?;
        let xs = to_input(&pixels, 1, s, device);
        let logits = tch::no_grad(|| net.forward_t(&xs, false))
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .view([-1]);
        let probs = logits.softmax(-1, Kind::Float);
        let (p, idx) = probs.max_dim(-1, false);
        let idx = idx.int64_value(&[]) as usize;
        let logits_v: Vec<f32> = Vec::<f32>::try_from(&logits)?;
        let pred = if named_classes {
            serde_json::Value::String(m.classes.get(idx).cloned().unwrap_or_default())
        } else {
            serde_json::Value::from(idx)
        };
        let line = Line {
            file: f.display().to_string(),
            pred,
            prob: p.double_value(&[]),
            logits: &logits_v,
        };
        use std::io::Write;
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(())
}

/// HWC u8 S×S: as is when already S×S, else torchvision's Resize + CenterCrop.
pub fn preprocess(path: &Path, s: u32) -> Result<Vec<u8>, PredictError> {
    let img = data::decode_rgb(path).map_err(|e| PredictError::Image(e.to_string()))?;
    if img.dimensions() == (s, s) {
        return Ok(img.into_raw());
    }
    let cached = data::resize_shorter(&img, data::stored_size(s))
        .map_err(|e| PredictError::Image(format!("{}: {e}", path.display())))?;
    let mut out = vec![0u8; (s * s * 3) as usize];
    data::center_crop(&cached.view(), s, &mut out);
    Ok(out)
}
