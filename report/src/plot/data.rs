//! What the charts and the HTML report read from the database: per-trial
//! learning curves, test results, confusion counts and per-class accuracy,
//! and the sweep's class distribution, all through `store::queries`.
use super::PlotError;
use serde_json::{Map, Value};
use sqlx::SqlitePool;
use sweep_store::queries;

/// One trial with everything its charts need.
#[derive(Debug, Clone)]
pub struct TrialData {
    pub id: String,
    pub status: String,
    pub params: Map<String, Value>,
    /// The parameters that vary within the sweep, seed included, e.g. `lr=0.01 seed=1`.
    pub label: String,
    /// The same without the seed: trials that share it are repeats of one config.
    pub config_label: String,
    /// The resolved config less its seed (JSON), for grouping repeats.
    pub config_key: String,
    /// (global step, value) per log step of the training split.
    pub train_loss: Vec<(i64, f64)>,
    pub train_acc: Vec<(i64, f64)>,
    /// (global step at the end of the epoch, value) per epoch of validation.
    pub valid_loss: Vec<(i64, f64)>,
    pub valid_acc: Vec<(i64, f64)>,
    pub test: Option<TestResult>,
    /// Sorted class names (ImageFolder order) of the confusion matrix.
    pub classes: Vec<String>,
    /// `confusion[true][predicted]` counts on the test split.
    pub confusion: Vec<Vec<i64>>,
    pub class_accuracy: Vec<ClassAccuracy>,
    /// Most confident mistakes first.
    pub misclassified: Vec<Misclassified>,
    /// A program trial's curves (`[program]` sweeps): each epoch metric by
    /// epoch, the sweep's metric first, then each step metric by step.
    pub series: Vec<Series>,
    /// A program trial's `test_*` values: (name, last value, its epoch), by name.
    pub test_values: Vec<(String, f64, i64)>,
}

/// One metric of a program trial: (epoch, value) per epoch record, or
/// (step, value) per step record.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub per_step: bool,
    pub points: Vec<(i64, f64)>,
}

/// A sweep-wide chart of one program metric (every trial's curve of it):
/// its name, whether it is a step metric, and its file stem (`curves` for
/// the sweep's metric, `curves-<name>` / `curves-step-<name>` for the others,
/// the name made safe for a file name and unique).
#[derive(Debug, Clone)]
pub struct MetricChart {
    pub name: String,
    pub per_step: bool,
    pub stem: String,
}

/// At most this many program metrics get a chart (sweep-wide files, and the
/// panels of a trial's chart); the sweep's metric comes first. A program can
/// print any number of names; a folder of thousands of charts helps no one.
pub const MAX_METRIC_CHARTS: usize = 24;

pub use sweep_store::queries::{ClassAccuracy, Misclassified, TestResult};

impl TrialData {
    pub fn has_curves(&self) -> bool {
        !(self.series.is_empty()
            && self.train_loss.is_empty()
            && self.train_acc.is_empty()
            && self.valid_loss.is_empty()
            && self.valid_acc.is_empty())
    }
    pub fn has_confusion(&self) -> bool {
        !self.classes.is_empty() && self.confusion.iter().flatten().any(|c| *c > 0)
    }
    /// Off-diagonal cells, largest first: (true, predicted, count).
    pub fn top_confusions(&self, k: usize) -> Vec<(&str, &str, i64)> {
        let mut cells: Vec<(&str, &str, i64)> = Vec::new();
        for (i, row) in self.confusion.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                if i != j && c > 0 {
                    cells.push((self.classes[i].as_str(), self.classes[j].as_str(), c));
                }
            }
        }
        cells.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)).then(a.1.cmp(b.1)));
        cells.truncate(k);
        cells
    }
}

/// A sweep's trials (plan order) and its class counts per split.
#[derive(Debug, Clone)]
pub struct SweepData {
    pub name: String,
    pub trials: Vec<TrialData>,
    /// (split, class, count), splits in train/valid/test order, classes sorted.
    pub distribution: Vec<(String, String, i64)>,
    /// A program sweep's metrics (None for the built-in trainer).
    pub program: Option<crate::program::ProgramSweep>,
    /// A program sweep's sweep-wide metric charts, the sweep's metric first;
    /// at most [`MAX_METRIC_CHARTS`].
    pub metric_charts: Vec<MetricChart>,
}

