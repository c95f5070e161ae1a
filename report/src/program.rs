//! A user program's metrics (`[program]` sweeps), as every view reads them:
//! which names a sweep's trials reported (per epoch, per step, `test_*`),
//! which way each name is better, and each trial's best, last and test value
//! of a name. Built from `sweep_store::queries` (the rows are laid out in
//! migrations/20261207000002_program.sql); read-only, and it knows nothing of
//! the spec: the sweep's metric and direction come from the `sweeps` row.
use sqlx::SqlitePool;
use std::collections::{BTreeSet, HashMap};
use sweep_store::queries::{self, MetricSummary};

/// Which way `name` is better in a program sweep whose `[sweep] metric` is
/// `sweep_metric` with `direction` ('max' | 'min'): the sweep's direction for
/// its own metric, else lower for names ending in `loss` or `error`, higher
/// for every other name.
pub fn higher_is_better(name: &str, sweep_metric: &str, direction: Option<&str>) -> bool {
    match direction {
        Some(d) if name == sweep_metric => d == "max",
        _ => !(name.ends_with("loss") || name.ends_with("error")),
    }
}

/// A name as a terminal may print it: control characters (a program can
/// print any JSON key) shown escaped instead of moving the cursor.
pub fn display_name(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        name.to_string()
    }
}

/// A program sweep: its metric and direction, the names its trials
/// reported, and per trial what each name came to.
#[derive(Debug, Clone)]
pub struct ProgramSweep {
    /// `[sweep] metric`.
    pub metric: String,
    /// `sweeps.direction` ('max' | 'min'; None in a database made before it).
    pub direction: Option<String>,
    /// `[program] command` (the JSON argv template).
    pub command: String,
    /// Names reported in epoch records: the sweep's metric first (when some
    /// trial reported it), then the others by name.
    pub epoch_names: Vec<String>,
    /// Names reported in step records, by name.
    pub step_names: Vec<String>,
    /// `test_*` names, by name.
    pub test_names: Vec<String>,
    summaries: HashMap<(String, String, String), MetricSummary>,
}

impl ProgramSweep {
    /// The program sweep named `sweep`; `None` when it ran the built-in
    /// trainer (or is not there).
    pub async fn load(pool: &SqlitePool, sweep: &str) -> Result<Option<ProgramSweep>, sqlx::Error> {
        let Some(meta) = queries::sweep_meta(pool, sweep).await? else {
            return Ok(None);
        };
        let Some(command) = meta.program else {
            return Ok(None);
        };
        let rows = queries::program_metric_summaries(pool, sweep).await?;
        Ok(Some(ProgramSweep::new(
            meta.metric,
            meta.direction,
            command,
            rows,
        )))
    }

    pub fn new(
        metric: String,
        direction: Option<String>,
        command: String,
        rows: Vec<MetricSummary>,
    ) -> ProgramSweep {
        let names = |split: &str| -> BTreeSet<String> {
            rows.iter()
                .filter(|r| r.split == split)
                .map(|r| r.name.clone())
                .collect()
        };
        let mut epoch_names: Vec<String> = names("epoch").into_iter().collect();
        if let Some(i) = epoch_names.iter().position(|n| *n == metric) {
            let m = epoch_names.remove(i);
            epoch_names.insert(0, m);
        }
        ProgramSweep {
            epoch_names,
            step_names: names("step").into_iter().collect(),
            test_names: names("test").into_iter().collect(),
            summaries: rows
                .into_iter()
                .map(|r| ((r.trial.clone(), r.split.clone(), r.name.clone()), r))
                .collect(),
            metric,
            direction,
            command,
        }
    }

    /// Whether a higher `name` is better in this sweep.
    pub fn higher_is_better(&self, name: &str) -> bool {
        higher_is_better(name, &self.metric, self.direction.as_deref())
    }

