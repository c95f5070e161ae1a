//! Pretrained weights: `.safetensors`, or a torchvision checkpoint exactly as
//! torchvision downloads it (a `torch.save`d state_dict, zip or legacy format,
//! read by [`crate::pth`]) — no Python at run time.
//!
//! Transfer learning as PyTorch does it: everything whose name and shape fit
//! is loaded, and only the layer(s) sized by the class count — the model's
//! `head_prefix`, see [`crate::models::Net`] — may be replaced. Rules:
//!
//! - `num_batches_tracked` buffers are ignored (tch's BatchNorm has none);
//! - the tensors under `head_prefix` (`fc` for a ResNet, `classifier.6` for
//!   VGG's original classifier, the whole `fc` / `classifier` for an MLP head)
//!   are loaded only when every one of them matches the file in name and shape
//!   and the file has no others there; otherwise they are all *replaced*: left
//!   as freshly initialised, and the file's are ignored;
//! - every other model tensor (the backbone, and VGG's fc6/fc7 `classifier.0`
//!   and `classifier.3` with the original head) must be in the file with the
//!   same shape, and the file may hold nothing else: any missing key,
//!   unexpected key or shape mismatch is an error that lists them all.
//!
//! - a ViT's `encoder.pos_embedding` made for another image size is resized
//!   to the model's as torchvision's `interpolate_embeddings` does (see
//!   [`crate::models::vit`]) and the report says so;
//!
//! [`load_into`] logs on stderr what was loaded and what was replaced, by name.
//! Tensors are converted to the model's dtype on load: a float16 file (a
//! trial's weights kept with `[resources] keep_precision = "half"`) is widened
//! to float32, and the model computes in float32.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Tensor, nn::VarStore};

/// Why weights could not be loaded into a model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A `.safetensors` file that libtorch cannot read.
    #[error("cannot read weights {}: {source}", .path.display())]
    Safetensors {
        path: PathBuf,
        source: tch::TchError,
    },
    /// A `torch.save` file the checkpoint reader refuses.
    #[error(transparent)]
    Pth(#[from] crate::pth::ReadError),
    /// Tensors missing, unexpected or of the wrong shape: every one listed,
    /// with what to check.
    #[error("{0}")]
    DoNotFit(String),
    /// libtorch could not copy a tensor into the model.
    #[error("{name}: {source}")]
    Copy { name: String, source: tch::TchError },
}

