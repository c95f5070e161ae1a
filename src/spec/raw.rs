//! Sweep files as written: TOML → raw structs that keep source spans.
//!
//! This module only parses; it never judges values (that is `plan`'s job) and
//! never touches the disk beyond reading the file. Every error it produces
//! carries `file:line:col` so the user can jump straight to the mistake.
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub type Params = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub sweep: Spanned<RawSweep>,
    #[serde(default)]
    pub defaults: Params,
    #[serde(default)]
    pub grid: BTreeMap<Spanned<String>, Spanned<GridValues>>,
    #[serde(default)]
    pub random: Option<Spanned<Params>>,
    #[serde(default)]
    pub trial: Vec<Spanned<Params>>,
    #[serde(default)]
    pub pretrained: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub resources: Option<Spanned<RawResources>>,
    #[serde(default)]
    pub stopping: Option<Spanned<RawStopping>>,
    #[serde(default)]
    pub slurm: Option<Spanned<super::slurm::RawSlurm>>,
    /// A user's own training program instead of the built-in trainer.
    #[serde(default)]
    pub program: Option<Spanned<super::program::RawProgram>>,
}

/// `[stopping]`: early stopping across trials, decided at epoch boundaries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStopping {
    pub method: Option<Spanned<String>>,
    /// asha/hyperband: "stop" (a trial below the cutoff is stopped for good)
    /// or "promote" (it pauses at its rung and may be promoted later).
    pub mode: Option<Spanned<String>>,
    pub metric: Option<Spanned<String>>,
    pub min_epochs: Option<Spanned<i64>>,
    pub reduction: Option<Spanned<i64>>,
    pub patience: Option<Spanned<i64>>,
    pub test_pruned: Option<Spanned<bool>>,
    pub stop_grace: Option<Spanned<i64>>,
    /// pbt: epochs between exploit/explore steps.
    pub interval: Option<Spanned<i64>>,
    /// pbt: the fraction of the population that copies a top trial (default 0.25).
    pub quantile: Option<Spanned<f64>>,
    /// pbt: the parameters it may change, `key = [factors]` or
    /// `key = { factors = [...], resample = p, loguniform = [a, b] }`.
    pub perturb: Option<Params>,
}

/// A `[grid]` entry. Array items keep their own spans, so a bad value among
/// good ones is reported where it is written, not at the array's `[`.
#[derive(Debug)]
pub enum GridValues {
    List(Vec<Spanned<toml::Value>>),
    /// Anything but an array (`plan` reports it).
    NotList,
}

impl<'de> Deserialize<'de> for GridValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GridValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GridValues, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<toml::Value>>()? {
                    items.push(item);
                }
                Ok(GridValues::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GridValues, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(GridValues::NotList)
            }
            fn visit_bool<E>(self, _: bool) -> Result<GridValues, E> {
                Ok(GridValues::NotList)
            }
            fn visit_i64<E>(self, _: i64) -> Result<GridValues, E> {
                Ok(GridValues::NotList)
            }
            fn visit_u64<E>(self, _: u64) -> Result<GridValues, E> {
                Ok(GridValues::NotList)
            }
            fn visit_f64<E>(self, _: f64) -> Result<GridValues, E> {
                Ok(GridValues::NotList)
            }
            fn visit_str<E>(self, _: &str) -> Result<GridValues, E> {
                Ok(GridValues::NotList)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    pub name: Spanned<String>,
    /// Required for the built-in trainer; not used with `[program]`.
    pub dataset: Option<Spanned<String>>,
    pub seeds: Option<Spanned<Vec<Spanned<i64>>>>,
    pub metric: Option<Spanned<String>>,
    /// "max" or "min": how `metric` ranks.
    pub direction: Option<Spanned<String>>,
    pub description: Option<String>,
    /// A folder `sweep run` keeps TensorBoard event files in while it runs.
    pub tensorboard: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub gpus: Option<Spanned<toml::Value>>,
    pub trials_per_gpu: Option<Spanned<i64>>,
    /// "auto" (default) or a number of trials at once.
    pub cpu_workers: Option<Spanned<toml::Value>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub oom_retry_halve_batch: Option<Spanned<bool>>,
    /// Checkpoints kept once a trial is done: "best" (default), "best+last", "all".
    pub keep: Option<Spanned<String>>,
    /// The kept weights' precision once a trial is done: "full" (default) or "half".
    pub keep_precision: Option<Spanned<String>>,
    /// "local" (default) or "slurm".
    pub launcher: Option<Spanned<String>>,
}

/// A mistake in a sweep file, located.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Source text plus its path, to turn byte offsets into line:col.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let (message, help) = if e.kind() == std::io::ErrorKind::InvalidData {
                (
                    "sweep file is not UTF-8 text".to_string(),
                    "a sweep file is TOML, e.g. sweeps/quickstart.toml; is this the right file?",
                )
            } else {
                (
                    format!("cannot read sweep file: {e}"),
                    "check the path; sweep files live in sweeps/ by convention",
                )
            };
            SpecError {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message,
                help: Some(help.into()),
            }
        })?;
        Ok(Source {
            path: path.to_path_buf(),
            text,
        })
    }

    pub fn error_at(
        &self,
        offset: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) -> SpecError {
        let (line, col) = line_col(&self.text, offset);
        SpecError {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
            help,
        }
    }

    pub fn parse(&self) -> Result<RawFile, SpecError> {
        toml::from_str::<RawFile>(&self.text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_string();
            let help = unknown_field_help(&msg);
            self.error_at(offset, msg, help)
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut line_start = 0;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    let col = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// serde says "unknown field `x`, expected one of `a`, `b`": turn that into a suggestion.
fn unknown_field_help(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (word, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match did_you_mean(word, candidates.iter().copied()) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None => Some(format!("valid keys here: {}", candidates.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 11), (2, 6));
        assert_eq!(line_col(t, 999), (3, 1));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("epoch", ["epochs", "lr"]), Some("epochs"));
        assert_eq!(did_you_mean("zzz", ["epochs", "lr"]), None);
    }

    #[test]
    fn unknown_top_level_table_is_located() {
        let src = Source {
            path: "s.toml".into(),
            text: "[sweep]\nname = \"a\"\ndataset = \"d\"\n[grdi]\nlr = [1]\n".into(),
        };
        let e = src.parse().unwrap_err();
        assert_eq!((e.line, e.col), (4, 2), "{e}");
        assert!(e.help.unwrap().contains("grid"));
    }

    #[test]
    fn spans_of_keys_and_values() {
        let src = Source {
            path: "s.toml".into(),
            text: "[sweep]\nname = \"a\"\ndataset = \"d\"\n[grid]\nlr = [1, 2]\n".into(),
        };
        let raw = src.parse().unwrap();
        let (k, v) = raw.grid.iter().next().unwrap();
        assert_eq!(line_col(&src.text, k.span().start), (5, 1));
        assert_eq!(line_col(&src.text, v.span().start), (5, 6));
    }
}