    /// The split a rankable name lives in: `test_*` names in 'test', others in 'epoch'.
    pub fn split_of(name: &str) -> &'static str {
        if name.starts_with("test_") {
            "test"
        } else {
            "epoch"
        }
    }

    /// The names `report --best` accepts for this sweep: every epoch and
    /// test metric, the sweep's own metric even before any trial reported it.
    pub fn rankable(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if !self.epoch_names.contains(&self.metric) && !self.test_names.contains(&self.metric) {
            out.push(self.metric.clone());
        }
        out.extend(self.epoch_names.iter().cloned());
        out.extend(self.test_names.iter().cloned());
        out
    }

    pub fn summary(&self, trial: &str, split: &str, name: &str) -> Option<&MetricSummary> {
        self.summaries
            .get(&(trial.to_string(), split.to_string(), name.to_string()))
    }

    /// A trial's value of `name` as the report ranks it: the best over its
    /// epoch records (highest or lowest, as the name is better), or the last
    /// reported value of a `test_*` name. None when the trial never reported it.
    pub fn value(&self, trial: &str, name: &str) -> Option<f64> {
        let split = ProgramSweep::split_of(name);
        let s = self.summary(trial, split, name)?;
        Some(if split == "test" {
            s.last
        } else if self.higher_is_better(name) {
            s.max
        } else {
            s.min
        })
    }

    /// The last value a trial reported for an epoch metric.
    pub fn last(&self, trial: &str, name: &str) -> Option<f64> {
        self.summary(trial, "epoch", name).map(|s| s.last)
    }
}

/// `sweep status` of a program sweep: each trial (plan order) with the
/// parameters that vary, its status, epochs, the best and the last value of
/// the sweep's metric, attempts and device.
pub fn status_table(rows: &[queries::TrialRow], p: &ProgramSweep) -> String {
    let params: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.params)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        })
        .collect();
    let varying = sweep_protocol::config::varying_keys(&params.iter().collect::<Vec<_>>());
    let metric = display_name(&p.metric);
    let mut b = tabled::builder::Builder::default();
    let mut h = vec!["trial".to_string()];
    h.extend(varying.iter().map(|k| display_name(k)));
    h.extend([
        "status".to_string(),
        "epoch".into(),
        format!("best {metric}"),
        format!("last {metric}"),
        "attempts".into(),
        "device".into(),
    ]);
    b.push_record(h);
    for (r, params) in rows.iter().zip(&params) {
        let mut v = vec![r.trial.clone()];
        v.extend(varying.iter().map(|k| {
            params
                .get(k)
                .map_or_else(|| "-".into(), sweep_protocol::config::value_text)
        }));
        v.extend([
            r.status.to_string(),
            if r.epochs > 0 {
                format!("{}/{}", r.epochs_done, r.epochs)
            } else {
                r.epochs_done.to_string()
            },
            fmt_value(p.value(&r.trial, &p.metric)),
            fmt_value(if ProgramSweep::split_of(&p.metric) == "test" {
                p.value(&r.trial, &p.metric)
            } else {
                p.last(&r.trial, &p.metric)
            }),
            r.attempts.to_string(),
            r.device.clone().unwrap_or_else(|| "-".into()),
        ]);
        b.push_record(v);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::rounded());
    t.to_string()
}

/// The parameter names of a program sweep's trials (what `--where` and
/// `--group-by` accept), sorted.
pub fn param_keys(rows: &[queries::TrialRow]) -> Vec<String> {
    let keys: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.params).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect();
    keys.into_iter().collect()
}

/// A value of a program's metric for people: four decimals, or scientific
/// notation when that would hide it (very large or very small).
pub fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_is_the_sweeps_for_its_metric_else_by_name() {
        assert!(higher_is_better("val_acc", "val_acc", Some("max")));
        // The sweep's direction wins over the name's suffix.
        assert!(higher_is_better("val_loss", "val_loss", Some("max")));
        assert!(!higher_is_better("score", "score", Some("min")));
        assert!(!higher_is_better("val_loss", "val_acc", Some("max")));
        assert!(!higher_is_better("test_error", "val_acc", Some("max")));
        assert!(higher_is_better("f1", "val_acc", Some("min")));
        // An old database without a direction: by name.
        assert!(!higher_is_better("val_loss", "val_loss", None));
    }

    #[test]
    fn values_are_readable() {
        assert_eq!(fmt_value(Some(0.81234)), "0.8123");
        assert_eq!(fmt_value(Some(0.0)), "0.0000");
        assert_eq!(fmt_value(Some(12345678.0)), "1.235e7");
        assert_eq!(fmt_value(Some(0.00001)), "1.000e-5");
        assert_eq!(fmt_value(None), "-");
        assert_eq!(display_name("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }
}
