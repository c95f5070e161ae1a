//! `[stopping]`: the early-stopping method and its settings, validated.
use super::*;

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
    /// Population-based training (Jaderberg et al. 2017), synchronous.
    Pbt,
}

impl StopMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMethod::None => "none",
            StopMethod::Asha => "asha",
            StopMethod::Hyperband => "hyperband",
            StopMethod::Median => "median",
            StopMethod::Pbt => "pbt",
        }
    }
}

/// What the stopping rules and TPE judge: a metric and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objective {
    /// `val_accuracy`/`val_loss` (the built-in trainer's), or a name the program reports.
    pub name: String,
    pub maximize: bool,
    /// A `[program]`'s metric (its epoch records), not the built-in trainer's.
    pub program: bool,
}

impl Objective {
    pub fn builtin(m: SelectMetric) -> Objective {
        let (name, maximize) = match m {
            SelectMetric::ValAccuracy => ("val_accuracy", true),
            SelectMetric::ValLoss => ("val_loss", false),
        };
        Objective {
            name: name.into(),
            maximize,
            program: false,
        }
    }

    /// Where its values are in `metrics`: (split, name).
    pub fn db_key(&self) -> (&str, &str) {
        match (self.program, self.name.as_str()) {
            (false, "val_loss") => ("valid", "loss"),
            (false, _) => ("valid", "accuracy"),
            (true, name) => ("epoch", name),
        }
    }

    /// The value with "higher is better".
    pub fn orient(&self, v: f64) -> f64 {
        if self.maximize { v } else { -v }
    }
}

/// Early stopping across trials (`[stopping]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stopping {
    pub method: StopMethod,
    /// Judged on this figure (default: `[sweep] metric`).
    pub metric: Objective,
    /// The first rung (grace period); rungs at min_epochs · reduction^k.
    pub min_epochs: u32,
    pub reduction: u32,
    /// Stop a trial after this many epochs without improving its best.
    pub patience: Option<u32>,
    /// Test pruned trials too (on their best checkpoint); default false.
    pub test_pruned: bool,
    /// Seconds a stopped trial has to end after its stop line before it gets
    /// SIGTERM (a worker that ignores its stdin). Default 120. A `[program]`
    /// gets SIGTERM at once, and SIGKILL after this (default 30).
    pub stop_grace: u32,
    /// asha/hyperband in promotion mode (Li et al. 2020, Algorithm 2): a
    /// trial pauses at each rung and is resumed when it is in the top
    /// 1/reduction of that rung; nobody is stopped before every trial has
    /// been judged at the rung.
    pub promote: bool,
    /// Chosen by `method = "auto"` (the start-up line says what it chose).
    pub auto: bool,
    /// `method = "pbt"`: its settings.
    pub pbt: Option<Pbt>,
}

/// Population-based training (`method = "pbt"`): every `interval` epochs each
/// trial pauses; once the whole population has paused there, the bottom
/// `quantile` of it copies the checkpoint of a trial of the top `quantile`
/// (weights, optimizer state, counters) and continues with that trial's
/// parameters, perturbed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pbt {
    pub interval: u32,
    pub quantile: f64,
    pub perturb: Vec<Perturb>,
    /// Seeds the donor choice and the perturbations (from the sweep's name).
    pub seed: u64,
}

/// How PBT may change one parameter: multiply it by one of `factors`, or,
/// with probability `resample`, draw it afresh from `space`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perturb {
    pub key: String,
    pub factors: Vec<f64>,
    pub resample: f64,
    pub space: Option<Dist>,
}

/// The built-in trainer's parameters PBT may change between epochs: numbers
/// read when a process starts (the optimizer's and the schedule's), never
/// the model's shape or the data.
pub const PBT_BUILTIN_KEYS: [&str; 6] = [
    "lr",
    "weight_decay",
    "momentum",
    "gamma",
    "backbone_lr_scale",
    "layer_decay",
];

/// Ray Tune's default factors and resample probability.
const PBT_FACTORS: [f64; 2] = [0.8, 1.2];
const PBT_RESAMPLE: f64 = 0.25;

