//! `[resources]`: GPUs, CPU workers, retries, what finished trials keep.
use super::*;

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

/// A `[resources]` string that must be one of `names`: parsed, or an error at
/// it that lists them (`note` follows the list).
pub(super) fn named_setting<T>(
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

pub(super) fn resources(
    src: &Source,
    r: &crate::spec::raw::RawResources,
) -> Result<Resources, SpecError> {
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
