//! `[program]`: a user's own training program as the trial process.
//!
//! The command is an argv template. An element is a string in which `{name}`
//! is replaced by the trial's value of parameter `name` (`{{`/`}}` are
//! literal braces), or a table `{ flag = "--amp", when = "amp" }`: the
//! element `--amp` when the boolean parameter `amp` is true, nothing when it
//! is false. How values are written ([`render_value`]): a string as it is,
//! an integer in decimal, a float in its shortest form that reads back the
//! same (`0.0003`, `1e-7` as `0.0000001`), a boolean as `true`/`false`, an
//! array as its elements joined by commas. Besides the parameters, four
//! names are always there: `{trial_id}`, `{trial_dir}` (the same folder on
//! every attempt), `{attempt}` and `{sweep}`.
//!
//! Everything is checked here, before anything runs: a placeholder that no
//! parameter of some trial defines, a `when` that is not a boolean parameter,
//! an executable that is not found.
use super::raw::{Source, SpecError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// Placeholders every trial has, whatever its parameters.
pub const BUILTIN_PLACEHOLDERS: [&str; 4] = ["trial_id", "trial_dir", "attempt", "sweep"];

/// `[program]` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub command: Spanned<Vec<Spanned<Value>>>,
    pub workdir: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    /// The program resumes from its own checkpoint in `SWEEP_TRIAL_DIR` and
    /// stops after the epoch `SWEEP_PAUSE_AFTER` when that is set.
    pub resumable: Option<Spanned<bool>>,
}

/// A validated `[program]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSpec {
    pub command: Vec<Arg>,
    /// The program's working directory (relative paths: to where `sweep run` runs).
    pub workdir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// `resumable = true`: it can be paused at an epoch and resumed
    /// (promotion-based stopping).
    pub resumable: bool,
    /// `command` as written, JSON (stored in `sweeps.program`).
    pub json: String,
}

/// One argv element of the template.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(Vec<Piece>),
    Flag { flag: String, when: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Lit(String),
    Param(String),
}

/// What an attempt adds to a trial's parameters.
pub struct AttemptContext<'a> {
    pub trial_id: &'a str,
    pub trial_dir: &'a Path,
    pub attempt: u32,
    pub sweep: &'a str,
}

impl ProgramSpec {
    /// The argv of one attempt.
    pub fn render(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
        ctx: &AttemptContext<'_>,
    ) -> Vec<String> {
        let lookup = |name: &str| -> String {
            match name {
                "trial_id" => ctx.trial_id.to_string(),
                "trial_dir" => ctx.trial_dir.display().to_string(),
                "attempt" => ctx.attempt.to_string(),
                "sweep" => ctx.sweep.to_string(),
                // Validation guarantees every placeholder is defined.
                _ => params.get(name).map(render_value).unwrap_or_default(),
            }
        };
        let mut argv = Vec::new();
        for arg in &self.command {
            match arg {
                Arg::Text(pieces) => argv.push(
                    pieces
                        .iter()
                        .map(|p| match p {
                            Piece::Lit(s) => s.clone(),
                            Piece::Param(name) => lookup(name),
                        })
                        .collect(),
                ),
                Arg::Flag { flag, when } => {
                    if params.get(when).and_then(|v| v.as_bool()) == Some(true) {
                        argv.push(flag.clone());
                    }
                }
            }
        }
        argv
    }

    /// Every parameter the template names (placeholders and `when`s).
    fn names(&self) -> impl Iterator<Item = (usize, &str, bool)> {
        self.command
            .iter()
            .enumerate()
            .flat_map(|(i, a)| -> Vec<(usize, &str, bool)> {
                match a {
                    Arg::Text(p) => p
                        .iter()
                        .filter_map(|p| match p {
                            Piece::Param(n) => Some((i, n.as_str(), false)),
                            Piece::Lit(_) => None,
                        })
                        .collect(),
                    Arg::Flag { when, .. } => vec![(i, when.as_str(), true)],
                }
            })
    }

