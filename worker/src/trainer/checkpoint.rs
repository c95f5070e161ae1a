//! What a trial leaves on disk: `state.json` ([`State`]), the weights exports
//! (`last`, `best`) and `train_state.safetensors`, the commit of an epoch
//! (weights, optimizer state, loss scaler, counters). Every write is atomic
//! (temporary, rename); nothing here decides when to write.
use super::scaler::ScalerState;
use super::*;
use sweep_protocol::trial_dir::{self, TRAIN_STATE};

/// `state.json`; the same counters travel inside `train_state.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct State {
    /// The last completed epoch.
    pub(super) epoch: u32,
    /// Optimizer steps so far (one per batch).
    pub(super) step: u64,
    /// Validation accuracy of `best_epoch`.
    pub(super) best_val_accuracy: f64,
    /// The epoch of `best.safetensors` (0: none yet).
    pub(super) best_epoch: u32,
    /// Validation loss of `best_epoch` (absent in checkpoints of older workers).
    #[serde(default)]
    pub(super) best_val_loss: Option<f64>,
    /// What chose `best_epoch`.
    #[serde(default)]
    pub(super) select: SelectMetric,
}

impl State {
    pub(super) fn new(select: SelectMetric) -> State {
        State {
            epoch: 0,
            step: 0,
            best_val_accuracy: -1.0,
            best_epoch: 0,
            best_val_loss: None,
            select,
        }
    }

    /// Whether an epoch with these validation figures takes over as the best:
    /// strictly higher accuracy or strictly lower loss, as `select` says, so
    /// that a tie keeps the earlier epoch. The first epoch always does.
    pub(super) fn improves(&self, select: SelectMetric, val_loss: f64, val_accuracy: f64) -> bool {
        if self.best_epoch == 0 {
            return true;
        }
        match select {
            SelectMetric::ValAccuracy => val_accuracy > self.best_val_accuracy,
            SelectMetric::ValLoss => self.best_val_loss.is_none_or(|best| val_loss < best),
        }
    }
}

