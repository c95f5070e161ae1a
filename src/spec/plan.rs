//! Validation: raw sweep file → `SweepPlan`, the only thing the scheduler accepts.
//!
//! Every user mistake (unknown key, wrong type, out-of-range value, missing
//! dataset) is found here, before anything is written or launched, and reported
//! with `file:line:col`. This module reads the disk only to check that the
//! dataset and weight files exist.
//!
//! How trials are formed: every point of the cartesian product of `[grid]`,
//! combined with each of the `[random].samples` draws (drawn once per sweep from
//! a seed derived from its name, so adding a grid value keeps the other trials'
//! ids), plus each `[[trial]]`; every one of them starts from `[defaults]` and
//! is repeated once per entry of `[sweep].seeds`.
use super::id::trial_id;
use super::raw::{GridValues, Params, RawFile, Source, SpecError, did_you_mean};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sweep_protocol::{BACKBONES, Head, Optimizer, Schedule, SelectMetric, TrialConfig};
use toml::{Spanned, Value};

pub use sweep_protocol::PARAM_KEYS;

/// The most trials one sweep file may plan.
pub const MAX_TRIALS: usize = 100_000;

/// `[sweep] metric`: what picks each trial's best checkpoint.
pub const METRICS: [&str; 2] = ["val_accuracy", "val_loss"];
const AUGMENTS: [&str; 2] = ["random_resized_crop", "hflip"];

/// `[stopping] method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMethod {
    None,
    /// Asynchronous successive halving (Li et al., MLSys 2020).
    Asha,
    /// Several ASHA brackets with growing `min_epochs`, trials assigned round-robin.
    Hyperband,
    /// The median stopping rule (Golovin et al., KDD 2017).
    Median,
}

impl StopMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMethod::None => "none",
            StopMethod::Asha => "asha",
            StopMethod::Hyperband => "hyperband",
            StopMethod::Median => "median",
        }
    }
}

/// Early stopping across trials (`[stopping]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stopping {
    pub method: StopMethod,
    /// Judged on this validation figure (default: `[sweep] metric`).
    pub metric: SelectMetric,
    /// The first rung (grace period); rungs at min_epochs · reduction^k.
    pub min_epochs: u32,
    pub reduction: u32,
    /// Stop a trial after this many epochs without improving its best.
    pub patience: Option<u32>,
    /// Test pruned trials too (on their best checkpoint); default false.
    pub test_pruned: bool,
    /// Seconds a stopped trial has to end after its stop line before it gets
    /// SIGTERM (a worker that ignores its stdin). Default 120.
    pub stop_grace: u32,
}

impl Stopping {
    pub fn none(metric: SelectMetric) -> Stopping {
        Stopping {
            method: StopMethod::None,
            metric,
            min_epochs: 1,
            reduction: 3,
            patience: None,
            test_pruned: false,
            stop_grace: 120,
        }
    }

    pub fn active(&self) -> bool {
        self.method != StopMethod::None || self.patience.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GpuSelection {
    All,
    List(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub gpus: GpuSelection,
    pub trials_per_gpu: u32,
    pub cpu_workers: CpuWorkers,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// On an `oom` failure, retry with half the batch size (default true).
    pub oom_retry_halve_batch: bool,
    /// Which checkpoints a finished trial keeps (`[resources] keep`).
    pub keep: Keep,
    /// The precision of the weights a done trial keeps (`[resources] keep_precision`).
    pub keep_precision: KeepPrecision,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            gpus: GpuSelection::All,
            trials_per_gpu: 1,
            cpu_workers: CpuWorkers::Auto,
            timeout: None,
            retries: 1,
            oom_retry_halve_batch: true,
            keep: Keep::Best,
            keep_precision: KeepPrecision::Full,
        }
    }
}

/// `[resources] cpu_workers`: how many trials run at once without a GPU (the
/// machine's cores are split evenly between them as torch threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuWorkers {
    /// One trial per core, no more than there are trials to run, nor than the
    /// available memory holds (`coordinator::launcher::auto_cpu_workers`).
    #[default]
    Auto,
    Fixed(u32),
}

pub use sweep_trialfiles::{Keep, KeepPrecision};

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTrial {
    pub id: String,
    pub config: TrialConfig,
}

#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub name: String,
    pub file: PathBuf,
    pub toml: String,
    pub dataset: PathBuf,
    pub metric: String,
    /// What picks each trial's best checkpoint (from `metric`).
    pub select: SelectMetric,
    pub stopping: Stopping,
    pub description: Option<String>,
    pub resources: Resources,
    pub trials: Vec<PlannedTrial>,
    /// Parameter keys that take more than one value across trials (report columns).
    pub varying: Vec<String>,
    /// `launcher = "slurm"` and its `[slurm]` table; None: the local launcher.
    pub slurm: Option<super::slurm::SlurmSpec>,
    /// `[random] sampler = "tpe"`: the space the coordinator proposes the
    /// points after the startup draws (`trials`) in.
    pub search: Option<super::search::SearchSpace>,
}

pub fn load(path: &Path) -> Result<SweepPlan, SpecError> {
    let src = Source::read(path)?;
    let raw = src.parse()?;
    build(&src, raw)
}

fn at<T>(src: &Source, s: &Spanned<T>, msg: impl Into<String>, help: Option<String>) -> SpecError {
    src.error_at(s.span().start, msg, help)
}

/// A `[resources]` string that must be one of `names`: parsed, or an error at
/// it that lists them (`note` follows the list).
fn named_setting<T>(
    src: &Source,
    value: &Spanned<String>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
    note: &str,
) -> Result<T, SpecError> {
    parse(value.get_ref()).ok_or_else(|| {
        let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        at(
            src,
            value,
            format!("unknown `{key}` {:?}", value.get_ref()),
            Some(format!("use one of {}{note}", quoted.join(", "))),
        )
    })
}

pub fn build(src: &Source, raw: RawFile) -> Result<SweepPlan, SpecError> {
    let header = sweep_header(src, &raw)?;
    let pretrained = pretrained_weights(src, &raw)?;
    let resources = match &raw.resources {
        None => Resources::default(),
        Some(r) => resources(src, r.get_ref())?,
    };
    let mut base = Point::default();
    for (k, v) in &raw.defaults {
        base.set(src, k, v)?;
    }
    let axes = grid_axes(src, &raw, &base)?;
    let (random_draws, tpe) = match &raw.random {
        Some(r) => tpe_or_random(src, &raw, r, &header, &pretrained, &base)?,
        None => (vec![vec![]], None),
    };
    check_size(src, &raw, &axes, random_draws.len(), header.seeds.len())?;
    let points = expand(src, &raw, &base, &axes, &random_draws)?;
    let trials = seeded_trials(src, &header, &pretrained, points)?;
    let varying = varying_keys(&trials);
    let select = if header.metric == "val_loss" {
        SelectMetric::ValLoss
    } else {
        SelectMetric::ValAccuracy
    };
    let stopping = match &raw.stopping {
        None => Stopping::none(select),
        Some(st) => stopping(src, st.get_ref(), select)?,
    };
    let slurm = super::slurm::validate(
        src,
        raw.resources
            .as_ref()
            .and_then(|r| r.get_ref().launcher.as_ref()),
        raw.slurm.as_ref(),
    )?;
    if let (Some(_), Some(g)) = (
        &slurm,
        raw.resources
            .as_ref()
            .and_then(|r| r.get_ref().gpus.as_ref())
            .filter(|g| g.get_ref().is_array()),
    ) {
        return Err(at(
            src,
            g,
            "`gpus` lists local devices, but the launcher is \"slurm\"",
            Some("with Slurm each trial gets the GPUs of its job: set [slurm] gres = \"gpu:1\" instead".into()),
        ));
    }
    Ok(SweepPlan {
        name: header.name,
        file: src.path.clone(),
        toml: src.text.clone(),
        dataset: header.dataset,
        metric: header.metric,
        select,
        stopping,
        description: header.description,
        resources,
        trials,
        varying,
        slurm,
        search: tpe,
    })
}

