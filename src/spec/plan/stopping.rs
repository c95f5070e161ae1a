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
        }
    }

    pub fn active(&self) -> bool {
        self.method != StopMethod::None || self.patience.is_some()
    }
}

pub(super) fn stopping(
    src: &Source,
    r: &crate::spec::raw::RawStopping,
    default_metric: Objective,
) -> Result<Stopping, SpecError> {
    let program = default_metric.program;
    let mut out = Stopping::none(default_metric.clone());
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