pub(super) struct Paths {
    pub(super) dir: PathBuf,
    pub(super) last: PathBuf,
    pub(super) best: PathBuf,
    pub(super) state: PathBuf,
    pub(super) train_state: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            last: dir.join(trial_dir::LAST),
            best: dir.join(trial_dir::BEST),
            state: dir.join(trial_dir::STATE),
            train_state: dir.join(TRAIN_STATE),
        }
    }
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| {
        Failure::new(
            ErrorClass::Internal,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    put_in_place(&tmp, path)
}

/// The temporary a checkpoint is written to before [`put_in_place`] (tch
/// picks the format from the extension, so it ends in .safetensors).
pub(super) fn checkpoint_tmp(path: &Path) -> PathBuf {
    path.with_extension("tmp.safetensors")
}

/// The commit of an atomic write: the finished temporary `tmp` renamed over `path`.
pub(super) fn put_in_place(tmp: &Path, path: &Path) -> Result<(), Failure> {
    std::fs::rename(tmp, path).map_err(|e| {
        Failure::new(
            ErrorClass::Internal,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

pub(super) fn disk_full_hint(e: &dyn std::fmt::Display) -> &'static str {
    if e.to_string().contains("No space left") {
        "; the disk is full: free space and rerun to resume from the last checkpoint"
    } else {
        ""
    }
}

pub(super) fn save_vs(vs: &nn::VarStore, path: &Path) -> Result<(), Failure> {
    let tmp = checkpoint_tmp(path);
    // Contiguous (NCHW) copies of channels-last weights: the file format is
    // the same whatever layout the trial trained in.
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.contiguous()))
        .collect();
    if let Err(e) = Tensor::write_safetensors(&named, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::new(
            ErrorClass::Internal,
            format!(
                "cannot save checkpoint {}: {e}{}",
                tmp.display(),
                disk_full_hint(&e)
            ),
        ));
    }
    put_in_place(&tmp, path)
}

/// `path` as a second name (hard link) of `same`, the checkpoint just
/// written from `vs`: the weights are not serialized and written twice.
/// Atomic (link to a temp name, rename over `path`); `same` is only ever
/// replaced by a rename, never rewritten in place, so `path` keeps these
/// bytes when `same` moves on. Where the filesystem has no hard links,
/// `vs` is written again.
pub(super) fn link_or_save(vs: &nn::VarStore, same: &Path, path: &Path) -> Result<(), Failure> {
    let tmp = checkpoint_tmp(path);
    let _ = std::fs::remove_file(&tmp);
    match std::fs::hard_link(same, &tmp) {
        Ok(()) => put_in_place(&tmp, path),
        Err(_) => save_vs(vs, path),
    }
}

pub(super) const TRAIN_STATE_FORMAT: u32 = 1;

/// The non-tensor part of `train_state.safetensors`, as JSON under the
/// `sweep` key of the safetensors metadata. Tensors are named `model.<var>`
/// (every variable: parameters and BatchNorm buffers) and `optim.<param>.<slot>`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TrainMeta {
    pub(super) format: u32,
    pub(super) state: State,
    /// `sgd`, `adam` or `adamw`.
    pub(super) optimizer: String,
    pub(super) scaler: ScalerState,
    /// The RNG state: the torch generators are reseeded with
    /// `epoch_seed(rng_seed, epoch)` at every epoch start, so this seed and the
    /// next epoch determine it.
    pub(super) rng_seed: u64,
    /// The floats above as IEEE-754 bits, which are what a resume restores:
    /// serde_json parses decimals best-effort and may miss by one ulp, which
    /// could turn a tie in the best-checkpoint choice.
    pub(super) bits: FloatBits,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct FloatBits {
    pub(super) best_val_accuracy: u64,
    pub(super) best_val_loss: Option<u64>,
    pub(super) scale: u64,
}

impl FloatBits {
    pub(super) fn of(state: &State, scaler: &ScalerState) -> FloatBits {
        FloatBits {
            best_val_accuracy: state.best_val_accuracy.to_bits(),
            best_val_loss: state.best_val_loss.map(f64::to_bits),
            scale: scaler.scale.to_bits(),
        }
    }

    pub(super) fn restore(&self, state: &mut State, scaler: &mut ScalerState) {
        state.best_val_accuracy = f64::from_bits(self.best_val_accuracy);
        state.best_val_loss = self.best_val_loss.map(f64::from_bits);
        scaler.scale = f64::from_bits(self.scale);
    }
}

pub(super) struct SavedTrainState {
    pub(super) meta: TrainMeta,
    pub(super) model: HashMap<String, Tensor>,
    pub(super) optim: HashMap<String, Tensor>,
}

/// A tensor's bytes for safetensors, from a contiguous CPU copy.
pub(super) struct CpuView {
    pub(super) tensor: Tensor,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: safetensors::Dtype,
}

pub(super) fn dtype_of(kind: Kind) -> Option<safetensors::Dtype> {
    use safetensors::Dtype as D;
    Some(match kind {
        Kind::Float => D::F32,
        Kind::Double => D::F64,
        Kind::Half => D::F16,
        Kind::BFloat16 => D::BF16,
        Kind::Int64 => D::I64,
        Kind::Int => D::I32,
        Kind::Uint8 => D::U8,
        Kind::Bool => D::BOOL,
        _ => return None,
    })
}

pub(super) fn kind_of(dtype: safetensors::Dtype) -> Option<Kind> {
    [
        Kind::Float,
        Kind::Double,
        Kind::Half,
        Kind::BFloat16,
        Kind::Int64,
        Kind::Int,
        Kind::Uint8,
        Kind::Bool,
    ]
    .into_iter()
    .find(|k| dtype_of(*k) == Some(dtype))
}

impl safetensors::View for CpuView {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let mut bytes = vec![0u8; self.data_len()];
        self.tensor.copy_data_u8(&mut bytes, self.tensor.numel());
        bytes.into()
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

pub(super) fn write_train_state(
    path: &Path,
    meta: &TrainMeta,
    tensors: Vec<(String, Tensor)>,
) -> Result<(), Failure> {
    let internal = |m: String| Failure::new(ErrorClass::Internal, m);
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = dtype_of(t.kind())
            .ok_or_else(|| internal(format!("cannot checkpoint {name}: dtype {:?}", t.kind())))?;
        let tensor = t.detach().to_device(Device::Cpu).contiguous();
        views.push((
            name,
            CpuView {
                shape: tensor.size().iter().map(|&d| d as usize).collect(),
                tensor,
                dtype,
            },
        ));
    }
    let json = serde_json::to_string(meta).map_err(|e| internal(e.to_string()))?;
    let metadata = Some(HashMap::from([("sweep".to_string(), json)]));
    let tmp = checkpoint_tmp(path);
    let written = safetensors::serialize_to_file(views, &metadata, &tmp)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(internal(format!(
            "cannot save checkpoint {}: {e}{}",
            tmp.display(),
            disk_full_hint(&e)
        )));
    }
    put_in_place(&tmp, path)
}