/// `[random]`'s draws; with `sampler = "tpe"` only the `startup` ones, and the
/// space TPE proposes the others in.
fn tpe_or_random(
    src: &Source,
    raw: &RawFile,
    r: &Spanned<Params>,
    header: &Header,
    pretrained: &BTreeMap<String, PathBuf>,
    base: &Point,
) -> Result<(Vec<Draw>, Option<super::search::SearchSpace>), SpecError> {
    let (mut draws, dists) = random_samples(src, r, &header.name, &base.config)?;
    let (sampler, startup) = super::search::sampler_settings(src, r, draws.len())?;
    if sampler == super::search::Sampler::Random {
        return Ok((draws, None));
    }
    let help = Some("with sampler = \"tpe\" every varying parameter goes in [random], e.g. backbone = { choice = [\"resnet18\", \"resnet34\"] }".to_string());
    if let Some((k, _)) = raw.grid.iter().next() {
        return Err(at(
            src,
            k,
            "[grid] cannot be combined with sampler = \"tpe\"",
            help,
        ));
    }
    if let Some(t) = raw.trial.first() {
        return Err(at(
            src,
            t,
            "[[trial]] cannot be combined with sampler = \"tpe\"",
            help,
        ));
    }
    for (k, span, d) in &dists {
        super::search::check_bounds(src, &base.config, k, span.clone(), d)?;
    }
    let samples = draws.len();
    draws.truncate(startup);
    let space = super::search::SearchSpace {
        dims: dists
            .iter()
            .map(|(k, _, d)| (k.get_ref().clone(), d.clone()))
            .collect(),
        samples,
        startup,
        seed: name_seed(&header.name),
        spans: dists
            .iter()
            .map(|(k, span, _)| (k.span(), span.clone()))
            .collect(),
        base: base.clone(),
        seeds: header.seeds.clone(),
        pretrained: pretrained.clone(),
        name: header.name.clone(),
        dataset: header.dataset.clone(),
        file: src.path.clone(),
        text: src.text.clone(),
    };
    Ok((draws, Some(space)))
}

/// FNV-1a of the sweep name: the seed of its random draws and TPE proposals.
fn name_seed(name: &str) -> u64 {
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        seed = (seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    seed
}

/// `[sweep]`: name, dataset, metric, seeds.
struct Header {
    name: String,
    dataset: PathBuf,
    metric: String,
    description: Option<String>,
    seeds: Vec<u64>,
}

fn sweep_header(src: &Source, raw: &RawFile) -> Result<Header, SpecError> {
    let sweep = raw.sweep.get_ref();
    let name = sweep.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(at(
            src,
            &sweep.name,
            format!("invalid sweep name {name:?}"),
            Some("use letters, digits, '-' and '_' only (it names a folder under results/)".into()),
        ));
    }
    let dataset = PathBuf::from(sweep.dataset.get_ref());
    check_dataset(&dataset).map_err(|m| {
        at(src, &sweep.dataset, m.to_string(), Some("generate the demo data with `sweep data demo data/demo`, or point `dataset` at an ImageFolder root (paths are relative to the current directory)".into()))
    })?;
    let metric = match &sweep.metric {
        None => "val_accuracy".to_string(),
        Some(m) if METRICS.contains(&m.get_ref().as_str()) => m.get_ref().clone(),
        Some(m) => {
            let help = if matches!(
                m.get_ref().as_str(),
                "accuracy" | "loss" | "test_accuracy" | "test_loss"
            ) {
                "the metric picks each trial's best checkpoint, so it must be a validation figure: val_accuracy or val_loss (`sweep report --best accuracy` still ranks by test accuracy)".to_string()
            } else {
                format!("valid metrics: {}", METRICS.join(", "))
            };
            return Err(at(
                src,
                m,
                format!("unknown metric {:?}", m.get_ref()),
                Some(help),
            ));
        }
    };
    let seeds = match &sweep.seeds {
        None => vec![0],
        Some(list) => seeds(src, list)?,
    };
    Ok(Header {
        name,
        dataset,
        metric,
        description: sweep.description.clone(),
        seeds,
    })
}

fn seeds(src: &Source, list: &Spanned<Vec<Spanned<i64>>>) -> Result<Vec<u64>, SpecError> {
    if list.get_ref().is_empty() {
        return Err(at(
            src,
            list,
            "`seeds` is empty",
            Some("give at least one seed, e.g. seeds = [0]".into()),
        ));
    }
    let mut out = Vec::new();
    for s in list.get_ref() {
        if *s.get_ref() < 0 {
            return Err(at(src, s, "a seed must be ≥ 0", None));
        }
        let v = *s.get_ref() as u64;
        if out.contains(&v) {
            return Err(at(src, s, format!("seed {v} is listed twice"), None));
        }
        out.push(v);
    }
    Ok(out)
}

/// `[pretrained]`: backbone → weights file (must exist).
fn pretrained_weights(src: &Source, raw: &RawFile) -> Result<BTreeMap<String, PathBuf>, SpecError> {
    let mut pretrained = BTreeMap::new();
    for (k, v) in &raw.pretrained {
        if !BACKBONES.contains(&k.get_ref().as_str()) {
            return Err(unknown_backbone(src, k, k.get_ref()));
        }
        let p = PathBuf::from(v.get_ref());
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "safetensors" | "pth" | "pt") {
            return Err(at(
                src,
                v,
                format!(
                    "weights file {:?} is neither .safetensors nor .pth/.pt",
                    v.get_ref()
                ),
                None,
            ));
        }
        if !p.is_file() {
            return Err(at(
                src,
                v,
                format!("weights file {:?} does not exist", v.get_ref()),
                Some("paths are relative to the current directory".into()),
            ));
        }
        pretrained.insert(k.get_ref().clone(), p);
    }
    Ok(pretrained)
}

type Axis<'a> = (&'a Spanned<String>, Vec<Spanned<Value>>);

/// `[grid]`: each key's values, each validated on a scratch config.
fn grid_axes<'a>(src: &Source, raw: &'a RawFile, base: &Point) -> Result<Vec<Axis<'a>>, SpecError> {
    let mut axes = Vec::new();
    for (k, v) in &raw.grid {
        let values = match v.get_ref() {
            GridValues::List(items) if !items.is_empty() => items.clone(),
            GridValues::List(_) => {
                return Err(at(
                    src,
                    v,
                    format!("grid `{}` has no values", k.get_ref()),
                    Some("give at least one value, or remove the key".into()),
                ));
            }
            GridValues::NotList => {
                return Err(at(
                    src,
                    v,
                    format!("grid `{}` must be an array of values", k.get_ref()),
                    Some(format!("write {} = [...]", k.get_ref())),
                ));
            }
        };
        for val in &values {
            base.clone().set(src, k, val)?;
        }
        axes.push((k, values));
    }
    Ok(axes)
}

