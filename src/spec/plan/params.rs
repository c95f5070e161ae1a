//! One parameter of `[defaults]`, `[grid]`, `[random]` or `[[trial]]` applied to a
//! trial's config, with a located error for a wrong key, type or range.
use super::*;

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
        "head" => c.head = head(src, v, &wrong)?,
        "freeze_backbone" => c.freeze_backbone = boolean()?,
        "backbone_lr_scale" => c.backbone_lr_scale = float(0.0, 100.0, true)?,
        "augment" => c.augment = augment(src, v, &wrong)?,
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
        "layer_decay" => c.layer_decay = float(0.0, 1.0, false)?,
        _ => return Err(unknown_key(src, k)),
    }
    Ok(())
}

pub(super) fn describe(v: &Value) -> String {
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

pub(super) fn num(v: &Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// `head = "original"` or `head = { hidden = [...], dropout = ... }`.
fn head(
    src: &Source,
    v: &Spanned<Value>,
    wrong: &dyn Fn(&str) -> SpecError,
) -> Result<Head, SpecError> {
    let val = v.get_ref();
    Ok(match val {
        Value::String(s) if s == "original" => Head::Original,
        Value::Table(t) => {
            let mut hidden = vec![512, 512];
            let mut dropout = 0.0;
            for (hk, hv) in t {
                match hk.as_str() {
                    "hidden" => {
                        let arr = hv.as_array().ok_or_else(|| {
                            at(
                                src,
                                v,
                                "`head.hidden` must be a list of layer widths, e.g. [512, 512]",
                                None,
                            )
                        })?;
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
                        dropout = num(hv).filter(|d| (0.0..1.0).contains(d)).ok_or_else(|| {
                            at(src, v, "`head.dropout` must be a number in [0, 1)", None)
                        })?;
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
    })
}

/// `augment = [...]`, each one of [`AUGMENTS`].
fn augment(
    src: &Source,
    v: &Spanned<Value>,
    wrong: &dyn Fn(&str) -> SpecError,
) -> Result<Vec<String>, SpecError> {
    let val = v.get_ref();
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
    Ok(out)
}
