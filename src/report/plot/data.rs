//! What the charts and the HTML report read from the database: per-trial
//! learning curves, test results, confusion counts and per-class accuracy,
//! and the sweep's class distribution. Read-only; every value is bound.
use serde_json::{Map, Value};
use sqlx::SqlitePool;

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
}

#[derive(Debug, Clone, Copy)]
pub struct TestResult {
    pub accuracy: f64,
    pub loss: f64,
    pub n: i64,
    pub epoch: i64,
}

#[derive(Debug, Clone)]
pub struct ClassAccuracy {
    pub class: String,
    pub correct: i64,
    pub total: i64,
    pub accuracy: f64,
}

#[derive(Debug, Clone)]
pub struct Misclassified {
    pub file: String,
    pub true_class: String,
    pub pred_class: String,
    pub prob: f64,
}

impl TrialData {
    pub fn has_curves(&self) -> bool {
        !(self.train_loss.is_empty() && self.train_acc.is_empty() && self.valid_loss.is_empty() && self.valid_acc.is_empty())
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
}

fn e(err: sqlx::Error) -> String {
    format!("reading the database: {err}")
}

/// A short text for a parameter value: strings bare, numbers as written, objects as compact JSON.
pub fn value_text(v: Option<&Value>) -> String {
    let s = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "none".into(),
        Some(v) => v.to_string(),
    };
    if s.chars().count() > 24 { s.chars().take(23).chain(['…']).collect() } else { s }
}