pub fn read(path: &Path) -> Result<HashMap<String, Tensor>, WeightsError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let named = match ext {
        "safetensors" => Tensor::read_safetensors(path),
        // torch.save's zip archive (or legacy file) of a state_dict.
        _ => return Ok(crate::pth::read(path)?.into_iter().collect()),
    }
    .map_err(|source| WeightsError::Safetensors {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(named.into_iter().collect())
}

/// What happened while loading, for the worker's log.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Model tensors copied from the file.
    pub loaded: usize,
    /// Model tensors under the head prefix left freshly initialised because
    /// the file's do not fit (`replaced.len()`).
    pub head_skipped: usize,
    /// The loaded tensors' names, sorted.
    pub loaded_names: Vec<String>,
    /// Each replaced tensor: its name, its shape in the model and in the file
    /// (None: the file has no tensor of that name).
    pub replaced: Vec<(String, Vec<i64>, Option<Vec<i64>>)>,
    /// The file's tensors under the head prefix that were not loaded, sorted.
    pub ignored: Vec<String>,
    /// ViT position embeddings made for another image size and interpolated
    /// to the model's: name, the file's shape, the model's.
    pub resized: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl LoadReport {
    /// One line: the loaded tensors grouped by module (`features`,
    /// `classifier.0`, `layer3`, …) and each replaced tensor by name.
    pub fn summary(&self, path: &Path, head_prefix: &str) -> String {
        let head_top = head_prefix.split('.').next().unwrap_or(head_prefix);
        let mut groups: Vec<(String, usize)> = Vec::new();
        for name in &self.loaded_names {
            let parts: Vec<&str> = name.split('.').collect();
            // Inside the classifier, name its layers (classifier.0, classifier.3).
            let n = if parts[0] == head_top && parts.len() > 2 {
                2
            } else {
                1
            };
            let g = parts[..n].join(".");
            match groups.iter_mut().find(|(k, _)| *k == g) {
                Some((_, c)) => *c += 1,
                None => groups.push((g, 1)),
            }
        }
        let loaded = groups
            .iter()
            .map(|(g, c)| format!("{g} ({c})"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "weights {}: loaded {} tensors: {}",
            path.display(),
            self.loaded,
            if loaded.is_empty() { "none" } else { &loaded }
        );
        if !self.replaced.is_empty() {
            let r = self
                .replaced
                .iter()
                .map(|(n, model, file)| match file {
                    Some(f) => format!("{n} {model:?} (the file's is {f:?})"),
                    None => format!("{n} {model:?} (not in the file)"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                "; replaced (sized by the class count, freshly initialised): {r}"
            ));
        }
        let extra: Vec<&String> = self
            .ignored
            .iter()
            .filter(|n| !self.replaced.iter().any(|(r, _, _)| r == *n))
            .collect();
        for (n, from, to) in &self.resized {
            s.push_str(&format!(
                "; {n} interpolated from {from:?} to {to:?} (torchvision's interpolate_embeddings: another image size)"
            ));
        }
        if !extra.is_empty() {
            s.push_str(&format!(
                "; ignored from the file: {}",
                extra
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// Loads `path` into `vs` by the rules above and logs what it did.
pub fn load_into(
    vs: &mut VarStore,
    path: &Path,
    head_prefix: &str,
) -> Result<LoadReport, WeightsError> {
    let report = load(vs, path, head_prefix)?;
    sweep_protocol::log!("{}", report.summary(path, head_prefix));
    Ok(report)
}

/// [`load_into`] without the log line.
pub fn load(vs: &mut VarStore, path: &Path, head_prefix: &str) -> Result<LoadReport, WeightsError> {
    let mut file: HashMap<String, Tensor> = read(path)?
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect();
    let vars = vs.variables();
    // A ViT's position embeddings follow the image size: resize the file's
    // to the model's as torchvision's `interpolate_embeddings` does.
    let mut resized = Vec::new();
    let pos = crate::models::vit::POS_EMBEDDING;
    if let (Some(model), Some(f)) = (vars.get(pos), file.get(pos)) {
        let (to, from) = (model.size(), f.size());
        if to != from
            && to.len() == 3
            && from.len() == 3
            && to[2] == from[2]
            && let Some(t) = crate::models::vit::interpolate_pos_embedding(f, to[1])
        {
            file.insert(pos.to_string(), t);
            resized.push((pos.to_string(), from, to));
        }
    }
    let is_head = |k: &str| {
        k == head_prefix
            || k.strip_prefix(head_prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    let model_shapes: BTreeMap<&String, Vec<i64>> =
        vars.iter().map(|(k, t)| (k, t.size())).collect();

    let head_fits = vars
        .iter()
        .filter(|(k, _)| is_head(k))
        .all(|(k, t)| file.get(k).is_some_and(|f| f.size() == t.size()))
        && file
            .keys()
            .filter(|k| is_head(k))
            .all(|k| vars.contains_key(k));

    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (k, shape) in &model_shapes {
        if is_head(k) {
            continue;
        }
        match file.get(*k) {
            None => missing.push((*k).clone()),
            Some(t) if &t.size() != shape => {
                mismatched.push(format!("{k}: file {:?} vs model {:?}", t.size(), shape))
            }
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<String> = file
        .keys()
        .filter(|k| !is_head(k) && !vars.contains_key(*k))
        .cloned()
        .collect();
    if !(missing.is_empty() && mismatched.is_empty() && unexpected.is_empty()) {
        let mut msg = format!("weights {} do not fit the model:", path.display());
        unexpected.sort();
        for (label, list) in [
            ("missing", &missing),
            ("unexpected", &unexpected),
            ("shape mismatch", &mismatched),
        ] {
            if !list.is_empty() {
                msg.push_str(&format!(
                    "\n  {label} ({}): {}",
                    list.len(),
                    first_names(list)
                ));
            }
        }
        msg.push_str("\n  check that the file was saved from the same backbone (torchvision names, e.g. conv1.weight) and, for a classifier other than the last layer, the same head");
        return Err(WeightsError::DoNotFit(msg));
    }
    let mut report = LoadReport {
        resized,
        ..LoadReport::default()
    };
    tch::no_grad(|| -> Result<(), WeightsError> {
        for (k, shape) in &model_shapes {
            if is_head(k) && !head_fits {
                report
                    .replaced
                    .push(((*k).clone(), shape.clone(), file.get(*k).map(|t| t.size())));
                continue;
            }
            if let Some(src) = file.get(*k) {
                let mut var = vars[*k].shallow_clone();
                var.f_copy_(&src.to_kind(var.kind()).to_device(var.device()))
                    .map_err(|source| WeightsError::Copy {
                        name: (*k).clone(),
                        source,
                    })?;
                report.loaded_names.push((*k).clone());
            }
        }
        Ok(())
    })?;
    if !head_fits {
        report.ignored = file.keys().filter(|k| is_head(k)).cloned().collect();
        report.ignored.sort();
    }
    report.loaded = report.loaded_names.len();
    report.head_skipped = report.replaced.len();
    Ok(report)
}

/// The most names one list of a [`WeightsError::DoNotFit`] message shows.
pub const LISTED: usize = 20;

/// The first [`LISTED`] names, and how many more there are.
fn first_names(list: &[String]) -> String {
    let shown = list[..list.len().min(LISTED)].join(", ");
    match list.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown}, … and {more} more"),
    }
}

/// Why `sweep-worker check-weights` refuses a `[pretrained]` file.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Build(#[from] crate::models::BuildError),
    #[error("{0}")]
    Weights(#[from] WeightsError),
    #[error("cannot build {backbone}: {message}")]
    Panic { backbone: String, message: String },
}

/// Whether `cfg.pretrained` loads into `cfg`'s network (backbone, head and
/// image size as the trial builds it; the class count does not matter, the
/// class layer is replaced when it does not fit): the very rules of
/// [`load`], on the CPU, reading the whole file (a truncated file fails
/// here). `sweep run` asks this for every `[pretrained]` file before
/// anything starts (`sweep-worker check-weights`). Ok(None): no file.
pub fn check(cfg: &sweep_protocol::TrialConfig) -> Result<Option<LoadReport>, CheckError> {
    let Some(path) = &cfg.pretrained else {
        return Ok(None);
    };
    let mut vs = VarStore::new(tch::Device::Cpu);
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::models::build_sized(
            &vs.root(),
            &cfg.backbone,
            2,
            &cfg.head,
            i64::from(cfg.image_size),
        )
    }))
    .map_err(|p| CheckError::Panic {
        backbone: cfg.backbone.clone(),
        message: p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    })??;
    Ok(Some(load(&mut vs, path, built.head_prefix)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sweep_protocol::Head;
    use tch::{Device, Kind, nn};

    /// `keep_precision = "half"` leaves float16 checkpoints: they load into the
    /// float32 model widened (exactly the float16 values), and it computes in float32.
    #[test]
    fn float16_safetensors_load_into_a_float32_model() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        crate::models::build(&vs.root(), "resnet18", 3, &Head::Original).unwrap();
        let half: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.to_kind(Kind::Half)))
            .collect();
        let path = dir.path().join("best.safetensors");
        Tensor::write_safetensors(&half, &path).unwrap();

        let mut fresh = nn::VarStore::new(Device::Cpu);
        let fresh_net =
            crate::models::build(&fresh.root(), "resnet18", 3, &Head::Original).unwrap();
        let report = load(&mut fresh, &path, fresh_net.head_prefix).unwrap();
        assert_eq!((report.loaded, report.head_skipped), (half.len(), 0));
        let loaded = fresh.variables();
        for (k, h) in &half {
            let v = &loaded[k];
            assert_eq!(v.kind(), Kind::Float, "{k}");
            assert!(
                v.equal(&h.to_kind(Kind::Float)),
                "{k}: not the float16 values widened"
            );
        }
    }
}