/// Refuses an absurd product before building it (memory and time would run out first).
fn check_size(
    src: &Source,
    raw: &RawFile,
    axes: &[Axis<'_>],
    draws: usize,
    seeds: usize,
) -> Result<(), SpecError> {
    let per_point = draws.saturating_mul(seeds);
    let grid_size = axes
        .iter()
        .fold(1usize, |n, (_, v)| n.saturating_mul(v.len()));
    let planned = grid_size
        .saturating_mul(per_point)
        .saturating_add(raw.trial.len().saturating_mul(seeds));
    if planned <= MAX_TRIALS {
        return Ok(());
    }
    let sizes: Vec<String> = axes
        .iter()
        .map(|(k, v)| format!("{} {}", v.len(), k.get_ref()))
        .collect();
    let what = format!(
        "this sweep would plan {} trials (grid {} × {draws} random draw(s) × {seeds} seed(s), + {} [[trial]] × seeds); the limit is {MAX_TRIALS}",
        if planned == usize::MAX {
            "too many".to_string()
        } else {
            planned.to_string()
        },
        if sizes.is_empty() {
            "1".to_string()
        } else {
            sizes.join(" × ")
        },
        raw.trial.len()
    );
    let help = Some(
        "split it into several sweeps, or use [random] samples instead of a full grid".to_string(),
    );
    Err(match (axes.first(), &raw.random) {
        (Some((k, _)), _) => at(src, k, what, help),
        (None, Some(r)) => at(src, r, what, help),
        (None, None) => at(src, &raw.sweep, what, help),
    })
}

/// A config being built, and where each key was set (for cross-checks that
/// point at the right place, and for defaults that depend on other keys).
#[derive(Clone, Default, Debug)]
pub(super) struct Point {
    config: TrialConfig,
    set_at: BTreeMap<String, usize>,
}

impl Point {
    pub(super) fn set(
        &mut self,
        src: &Source,
        k: &Spanned<String>,
        v: &Spanned<Value>,
    ) -> Result<(), SpecError> {
        apply(src, &mut self.config, k, v)?;
        self.set_at.insert(k.get_ref().clone(), k.span().start);
        Ok(())
    }

    /// Cross-checks between keys, and defaults that depend on the optimizer.
    pub(super) fn finish(mut self, src: &Source) -> Result<TrialConfig, SpecError> {
        let c = &mut self.config;
        let err = |key: &str, msg: String, help: &str| {
            src.error_at(
                self.set_at.get(key).copied().unwrap_or(0),
                msg,
                Some(help.to_string()),
            )
        };
        let adam = matches!(c.optimizer, Optimizer::Adam | Optimizer::Adamw);
        if c.nesterov && adam {
            return Err(err(
                "nesterov",
                format!(
                    "`nesterov = true` needs optimizer = \"sgd\" (this trial uses {:?})",
                    c.optimizer
                ),
                "remove `nesterov`, or use sgd",
            ));
        }
        if c.nesterov && c.momentum <= 0.0 {
            return Err(err(
                "nesterov",
                "`nesterov = true` needs `momentum` > 0".into(),
                "set momentum (e.g. 0.9), or remove `nesterov`",
            ));
        }
        if adam && self.set_at.contains_key("momentum") {
            return Err(err(
                "momentum",
                format!(
                    "`momentum` means nothing for {:?}: Adam and AdamW use `betas`",
                    c.optimizer
                ),
                "remove `momentum` for this optimizer, or set betas = [0.9, 0.999]",
            ));
        }
        if !adam {
            for key in ["betas", "eps"] {
                if self.set_at.contains_key(key) {
                    return Err(err(
                        key,
                        format!("`{key}` applies to adam and adamw only (this trial uses sgd)"),
                        "remove it, or choose optimizer = \"adam\"",
                    ));
                }
            }
        }
        if let Some(sweep_protocol::config::CacheSize::Short(n)) = c.cache_size
            && n < c.image_size
        {
            return Err(err(
                "cache_size",
                format!(
                    "`cache_size = {n}` is smaller than image_size {}: the crops would be upsampled",
                    c.image_size
                ),
                &format!(
                    "use at least {} (the default is {}), or \"original\"",
                    c.image_size,
                    sweep_protocol::config::default_cache_short(c.image_size)
                ),
            ));
        }
        // PyTorch's AdamW default weight decay is 0.01 (SGD's and Adam's is 0).
        if c.optimizer == Optimizer::Adamw && !self.set_at.contains_key("weight_decay") {
            c.weight_decay = 0.01;
        }
        Ok(self.config)
    }
}

/// Every point of the grid × random draws, plus each `[[trial]]`, before seeds.
fn expand(
    src: &Source,
    raw: &RawFile,
    base: &Point,
    axes: &[Axis<'_>],
    random_draws: &[Vec<(Spanned<String>, Spanned<Value>)>],
) -> Result<Vec<TrialConfig>, SpecError> {
    let mut grid_points: Vec<Vec<(&Spanned<String>, &Spanned<Value>)>> = vec![vec![]];
    for (k, values) in axes {
        grid_points = grid_points
            .iter()
            .flat_map(|p| {
                values
                    .iter()
                    .map(move |v| p.iter().copied().chain([(*k, v)]).collect())
            })
            .collect();
    }
    let mut points = Vec::new();
    if !(raw.grid.is_empty() && raw.random.is_none() && !raw.trial.is_empty()) {
        for gp in &grid_points {
            for draw in random_draws {
                let mut p = base.clone();
                for (k, v) in gp.iter().copied().chain(draw.iter().map(|(k, v)| (k, v))) {
                    p.set(src, k, v)?;
                }
                points.push(p.finish(src)?);
            }
        }
    }
    for t in &raw.trial {
        let mut p = base.clone();
        for (k, v) in t.get_ref() {
            p.set(src, k, v)?;
        }
        points.push(p.finish(src)?);
    }
    Ok(points)
}

/// One trial per point and seed, with its id. The same config twice is one
/// trial; two different configs with one id (a hash collision) are refused.
fn seeded_trials(
    src: &Source,
    header: &Header,
    pretrained: &BTreeMap<String, PathBuf>,
    points: Vec<TrialConfig>,
) -> Result<Vec<PlannedTrial>, SpecError> {
    let mut trials = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in points {
        for &seed in &header.seeds {
            let mut c = p.clone();
            c.seed = seed;
            c.pretrained = pretrained.get(&c.backbone).cloned();
            let id = trial_id(&header.name, &header.dataset, &c);
            match seen.get(&id) {
                None => {
                    seen.insert(id.clone(), trials.len());
                    trials.push(PlannedTrial { id, config: c });
                }
                Some(&i) if trials[i].config == c => {}
                Some(_) => {
                    return Err(src.error_at(
                        0,
                        format!("two different trials of this sweep have the same id {id} (a hash collision)"),
                        Some("rename the sweep ([sweep] name) to get new ids".into()),
                    ));
                }
            }
        }
    }
    Ok(trials)
}

/// Keys whose value differs between trials (plus `seed` when there are several).
pub fn varying_keys(trials: &[PlannedTrial]) -> Vec<String> {
    let json: Vec<serde_json::Map<String, serde_json::Value>> = trials
        .iter()
        .map(|t| match serde_json::to_value(&t.config) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        })
        .collect();
    sweep_protocol::config::varying_keys(&json.iter().collect::<Vec<_>>())
}

fn unknown_backbone(src: &Source, s: &Spanned<impl Sized>, name: &str) -> SpecError {
    let help = match did_you_mean(name, BACKBONES) {
        Some(b) => format!(
            "did you mean `{b}`? valid backbones: {}",
            BACKBONES.join(", ")
        ),
        None => format!("valid backbones: {}", BACKBONES.join(", ")),
    };
    at(src, s, format!("unknown backbone {name:?}"), Some(help))
}

/// Why `[sweep] dataset` is not an ImageFolder root; reported at the key's
/// line as a `SpecError` (exit 2).
#[derive(Debug, thiserror::Error)]
enum DatasetProblem {
    #[error("dataset {:?} does not exist", .0.display().to_string())]
    Missing(PathBuf),
    #[error("dataset {:?} is not a directory", .0.display().to_string())]
    NotADirectory(PathBuf),
    #[error("dataset {:?} is not an ImageFolder root: missing {}", root.display().to_string(), splits.join(", "))]
    MissingSplits {
        root: PathBuf,
        splits: Vec<&'static str>,
    },
    #[error(transparent)]
    Layout(#[from] sweep_dataset::imagefolder::DataError),
}

fn check_dataset(root: &Path) -> Result<(), DatasetProblem> {
    if !root.exists() {
        return Err(DatasetProblem::Missing(root.to_path_buf()));
    }
    if !root.is_dir() {
        return Err(DatasetProblem::NotADirectory(root.to_path_buf()));
    }
    let mut missing = Vec::new();
    if !root.join("train").is_dir() {
        missing.push("train/");
    }
    if !root.join("valid").is_dir() && !root.join("val").is_dir() {
        missing.push("valid/ (or val/)");
    }
    if !root.join("test").is_dir() {
        missing.push("test/");
    }
    if !missing.is_empty() {
        return Err(DatasetProblem::MissingSplits {
            root: root.to_path_buf(),
            splits: missing,
        });
    }
    // The whole layout (classes in every split, no empty class) is checked
    // here, so that a layout error is exit 2 before anything starts rather
    // than a failed trial. Listing files is cheap; no image is decoded.
    sweep_dataset::imagefolder::scan(root).map(drop)?;
    Ok(())
}

fn stopping(
    src: &Source,
    r: &super::raw::RawStopping,
    default_metric: SelectMetric,
) -> Result<Stopping, SpecError> {
    let mut out = Stopping::none(default_metric);
    if let Some(m) = &r.method {
        out.method = match m.get_ref().as_str() {
            "none" => StopMethod::None,
            "asha" => StopMethod::Asha,
            "hyperband" => StopMethod::Hyperband,
            "median" => StopMethod::Median,
            other => {
                return Err(at(
                    src,
                    m,
                    format!("unknown stopping method {other:?}"),
                    Some("valid methods: asha, hyperband, median, none".into()),
                ));
            }
        };
    }
    if let Some(m) = &r.metric {
        out.metric = match m.get_ref().as_str() {
            "val_accuracy" => SelectMetric::ValAccuracy,
            "val_loss" => SelectMetric::ValLoss,
            other => {
                return Err(at(
                    src,
                    m,
                    format!("unknown stopping metric {other:?}"),
                    Some("valid metrics: val_accuracy, val_loss".into()),
                ));
            }
        };
    }
    let ranged = |s: &Spanned<i64>, key: &str, min: i64, max: i64| -> Result<u32, SpecError> {
        let v = *s.get_ref();
        if v < min || v > max {
            return Err(at(
                src,
                s,
                format!("`{key}` must be between {min} and {max}, got {v}"),
                None,
            ));
        }
        Ok(v as u32)
    };
    if let Some(v) = &r.min_epochs {
        out.min_epochs = ranged(v, "min_epochs", 1, 10_000)?;
    }
    if let Some(v) = &r.reduction {
        out.reduction = ranged(v, "reduction", 2, 100)?;
    }
    if let Some(v) = &r.patience {
        out.patience = Some(ranged(v, "patience", 1, 10_000)?);
    }
    if let Some(v) = &r.test_pruned {
        out.test_pruned = *v.get_ref();
    }
    if let Some(v) = &r.stop_grace {
        out.stop_grace = ranged(v, "stop_grace", 1, 86_400)?;
    }
    Ok(out)
}

fn resources(src: &Source, r: &super::raw::RawResources) -> Result<Resources, SpecError> {
    let mut out = Resources::default();
    if let Some(g) = &r.gpus {
        out.gpus = match g.get_ref() {
            Value::String(s) if s == "all" => GpuSelection::All,
            Value::Array(items) => {
                let mut ids = Vec::new();
                for i in items {
                    match i.as_integer() {
                        Some(n) if (0..=1024).contains(&n) => ids.push(n as u32),
                        _ => {
                            return Err(at(
                                src,
                                g,
                                "`gpus` must be \"all\" or a list of device indices",
                                Some("e.g. gpus = [0, 1]".into()),
                            ));
                        }
                    }
                }
                GpuSelection::List(ids)
            }
            _ => {
                return Err(at(
                    src,
                    g,
                    "`gpus` must be \"all\" or a list of device indices",
                    Some("e.g. gpus = [0, 1]".into()),
                ));
            }
        };
    }
    let positive = |s: &Spanned<i64>, key: &str, max: i64| -> Result<u32, SpecError> {
        let v = *s.get_ref();
        if v < 1 || v > max {
            return Err(at(
                src,
                s,
                format!("`{key}` must be between 1 and {max}, got {v}"),
                None,
            ));
        }
        Ok(v as u32)
    };
    if let Some(t) = &r.trials_per_gpu {
        out.trials_per_gpu = positive(t, "trials_per_gpu", 64)?;
    }
    if let Some(t) = &r.cpu_workers {
        out.cpu_workers = match t.get_ref() {
            Value::String(s) if s == "auto" => CpuWorkers::Auto,
            Value::Integer(v) if (1..=256).contains(v) => CpuWorkers::Fixed(*v as u32),
            Value::Integer(v) => {
                return Err(at(
                    src,
                    t,
                    format!("`cpu_workers` must be between 1 and 256, got {v}"),
                    None,
                ));
            }
            other => {
                return Err(at(
                    src,
                    t,
                    format!("`cpu_workers` must be \"auto\" or a number of trials, got {other}"),
                    Some("e.g. cpu_workers = 2, or leave it out for one trial per core".into()),
                ));
            }
        };
    }
    if let Some(t) = &r.retries {
        let v = *t.get_ref();
        if !(0..=100).contains(&v) {
            return Err(at(
                src,
                t,
                format!("`retries` must be between 0 and 100, got {v}"),
                None,
            ));
        }
        out.retries = v as u32;
    }
    if let Some(b) = &r.oom_retry_halve_batch {
        out.oom_retry_halve_batch = *b.get_ref();
    }
    if let Some(k) = &r.keep {
        out.keep = named_setting(src, k, "keep", Keep::parse, Keep::NAMES, "")?;
    }
    if let Some(p) = &r.keep_precision {
        out.keep_precision = named_setting(
            src,
            p,
            "keep_precision",
            KeepPrecision::parse,
            KeepPrecision::NAMES,
            " (\"half\": float16 weights once a trial is done)",
        )?;
    }
    if let Some(t) = &r.timeout {
        let d = humantime::parse_duration(t.get_ref()).map_err(|e| {
            at(
                src,
                t,
                format!("invalid timeout {:?}: {e}", t.get_ref()),
                Some("write a duration such as \"90m\", \"2h\" or \"45s\"".into()),
            )
        })?;
        if d.is_zero() {
            return Err(at(src, t, "timeout must be more than zero", None));
        }
        out.timeout = Some(d);
    }
    Ok(out)
}

type Dims = Vec<(Spanned<String>, std::ops::Range<usize>, Dist)>;

fn random_samples(
    src: &Source,
    r: &Spanned<Params>,
    name: &str,
    base: &TrialConfig,
) -> Result<(Vec<Draw>, Dims), SpecError> {
    let mut samples: Option<usize> = None;
    let mut dists = Vec::new();
    for (k, v) in r.get_ref() {
        if k.get_ref() == "samples" {
            match v.get_ref().as_integer() {
                Some(n) if (1..=100_000).contains(&n) => samples = Some(n as usize),
                _ => {
                    return Err(at(
                        src,
                        v,
                        "`samples` must be an integer between 1 and 100000",
                        None,
                    ));
                }
            }
            continue;
        }
        if matches!(k.get_ref().as_str(), "sampler" | "startup") {
            continue; // search::sampler_settings
        }
        if !PARAM_KEYS.contains(&k.get_ref().as_str()) {
            return Err(unknown_key(src, k));
        }
        let Some(table) = v.get_ref().as_table().filter(|t| t.len() == 1) else {
            return Err(at(
                src,
                v,
                format!("random `{}` must be one distribution", k.get_ref()),
                Some(DIST_HELP.into()),
            ));
        };
        let Some((kind, arg)) = table.iter().next() else {
            return Err(at(src, v, "empty distribution", Some(DIST_HELP.into())));
        };
        let dist = match (kind.as_str(), arg) {
            ("choice", Value::Array(a)) if !a.is_empty() => {
                // Check every choice, not only those this sweep happens to draw.
                for item in a {
                    apply(
                        src,
                        &mut base.clone(),
                        k,
                        &Spanned::new(v.span(), item.clone()),
                    )?;
                }
                Dist::Choice(a.clone())
            }
            ("uniform" | "loguniform" | "int", Value::Array(a)) if a.len() == 2 => {
                let lo = a[0].as_float().or(a[0].as_integer().map(|i| i as f64));
                let hi = a[1].as_float().or(a[1].as_integer().map(|i| i as f64));
                match (lo, hi) {
                    // Finite bounds with a finite width: rand panics otherwise. For
                    // loguniform the same holds for the logs (two adjacent large
                    // floats have equal logarithms: an empty range).
                    (Some(lo), Some(hi))
                        if lo < hi
                            && (hi - lo).is_finite()
                            && (kind != "loguniform" || (lo > 0.0 && lo.ln() < hi.ln())) =>
                    {
                        match kind.as_str() {
                            "uniform" => Dist::Uniform(lo, hi),
                            "loguniform" => Dist::LogUniform(lo, hi),
                            _ => {
                                let (lo, hi) = (lo.round() as i64, hi.round() as i64);
                                // Both ends can be drawn: check them now.
                                for end in [lo, hi] {
                                    apply(
                                        src,
                                        &mut base.clone(),
                                        k,
                                        &Spanned::new(v.span(), Value::Integer(end)),
                                    )?;
                                }
                                Dist::Int(lo, hi)
                            }
                        }
                    }
                    _ => {
                        return Err(at(
                            src,
                            v,
                            format!(
                                "`{kind}` needs finite [low, high] with low < high{}",
                                if kind == "loguniform" {
                                    " and low > 0 (and ln(low) < ln(high))"
                                } else {
                                    ""
                                }
                            ),
                            None,
                        ));
                    }
                }
            }
            _ => {
                return Err(at(
                    src,
                    v,
                    format!("invalid distribution for `{}`", k.get_ref()),
                    Some(DIST_HELP.into()),
                ));
            }
        };
        dists.push((k.clone(), v.span(), dist));
    }
    let Some(n) = samples else {
        return Err(at(src, r, "[random] needs `samples = N`", None));
    };
    // Seeded by the sweep name: the same file always draws the same trials.
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        seed = (seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for _ in 0..n {
        let mut draw = Vec::new();
        for (k, span, d) in &dists {
            let value = match d {
                Dist::Choice(a) => a[rng.gen_range(0..a.len())].clone(),
                Dist::Uniform(lo, hi) => Value::Float(rng.gen_range(*lo..*hi)),
                Dist::LogUniform(lo, hi) => Value::Float((rng.gen_range(lo.ln()..hi.ln())).exp()),
                Dist::Int(lo, hi) => Value::Integer(rng.gen_range(*lo..=*hi)),
            };
            let sv = Spanned::new(span.clone(), value);
            apply(src, &mut base.clone(), k, &sv)?;
            draw.push((k.clone(), sv));
        }
        out.push(draw);
    }
    Ok((out, dists))
}

/// One `[random]` draw: the sampled value of each key.
type Draw = Vec<(Spanned<String>, Spanned<Value>)>;

const DIST_HELP: &str =
    "use { choice = [...] }, { uniform = [a, b] }, { loguniform = [a, b] } or { int = [a, b] }";

use super::search::Dim as Dist;

fn unknown_key(src: &Source, k: &Spanned<String>) -> SpecError {
    let word = k.get_ref();
    let help = if word == "seed" {
        "seeds are set for the whole sweep: [sweep] seeds = [0, 1, 2]".to_string()
    } else {
        match did_you_mean(word, PARAM_KEYS) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("valid parameters: {}", PARAM_KEYS.join(", ")),
        }
    };
    at(src, k, format!("unknown parameter `{word}`"), Some(help))
}

fn num(v: &Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// Sets one parameter on a config, checking its type and range.
pub fn apply(
    src: &Source,
    c: &mut TrialConfig,
    k: &Spanned<String>,
    v: &Spanned<Value>,
) -> Result<(), SpecError> {
    let key = k.get_ref().as_str();
    let val = v.get_ref();
    let wrong = |expected: &str| {
        at(
            src,
            v,
            format!("`{key}` must be {expected}, got {}", describe(val)),
            None,
        )
    };
    let range = |msg: &str| {
        at(
            src,
            v,
            format!("`{key}` {msg}, got {}", describe(val)),
            None,
        )
    };
    let int = |min: i64, max: i64| -> Result<u32, SpecError> {
        let i = val.as_integer().ok_or_else(|| wrong("an integer"))?;
        if i < min || i > max {
            return Err(range(&format!("must be between {min} and {max}")));
        }
        Ok(i as u32)
    };
    let float = |min: f64, max: f64, min_inclusive: bool| -> Result<f64, SpecError> {
        let f = num(val).ok_or_else(|| wrong("a number"))?;
        let ok = f.is_finite() && (if min_inclusive { f >= min } else { f > min }) && f <= max;
        if !ok {
            let lo = if min_inclusive {
                format!("≥ {min}")
            } else {
                format!("> {min}")
            };
            return Err(range(&format!("must be {lo} and ≤ {max}")));
        }
        Ok(f)
    };
    let boolean = || val.as_bool().ok_or_else(|| wrong("true or false"));
    let string = || val.as_str().ok_or_else(|| wrong("a string"));
    match key {
        "backbone" => {
            let s = string()?;
            if !BACKBONES.contains(&s) {
                return Err(unknown_backbone(src, v, s));
            }
            c.backbone = s.to_string();
        }
        "lr" => c.lr = float(0.0, 10.0, false)?,
        "epochs" => c.epochs = int(1, 10_000)?,
        "image_size" => c.image_size = int(32, 1024)?,
        "batch_size" => c.batch_size = int(1, 65_536)?,
        "optimizer" => {
            c.optimizer = match string()? {
                "sgd" => Optimizer::Sgd,
                "adam" => Optimizer::Adam,
                "adamw" => Optimizer::Adamw,
                other => {
                    return Err(at(
                        src,
                        v,
                        format!("unknown optimizer {other:?}"),
                        Some("valid optimizers: sgd, adam, adamw".into()),
                    ));
                }
            }
        }
        "momentum" => c.momentum = float(0.0, 1.0, true)?,
        "nesterov" => c.nesterov = boolean()?,
        "weight_decay" => c.weight_decay = float(0.0, 1.0, true)?,
        "schedule" => {
            c.schedule = match string()? {
                "none" => Schedule::None,
                "step" => Schedule::Step,
                "cosine" => Schedule::Cosine,
                other => {
                    return Err(at(
                        src,
                        v,
                        format!("unknown schedule {other:?}"),
                        Some("valid schedules: none, step, cosine".into()),
                    ));
                }
            }
        }
        "step_size" => c.step_size = int(1, 10_000)?,
        "gamma" => c.gamma = float(0.0, 1.0, false)?,
        "head" => {
            c.head = match val {
                Value::String(s) if s == "original" => Head::Original,
                Value::Table(t) => {
                    let mut hidden = vec![512, 512];
                    let mut dropout = 0.0;
                    for (hk, hv) in t {
                        match hk.as_str() {
                            "hidden" => {
                                let arr = hv.as_array().ok_or_else(|| at(src, v, "`head.hidden` must be a list of layer widths, e.g. [512, 512]", None))?;
                                hidden = arr
                                    .iter()
                                    .map(|x| x.as_integer().filter(|n| (1..=1_000_000).contains(n)))
                                    .collect::<Option<Vec<_>>>()
                                    .ok_or_else(|| {
                                        at(
                                            src,
                                            v,
                                            "`head.hidden` widths must be positive integers",
                                            None,
                                        )
                                    })?;
                            }
                            "dropout" => {
                                dropout = num(hv).filter(|d| (0.0..1.0).contains(d)).ok_or_else(
                                    || {
                                        at(
                                            src,
                                            v,
                                            "`head.dropout` must be a number in [0, 1)",
                                            None,
                                        )
                                    },
                                )?;
                            }
                            other => {
                                return Err(at(
                                    src,
                                    v,
                                    format!("unknown head key `{other}`"),
                                    Some("a head table takes `hidden` and `dropout`".into()),
                                ));
                            }
                        }
                    }
                    Head::Mlp { hidden, dropout }
                }
                _ => {
                    return Err(wrong(
                        "\"original\" or a table { hidden = [...], dropout = 0.0 }",
                    ));
                }
            }
        }
        "freeze_backbone" => c.freeze_backbone = boolean()?,
        "backbone_lr_scale" => c.backbone_lr_scale = float(0.0, 100.0, true)?,
        "augment" => {
            let arr = val
                .as_array()
                .ok_or_else(|| wrong("a list of augmentations"))?;
            let mut out = Vec::new();
            for a in arr {
                match a.as_str() {
                    Some(s) if AUGMENTS.contains(&s) => out.push(s.to_string()),
                    _ => {
                        return Err(at(
                            src,
                            v,
                            format!("unknown augmentation {}", describe(a)),
                            Some(format!("valid augmentations: {}", AUGMENTS.join(", "))),
                        ));
                    }
                }
            }
            c.augment = out;
        }
        "skip_bad_images" => c.skip_bad_images = boolean()?,
        "amp" => c.amp = boolean()?,
        "log_every" => c.log_every = int(1, 1_000_000)?,
        "max_batches" => c.max_batches = int(0, 100_000_000)?,
        "betas" => {
            let pair = val
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| wrong("a pair [beta1, beta2], e.g. [0.9, 0.999]"))?;
            let mut out = [0.0; 2];
            for (o, b) in out.iter_mut().zip(pair) {
                *o = num(b)
                    .filter(|x| (0.0..1.0).contains(x))
                    .ok_or_else(|| range("values must be in [0, 1)"))?;
            }
            c.betas = out;
        }
        "eps" => c.eps = float(0.0, 1.0, false)?,
        "cache_size" => {
            use sweep_protocol::config::CacheSize;
            c.cache_size = Some(match val {
                Value::String(s) if s == "original" => CacheSize::ORIGINAL,
                Value::Integer(_) => CacheSize::Short(int(32, 8192)?),
                _ => return Err(wrong("a shorter side in pixels (e.g. 256) or \"original\"")),
            })
        }
        "channels_last" => c.channels_last = boolean()?,
        _ => return Err(unknown_key(src, k)),
    }
    Ok(())
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

/// Property tests: parsing and validating a sweep file never panics, however
/// it is mangled: the answer is a plan or a located error. 64 cases per
/// property by default; set SWEEP_PROPTEST_CASES for more.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn config() -> Config {
        let cases = std::env::var("SWEEP_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// A valid ImageFolder root (validation lists the image files but does
    /// not decode them) and an empty weights file.
    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "valid", "test"] {
            for class in ["a", "b"] {
                let d = dir.path().join("ds").join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("0.png"), b"not decoded at validation").unwrap();
            }
        }
        std::fs::write(dir.path().join("w.safetensors"), b"").unwrap();
        dir
    }

    /// A sweep file that uses every section and most parameters.
    fn valid_file(root: &Path) -> String {
        format!(
            r#"[sweep]
name = "prop"
dataset = "{ds}"
seeds = [0, 1]
metric = "val_accuracy"
description = "property test"

[defaults]
backbone = "resnet18"
epochs = 2
image_size = 32
batch_size = 8
schedule = "step"
head = {{ hidden = [16], dropout = 0.1 }}
augment = ["hflip", "random_resized_crop"]
skip_bad_images = true

[grid]
lr = [0.01, 0.1]
optimizer = ["sgd", "adam"]

[random]
samples = 2
weight_decay = {{ loguniform = [1e-5, 1e-3] }}
gamma = {{ uniform = [0.1, 0.5] }}
batch_size = {{ choice = [16, 32] }}
step_size = {{ int = [3, 7] }}

[[trial]]
backbone = "resnet34"
lr = 0.01
momentum = 0.8
nesterov = true

[pretrained]
resnet50 = "{w}"

[resources]
gpus = "all"
trials_per_gpu = 1
cpu_workers = 1
timeout = "90m"
retries = 1
"#,
            ds = root.join("ds").display(),
            w = root.join("w.safetensors").display()
        )
    }

    const VALUES: &[&str] = &[
        "0",
        "-1",
        "1",
        "2",
        "3",
        "32",
        "1024",
        "100001",
        "9223372036854775807",
        "-9223372036854775808",
        "0.0",
        "-0.0",
        "1e-320",
        "1e308",
        "-1e308",
        "1.7976931348623157e308",
        "inf",
        "-inf",
        "nan",
        "9.999999999999998",
        "10.0",
        "0.5",
        "true",
        "false",
        "\"\"",
        "\"all\"",
        "\"resnet18\"",
        "\"vgg19_bn\"",
        "\"original\"",
        "\"sgd\"",
        "\"cosine\"",
        "\"90m\"",
        "\"0s\"",
        "\"584942417355y\"",
        "\"\\u0000\"",
        "\"../..\"",
        "[]",
        "[[]]",
        "[1, 2]",
        "[0, 0]",
        "[\"hflip\"]",
        "[1, \"a\"]",
        "{}",
        "{ hidden = [] }",
        "{ hidden = [0] }",
        "{ dropout = 1.0 }",
        "{ choice = [] }",
        "{ choice = [1] }",
        "{ uniform = [1, 1] }",
        "{ uniform = [-1e308, 1e308] }",
        "{ loguniform = [0, 1] }",
        "{ loguniform = [1e300, 1.0000000000000002e300] }",
        "{ loguniform = [9.999999999999998, 10.0] }",
        "{ int = [-1e300, 1e300] }",
        "{ int = [1.2, 1.4] }",
        "{ int = [1, 2, 3] }",
        "{ a = 1, b = 2 }",
        "1979-05-27T07:32:00Z",
        "07:32:00",
    ];
    /// Keys to mutate with: every parameter plus other table keys and junk.
    const EXTRA_KEYS: &[&str] = &[
        "seed",
        "seeds",
        "samples",
        "name",
        "dataset",
        "metric",
        "description",
        "gpus",
        "trials_per_gpu",
        "cpu_workers",
        "timeout",
        "retries",
        "resnet50",
        "x",
        "\"quoted key\"",
        "a.b",
    ];
    fn keys() -> Vec<&'static str> {
        PARAM_KEYS
            .iter()
            .copied()
            .chain(EXTRA_KEYS.iter().copied())
            .collect()
    }
    const HEADERS: &[&str] = &[
        "[sweep]",
        "[defaults]",
        "[grid]",
        "[random]",
        "[[trial]]",
        "[pretrained]",
        "[resources]",
        "[[grid]]",
        "[x]",
        "[sweep.sub]",
        "[",
    ];

    #[derive(Debug, Clone)]
    enum Edit {
        InsertText(usize, String),
        Delete(usize, usize),
        SetValue(usize, usize),
        InsertLine(usize, String),
        SwapLines(usize, usize),
        DuplicateLine(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let key = prop::sample::select(keys());
        let value = prop::sample::select(VALUES);
        // Mostly edits that keep the file TOML, so that most cases reach validation.
        prop_oneof![
            1 => (any::<usize>(), prop_oneof!["\\PC{1,4}", "[\\[\\]{}=,\"'#.\n ]{1,3}"]).prop_map(|(p, t)| Edit::InsertText(p, t)),
            1 => (any::<usize>(), 1usize..20).prop_map(|(p, n)| Edit::Delete(p, n)),
            6 => (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Edit::SetValue(l, v)),
            2 => (any::<usize>(), prop_oneof![
                (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
                prop::sample::select(HEADERS).prop_map(String::from),
                "[a-z_]{1,10} = [0-9]{1,4}",
            ]).prop_map(|(p, l)| Edit::InsertLine(p, l)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
            1 => any::<usize>().prop_map(Edit::DuplicateLine),
        ]
    }

    fn apply_edits(text: &str, edits: &[Edit]) -> String {
        let mut text = text.to_string();
        for e in edits {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let n = lines.len().max(1);
            match e {
                Edit::InsertText(p, t) => {
                    let chars: Vec<char> = text.chars().collect();
                    let at = p % (chars.len() + 1);
                    text = chars[..at]
                        .iter()
                        .chain(t.chars().collect::<Vec<_>>().iter())
                        .chain(chars[at..].iter())
                        .collect();
                    continue;
                }
                Edit::Delete(p, len) => {
                    let chars: Vec<char> = text.chars().collect();
                    let at = p % (chars.len() + 1);
                    let end = (at + len).min(chars.len());
                    text = chars[..at].iter().chain(chars[end..].iter()).collect();
                    continue;
                }
                Edit::SetValue(l, v) => {
                    // Replace the value of the n-th `key = value` line.
                    let assignments: Vec<usize> = (0..lines.len())
                        .filter(|&i| lines[i].contains(" = "))
                        .collect();
                    let line = assignments.get(l % assignments.len().max(1)).copied();
                    if let Some((i, k)) = line
                        .and_then(|i| lines[i].split_once(" = ").map(|(k, _)| (i, k.to_string())))
                    {
                        lines[i] = format!("{k} = {}", VALUES[*v]);
                    }
                }
                Edit::InsertLine(p, l) => lines.insert(p % (lines.len() + 1), l.clone()),
                Edit::SwapLines(a, b) => {
                    if !lines.is_empty() {
                        lines.swap(a % n, b % n);
                    }
                }
                Edit::DuplicateLine(p) => {
                    if !lines.is_empty() {
                        let l = lines[p % n].clone();
                        lines.insert(p % n, l);
                    }
                }
            }
            text = lines.join("\n") + "\n";
        }
        text
    }

    /// Parse + validate, as `sweep run` does; an error must point inside the file.
    fn check(text: String) -> Result<(), TestCaseError> {
        let src = Source {
            path: PathBuf::from("prop.toml"),
            text,
        };
        let result = src.parse().and_then(|raw| build(&src, raw));
        match result {
            Ok(plan) => {
                prop_assert!(
                    !plan.trials.is_empty() && plan.trials.len() <= MAX_TRIALS,
                    "{} trials",
                    plan.trials.len()
                );
            }
            Err(e) => {
                let lines = src.text.lines().count() + 1;
                prop_assert!(
                    e.line >= 1 && e.line <= lines && e.col >= 1,
                    "error outside the file: {e}\n---\n{}",
                    src.text
                );
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    }

    #[test]
    fn the_base_file_is_valid() {
        let dir = dataset();
        let src = Source {
            path: "prop.toml".into(),
            text: valid_file(dir.path()),
        };
        let plan = build(&src, src.parse().unwrap()).unwrap();
        // (2 lr × 2 optimizers × 2 draws + 1 trial) × 2 seeds
        assert_eq!(plan.trials.len(), 18);
    }

    #[test]
    fn cpu_workers_is_auto_unless_a_number_is_given() {
        let dir = dataset();
        let base = valid_file(dir.path());
        let workers = |line: &str| {
            let src = Source {
                path: "prop.toml".into(),
                text: base.replace("cpu_workers = 1\n", line),
            };
            build(&src, src.parse().unwrap())
                .unwrap()
                .resources
                .cpu_workers
        };
        assert_eq!(workers("cpu_workers = 1\n"), CpuWorkers::Fixed(1));
        assert_eq!(workers("cpu_workers = 3\n"), CpuWorkers::Fixed(3));
        assert_eq!(workers("cpu_workers = \"auto\"\n"), CpuWorkers::Auto);
        assert_eq!(workers(""), CpuWorkers::Auto);
    }

    #[test]
    fn mutated_sweep_files_never_panic() {
        let dir = dataset();
        let base = valid_file(dir.path());
        let mut runner = TestRunner::new(config());
        runner
            .run(&prop::collection::vec(edit(), 1..5), |edits| {
                check(apply_edits(&base, &edits))
            })
            .unwrap();
    }

    #[test]
    fn one_value_swapped_never_panics() {
        // Every value of every assignment, exhaustively: small and deterministic.
        let dir = dataset();
        let base = valid_file(dir.path());
        let assignments = base.lines().filter(|l| l.contains(" = ")).count();
        for line in 0..assignments {
            for v in 0..VALUES.len() {
                check(apply_edits(&base, &[Edit::SetValue(line, v)])).unwrap();
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut runner = TestRunner::new(config());
        runner.run(&"\\PC{0,300}", check).unwrap();
        runner
            .run(&"[\\[\\]{}=,\"'#.\na-z0-9 ]{0,300}", check)
            .unwrap();
    }

    #[test]
    fn deep_nesting_and_huge_grids_are_errors() {
        let dir = dataset();
        let base = valid_file(dir.path());
        for depth in [100, 10_000] {
            check(base.replace("epochs = 2", &format!("epochs = {}", "[".repeat(depth)))).unwrap();
            check(base.replace(
                "epochs = 2",
                &format!("epochs = {}1{}", "[".repeat(depth), "]".repeat(depth)),
            ))
            .unwrap();
        }
        // 10^8 grid points: refused before they are built.
        let values = format!(
            "[{}]",
            (1..=100)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let huge = base.replace("[grid]\n", &format!("[grid]\nepochs = {values}\nstep_size = {values}\nlog_every = {values}\nmax_batches = {values}\n"));
        let src = Source {
            path: "prop.toml".into(),
            text: huge,
        };
        let e = build(&src, src.parse().unwrap()).unwrap_err();
        assert!(e.message.contains("the limit is 100000"), "{e}");
        // Adjacent large floats have equal logarithms: an error, not rand's "empty range" panic.
        let src = Source {
            path: "prop.toml".into(),
            text: base.replace(
                "{ loguniform = [1e-5, 1e-3] }",
                "{ loguniform = [1e300, 1.0000000000000002e300] }",
            ),
        };
        let e = build(&src, src.parse().unwrap()).unwrap_err();
        assert!(e.message.contains("loguniform"), "{e}");
    }
}

/// Cross-checks between keys, found at validation time with the key's place.
#[cfg(test)]
mod cross_checks {
    use super::*;

    fn plan(body: &str) -> Result<SweepPlan, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "valid", "test"] {
            for class in ["a", "b"] {
                let d = dir.path().join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("0.png"), b"x").unwrap();
            }
        }
        let text = format!(
            "[sweep]\nname = \"x\"\ndataset = \"{}\"\n{body}",
            dir.path().display()
        );
        let src = Source {
            path: "x.toml".into(),
            text,
        };
        let raw = src.parse()?;
        build(&src, raw)
    }

    fn err(body: &str) -> String {
        let e = plan(body).unwrap_err();
        format!("{}:{}: {}", e.line, e.col, e.message)
    }

    #[test]
    fn nesterov_needs_sgd_with_momentum() {
        assert_eq!(
            err("[defaults]\noptimizer = \"adam\"\nnesterov = true\n"),
            "6:1: `nesterov = true` needs optimizer = \"sgd\" (this trial uses Adam)"
        );
        assert_eq!(
            err("[defaults]\nmomentum = 0.0\nnesterov = true\n"),
            "6:1: `nesterov = true` needs `momentum` > 0"
        );
        assert!(plan("[defaults]\nmomentum = 0.9\nnesterov = true\n").is_ok());
    }

    #[test]
    fn cache_size_and_channels_last() {
        let p = plan("[defaults]\ncache_size = 300\nchannels_last = true\n").unwrap();
        assert_eq!(
            p.trials[0].config.cache_size,
            Some(sweep_protocol::config::CacheSize::Short(300))
        );
        assert!(p.trials[0].config.channels_last);
        let p = plan("[defaults]\ncache_size = \"original\"\n").unwrap();
        assert_eq!(p.trials[0].config.cache_short(), None);
        assert!(
            err("[defaults]\ncache_size = 100\n")
                .contains("`cache_size = 100` is smaller than image_size 224")
        );
        assert!(
            err("[defaults]\ncache_size = \"huge\"\n")
                .contains("`cache_size` must be a shorter side in pixels")
        );
        assert!(
            err("[defaults]\nchannels_last = 1\n")
                .contains("`channels_last` must be true or false")
        );
    }

    #[test]
    fn momentum_is_rejected_for_adam_and_betas_for_sgd() {
        assert!(
            err("[grid]\noptimizer = [\"sgd\", \"adamw\"]\n[defaults]\nmomentum = 0.8\n")
                .ends_with("`momentum` means nothing for Adamw: Adam and AdamW use `betas`")
        );
        assert!(
            err("[defaults]\nbetas = [0.8, 0.99]\n")
                .contains("`betas` applies to adam and adamw only")
        );
        assert!(
            err("[defaults]\noptimizer = \"adam\"\nbetas = [0.8, 1.5]\n")
                .contains("values must be in [0, 1)")
        );
        let p =
            plan("[defaults]\noptimizer = \"adam\"\nbetas = [0.8, 0.99]\neps = 1e-6\n").unwrap();
        assert_eq!(
            (p.trials[0].config.betas, p.trials[0].config.eps),
            ([0.8, 0.99], 1e-6)
        );
    }

    #[test]
    fn adamw_defaults_to_pytorchs_weight_decay() {
        let p = plan("[grid]\noptimizer = [\"sgd\", \"adam\", \"adamw\"]\n").unwrap();
        let wd: Vec<f64> = p.trials.iter().map(|t| t.config.weight_decay).collect();
        assert_eq!(wd, [0.0, 0.0, 0.01]);
        let p = plan("[defaults]\noptimizer = \"adamw\"\nweight_decay = 0.0\n").unwrap();
        assert_eq!(
            p.trials[0].config.weight_decay, 0.0,
            "an explicit value wins"
        );
    }

    #[test]
    fn a_metric_must_be_a_validation_figure() {
        let e = plan("metric = \"accuracy\"\n").unwrap_err();
        assert!(e.help.unwrap().contains("must be a validation figure"));
    }

    #[test]
    fn keep_precision_is_full_by_default_half_if_asked_and_located_when_wrong() {
        assert_eq!(
            plan("").unwrap().resources.keep_precision,
            KeepPrecision::Full
        );
        assert_eq!(
            plan("[resources]\nkeep_precision = \"half\"\n")
                .unwrap()
                .resources
                .keep_precision,
            KeepPrecision::Half
        );
        assert_eq!(
            plan("[resources]\nkeep_precision = \"full\"\n")
                .unwrap()
                .resources
                .keep_precision,
            KeepPrecision::Full
        );
        assert_eq!(
            err("[resources]\nkeep_precision = \"fp16\"\n"),
            "5:18: unknown `keep_precision` \"fp16\""
        );
        let e = plan("[resources]\nkeep_precision = \"fp16\"\n").unwrap_err();
        assert!(e.help.unwrap().contains("\"full\", \"half\""));
        assert!(
            err("[resources]\nkeep_precision = true\n").starts_with("5:18: invalid type"),
            "{}",
            err("[resources]\nkeep_precision = true\n")
        );
    }

    #[test]
    fn stopping_is_validated() {
        assert!(
            err("[stopping]\nmethod = \"ashaa\"\n").contains("unknown stopping method \"ashaa\"")
        );
        assert!(
            err("[stopping]\nreduction = 1\n").contains("`reduction` must be between 2 and 100")
        );
        let p = plan("[stopping]\nmethod = \"hyperband\"\nmin_epochs = 2\npatience = 4\n").unwrap();
        assert_eq!(
            (
                p.stopping.method,
                p.stopping.min_epochs,
                p.stopping.reduction,
                p.stopping.patience
            ),
            (StopMethod::Hyperband, 2, 3, Some(4))
        );
    }
}
