//! `[resources] launcher` and the `[slurm]` table: parsed with spans (like
//! `raw`) and validated into a [`SlurmSpec`] (like `plan`). Only the values
//! are judged here; whether Slurm's commands exist on this host is checked by
//! [`check_tools`] when a run is about to start (a dry run needs no Slurm).
use super::raw::{Source, SpecError};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// `[slurm]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlurm {
    pub partition: Option<Spanned<String>>,
    pub gres: Option<Spanned<String>>,
    pub cpus_per_trial: Option<Spanned<i64>>,
    pub mem: Option<Spanned<String>>,
    pub time: Option<Spanned<String>>,
    pub account: Option<Spanned<String>>,
    pub qos: Option<Spanned<String>>,
    pub max_jobs: Option<Spanned<i64>>,
    pub extra: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Trials in flight outside an allocation when `max_jobs` is not given.
pub const DEFAULT_MAX_JOBS: u32 = 32;

/// A validated `[slurm]` table (with `launcher = "slurm"`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    /// Generic resources per trial, as `srun --gres` takes them ("gpu:1").
    pub gres: Option<String>,
    /// GPUs per trial, from `gres` (0 without a gpu gres).
    pub gpus_per_trial: u32,
    pub cpus_per_trial: Option<u32>,
    pub mem: Option<String>,
    /// Time limit per attempt (Slurm counts whole minutes: rounded up).
    pub time: Option<Duration>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Trials in flight; `None`: what an allocation holds, or [`DEFAULT_MAX_JOBS`].
    pub max_jobs: Option<u32>,
    /// Passed to `srun` as written, after sweep's own options.
    pub extra: Vec<String>,
    /// Where `launcher = "slurm"` is written (for errors found later).
    pub declared: (PathBuf, usize, usize),
}

/// Builds a located error: (span, message, help).
type At<'a> = dyn Fn(std::ops::Range<usize>, String, Option<&str>) -> SpecError + 'a;

/// `mem`: memory per trial as `srun --mem` takes it.
fn mem(at: &At, v: String, span: std::ops::Range<usize>) -> Result<String, SpecError> {
    let digits = v.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit())
        || v.len() - digits.len() > 1
    {
        return Err(at(
            span,
            format!("invalid mem {v:?}"),
            Some(
                "memory per trial as srun --mem takes it: a number with an optional K, M, G or T suffix, e.g. \"16G\"",
            ),
        ));
    }
    Ok(v)
}

/// `time`: a time limit per attempt, a minute or more.
fn time_limit(at: &At, t: &Spanned<String>) -> Result<Duration, SpecError> {
    let d = humantime::parse_duration(t.get_ref()).map_err(|e| {
        at(
            t.span(),
            format!("invalid time {:?}: {e}", t.get_ref()),
            Some("a time limit per attempt such as \"30m\", \"4h\" or \"1day\""),
        )
    })?;
    if d < Duration::from_secs(60) {
        return Err(at(
            t.span(),
            format!("time {:?} is under a minute", t.get_ref()),
            Some("Slurm counts time limits in whole minutes: write \"1m\" or more"),
        ));
    }
    Ok(d)
}

/// One `extra` item: an srun option that sweep does not set itself.
fn extra_option(at: &At, e: &Spanned<String>) -> Result<String, SpecError> {
    let v = e.get_ref();
    if !v.starts_with('-') || v.trim() != v || v.len() < 2 {
        return Err(at(
            e.span(),
            format!("`extra` item {v:?} is not an srun option"),
            Some("each item is one option, e.g. extra = [\"--constraint=a100\", \"--exclusive\"]"),
        ));
    }
    let name = v.split('=').next().unwrap_or(v);
    let short = (name.len() > 2 && !name.starts_with("--")).then(|| &name[..2]);
    if let Some(r) = RESERVED.iter().find(|r| **r == name || Some(**r) == short) {
        return Err(at(
            e.span(),
            format!("`extra` item {v:?} sets {r}, which sweep sets itself"),
            Some(
                "sweep names each job, streams its stdout and sends the time-limit warning itself; use the [slurm] keys for the rest",
            ),
        ));
    }
    Ok(v.clone())
}