    /// Checks the template against every trial's parameters: each
    /// placeholder defined, each `when` a boolean. `spans`: each element's span.
    pub fn check_params<'a>(
        &self,
        src: &Source,
        spans: &[std::ops::Range<usize>],
        trials: impl IntoIterator<Item = &'a serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(), SpecError> {
        for params in trials {
            for (i, name, is_flag) in self.names() {
                let at = spans.get(i).map(|s| s.start).unwrap_or(0);
                if !is_flag && BUILTIN_PLACEHOLDERS.contains(&name) {
                    continue;
                }
                match params.get(name) {
                    None => {
                        let mut known: Vec<&str> = params.keys().map(String::as_str).collect();
                        known.extend(BUILTIN_PLACEHOLDERS);
                        let help = match super::raw::did_you_mean(name, known.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`? "),
                            None => String::new(),
                        } + &format!(
                            "define `{name}` in [defaults], [grid] or [random]; known names: {}",
                            known.join(", ")
                        );
                        return Err(src.error_at(
                            at,
                            format!("`{{{name}}}` in [program] command names no parameter of this sweep's trials"),
                            Some(help),
                        ));
                    }
                    Some(v) if is_flag && !v.is_boolean() => {
                        return Err(src.error_at(
                            at,
                            format!(
                                "`when = \"{name}\"` needs a boolean parameter, but `{name}` is {v}"
                            ),
                            Some(format!(
                                "give `{name}` the values true/false, or write it as \"{{{name}}}\""
                            )),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// A parameter value as it goes into argv.
pub fn render_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f}"),
            _ => n.to_string(),
        },
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Array(a) => a.iter().map(render_value).collect::<Vec<_>>().join(","),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(_) => v.to_string(),
    }
}

/// A `[program]` parameter's name: an identifier, not one of the names
/// every trial has, not `seed` (set by `[sweep] seeds`).
pub fn check_param_name(src: &Source, k: &Spanned<String>) -> Result<(), SpecError> {
    let name = k.get_ref();
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let (msg, help) = if !ident {
        (
            format!("parameter name {name:?} is not an identifier"),
            "use letters, digits and '_', starting with a letter or '_'".to_string(),
        )
    } else if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
        (
            format!("`{name}` is set by sweep for every attempt, not a parameter"),
            format!("use `{{{name}}}` in the command as it is, and name your parameter otherwise"),
        )
    } else if name == "seed" {
        (
            "`seed` is set for the whole sweep, not per trial".to_string(),
            "[sweep] seeds = [0, 1, 2] repeats every trial per seed; the command gets it as {seed}"
                .to_string(),
        )
    } else {
        return Ok(());
    };
    Err(src.error_at(k.span().start, msg, Some(help)))
}

/// A `[program]` parameter's value as JSON: a string, number, boolean or an
/// array of them.
pub fn param_value(
    src: &Source,
    k: &Spanned<String>,
    v: &Spanned<Value>,
) -> Result<serde_json::Value, SpecError> {
    fn scalar(v: &Value) -> Option<serde_json::Value> {
        Some(match v {
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Integer(i) => serde_json::Value::from(*i),
            Value::Float(f) if f.is_finite() => serde_json::Value::from(*f),
            Value::Boolean(b) => serde_json::Value::Bool(*b),
            _ => return None,
        })
    }
    let out = match v.get_ref() {
        Value::Array(a) => a
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(serde_json::Value::Array),
        other => scalar(other),
    };
    out.ok_or_else(|| {
        src.error_at(
            v.span().start,
            format!(
                "`{}` must be a string, a finite number, a boolean or an array of them, got {}",
                k.get_ref(),
                v.get_ref()
            ),
            None,
        )
    })
}