/// Keys whose values differ between the trials, in the report's column order.
fn varying(params: &[&Map<String, Value>]) -> Vec<String> {
    let order: Vec<&str> = sweep_protocol::PARAM_KEYS.iter().copied().chain(["seed", "pretrained"]).collect();
    let mut keys: Vec<String> = params.iter().flat_map(|p| p.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let first = params.first();
    let mut out: Vec<String> = keys.into_iter().filter(|k| params.iter().any(|p| p.get(k) != first.and_then(|f| f.get(k)))).collect();
    out.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    out
}

fn label(p: &Map<String, Value>, keys: &[String], with_seed: bool) -> String {
    keys.iter().filter(|k| with_seed || k.as_str() != "seed").map(|k| format!("{k}={}", value_text(p.get(k)))).collect::<Vec<_>>().join(" ")
}

type TrialHead = (String, String, String, Option<f64>, Option<f64>, Option<i64>, Option<i64>);

/// Loads a sweep: every trial's labels and test result, and the curves,
/// confusion and per-class results of `only` that trial (or of all with `None`).
pub async fn load_sweep(pool: &SqlitePool, sweep: &str, only: Option<&str>) -> Result<SweepData, String> {
    let heads: Vec<TrialHead> = sqlx::query_as(
        "SELECT t.id, t.status, t.params, r.accuracy, r.loss, r.n, r.epoch
         FROM trials t JOIN sweeps s ON s.id = t.sweep_id LEFT JOIN test_results r ON r.trial_id = t.id
         WHERE s.name = ? ORDER BY t.ordinal",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
    .map_err(e)?;
    let params: Vec<Map<String, Value>> =
        heads.iter().map(|h| serde_json::from_str::<Value>(&h.2).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()).collect();
    let keys = varying(&params.iter().collect::<Vec<_>>());
    let mut trials = Vec::new();
    for ((id, status, _, acc, loss, n, epoch), p) in heads.into_iter().zip(params) {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let mut config = p.clone();
        config.remove("seed");
        let test = match (acc, loss, n, epoch) {
            (Some(accuracy), Some(loss), Some(n), Some(epoch)) => Some(TestResult { accuracy, loss, n, epoch }),
            _ => None,
        };
        let mut t = TrialData {
            label: label(&p, &keys, true),
            config_label: label(&p, &keys, false),
            config_key: Value::Object(config).to_string(),
            id,
            status,
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
        };
        load_details(pool, &mut t).await?;
        trials.push(t);
    }
    let mut distribution: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT d.split, d.class, d.count FROM class_distribution d JOIN sweeps s ON s.id = d.sweep_id WHERE s.name = ? ORDER BY d.class")
            .bind(sweep)
            .fetch_all(pool)
            .await
            .map_err(e)?;
    let split_rank = |s: &str| ["train", "valid", "test"].iter().position(|x| *x == s).unwrap_or(3);
    distribution.sort_by(|a, b| split_rank(&a.0).cmp(&split_rank(&b.0)).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    Ok(SweepData { name: sweep.to_string(), trials, distribution })
}

async fn load_details(pool: &SqlitePool, t: &mut TrialData) -> Result<(), String> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT split, name, step, value FROM metrics
         WHERE trial_id = ? AND split IN ('train', 'valid') AND name IN ('loss', 'accuracy') ORDER BY step, epoch",
    )
    .bind(&t.id)
    .fetch_all(pool)
    .await
    .map_err(e)?;
    for (split, name, step, value) in rows {
        // A diverged run logs NaN/inf losses: they cannot be drawn, so they are left out.
        if !value.is_finite() {
            continue;
        }
        let series = match (split.as_str(), name.as_str()) {
            ("train", "loss") => &mut t.train_loss,
            ("train", "accuracy") => &mut t.train_acc,
            ("valid", "loss") => &mut t.valid_loss,
            ("valid", "accuracy") => &mut t.valid_acc,
            _ => continue,
        };
        series.push((step, value));
    }
    t.class_accuracy =
        sqlx::query_as::<_, (String, i64, i64, f64)>("SELECT class, correct, total, accuracy FROM class_accuracy WHERE trial_id = ? ORDER BY class")
            .bind(&t.id)
            .fetch_all(pool)
            .await
            .map_err(e)?
            .into_iter()
            .map(|(class, correct, total, accuracy)| ClassAccuracy { class, correct, total, accuracy })
            .collect();
    let cells: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT true_class, pred_class, count FROM confusion WHERE trial_id = ?").bind(&t.id).fetch_all(pool).await.map_err(e)?;
    let mut classes: Vec<String> = t.class_accuracy.iter().map(|c| c.class.clone()).chain(cells.iter().flat_map(|c| [c.0.clone(), c.1.clone()])).collect();
    classes.sort();
    classes.dedup();
    let mut m = vec![vec![0i64; classes.len()]; classes.len()];
    for (tc, pc, count) in cells {
        if let (Ok(i), Ok(j)) = (classes.binary_search(&tc), classes.binary_search(&pc)) {
            m[i][j] += count;
        }
    }
    t.classes = classes;
    t.confusion = m;
    t.misclassified = sqlx::query_as::<_, (String, String, String, f64)>(
        "SELECT file, true_class, pred_class, prob FROM misclassified WHERE trial_id = ? ORDER BY prob DESC, file LIMIT 10",
    )
    .bind(&t.id)
    .fetch_all(pool)
    .await
    .map_err(e)?
    .into_iter()
    .map(|(file, true_class, pred_class, prob)| Misclassified { file, true_class, pred_class, prob })
    .collect();
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
        match groups.iter_mut().find(|g| g.trials.first().is_some_and(|f| f.config_key == t.config_key)) {
            Some(g) => {
                g.trials.push(t);
                g.accuracies.push(test.accuracy);
            }
            None => groups.push(Group { label: String::new(), trials: vec![t], accuracies: vec![test.accuracy] }),
        }
    }
    for g in &mut groups {
        let Some(first) = g.trials.first() else { continue };
        g.label = if g.trials.len() == 1 {
            format!("{} {}", first.id, first.config_label).trim().to_string()
        } else {
            let cfg = if first.config_label.is_empty() { "all trials".to_string() } else { first.config_label.clone() };
            format!("{cfg} ({} seeds)", g.trials.len())
        };
    }
    groups
}
