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
}

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
                    Some("valid methods: auto, asha, hyperband, median, none".into()),
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
    Ok(out)
}