/// Validates `[program]`: the template's syntax and the executable.
pub fn validate(
    src: &Source,
    raw: &Spanned<RawProgram>,
) -> Result<(ProgramSpec, Vec<std::ops::Range<usize>>), SpecError> {
    let r = raw.get_ref();
    let items = r.command.get_ref();
    if items.is_empty() {
        return Err(src.error_at(
            r.command.span().start,
            "[program] command is empty",
            Some("give the program and its arguments, e.g. command = [\"python\", \"train.py\", \"--lr\", \"{lr}\"]".into()),
        ));
    }
    let mut command = Vec::new();
    let mut spans = Vec::new();
    let mut json = Vec::new();
    for item in items {
        let at = |m: String, help: &str| src.error_at(item.span().start, m, Some(help.to_string()));
        let arg = match item.get_ref() {
            Value::String(s) => Arg::Text(pieces(s).map_err(|e| {
                at(
                    e.to_string(),
                    "write a placeholder as {name}; a literal brace as {{ or }}",
                )
            })?),
            Value::Table(t) => {
                let flag = t.get("flag").and_then(Value::as_str);
                let when = t.get("when").and_then(Value::as_str);
                match (flag, when, t.len()) {
                    (Some(flag), Some(when), 2) if !flag.is_empty() => Arg::Flag {
                        flag: flag.to_string(),
                        when: when.to_string(),
                    },
                    _ => {
                        return Err(at(
                            format!("unknown command element {}", item.get_ref()),
                            "a command element is a string, or { flag = \"--amp\", when = \"amp\" } (the flag when the boolean parameter is true)",
                        ));
                    }
                }
            }
            other => {
                return Err(at(
                    format!("command elements are strings, got {other}"),
                    "quote it: \"--epochs\", \"{epochs}\"",
                ));
            }
        };
        json.push(serde_json::to_value(item.get_ref()).unwrap_or_default());
        command.push(arg);
        spans.push(item.span());
    }
    let workdir = r.workdir.as_ref().map(|w| PathBuf::from(w.get_ref()));
    if let (Some(w), Some(raw_w)) = (&workdir, &r.workdir)
        && !w.is_dir()
    {
        return Err(src.error_at(
            raw_w.span().start,
            format!("workdir {:?} is not a directory", raw_w.get_ref()),
            Some("paths are relative to the directory `sweep run` runs in".into()),
        ));
    }
    match &command[0] {
        Arg::Text(p) if p.iter().all(|p| matches!(p, Piece::Lit(_))) => {
            let exe: String = p
                .iter()
                .map(|p| match p {
                    Piece::Lit(s) => s.as_str(),
                    Piece::Param(_) => "",
                })
                .collect();
            find_executable(&exe, workdir.as_deref()).map_err(|e| {
                src.error_at(
                    spans[0].start,
                    e.to_string(),
                    Some("give a program on PATH (\"python\") or a path to an executable file (relative paths start from `workdir`, else from where `sweep run` runs)".into()),
                )
            })?;
        }
        _ => {
            return Err(src.error_at(
                spans[0].start,
                "the program (the first command element) must be written out, without placeholders",
                Some("put the placeholders in the arguments".into()),
            ));
        }
    }
    let env = r
        .env
        .iter()
        .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
        .collect();
    Ok((
        ProgramSpec {
            command,
            workdir,
            env,
            resumable: r.resumable.as_ref().is_some_and(|v| *v.get_ref()),
            json: serde_json::Value::Array(json).to_string(),
        },
        spans,
    ))
}

/// A command element that is not a valid template.
#[derive(Debug, thiserror::Error)]
enum TemplateError {
    #[error("bad placeholder `{{{name}` in {text:?}")]
    BadPlaceholder { name: String, text: String },
    #[error("unmatched `}}` in {0:?}")]
    Unmatched(String),
}

/// Why the program (the first command element) cannot be run.
#[derive(Debug, thiserror::Error)]
enum ProgramNotFound {
    #[error(
        "program {0:?} is not an executable file (chmod +x it, or run it through its interpreter)"
    )]
    NotExecutable(String),
    #[error("program {0:?} does not exist")]
    Missing(String),
    #[error("program {0:?} is not found on PATH")]
    NotOnPath(String),
}

/// `{name}` placeholders and literal text; `{{`, `}}` are braces.
fn pieces(s: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let ok = closed
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(TemplateError::BadPlaceholder {
                        name,
                        text: s.to_string(),
                    });
                }
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Param(name));
            }
            '}' => return Err(TemplateError::Unmatched(s.to_string())),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || out.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// The program file: a path (with a `/`) to an executable file, or a name on PATH.
