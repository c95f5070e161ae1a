//! `[random] sampler = "tpe"`: the search space the coordinator proposes in
//! while the sweep runs, validated here like the rest of the file.
//!
//! With TPE the plan holds only the `startup` random draws (the same first
//! draws `sampler = "random"` makes); the other `samples − startup` points
//! are proposed one at a time by the coordinator from the results so far,
//! and turned into trials here (`SearchSpace::trials`), with the same checks
//! and the same trial ids as planned ones.
use super::id::trial_id;
use super::plan::{PlannedTrial, Point};
use super::raw::{Params, Source, SpecError};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use sweep_protocol::TrialParams;
use toml::{Spanned, Value};

/// Optuna's default number of random trials before TPE.
pub const DEFAULT_STARTUP: usize = 10;

/// `[random] sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    Random,
    /// A Latin hypercube: every dimension's range cut into `samples` equal
    /// strata, one point in each (see `plan::random::latin_hypercube`).
    Lhs,
    Tpe,
}

/// One dimension of `[random]`'s space.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Choice(Vec<Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Int(i64, i64),
}

impl Dim {
    /// The TOML value at coordinate `x` (a choice index, a value, an integer).
    pub fn value(&self, x: f64) -> Value {
        match self {
            Dim::Choice(c) => c[(x as usize).min(c.len() - 1)].clone(),
            Dim::Uniform(..) | Dim::LogUniform(..) => Value::Float(x),
            Dim::Int(..) => Value::Integer(x.round() as i64),
        }
    }

    /// The coordinate of a resolved config's value (its JSON form).
    fn coord(&self, v: &serde_json::Value) -> Option<f64> {
        match self {
            Dim::Choice(c) => c
                .iter()
                .position(|x| serde_json::to_value(x).ok().as_ref() == Some(v))
                .map(|i| i as f64),
            _ => v.as_f64(),
        }
    }

    /// `choice ["resnet18", "resnet34"]`, `loguniform [0.0001, 0.1]`, …
    pub fn describe(&self) -> String {
        match self {
            Dim::Choice(c) => format!(
                "choice [{}]",
                c.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Dim::Uniform(a, b) => format!("uniform [{a}, {b}]"),
            Dim::LogUniform(a, b) => format!("loguniform [{a}, {b}]"),
            Dim::Int(a, b) => format!("int [{a}, {b}]"),
        }
    }
}

/// A value of a dimension with the spans of its key and of its values.
type Located = (Range<usize>, Range<usize>, Value);

/// The space TPE searches, and what it needs to make trials of its points.
#[derive(Debug, Clone)]
pub struct SearchSpace {
    /// (parameter, distribution), in the file's key order.
    pub dims: Vec<(String, Dim)>,
    /// Points in all (`[random] samples`), startup draws included.
    pub samples: usize,
    /// Random draws before TPE takes over (the plan's trials).
    pub startup: usize,
    /// Seeds every proposal (derived from the sweep name, as the draws are).
    pub seed: u64,
    /// Where each dimension is written (key, value), for errors.
    pub(super) spans: Vec<(Range<usize>, Range<usize>)>,
    pub(super) base: Point,
    pub(super) seeds: Vec<u64>,
    pub(super) pretrained: BTreeMap<String, PathBuf>,
    pub(super) name: String,
    pub(super) dataset: PathBuf,
    pub(super) file: PathBuf,
    pub(super) text: String,
}

impl SearchSpace {
    /// The trials of a point: `[defaults]` plus the point's values, once per seed.
    pub fn trials(&self, point: &[f64]) -> Result<Vec<PlannedTrial>, SpecError> {
        let src = Source {
            path: self.file.clone(),
            text: self.text.clone(),
        };
        let mut p = self.base.clone();
        for (((key, dim), (ks, vs)), x) in self.dims.iter().zip(&self.spans).zip(point) {
            p.set(
                &src,
                &Spanned::new(ks.clone(), key.clone()),
                &Spanned::new(vs.clone(), dim.value(*x)),
            )?;
        }
        let config = p.finish(&src)?;
        Ok(self
            .seeds
            .iter()
            .map(|&seed| {
                let c = super::plan::with_seed(config.clone(), seed, &self.pretrained);
                PlannedTrial {
                    id: trial_id(&self.name, &self.dataset, &c),
                    config: c,
                }
            })
            .collect())
    }

