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
use sweep_protocol::{
    BACKBONES, Head, Optimizer, Schedule, SelectMetric, TrialConfig, TrialParams,
};
use toml::{Spanned, Value};

pub use sweep_protocol::PARAM_KEYS;

#[cfg(test)]
mod cross_checks;
mod params;
#[cfg(test)]
mod proptests;
mod random;
mod resources;
mod stopping;

use crate::spec::search::Dim as Dist;
pub use params::apply;
use random::{random_samples, unknown_key};
#[cfg(test)]
mod lhs_tests;
use resources::resources;
pub use resources::{CpuWorkers, GpuSelection, Resources};
use stopping::stopping;
pub use stopping::{Objective, PBT_BUILTIN_KEYS, Pbt, Perturb, StopMethod, Stopping};

/// The most trials one sweep file may plan.
pub const MAX_TRIALS: usize = 100_000;

/// `[sweep] metric`: what picks each trial's best checkpoint.
pub const METRICS: [&str; 2] = ["val_accuracy", "val_loss"];
const AUGMENTS: [&str; 2] = ["random_resized_crop", "hflip"];

pub use sweep_trialfiles::{Keep, KeepPrecision};

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTrial {
    pub id: String,
    pub config: TrialParams,
}

impl SweepPlan {
    /// One trial config per `[pretrained]` file and head kind the planned
    /// trials use (the first such trial's: backbone, head, image size,
    /// weights), and, with `sampler = "tpe"`, per file and head kind that a
    /// later proposal may use (every `backbone` choice, not only those the
    /// startup draws picked: [`SearchSpace::backbone_configs`]): what must
    /// load before anything starts (`sweep run` has `sweep-worker
    /// check-weights` load each; the spec itself never runs the worker).
    ///
    /// [`SearchSpace::backbone_configs`]: super::search::SearchSpace::backbone_configs
    pub fn pretrained_uses(&self) -> Vec<TrialConfig> {
        let mut out: Vec<TrialConfig> = Vec::new();
        let proposable = self
            .search
            .as_ref()
            .map(|s| s.backbone_configs())
            .unwrap_or_default();
        let planned = self.trials.iter().filter_map(PlannedTrial::builtin);
        for c in planned.chain(&proposable) {
            if c.pretrained.is_none() {
                continue;
            }
            let original = matches!(c.head, Head::Original);
            if !out.iter().any(|o| {
                o.backbone == c.backbone
                    && o.pretrained == c.pretrained
                    && matches!(o.head, Head::Original) == original
            }) {
                out.push(c.clone());
            }
        }
        out
    }

