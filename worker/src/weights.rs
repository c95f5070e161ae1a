//! Pretrained weights: `.safetensors`, or a torchvision checkpoint exactly as
//! torchvision downloads it (a `torch.save`d state_dict, zip format), read with
//! libtorch's own loader — no Python at run time.
//!
//! Rules: `num_batches_tracked` buffers are ignored (tch's BatchNorm has none);
//! head keys (under `fc.` / `classifier.`) are loaded only when every one of
//! them matches the model's head in name and shape, otherwise the head counts as
//! replaced and all of them are skipped; any other missing key, unexpected key or
//! shape mismatch is an error that lists them all.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Tensor, nn::VarStore};

pub fn read(path: &Path) -> Result<HashMap<String, Tensor>, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let named = match ext {
        "safetensors" => Tensor::read_safetensors(path),
        // torch.save's zip archive of a state_dict.
        _ => return crate::pth::read(path).map(|v| v.into_iter().collect()),
    }
    .map_err(|e| format!("cannot read weights {}: {e}", path.display()))?;
    Ok(named.into_iter().collect())
}

/// What happened while loading, for the worker's log.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    pub head_skipped: usize,
}

pub fn load_into(vs: &mut VarStore, path: &Path, head_prefix: &str) -> Result<LoadReport, String> {
    let file: HashMap<String, Tensor> = read(path)?.into_iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).collect();
    let vars = vs.variables();
    let is_head = |k: &str| k == head_prefix || k.starts_with(&format!("{head_prefix}."));
    let model_shapes: BTreeMap<&String, Vec<i64>> = vars.iter().map(|(k, t)| (k, t.size())).collect();

    let head_matches = vars.iter().filter(|(k, _)| is_head(k)).all(|(k, t)| file.get(k).map(|f| f.size() == t.size()).unwrap_or(false))
        && file.keys().filter(|k| is_head(k)).all(|k| vars.contains_key(k));

    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (k, shape) in &model_shapes {
        if is_head(k) {
            continue;
        }
        match file.get(*k) {
            None => missing.push((*k).clone()),
            Some(t) if &t.size() != shape => mismatched.push(format!("{k}: file {:?} vs model {:?}", t.size(), shape)),
            Some(_) => {}
        }
    }
    let unexpected: Vec<String> = file.keys().filter(|k| !is_head(k) && !vars.contains_key(*k)).cloned().collect();
    if !(missing.is_empty() && mismatched.is_empty() && unexpected.is_empty()) {
        let mut msg = format!("weights {} do not fit the model:", path.display());
        let mut unexpected = unexpected;
        unexpected.sort();
        for (label, list) in [("missing", &missing), ("unexpected", &unexpected), ("shape mismatch", &mismatched)] {
            if !list.is_empty() {
                msg.push_str(&format!("\n  {label} ({}): {}", list.len(), list.join(", ")));
            }
        }
        msg.push_str("\n  check that the file was saved from the same backbone (torchvision names, e.g. conv1.weight)");
        return Err(msg);
    }
    let mut report = LoadReport::default();
    tch::no_grad(|| -> Result<(), String> {
        for (k, var) in &vars {
            if is_head(k) && !head_matches {
                report.head_skipped += 1;
                continue;
            }
            if let Some(src) = file.get(k) {
                let mut var = var.shallow_clone();
                var.f_copy_(&src.to_kind(var.kind()).to_device(var.device())).map_err(|e| format!("{k}: {e}"))?;
                report.loaded += 1;
            }
        }
        Ok(())
    })?;
    Ok(report)
}