fn find_executable(exe: &str, workdir: Option<&Path>) -> Result<PathBuf, ProgramNotFound> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if exe.contains('/') {
        let p = match workdir {
            Some(w) if Path::new(exe).is_relative() => w.join(exe),
            _ => PathBuf::from(exe),
        };
        if executable(&p) {
            return Ok(p);
        }
        return Err(if p.exists() {
            ProgramNotFound::NotExecutable(exe.to_string())
        } else {
            ProgramNotFound::Missing(exe.to_string())
        });
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(exe))
        .find(|p| executable(p))
        .ok_or_else(|| ProgramNotFound::NotOnPath(exe.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(toml_text: &str) -> Result<ProgramSpec, SpecError> {
        #[derive(serde::Deserialize)]
        struct F {
            program: Spanned<RawProgram>,
        }
        let src = Source {
            path: "s.toml".into(),
            text: toml_text.into(),
        };
        let f: F = toml::from_str(toml_text).unwrap();
        validate(&src, &f.program).map(|(s, _)| s)
    }

    fn ctx() -> AttemptContext<'static> {
        AttemptContext {
            trial_id: "abc",
            trial_dir: Path::new("results/s/abc"),
            attempt: 2,
            sweep: "s",
        }
    }

    /// The documented rendering: strings bare, numbers shortest, booleans as
    /// words or as a present/absent flag, arrays comma-joined, braces escaped.
    #[test]
    fn placeholders_and_booleans_render_as_documented() {
        let s = spec(
            r#"[program]
command = ["sh", "-c", "--lr={lr}", "{epochs}", "{name}", "{amp}", { flag = "--amp", when = "amp" }, "{hidden}", "{{literal}}", "{trial_dir}/x", "{trial_id}-{attempt}-{sweep}", "{wd}"]"#,
        )
        .unwrap();
        let params = json!({"lr": 0.0003, "epochs": 20, "name": "resnet 18", "amp": true, "hidden": [512, 256], "wd": 1e-7});
        let argv = s.render(params.as_object().unwrap(), &ctx());
        assert_eq!(
            argv,
            [
                "sh",
                "-c",
                "--lr=0.0003",
                "20",
                "resnet 18",
                "true",
                "--amp",
                "512,256",
                "{literal}",
                "results/s/abc/x",
                "abc-2-s",
                "0.0000001"
            ]
        );
        let params =
            json!({"lr": 1.0, "epochs": 1, "name": "", "amp": false, "hidden": [], "wd": 0.5});
        let argv = s.render(params.as_object().unwrap(), &ctx());
        assert_eq!(
            argv,
            [
                "sh",
                "-c",
                "--lr=1",
                "1",
                "",
                "false",
                "",
                "{literal}",
                "results/s/abc/x",
                "abc-2-s",
                "0.5"
            ]
        );
    }

    #[test]
    fn template_mistakes_are_located() {
        let e = spec("[program]\ncommand = [\"sh\", \"{lr\"]").unwrap_err();
        assert_eq!((e.line, e.col), (2, 18), "{e}");
        assert!(e.message.contains("bad placeholder"), "{e}");
        let e = spec("[program]\ncommand = [\"sh\", \"a}b\"]").unwrap_err();
        assert!(e.message.contains("unmatched"), "{e}");
        let e = spec("[program]\ncommand = [\"sh\", { flag = \"--amp\" }]").unwrap_err();
        assert!(e.help.as_deref().unwrap().contains("when"), "{e}");
        let e = spec("[program]\ncommand = [\"sh\", 3]").unwrap_err();
        assert!(e.message.contains("strings"), "{e}");
        let e = spec("[program]\ncommand = []").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = spec("[program]\ncommand = [\"{prog}\"]").unwrap_err();
        assert!(e.message.contains("without placeholders"), "{e}");
        let e = spec("[program]\ncommand = [\"no-such-program-xyz\"]").unwrap_err();
        assert!(e.message.contains("not found on PATH"), "{e}");
        let e = spec("[program]\ncommand = [\"./no/such/file\"]").unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        let e = spec("[program]\ncommand = [\"Cargo.toml\"]").unwrap_err();
        assert!(e.message.contains("not found on PATH"), "{e}");
        let e = spec("[program]\ncommand = [\"./Cargo.toml\"]").unwrap_err();
        assert!(e.message.contains("not an executable"), "{e}");
        assert!(spec("[program]\ncommand = [\"/bin/sh\"]").is_ok());
    }

    #[test]
    fn placeholders_must_name_parameters_and_flags_booleans() {
        let text = "[program]\ncommand = [\"sh\", \"{lr}\", { flag = \"--amp\", when = \"amp\" }]";
        let s = spec(text).unwrap();
        let src = Source {
            path: "s.toml".into(),
            text: text.into(),
        };
        let spans = vec![21..25, 27..33, 35..70];
        let ok = json!({"lr": 0.1, "amp": true});
        assert!(
            s.check_params(&src, &spans, [ok.as_object().unwrap()])
                .is_ok()
        );
        let missing = json!({"lrr": 0.1, "amp": true});
        let e = s
            .check_params(
                &src,
                &spans,
                [ok.as_object().unwrap(), missing.as_object().unwrap()],
            )
            .unwrap_err();
        assert!(e.message.contains("`{lr}`"), "{e}");
        assert!(e.help.unwrap().contains("did you mean `lrr`?"));
        let not_bool = json!({"lr": 0.1, "amp": "yes"});
        let e = s
            .check_params(&src, &spans, [not_bool.as_object().unwrap()])
            .unwrap_err();
        assert!(e.message.contains("needs a boolean"), "{e}");
    }
}