/// `name` as a piece of a file name: ASCII letters, digits, `-` and `_`
/// kept, everything else `_`, at most 60 characters.
fn file_safe(name: &str) -> String {
    name.chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The sweep-wide charts of a program sweep: every epoch metric (the
/// sweep's metric first, as `curves`), then every step metric, up to
/// [`MAX_METRIC_CHARTS`], each with a unique file stem.
pub fn metric_charts(p: &crate::program::ProgramSweep) -> Vec<MetricChart> {
    let mut out: Vec<MetricChart> = Vec::new();
    let names = p
        .epoch_names
        .iter()
        .map(|n| (n, false))
        .chain(p.step_names.iter().map(|n| (n, true)));
    for (name, per_step) in names.take(MAX_METRIC_CHARTS) {
        let base = if !per_step && *name == p.metric {
            "curves".to_string()
        } else if per_step {
            format!("curves-step-{}", file_safe(name))
        } else {
            format!("curves-{}", file_safe(name))
        };
        let mut stem = base.clone();
        let mut k = 2;
        while out.iter().any(|c| c.stem == stem) {
            stem = format!("{base}-{k}");
            k += 1;
        }
        out.push(MetricChart {
            name: name.clone(),
            per_step,
            stem,
        });
    }
    out
}

/// A short text for a parameter value: strings bare, numbers as written, objects as compact JSON.
pub fn value_text(v: Option<&Value>) -> String {
    let s = match v {
        Some(Value::Null) | None => "none".into(),
        Some(v) => sweep_protocol::config::value_text(v),
    };
    if s.chars().count() > 24 {
        s.chars().take(23).chain(['…']).collect()
    } else {
        s
    }
}

fn label(p: &Map<String, Value>, keys: &[String], with_seed: bool) -> String {
    keys.iter()
        .filter(|k| with_seed || k.as_str() != "seed")
        .map(|k| format!("{k}={}", value_text(p.get(k))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Loads a sweep: every trial's labels and test result, and the curves,
/// confusion and per-class results of `only` that trial (or of all with `None`).
pub async fn load_sweep(
    pool: &SqlitePool,
    sweep: &str,
    only: Option<&str>,
) -> Result<SweepData, PlotError> {
    let heads = queries::trials_with_test(pool, sweep).await?;
    let params: Vec<Map<String, Value>> = heads
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(&h.params)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        })
        .collect();
    let keys = sweep_protocol::config::varying_keys(&params.iter().collect::<Vec<_>>());
    let program = crate::program::ProgramSweep::load(pool, sweep).await?;
    let mut trials = Vec::new();
    for (head, p) in heads.into_iter().zip(params) {
        if only.is_some_and(|o| o != head.id) {
            continue;
        }
        let mut config = p.clone();
        config.remove("seed");
        let test = head.test();
        let mut t = TrialData {
            label: label(&p, &keys, true),
            config_label: label(&p, &keys, false),
            config_key: Value::Object(config).to_string(),
            id: head.id,
            status: head.status,
            params: p,
            train_loss: Vec::new(),
            train_acc: Vec::new(),
            valid_loss: Vec::new(),
            valid_acc: Vec::new(),
            test,
            classes: Vec::new(),
            confusion: Vec::new(),
            class_accuracy: Vec::new(),
            misclassified: Vec::new(),
            series: Vec::new(),
            test_values: Vec::new(),
        };
        match &program {
            Some(p) => load_program(pool, p, &mut t).await?,
            None => load_details(pool, &mut t).await?,
        }
        trials.push(t);
    }
    let mut distribution: Vec<(String, String, i64)> = queries::class_distribution(pool, sweep)
        .await?
        .into_iter()
        .map(|c| (c.split, c.class, c.count))
        .collect();
    let split_rank = |s: &str| {
        ["train", "valid", "test"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(3)
    };
    distribution.sort_by(|a, b| {
        split_rank(&a.0)
            .cmp(&split_rank(&b.0))
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    Ok(SweepData {
        name: sweep.to_string(),
        trials,
        distribution,
        metric_charts: program.as_ref().map(metric_charts).unwrap_or_default(),
        program,
    })
}

/// A program trial's series (the sweep's metric first) and `test_*` values.
async fn load_program(
    pool: &SqlitePool,
    p: &crate::program::ProgramSweep,
    t: &mut TrialData,
) -> Result<(), PlotError> {
    // (split, name) → (epoch, step, value) in record order.
    type Points = Vec<(i64, i64, f64)>;
    let mut by_name: std::collections::HashMap<(String, String), Points> =
        std::collections::HashMap::new();
    // Ordered by split, name, epoch, step: each list is in record order.
    for x in queries::program_points(pool, &t.id).await? {
        by_name
            .entry((x.split, x.name))
            .or_default()
            .push((x.epoch, x.step, x.value));
    }
    let order = p
        .epoch_names
        .iter()
        .map(|n| ("epoch", n))
        .chain(p.step_names.iter().map(|n| ("step", n)));
    for (split, name) in order {
        let Some(pts) = by_name.get(&(split.to_string(), name.clone())) else {
            continue;
        };
        t.series.push(Series {
            name: name.clone(),
            per_step: split == "step",
            points: pts
                .iter()
                .map(|&(e, s, v)| (if split == "step" { s } else { e }, v))
                .collect(),
        });
    }
    for name in &p.test_names {
        if let Some(&(epoch, _, v)) = by_name
            .get(&("test".to_string(), name.clone()))
            .and_then(|l| l.last())
        {
            t.test_values.push((name.clone(), v, epoch));
        }
    }
    Ok(())
}

async fn load_details(pool: &SqlitePool, t: &mut TrialData) -> Result<(), PlotError> {
    for point in queries::learning_curves(pool, &t.id).await? {
        // A diverged run logs NaN/inf losses: they cannot be drawn, so they are left out.
        if !point.value.is_finite() {
            continue;
        }
        let series = match (point.split.as_str(), point.name.as_str()) {
            ("train", "loss") => &mut t.train_loss,
            ("train", "accuracy") => &mut t.train_acc,
            ("valid", "loss") => &mut t.valid_loss,
            ("valid", "accuracy") => &mut t.valid_acc,
            _ => continue,
        };
        series.push((point.step, point.value));
    }
    t.class_accuracy = queries::class_accuracy(pool, &t.id).await?;
    let cells = queries::confusion(pool, &t.id).await?;
    let mut classes: Vec<String> = t
        .class_accuracy
        .iter()
        .map(|c| c.class.clone())
        .chain(
            cells
                .iter()
                .flat_map(|c| [c.true_class.clone(), c.pred_class.clone()]),
        )
        .collect();
    classes.sort();
    classes.dedup();
    let mut m = vec![vec![0i64; classes.len()]; classes.len()];
    for c in cells {
        if let (Ok(i), Ok(j)) = (
            classes.binary_search(&c.true_class),
            classes.binary_search(&c.pred_class),
        ) {
            m[i][j] += c.count;
        }
    }
    t.classes = classes;
    t.confusion = m;
    t.misclassified = queries::misclassified(pool, &t.id, Some(10)).await?;
    Ok(())
}

/// Trials with a test result grouped by config (seed repeats together), in plan order.
pub struct Group<'a> {
    pub label: String,
    pub trials: Vec<&'a TrialData>,
    pub accuracies: Vec<f64>,
}

impl Group<'_> {
    pub fn mean(&self) -> f64 {
        self.accuracies.iter().sum::<f64>() / self.accuracies.len().max(1) as f64
    }
    /// Sample standard deviation (n − 1); 0 for a single trial.
    pub fn std(&self) -> f64 {
        let n = self.accuracies.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.accuracies.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

pub fn accuracy_groups(s: &SweepData) -> Vec<Group<'_>> {
    let mut groups: Vec<Group> = Vec::new();
    for t in &s.trials {
        let Some(test) = t.test else { continue };
        match groups.iter_mut().find(|g| {
            g.trials
                .first()
                .is_some_and(|f| f.config_key == t.config_key)
        }) {
            Some(g) => {
                g.trials.push(t);
                g.accuracies.push(test.accuracy);
            }
            None => groups.push(Group {
                label: String::new(),
                trials: vec![t],
                accuracies: vec![test.accuracy],
            }),
        }
    }
    for g in &mut groups {
        let Some(first) = g.trials.first() else {
            continue;
        };
        g.label = if g.trials.len() == 1 {
            format!("{} {}", first.id, first.config_label)
                .trim()
                .to_string()
        } else {
            let cfg = if first.config_label.is_empty() {
                "all trials".to_string()
            } else {
                first.config_label.clone()
            };
            format!("{cfg} ({} seeds)", g.trials.len())
        };
    }
    groups
}