    /// A located error for `[pretrained] backbone = "…"` of this plan's file
    /// (its value's line:col), found after validation, e.g. by the worker.
    pub fn pretrained_error(
        &self,
        backbone: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> SpecError {
        let src = Source {
            path: self.file.clone(),
            text: self.toml.clone(),
        };
        let offset = src
            .parse()
            .ok()
            .and_then(|raw| {
                raw.pretrained
                    .iter()
                    .find(|(k, _)| k.get_ref() == backbone)
                    .map(|(_, v)| v.span().start)
            })
            .unwrap_or(0);
        src.error_at(offset, message, help)
    }

    /// `[sweep] metric` with its direction: what TPE optimises.
    pub fn objective(&self) -> Objective {
        Objective {
            name: self.metric.clone(),
            maximize: self.maximize,
            program: self.program.is_some(),
        }
    }

    /// `[sweep] tensorboard`: the folder `sweep run` keeps TensorBoard event
    /// files in while it runs. Read again from the file's text, which
    /// [`build`] validated, rather than kept as a field, so the plans that
    /// tests and the stopping simulator write out field by field stay as
    /// they are.
    pub fn tensorboard(&self) -> Option<PathBuf> {
        let src = Source {
            path: self.file.clone(),
            text: self.toml.clone(),
        };
        let raw = src.parse().ok()?;
        tensorboard_dir(&src, raw.sweep.get_ref()).ok().flatten()
    }
}

/// `[sweep] tensorboard = "runs/"`: `sweep run` writes there what `sweep
/// export tensorboard runs/ --sweep NAME --follow` would. A relative path is
/// taken from the current directory, like `dataset`. The folder is created
/// when the run starts; here it is only checked that no file stands where
/// it, or a folder on its way, must be.
fn tensorboard_dir(
    src: &Source,
    sweep: &crate::spec::raw::RawSweep,
) -> Result<Option<PathBuf>, SpecError> {
    let Some(t) = &sweep.tensorboard else {
        return Ok(None);
    };
    let help = || {
        Some("name a folder (created if missing), e.g. tensorboard = \"runs/\"; then `tensorboard --logdir runs/<sweep>`".to_string())
    };
    if t.get_ref().trim().is_empty() || t.get_ref().contains('\0') {
        return Err(at(src, t, "`tensorboard` must name a folder", help()));
    }
    let dir = PathBuf::from(t.get_ref());
    let mut probe = Some(dir.as_path()).filter(|p| !p.as_os_str().is_empty());
    while let Some(p) = probe {
        if p.is_dir() {
            break;
        }
        if p.exists() {
            let msg = if p == dir {
                format!(
                    "tensorboard {:?} is a file, not a folder",
                    dir.display().to_string()
                )
            } else {
                format!(
                    "tensorboard {:?} cannot be made: {:?} is a file",
                    dir.display().to_string(),
                    p.display().to_string()
                )
            };
            return Err(at(src, t, msg, help()));
        }
        probe = p.parent().filter(|p| !p.as_os_str().is_empty());
    }
    Ok(Some(dir))
}

impl PlannedTrial {
    /// The built-in trainer's config (`None` for a `[program]` trial).
    pub fn builtin(&self) -> Option<&TrialConfig> {
        self.config.builtin()
    }
}

#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub name: String,
    pub file: PathBuf,
    pub toml: String,
    /// The ImageFolder root (empty with `[program]`).
    pub dataset: PathBuf,
    pub metric: String,
    /// `[sweep] direction`: true when a higher `metric` is better.
    pub maximize: bool,
    /// `[program]`: the user's own program runs each trial (None: `sweep-worker`).
    pub program: Option<super::program::ProgramSpec>,
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

pub fn build(src: &Source, raw: RawFile) -> Result<SweepPlan, SpecError> {
    let header = sweep_header(src, &raw)?;
    tensorboard_dir(src, raw.sweep.get_ref())?;
    let program = match &raw.program {
        Some(p) => Some(super::program::validate(src, p)?),
        None => None,
    };
    if let (Some(_), Some((k, _))) = (&program, raw.pretrained.iter().next()) {
        return Err(at(
            src,
            k,
            "[pretrained] is for the built-in trainer; with [program] your program loads its own weights",
            Some("pass a weights path as a parameter instead, e.g. [defaults] weights = \"w.pth\" and \"--weights\", \"{weights}\" in the command".into()),
        ));
    }
    let pretrained = pretrained_weights(src, &raw)?;
    let resources = match &raw.resources {
        None => Resources::default(),
        Some(r) => resources(src, r.get_ref())?,
    };
    let mut base = Point::new(program.is_some());
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
    if let Some((p, spans)) = &program {
        p.check_params(
            src,
            spans,
            trials.iter().filter_map(|t| match &t.config {
                TrialParams::Program(m) => Some(m),
                TrialParams::Builtin(_) => None,
            }),
        )?;
    }
    let varying = varying_keys(&trials);
    let select = if header.metric == "val_loss" {
        SelectMetric::ValLoss
    } else {
        SelectMetric::ValAccuracy
    };
    let objective = Objective {
        name: header.metric.clone(),
        maximize: header.maximize,
        program: program.is_some(),
    };
    let stopping = match &raw.stopping {
        None => Stopping::none(objective),
        Some(st) => stopping(
            src,
            st.get_ref(),
            objective,
            program.as_ref().is_none_or(|(p, _)| p.resumable),
        )?,
    };
    let mut stopping = stopping;
    if let (Some(p), Some(st)) = (&mut stopping.pbt, &raw.stopping) {
        p.seed = name_seed(&header.name);
        check_pbt(src, st, p, &trials, tpe.is_some())?;
    }
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
        maximize: header.maximize,
        program: program.map(|(p, _)| p),
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

/// PBT against the planned trials: every parameter it perturbs is a number
/// in each of them, and the population is the plan (no TPE proposals).
fn check_pbt(
    src: &Source,
    st: &Spanned<super::raw::RawStopping>,
    p: &Pbt,
    trials: &[PlannedTrial],
    tpe: bool,
) -> Result<(), SpecError> {
    let method = st.get_ref().method.as_ref();
    if tpe {
        return Err(src.error_at(
            method.map_or(st.span(), |m| m.span()).start,
            "method = \"pbt\" evolves the population the plan starts with; it cannot take sampler = \"tpe\" proposals",
            Some("use a [grid] or [random] with sampler = \"random\" for PBT's starting population".into()),
        ));
    }
    for x in &p.perturb {
        let bad = trials.iter().find(|t| t.config.number(&x.key).is_none());
        if let Some(t) = bad {
            let span = st
                .get_ref()
                .perturb
                .iter()
                .flatten()
                .find(|(k, _)| *k.get_ref() == x.key)
                .map(|(k, _)| k.span())
                .unwrap_or(st.span());
            return Err(src.error_at(
                span.start,
                format!(
                    "pbt perturbs `{}`, but trial {} has no numeric `{}`",
                    x.key, t.id, x.key
                ),
                Some(format!(
                    "give `{}` a number in [defaults], [grid] or [random]",
                    x.key
                )),
            ));
        }
    }
    Ok(())
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
    let (mut draws, dists) = random_samples(src, r, &header.name, base)?;
    let (sampler, startup) = super::search::sampler_settings(src, r, draws.len())?;
    match sampler {
        super::search::Sampler::Random => return Ok((draws, None)),
        super::search::Sampler::Lhs => {
            return Ok((
                random::latin_hypercube(src, &dists, draws.len(), &header.name, base)?,
                None,
            ));
        }
        super::search::Sampler::Tpe => {}
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
        super::search::check_bounds(src, base, k, span.clone(), d)?;
        super::search::check_choices(src, base, k, span.clone(), d)?;
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

/// FNV-1a of the sweep name: the seed of its random draws, TPE proposals
/// and PBT perturbations.
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
    maximize: bool,
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
    let dataset = match (&sweep.dataset, &raw.program) {
        (Some(d), None) => {
            let dataset = PathBuf::from(d.get_ref());
            check_dataset(&dataset).map_err(|m| {
                at(src, d, m.to_string(), Some("generate the demo data with `sweep data demo data/demo`, or point `dataset` at an ImageFolder root (paths are relative to the current directory)".into()))
            })?;
            dataset
        }
        (None, None) => {
            return Err(at(
                src,
                &raw.sweep,
                "[sweep] needs `dataset`",
                Some("point `dataset` at an ImageFolder root (train/, valid/, test/), or run your own program with a [program] section".into()),
            ));
        }
        (Some(d), Some(_)) => {
            return Err(at(
                src,
                d,
                "`dataset` is for the built-in trainer; with [program] your program reads its own data",
                Some("pass the path as a parameter instead, e.g. [defaults] data = \"data/demo\" and \"--data\", \"{data}\" in the command".into()),
            ));
        }
        (None, Some(_)) => PathBuf::new(),
    };
    let (metric, maximize) = match raw.program {
        Some(_) => program_metric(src, sweep)?,
        None => builtin_metric(src, sweep)?,
    };
    let seeds = match &sweep.seeds {
        None => vec![0],
        Some(list) => seeds(src, list)?,
    };
    Ok(Header {
        name,
        dataset,
        metric,
        maximize,
        description: sweep.description.clone(),
        seeds,
    })
}

/// `[sweep] metric` of a built-in sweep: what picks each trial's best
/// checkpoint (val_accuracy, maximised, or val_loss, minimised); a
/// `direction`, when given, must agree.
fn builtin_metric(
    src: &Source,
    sweep: &crate::spec::raw::RawSweep,
) -> Result<(String, bool), SpecError> {
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
    let maximize = metric != "val_loss";
    if let Some(d) = &sweep.direction
        && d.get_ref() != if maximize { "max" } else { "min" }
    {
        return Err(at(
            src,
            d,
            format!("{metric} is {}, not {:?}", if maximize { "maximised" } else { "minimised" }, d.get_ref()),
            Some("`direction` matters for a [program]'s own metrics; for the built-in trainer leave it out".into()),
        ));
    }
    Ok((metric, maximize))
}

/// `[sweep] metric` and `direction` of a `[program]` sweep: any name the
/// program reports; "min" by default for names ending in "loss", else "max".
fn program_metric(
    src: &Source,
    sweep: &crate::spec::raw::RawSweep,
) -> Result<(String, bool), SpecError> {
    let Some(m) = &sweep.metric else {
        return Err(at(
            src,
            &sweep.name,
            "a [program] sweep needs [sweep] metric",
            Some("name the value your program reports that ranks trials, e.g. metric = \"val_acc\" for records like {\"epoch\": 3, \"val_acc\": 0.81}".into()),
        ));
    };
    let name = m.get_ref();
    if name.is_empty() || name == "epoch" || name == "step" || name.starts_with("test_") {
        return Err(at(
            src,
            m,
            format!("{name:?} cannot rank trials"),
            Some("the metric is a value of the program's epoch records (not `epoch`, `step` or a test_* result), e.g. \"val_acc\"".into()),
        ));
    }
    let maximize = match sweep.direction.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None => !name.ends_with("loss"),
        Some((_, "max")) => true,
        Some((_, "min")) => false,
        Some((d, other)) => {
            return Err(at(
                src,
                d,
                format!("unknown direction {other:?}"),
                Some("direction = \"max\" (higher is better) or \"min\" (lower is better); the default is \"min\" for names ending in \"loss\", else \"max\"".into()),
            ));
        }
    };
    Ok((name.clone(), maximize))
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
            base.check(src, k, val)?;
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
#[derive(Clone, Debug)]
pub(super) struct Point {
    config: TrialParams,
    set_at: BTreeMap<String, usize>,
}

impl Point {
    /// An empty point: the built-in trainer's defaults, or no parameter at all for a program.
    pub(super) fn new(program: bool) -> Point {
        Point {
            config: if program {
                TrialParams::Program(Default::default())
            } else {
                TrialParams::Builtin(TrialConfig::default())
            },
            set_at: BTreeMap::new(),
        }
    }

    pub(super) fn is_program(&self) -> bool {
        matches!(self.config, TrialParams::Program(_))
    }

    pub(super) fn set(
        &mut self,
        src: &Source,
        k: &Spanned<String>,
        v: &Spanned<Value>,
    ) -> Result<(), SpecError> {
        match &mut self.config {
            TrialParams::Builtin(c) => apply(src, c, k, v)?,
            TrialParams::Program(m) => {
                super::program::check_param_name(src, k)?;
                m.insert(k.get_ref().clone(), super::program::param_value(src, k, v)?);
            }
        }
        self.set_at.insert(k.get_ref().clone(), k.span().start);
        Ok(())
    }

    /// Checks that `v` is a valid value of `k` here, keeping nothing.
    pub(super) fn check(
        &self,
        src: &Source,
        k: &Spanned<String>,
        v: &Spanned<Value>,
    ) -> Result<(), SpecError> {
        self.clone().set(src, k, v)
    }

    /// Cross-checks between keys, and defaults that depend on the optimizer.
    pub(super) fn finish(mut self, src: &Source) -> Result<TrialParams, SpecError> {
        let TrialParams::Builtin(c) = &mut self.config else {
            return Ok(self.config);
        };
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
        // torchvision's ViT-B/16 cuts the image into 16-px patches.
        if c.backbone == "vit_b_16" && c.image_size % 16 != 0 {
            let key = if self.set_at.contains_key("image_size") {
                "image_size"
            } else {
                "backbone"
            };
            return Err(err(
                key,
                format!(
                    "vit_b_16 needs image_size to be a multiple of 16 (its patch size), not {}",
                    c.image_size
                ),
                "use e.g. 224 or 384 (the position embeddings of 224-px weights are resized to it)",
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
) -> Result<Vec<TrialParams>, SpecError> {
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
    points: Vec<TrialParams>,
) -> Result<Vec<PlannedTrial>, SpecError> {
    let mut trials = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in points {
        for &seed in &header.seeds {
            let c = with_seed(p.clone(), seed, pretrained);
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

/// A point's trial for one seed: the seed set (a program gets it as its
/// `seed` parameter) and, for the built-in trainer, its `[pretrained]` weights.
pub(super) fn with_seed(
    mut p: TrialParams,
    seed: u64,
    pretrained: &BTreeMap<String, PathBuf>,
) -> TrialParams {
    match &mut p {
        TrialParams::Builtin(c) => {
            c.seed = seed;
            c.pretrained = pretrained.get(&c.backbone).cloned();
        }
        TrialParams::Program(m) => {
            m.insert("seed".into(), seed.into());
        }
    }
    p
}

/// Keys whose value differs between trials (plus `seed` when there are several).
pub fn varying_keys(trials: &[PlannedTrial]) -> Vec<String> {
    let json: Vec<serde_json::Map<String, serde_json::Value>> =
        trials.iter().map(|t| t.config.to_json()).collect();
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

type Dims = Vec<(Spanned<String>, std::ops::Range<usize>, Dist)>;

/// One `[random]` draw: the sampled value of each key.
type Draw = Vec<(Spanned<String>, Spanned<Value>)>;