impl SlurmSpec {
    /// `--time` in Slurm's minutes (at least 1).
    pub fn time_minutes(&self) -> Option<u64> {
        self.time.map(|t| t.as_secs().div_ceil(60).max(1))
    }

    /// Seconds before the time limit at which Slurm sends SIGTERM (`--signal=TERM@N`),
    /// so the worker stops at a clean batch with its epoch checkpoint kept.
    pub fn warning_seconds(&self) -> Option<u64> {
        self.time_minutes().map(|m| (m * 60 / 10).clamp(30, 300))
    }
}

/// Options that sweep sets itself: `extra` must not replace them.
const RESERVED: &[&str] = &[
    "-J",
    "--job-name",
    "-o",
    "--output",
    "-e",
    "--error",
    "-i",
    "--input",
    "-n",
    "--ntasks",
    "-u",
    "--unbuffered",
    "--pty",
    "--exact",
    "--signal",
];

/// `launcher`: "local" (None) or "slurm" with its table; errors located.
pub fn validate(
    src: &Source,
    launcher: Option<&Spanned<String>>,
    raw: Option<&Spanned<RawSlurm>>,
) -> Result<Option<SlurmSpec>, SpecError> {
    let at = |s: std::ops::Range<usize>, m: String, help: Option<&str>| {
        src.error_at(s.start, m, help.map(String::from))
    };
    let slurm = match launcher.map(|l| l.get_ref().as_str()) {
        None | Some("local") => false,
        Some("slurm") => true,
        Some(other) => {
            let l = launcher.map(|l| l.span()).unwrap_or(0..0);
            return Err(at(
                l,
                format!("unknown launcher {other:?}"),
                Some(
                    "launcher is \"local\" (this machine, the default) or \"slurm\" (see [slurm])",
                ),
            ));
        }
    };
    let Some(raw) = raw else {
        return Ok(slurm.then(|| SlurmSpec::defaults(src, launcher)));
    };
    if !slurm {
        return Err(at(
            raw.span(),
            "a [slurm] table, but the launcher is \"local\"".into(),
            Some("add `launcher = \"slurm\"` to [resources], or remove [slurm]"),
        ));
    }
    let r = raw.get_ref();
    let mut out = SlurmSpec::defaults(src, launcher);
    let word = |s: &Spanned<String>, key: &str| -> Result<String, SpecError> {
        let v = s.get_ref().trim();
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(at(
                s.span(),
                format!("`{key}` must be one word, got {:?}", s.get_ref()),
                None,
            ));
        }
        Ok(v.to_string())
    };
    out.partition = r
        .partition
        .as_ref()
        .map(|s| word(s, "partition"))
        .transpose()?;
    out.account = r.account.as_ref().map(|s| word(s, "account")).transpose()?;
    out.qos = r.qos.as_ref().map(|s| word(s, "qos")).transpose()?;
    if let Some(g) = &r.gres {
        let v = word(g, "gres")?;
        out.gpus_per_trial = gres_gpus(&v).ok_or_else(|| {
            at(
                g.span(),
                format!("invalid gres {v:?}"),
                Some("write NAME[:TYPE]:COUNT per trial, e.g. \"gpu:1\" or \"gpu:a100:2\" (several: \"gpu:1,shard:2\")"),
            )
        })?;
        out.gres = Some(v);
    }
    if let Some(c) = &r.cpus_per_trial {
        let v = *c.get_ref();
        if !(1..=1024).contains(&v) {
            return Err(at(
                c.span(),
                format!("`cpus_per_trial` must be between 1 and 1024, got {v}"),
                None,
            ));
        }
        out.cpus_per_trial = Some(v as u32);
    }
    if let Some(m) = &r.max_jobs {
        let v = *m.get_ref();
        if !(1..=100_000).contains(&v) {
            return Err(at(
                m.span(),
                format!("`max_jobs` must be between 1 and 100000, got {v}"),
                None,
            ));
        }
        out.max_jobs = Some(v as u32);
    }
    if let Some(m) = &r.mem {
        out.mem = Some(mem(&at, word(m, "mem")?, m.span())?);
    }
    if let Some(t) = &r.time {
        out.time = Some(time_limit(&at, t)?);
    }
    if let Some(list) = &r.extra {
        for e in list.get_ref() {
            out.extra.push(extra_option(&at, e)?);
        }
    }
    Ok(Some(out))
}