/// Why `train_state.safetensors` cannot be resumed from (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub(super) enum ResumeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0:?}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("no `sweep` metadata")]
    NoMetadata,
    #[error("metadata: {0}")]
    Metadata(serde_json::Error),
    #[error("format {0} (this worker reads {TRAIN_STATE_FORMAT})")]
    Format(u32),
    #[error("{name}: dtype {dtype:?}")]
    Dtype {
        name: String,
        dtype: safetensors::Dtype,
    },
    #[error("unexpected tensor {0}")]
    UnexpectedTensor(String),
    #[error("{0} is not a variable of this model")]
    NotAVariable(String),
    #[error("{0} is missing")]
    Missing(String),
    #[error("{name} has shape {file:?}, the model {model:?}")]
    Shape {
        name: String,
        file: Vec<i64>,
        model: Vec<i64>,
    },
    #[error("{name}: {source}")]
    Torch { name: String, source: tch::TchError },
}

pub(super) fn read_train_state(path: &Path) -> Result<SavedTrainState, ResumeError> {
    let bytes = std::fs::read(path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("sweep"))
        .ok_or(ResumeError::NoMetadata)?;
    let mut meta: TrainMeta = serde_json::from_str(json).map_err(ResumeError::Metadata)?;
    let bits = meta.bits;
    bits.restore(&mut meta.state, &mut meta.scaler);
    if meta.format != TRAIN_STATE_FORMAT {
        return Err(ResumeError::Format(meta.format));
    }
    let file = safetensors::SafeTensors::deserialize(&bytes)?;
    let (mut model, mut optim) = (HashMap::new(), HashMap::new());
    for (name, view) in file.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| ResumeError::Dtype {
            name: name.clone(),
            dtype: view.dtype(),
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|source| {
            ResumeError::Torch {
                name: name.clone(),
                source,
            }
        })?;
        if let Some(k) = name.strip_prefix("model.") {
            model.insert(k.to_string(), t);
        } else if let Some(k) = name.strip_prefix("optim.") {
            optim.insert(k.to_string(), t);
        } else {
            return Err(ResumeError::UnexpectedTensor(name));
        }
    }
    Ok(SavedTrainState { meta, model, optim })
}

/// Copies `tensors` into the store's variables: the same names, the same shapes.
pub(super) fn load_weights(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), ResumeError> {
    let vars = vs.variables();
    if let Some(extra) = tensors.keys().find(|k| !vars.contains_key(*k)) {
        return Err(ResumeError::NotAVariable(extra.clone()));
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let src = tensors
                .get(name)
                .ok_or_else(|| ResumeError::Missing(name.clone()))?;
            if src.size() != var.size() {
                return Err(ResumeError::Shape {
                    name: name.clone(),
                    file: src.size(),
                    model: var.size(),
                });
            }
            var.shallow_clone()
                .f_copy_(src)
                .map_err(|source| ResumeError::Torch {
                    name: name.clone(),
                    source,
                })?;
        }
        Ok(())
    })
}