    /// A config for every `backbone` × `head` value this space may propose
    /// (each choice of those dimensions, or `[defaults]`' where they are
    /// not searched; the other keys as `[defaults]` sets them), with its
    /// `[pretrained]` weights: what the `[pretrained]` check before the
    /// sweep starts must cover besides the startup draws, since a grid
    /// value is covered by its planned trial but a choice TPE proposes
    /// after the start has none yet. Combinations the cross-checks refuse
    /// are left out.
    pub fn backbone_configs(&self) -> Vec<sweep_protocol::TrialConfig> {
        let src = Source {
            path: self.file.clone(),
            text: self.text.clone(),
        };
        // Each value of `backbone` (`head`) with where its key and values
        // are written; [None] when the key is not searched.
        let axis = |key: &str| -> Vec<Option<Located>> {
            self.dims
                .iter()
                .zip(&self.spans)
                .find(|((k, _), _)| k == key)
                .and_then(|((_, d), (ks, vs))| match d {
                    Dim::Choice(c) => Some(
                        c.iter()
                            .map(|v| Some((ks.clone(), vs.clone(), v.clone())))
                            .collect(),
                    ),
                    _ => None,
                })
                .unwrap_or_else(|| vec![None])
        };
        let mut out = Vec::new();
        for b in axis("backbone") {
            for h in axis("head") {
                let mut p = self.base.clone();
                let mut ok = true;
                for (key, set) in [("backbone", &b), ("head", &h)] {
                    if let Some((ks, vs, v)) = set {
                        ok &= p
                            .set(
                                &src,
                                &Spanned::new(ks.clone(), key.to_string()),
                                &Spanned::new(vs.clone(), v.clone()),
                            )
                            .is_ok();
                    }
                }
                let Some(Ok(TrialParams::Builtin(c))) = ok.then(|| p.finish(&src)) else {
                    continue;
                };
                let seed = self.seeds.first().copied().unwrap_or_default();
                if let TrialParams::Builtin(c) =
                    super::plan::with_seed(TrialParams::Builtin(c), seed, &self.pretrained)
                {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Trials per point (one per `[sweep] seeds` entry).
    pub fn seed_count(&self) -> usize {
        self.seeds.len().max(1)
    }

    /// The point a resolved config sits at (for planned startup trials and
    /// proposals read back from the database).
    pub fn point_of(&self, config: &TrialParams) -> Option<Vec<f64>> {
        let json = config.to_json();
        self.dims
            .iter()
            .map(|(k, d)| d.coord(json.get(k)?))
            .collect()
    }
}

/// `sampler` and `startup` of `[random]` (with `samples` known).
pub(super) fn sampler_settings(
    src: &Source,
    r: &Spanned<Params>,
    samples: usize,
) -> Result<(Sampler, usize), SpecError> {
    let at = |s: &Spanned<Value>, m: String, help: Option<&str>| {
        src.error_at(s.span().start, m, help.map(String::from))
    };
    let get = |name: &str| {
        r.get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v)
    };
    let sampler = match get("sampler") {
        None => Sampler::Random,
        Some(v) => match v.get_ref().as_str() {
            Some("random") => Sampler::Random,
            Some("lhs") => Sampler::Lhs,
            Some("tpe") => Sampler::Tpe,
            _ => {
                return Err(at(
                    v,
                    format!("unknown sampler {}", v.get_ref()),
                    Some(
                        "valid samplers: \"random\" (default), \"lhs\" (Latin hypercube), \"tpe\"",
                    ),
                ));
            }
        },
    };
    let startup = match get("startup") {
        None => DEFAULT_STARTUP.min(samples),
        Some(v) if sampler != Sampler::Tpe => {
            return Err(at(
                v,
                "`startup` applies to sampler = \"tpe\" only".into(),
                Some("add sampler = \"tpe\", or remove `startup`"),
            ));
        }
        Some(v) => match v.get_ref().as_integer() {
            Some(n) if n >= 1 && n as usize <= samples => n as usize,
            _ => {
                return Err(at(
                    v,
                    format!(
                        "`startup` must be an integer between 1 and `samples` ({samples}), got {}",
                        v.get_ref()
                    ),
                    Some(
                        "the first `startup` of the `samples` points are random draws; TPE proposes the rest",
                    ),
                ));
            }
        },
    };
    Ok((sampler, startup))
}

/// Checks each choice of a dimension as a grid value is checked: with
/// `[defaults]`, through the cross-checks between keys (vit_b_16 and an
/// `image_size` not a multiple of 16, adam and `momentum`, …). TPE may
/// propose any choice after the start, not only those the startup draws
/// picked, and a proposal that fails them would fail its trial.
pub(super) fn check_choices(
    src: &Source,
    base: &Point,
    k: &Spanned<String>,
    span: Range<usize>,
    dim: &Dim,
) -> Result<(), SpecError> {
    let Dim::Choice(values) = dim else {
        return Ok(());
    };
    for v in values {
        let mut p = base.clone();
        p.set(src, k, &Spanned::new(span.clone(), v.clone()))?;
        p.finish(src).map_err(|e| {
            let tpe = "sampler = \"tpe\" may propose every choice, not only those the startup draws picked";
            let help = match e.help.clone() {
                Some(h) => format!("{h}; {tpe}"),
                None => tpe.to_string(),
            };
            SpecError {
                help: Some(help),
                ..e
            }
        })?;
    }
    Ok(())
}

/// Checks a dimension's bounds as values of its key: TPE may propose
/// anywhere in the range, not only where the startup draws fell.
pub(super) fn check_bounds(
    src: &Source,
    base: &Point,
    k: &Spanned<String>,
    span: Range<usize>,
    dim: &Dim,
) -> Result<(), SpecError> {
    let ends = match dim {
        Dim::Uniform(a, b) | Dim::LogUniform(a, b) => [Value::Float(*a), Value::Float(*b)],
        _ => return Ok(()),
    };
    for end in ends {
        base.check(src, k, &Spanned::new(span.clone(), end))
            .map_err(|e| SpecError { help: Some("sampler = \"tpe\" may propose any value of the range, its ends included; narrow it".into()), ..e })?;
    }
    Ok(())
}