impl SlurmSpec {
    fn defaults(src: &Source, launcher: Option<&Spanned<String>>) -> SlurmSpec {
        let (line, col) =
            super::raw::line_col(&src.text, launcher.map(|l| l.span().start).unwrap_or(0));
        SlurmSpec {
            partition: None,
            gres: None,
            gpus_per_trial: 0,
            cpus_per_trial: None,
            mem: None,
            time: None,
            account: None,
            qos: None,
            max_jobs: None,
            extra: vec![],
            declared: (src.path.clone(), line, col),
        }
    }
}

/// GPUs per trial in a gres list ("gpu:2", "gpu:a100:1,shard:1" → 2, 1); None if malformed.
fn gres_gpus(gres: &str) -> Option<u32> {
    let mut gpus = 0;
    for item in gres.split(',') {
        let parts: Vec<&str> = item.split(':').collect();
        let ok_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        let count = match parts.as_slice() {
            [name] if ok_name(name) => 1,
            [name, n] if ok_name(name) && n.parse::<u32>().is_ok() => n.parse().ok()?,
            [name, ty] if ok_name(name) && ok_name(ty) => 1,
            [name, ty, n] if ok_name(name) && ok_name(ty) => n.parse().ok()?,
            _ => return None,
        };
        if parts[0] == "gpu" {
            gpus += count;
        }
    }
    Some(gpus)
}

/// Slurm's client commands are on PATH (checked before a Slurm run starts).
pub fn check_tools(spec: &SlurmSpec) -> Result<(), SpecError> {
    let missing: Vec<&str> = ["srun", "sinfo", "squeue", "scancel", "scontrol"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let (file, line, col) = spec.declared.clone();
    Err(SpecError {
        file,
        line,
        col,
        message: format!("launcher \"slurm\" needs Slurm's client commands, but {} not found on PATH", missing.join(", ")),
        help: Some("run `sweep run` on a Slurm login node (or inside `sbatch`/`salloc`) where `srun` and `sinfo` work, or use launcher = \"local\"".into()),
    })
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_counts_gpus() {
        assert_eq!(gres_gpus("gpu:1"), Some(1));
        assert_eq!(gres_gpus("gpu:a100:2"), Some(2));
        assert_eq!(gres_gpus("gpu"), Some(1));
        assert_eq!(gres_gpus("shard:2"), Some(0));
        assert_eq!(gres_gpus("gpu:1,shard:2"), Some(1));
        assert_eq!(gres_gpus("gpu:a:b:c"), None);
        assert_eq!(gres_gpus("gpu:"), None);
    }

    #[test]
    fn time_rounds_up_to_minutes_and_warns_before() {
        let src = Source {
            path: "s.toml".into(),
            text: String::new(),
        };
        let mut s = SlurmSpec::defaults(&src, None);
        s.time = Some(Duration::from_secs(90));
        assert_eq!(s.time_minutes(), Some(2));
        assert_eq!(s.warning_seconds(), Some(30));
        s.time = Some(Duration::from_secs(4 * 3600));
        assert_eq!(s.warning_seconds(), Some(300));
    }
}