impl Stopping {
    pub fn none(metric: Objective) -> Stopping {
        Stopping {
            method: StopMethod::None,
            stop_grace: if metric.program { 30 } else { 120 },
            metric,
            min_epochs: 1,
            reduction: 3,
            patience: None,
            test_pruned: false,
            promote: false,
            auto: false,
            pbt: None,
        }
    }

    pub fn active(&self) -> bool {
        self.method != StopMethod::None || self.patience.is_some()
    }

    /// "asha (promote), min_epochs 1, reduction 3", for logs and docs.
    pub fn describe(&self) -> String {
        let mut s = self.method.as_str().to_string();
        if matches!(self.method, StopMethod::Asha | StopMethod::Hyperband) {
            s += if self.promote {
                " (promote)"
            } else {
                " (stop)"
            };
            s += &format!(
                ", min_epochs {}, reduction {}",
                self.min_epochs, self.reduction
            );
        } else if self.method == StopMethod::Median {
            s += &format!(", min_epochs {}", self.min_epochs);
        } else if let Some(p) = &self.pbt {
            s += &format!(
                ", interval {}, quantile {}, perturbs {}",
                p.interval,
                p.quantile,
                p.perturb
                    .iter()
                    .map(|x| x.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(p) = self.patience {
            s += &format!(", patience {p}");
        }
        s
    }
}

/// What `method = "auto"` picks: Hyperband (stop mode; `min_epochs` 1 and
/// `reduction` 3 unless set). On the simulated curve families (slow starters,
/// crossing curves, noise) it was the only method that kept the grid's best
/// within about a point in every family, at about half to three quarters of
/// the grid's epochs; promotion-based ASHA is cheaper but prunes slow
/// starters at the first rung. The evidence: docs/search.md.
pub fn auto_method() -> (StopMethod, bool) {
    (StopMethod::Hyperband, false)
}

pub(super) fn stopping(
    src: &Source,
    r: &crate::spec::raw::RawStopping,
    default_metric: Objective,
    resumable: bool,
) -> Result<Stopping, SpecError> {
    let program = default_metric.program;
    let mut out = Stopping::none(default_metric.clone());
    if let Some(m) = &r.method {
        out.method = match m.get_ref().as_str() {
            "none" => StopMethod::None,
            "asha" => StopMethod::Asha,
            "hyperband" => StopMethod::Hyperband,
            "median" => StopMethod::Median,
            "pbt" => StopMethod::Pbt,
            "auto" => {
                let (method, promote) = auto_method();
                out.promote = promote;
                out.auto = true;
                method
            }
            other => {
                return Err(at(
                    src,
                    m,
                    format!("unknown stopping method {other:?}"),
                    Some("valid methods: auto, asha, hyperband, median, pbt, none".into()),
                ));
            }
        };
    }
    if let Some(m) = &r.mode {
        let halving = matches!(out.method, StopMethod::Asha | StopMethod::Hyperband);
        out.promote = match m.get_ref().as_str() {
            "promote" | "stop" if !halving || out.auto => {
                return Err(at(
                    src,
                    m,
                    format!(
                        "`mode` applies to asha and hyperband, not to method {:?}",
                        if out.auto {
                            "auto"
                        } else {
                            out.method.as_str()
                        }
                    ),
                    Some("remove `mode`, or set method = \"asha\" or \"hyperband\"".into()),
                ));
            }
            "promote" if !resumable => {
                return Err(at(
                    src,
                    m,
                    "mode = \"promote\" pauses trials and resumes them later, but this [program] is not declared resumable",
                    Some("if the program resumes from its checkpoint in SWEEP_TRIAL_DIR and stops after the epoch SWEEP_PAUSE_AFTER, set [program] resumable = true (docs/program.md); else use mode = \"stop\"".into()),
                ));
            }
            "promote" => true,
            "stop" => false,
            other => {
                return Err(at(
                    src,
                    m,
                    format!("unknown stopping mode {other:?}"),
                    Some("valid modes: stop (a trial below the cutoff ends), promote (it pauses at the rung and may be resumed)".into()),
                ));
            }
        };
    }
    if let Some(m) = &r.metric
        && program
    {
        let name = m.get_ref();
        if name.is_empty() || name == "epoch" || name == "step" || name.starts_with("test_") {
            return Err(at(
                src,
                m,
                format!("{name:?} cannot be judged"),
                Some("name a value of the program's epoch records, e.g. \"val_loss\"".into()),
            ));
        }
        out.metric = Objective {
            name: name.clone(),
            // The sweep's own metric keeps its direction; another name
            // follows the default rule.
            maximize: if *name == default_metric.name {
                default_metric.maximize
            } else {
                !name.ends_with("loss")
            },
            program: true,
        };
    } else if let Some(m) = &r.metric {
        out.metric = match m.get_ref().as_str() {
            "val_accuracy" => Objective::builtin(SelectMetric::ValAccuracy),
            "val_loss" => Objective::builtin(SelectMetric::ValLoss),
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
    out.pbt = pbt(src, r, &out, resumable, program, ranged)?;
    Ok(out)
}

/// `method = "pbt"` and its keys (`interval`, `quantile`, `[stopping.perturb]`);
/// those keys with another method are an error.
fn pbt(
    src: &Source,
    r: &crate::spec::raw::RawStopping,
    out: &Stopping,
    resumable: bool,
    program: bool,
    ranged: impl Fn(&Spanned<i64>, &str, i64, i64) -> Result<u32, SpecError>,
) -> Result<Option<Pbt>, SpecError> {
    let method = r.method.as_ref();
    if out.method != StopMethod::Pbt {
        if let Some(v) = &r.interval {
            return Err(only_pbt(src, v, "interval"));
        }
        if let Some(v) = &r.quantile {
            return Err(only_pbt(src, v, "quantile"));
        }
        if let Some((k, _)) = r.perturb.as_ref().and_then(|p| p.iter().next()) {
            return Err(only_pbt(src, k, "[stopping.perturb]"));
        }
        return Ok(None);
    }
    let Some(method) = method else {
        return Ok(None);
    };
    if !resumable {
        return Err(at(
            src,
            method,
            "method = \"pbt\" pauses trials and resumes them from another trial's checkpoint, but this [program] is not declared resumable",
            Some("if the program resumes from its checkpoint in SWEEP_TRIAL_DIR and stops after the epoch SWEEP_PAUSE_AFTER, set [program] resumable = true (docs/program.md); else use a stopping method".into()),
        ));
    }
    for (v, key) in [
        (&r.min_epochs, "min_epochs"),
        (&r.reduction, "reduction"),
        (&r.patience, "patience"),
    ] {
        if let Some(v) = v {
            return Err(at(
                src,
                v,
                format!("`{key}` does not apply to method \"pbt\", which stops no trial"),
                Some("remove it; pbt takes `interval`, `quantile` and [stopping.perturb]".into()),
            ));
        }
    }
    if let Some(m) = &r.mode {
        return Err(at(
            src,
            m,
            "`mode` applies to asha and hyperband, not to method \"pbt\"",
            Some("remove `mode`".into()),
        ));
    }
    let interval = match &r.interval {
        Some(v) => ranged(v, "interval", 1, 10_000)?,
        None => 1,
    };
    let quantile = match &r.quantile {
        Some(q) if *q.get_ref() > 0.0 && *q.get_ref() <= 0.5 => *q.get_ref(),
        Some(q) => {
            return Err(at(
                src,
                q,
                format!(
                    "`quantile` must be above 0 and at most 0.5, got {}",
                    q.get_ref()
                ),
                Some("the bottom quantile copies the top quantile: 0.25 is the usual value".into()),
            ));
        }
        None => 0.25,
    };
    let mut perturb = Vec::new();
    for (k, v) in r.perturb.iter().flatten() {
        perturb.push(perturb_entry(src, k, v, program)?);
    }
    if perturb.is_empty() {
        if program {
            return Err(at(
                src,
                method,
                "method = \"pbt\" needs the parameters it may change",
                Some("add e.g. [stopping.perturb] lr = [0.8, 1.2] (factors), or lr = { factors = [0.8, 1.2], resample = 0.25, loguniform = [1e-4, 0.1] }".into()),
            ));
        }
        perturb.push(Perturb {
            key: "lr".into(),
            factors: PBT_FACTORS.to_vec(),
            resample: 0.0,
            space: None,
        });
    }
    Ok(Some(Pbt {
        interval,
        quantile,
        perturb,
        seed: 0,
    }))
}

fn only_pbt<T>(src: &Source, s: &Spanned<T>, key: &str) -> SpecError {
    at(
        src,
        s,
        format!("`{key}` applies to method = \"pbt\" only"),
        Some("remove it, or set method = \"pbt\"".into()),
    )
}

/// One `[stopping.perturb]` entry: `key = [factors]` or a table of
/// `factors`, `resample` and one distribution.
fn perturb_entry(
    src: &Source,
    k: &Spanned<String>,
    v: &Spanned<Value>,
    program: bool,
) -> Result<Perturb, SpecError> {
    let key = k.get_ref().clone();
    if program {
        if matches!(key.as_str(), "epochs" | "seed") {
            return Err(at(
                src,
                k,
                format!("pbt cannot change `{key}`"),
                Some("perturb the program's numeric hyperparameters, e.g. lr".into()),
            ));
        }
    } else if !PBT_BUILTIN_KEYS.contains(&key.as_str()) {
        return Err(at(
            src,
            k,
            format!("pbt cannot change `{key}` of the built-in trainer"),
            Some(format!("it may change {}", PBT_BUILTIN_KEYS.join(", "))),
        ));
    }
    let help = || {
        Some(format!(
            "write {key} = [0.8, 1.2] (factors), or {key} = {{ factors = [0.8, 1.2], resample = 0.25, loguniform = [1e-4, 0.1] }}"
        ))
    };
    let factors_of = |a: &Value| -> Option<Vec<f64>> {
        let f: Vec<f64> = a
            .as_array()?
            .iter()
            .map(|x| x.as_float().or(x.as_integer().map(|i| i as f64)))
            .collect::<Option<_>>()?;
        (!f.is_empty() && f.iter().all(|x| x.is_finite() && *x > 0.0)).then_some(f)
    };
    let bad = |what: &str| {
        at(
            src,
            v,
            format!("[stopping.perturb] `{key}`: {what}"),
            help(),
        )
    };
    if let Some(f) = factors_of(v.get_ref()) {
        return Ok(Perturb {
            key,
            factors: f,
            resample: 0.0,
            space: None,
        });
    }
    let Some(t) = v.get_ref().as_table() else {
        return Err(bad("factors must be positive numbers"));
    };
    let mut p = Perturb {
        key: key.clone(),
        factors: PBT_FACTORS.to_vec(),
        resample: 0.0,
        space: None,
    };
    let mut resample = None;
    for (name, x) in t {
        match name.as_str() {
            "factors" => {
                p.factors = factors_of(x).ok_or_else(|| bad("factors must be positive numbers"))?
            }
            "resample" => {
                let r = x.as_float().or(x.as_integer().map(|i| i as f64));
                resample = Some(
                    r.filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| bad("resample is a probability, from 0 to 1"))?,
                );
            }
            "uniform" | "loguniform" | "int" => {
                let ends: Option<Vec<f64>> = x.as_array().map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_float().or(e.as_integer().map(|i| i as f64)))
                        .collect()
                });
                let (lo, hi) = match ends.as_deref() {
                    Some([lo, hi])
                        if lo < hi
                            && (hi - lo).is_finite()
                            && (name != "loguniform" || *lo > 0.0) =>
                    {
                        (*lo, *hi)
                    }
                    _ => {
                        return Err(bad(&format!(
                            "`{name}` needs finite [low, high] with low < high"
                        )));
                    }
                };
                p.space = Some(match name.as_str() {
                    "uniform" => Dist::Uniform(lo, hi),
                    "loguniform" => Dist::LogUniform(lo, hi),
                    _ => Dist::Int(lo.round() as i64, hi.round() as i64),
                });
            }
            other => {
                return Err(bad(&format!(
                    "unknown key `{other}` (factors, resample, uniform, loguniform, int)"
                )));
            }
        }
    }
    p.resample = match (resample, &p.space) {
        (Some(r), Some(_)) => r,
        (None, Some(_)) => PBT_RESAMPLE,
        (Some(_), None) => return Err(bad("resample needs a distribution to draw from")),
        (None, None) => 0.0,
    };
    Ok(p)
}
