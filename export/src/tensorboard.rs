//! `sweep export tensorboard OUT`: `OUT/<sweep>/<trial>/` holds one event
//! file per trial, `OUT/<sweep>/` one with the HParams experiment (the
//! parameters' types and domains, the sweep's metric first among the
//! metrics), so `tensorboard --logdir OUT/<sweep>` shows the scalars, and the
//! HParams tab shows the sweep as a table and parallel coordinates.
//!
//! What a file holds is a function of the database alone: the event list
//! below, serialised deterministically (wall times are the rows' own times).
//! Syncing a file compares it with that list: a file that is a prefix of it
//! gets the missing records appended (a cut or damaged tail, as a kill -9
//! leaves, is cut off first); a file that is not (a resumed trial replayed a
//! step with a new value or time, a failed trial was run again) is replaced
//! by the next generation, `…sweep-export.gNNNNNN`, which begins with a
//! SessionLog START so that a TensorBoard already showing the old one drops
//! it instead of showing a step twice. Nothing is written when the file
//! already is the list.
//!
//! Scalars are written as TensorBoard's scalar plugin data with a DT_FLOAT
//! tensor: the database's f64 rounded to the nearest f32, TensorBoard's own
//! precision. A DT_DOUBLE tensor would keep every bit, and TensorBoard's
//! Python loader reads it, but its default loader (the Rust data server,
//! `--load_fast=auto`) drops it, so neither the Scalars nor the HParams tab
//! would show anything. The CSV and MLflow exports keep the doubles.
use crate::proto::{self, Event, HParamsData, Summary, SummaryValue, What};
use crate::{ExportError, folder_name, tfrecord};
use prost::Message;
use prost_types::value::Kind;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use sweep_store::TrialStatus;
use sweep_store::export_queries::{self, ExportSweep, ExportTest, ExportTrial, MetricRow};
use sweep_store::queries::{self, ClassAccuracy};

/// What one export pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sweeps: usize,
    pub trials: usize,
    /// Records written (appended or in rewritten files).
    pub records: usize,
    /// Files written from scratch: new, or replaced by a new generation.
    pub files_new: usize,
    /// Files that had records appended.
    pub files_appended: usize,
    /// Files whose cut or damaged tail was removed before appending.
    pub repaired: usize,
}

impl Tally {
    pub fn add(&mut self, o: FileOutcome) {
        match o {
            FileOutcome::Unchanged => {}
            FileOutcome::New { records } => {
                self.files_new += 1;
                self.records += records;
            }
            FileOutcome::Appended { records, repaired } => {
                self.files_appended += 1;
                self.records += records;
                self.repaired += usize::from(repaired);
            }
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sweep(s), {} trial(s): {} record(s) written ({} file(s) new or rewritten, {} appended to, {} repaired)",
            self.sweeps,
            self.trials,
            self.records,
            self.files_new,
            self.files_appended,
            self.repaired
        )
    }
}

/// The scalar tag of a metric row: `train/loss`, `valid/accuracy`, …
pub fn tag(split: &str, name: &str) -> String {
    format!("{split}/{name}")
}

/// The tag the sweep's `[sweep] metric` is recorded under (`val_accuracy` → `valid/accuracy`).
pub fn metric_tag(metric: &str) -> String {
    match metric.strip_prefix("val_") {
        Some(name) => tag("valid", name),
        None => metric.to_string(),
    }
}

/// One export pass over the selected sweeps.
pub async fn export(
    pool: &sqlx::SqlitePool,
    out: &Path,
    sweeps: &[ExportSweep],
) -> Result<Tally, ExportError> {
    let mut tally = Tally::default();
    for sweep in sweeps {
        let dir = out.join(folder_name(&sweep.name)?);
        let trials = export_queries::trials(pool, sweep.id).await?;
        let hparams: Vec<BTreeMap<String, serde_json::Value>> =
            trials.iter().map(|t| params_of(&t.params)).collect();
        let infos = hparam_infos(&hparams);
        let experiment = experiment_events(sweep, &infos);
        tally.add(sync_file(&dir, sweep.created_at, &experiment)?);
        for (trial, params) in trials.iter().zip(&hparams) {
            let metrics = export_queries::trial_metrics(pool, &trial.id).await?;
            let test = export_queries::test_result(pool, &trial.id).await?;
            let classes = queries::class_accuracy(pool, &trial.id).await?;
            let events = trial_events(trial, &infos, params, &metrics, test.as_ref(), &classes);
            tally.add(sync_file(&dir.join(&trial.id), trial.created_at, &events)?);
            tally.trials += 1;
        }
        tally.sweeps += 1;
    }
    Ok(tally)
}

/// `[sweep] tensorboard = "OUT"`: keeps `OUT/<sweep>/` up to date while
/// `sweep run` runs sweep `name`, as `sweep export tensorboard OUT --sweep
/// NAME --follow` does from another process, until `done` resolves; then a
/// final pass. Returns the records written over the whole run. The caller
/// holds OUT's lock ([`crate::lock_out`]) from before the run starts.
pub async fn beside_run(
    pool: &sqlx::SqlitePool,
    out: &Path,
    name: &str,
    done: impl std::future::Future<Output = ()>,
) -> Result<usize, ExportError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let written = AtomicUsize::new(0);
    let pass = || async {
        // Empty until the run has recorded the sweep.
        let sweeps = export_queries::sweeps(pool, Some(name)).await?;
        let tally = export(pool, out, &sweeps).await?;
        written.fetch_add(tally.records, Ordering::Relaxed);
        Ok(())
    };
    crate::follow::beside(BESIDE_RUN_INTERVAL, done, pass).await?;
    Ok(written.into_inner())
}

/// How often [`beside_run`] looks for new rows: `--follow`'s default.
pub const BESIDE_RUN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The top-level keys of a trial's parameters (an unparsable text gives none).
fn params_of(json: &str) -> BTreeMap<String, serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// How the HParams plugin sees one parameter: its type over every trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HType {
    Number,
    Bool,
    /// Strings, lists, tables, and keys whose values differ in kind.
    Text,
}

struct HInfo {
    name: String,
    kind: HType,
    /// The sweep varies it (HParamInfo.differs).
    differs: bool,
}

/// At most this many distinct values are listed as a discrete domain; a
/// number with more gets its interval.
const MAX_DISCRETE: usize = 64;

fn hparam_infos(
    all: &[BTreeMap<String, serde_json::Value>],
) -> Vec<(HInfo, Option<proto::Domain>)> {
    let mut kinds: BTreeMap<&str, Option<HType>> = BTreeMap::new();
    for params in all {
        for (k, v) in params {
            let kind = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::Number(_) => HType::Number,
                serde_json::Value::Bool(_) => HType::Bool,
                _ => HType::Text,
            };
            let e = kinds.entry(k).or_insert(Some(kind));
            if *e != Some(kind) {
                *e = Some(HType::Text);
            }
        }
    }
    // What the sweep varies first, flagged `differs` (TensorBoard's HParams
    // tab sorts by that flag, then by name; other readers keep this order).
    let varies = |name: &str| all.iter().any(|p| p.get(name) != all[0].get(name));
    let (varying, fixed): (Vec<_>, Vec<_>) = kinds.into_iter().partition(|(name, _)| varies(name));
    varying
        .into_iter()
        .chain(fixed)
        .filter_map(|(name, kind)| {
            let kind = kind?;
            let values: Vec<prost_types::Value> = all
                .iter()
                .filter_map(|p| p.get(name).and_then(|v| hvalue(v, kind)))
                .collect();
            let domain = domain(kind, values);
            Some((
                HInfo {
                    name: name.to_string(),
                    kind,
                    differs: varies(name),
                },
                domain,
            ))
        })
        .collect()
}

fn domain(kind: HType, values: Vec<prost_types::Value>) -> Option<proto::Domain> {
    let list = |values: Vec<prost_types::Value>| {
        Some(proto::Domain::Discrete(prost_types::ListValue { values }))
    };
    match kind {
        HType::Number => {
            let mut nums: Vec<f64> = values
                .iter()
                .filter_map(|v| match v.kind {
                    Some(Kind::NumberValue(n)) => Some(n),
                    _ => None,
                })
                .collect();
            nums.sort_by(f64::total_cmp);
            nums.dedup_by(|a, b| a.total_cmp(b).is_eq());
            if nums.len() <= MAX_DISCRETE {
                list(nums.into_iter().map(number).collect())
            } else {
                Some(proto::Domain::Interval(proto::Interval {
                    min_value: nums[0],
                    max_value: nums[nums.len() - 1],
                }))
            }
        }
        HType::Bool => {
            let set: BTreeSet<bool> = values
                .iter()
                .filter_map(|v| match v.kind {
                    Some(Kind::BoolValue(b)) => Some(b),
                    _ => None,
                })
                .collect();
            list(set.into_iter().map(|b| value(Kind::BoolValue(b))).collect())
        }
        HType::Text => {
            let set: BTreeSet<String> = values
                .into_iter()
                .filter_map(|v| match v.kind {
                    Some(Kind::StringValue(s)) => Some(s),
                    _ => None,
                })
                .collect();
            (set.len() <= MAX_DISCRETE)
                .then(|| {
                    list(
                        set.into_iter()
                            .map(|s| value(Kind::StringValue(s)))
                            .collect(),
                    )
                })
                .flatten()
        }
    }
}

fn value(kind: Kind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

fn number(n: f64) -> prost_types::Value {
    value(Kind::NumberValue(n))
}

/// A parameter's value as the HParams plugin gets it, in the key's type;
/// lists and tables (e.g. `head = { hidden = [16] }`) as their JSON text.
fn hvalue(v: &serde_json::Value, kind: HType) -> Option<prost_types::Value> {
    Some(match (v, kind) {
        (serde_json::Value::Null, _) => return None,
        (serde_json::Value::Number(n), HType::Number) => number(n.as_f64()?),
        (serde_json::Value::Bool(b), HType::Bool) => value(Kind::BoolValue(*b)),
        (serde_json::Value::String(s), _) => value(Kind::StringValue(s.clone())),
        (other, _) => value(Kind::StringValue(other.to_string())),
    })
}

fn hparams_value(tag: &str, data: HParamsData) -> SummaryValue {
    let content = proto::HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    SummaryValue {
        tag: tag.to_string(),
        metadata: Some(proto::SummaryMetadata {
            plugin_data: Some(proto::PluginData {
                plugin_name: "hparams".into(),
                content,
            }),
            data_class: 0,
        }),
        // What TensorBoard's own hparams summaries carry: an empty float vector.
        tensor: Some(proto::TensorProto {
            dtype: proto::DT_FLOAT,
            tensor_shape: Some(proto::TensorShapeProto {
                dim: vec![proto::Dim { size: 0 }],
            }),
            float_val: vec![],
            double_val: vec![],
        }),
    }
}

fn summary_event(wall_time: f64, step: i64, value: SummaryValue) -> Event {
    Event {
        wall_time,
        step,
        what: Some(What::Summary(Summary { value: vec![value] })),
    }
}

/// The metrics the HParams table shows, the sweep's own first.
fn metric_infos(sweep_metric: &str) -> Vec<proto::MetricInfo> {
    let first = metric_tag(sweep_metric);
    let mut tags = vec![first.clone()];
    for t in [
        "valid/accuracy",
        "valid/loss",
        "test/accuracy",
        "test/loss",
        "train_epoch/accuracy",
        "train_epoch/loss",
    ] {
        if t != first {
            tags.push(t.to_string());
        }
    }
    tags.into_iter()
        .map(|t| proto::MetricInfo {
            description: if t == first {
                format!(
                    "the sweep's metric ({sweep_metric}): it picked each trial's best checkpoint"
                )
            } else {
                String::new()
            },
            display_name: String::new(),
            name: Some(proto::MetricName {
                group: String::new(),
                tag: t,
            }),
        })
        .collect()
}

fn experiment_events(sweep: &ExportSweep, infos: &[(HInfo, Option<proto::Domain>)]) -> Vec<Event> {
    let hparam_infos = infos
        .iter()
        .map(|(info, domain)| proto::HParamInfo {
            name: info.name.clone(),
            r#type: match info.kind {
                HType::Number => proto::DATA_TYPE_FLOAT64,
                HType::Bool => proto::DATA_TYPE_BOOL,
                HType::Text => proto::DATA_TYPE_STRING,
            },
            domain: domain.clone(),
            differs: info.differs,
        })
        .collect();
    let experiment = proto::Experiment {
        name: sweep.name.clone(),
        description: sweep.description.clone().unwrap_or_default(),
        time_created_secs: sweep.created_at,
        hparam_infos,
        metric_infos: metric_infos(&sweep.metric),
    };
    vec![summary_event(
        sweep.created_at,
        0,
        hparams_value("_hparams_/experiment", HParamsData::Experiment(experiment)),
    )]
}

/// Scalar summaries: the scalar plugin's data class, a DT_FLOAT tensor of
/// shape `[]` (TensorBoard's default loader, its Rust data server, drops
/// DT_DOUBLE scalars: the Scalars and HParams tabs then show nothing). The plugin metadata rides on a tag's first event in a file, as
/// TensorFlow's writer does.
struct Scalars {
    seen: HashSet<String>,
}

impl Scalars {
    fn event(&mut self, tag: String, step: i64, wall_time: f64, v: f64) -> Event {
        let metadata = self
            .seen
            .insert(tag.clone())
            .then(|| proto::SummaryMetadata {
                plugin_data: Some(proto::PluginData {
                    plugin_name: "scalars".into(),
                    content: vec![],
                }),
                data_class: proto::DATA_CLASS_SCALAR,
            });
        summary_event(
            wall_time,
            step,
            SummaryValue {
                tag,
                metadata,
                tensor: Some(proto::TensorProto {
                    dtype: proto::DT_FLOAT,
                    tensor_shape: Some(proto::TensorShapeProto { dim: vec![] }),
                    float_val: vec![v as f32],
                    double_val: vec![],
                }),
            },
        )
    }
}

/// A trial's events after the file header, in the order a live trial adds
/// them: its HParams session start, every metric row by step, its test
/// results (at the step of the tested checkpoint's validation), and the
/// session's end once the trial has ended for good or failed.
fn trial_events(
    trial: &ExportTrial,
    infos: &[(HInfo, Option<proto::Domain>)],
    params: &BTreeMap<String, serde_json::Value>,
    metrics: &[MetricRow],
    test: Option<&ExportTest>,
    classes: &[ClassAccuracy],
) -> Vec<Event> {
    let hparams = infos
        .iter()
        .filter_map(|(info, _)| {
            let v = hvalue(params.get(&info.name)?, info.kind)?;
            Some((info.name.clone(), v))
        })
        .collect();
    let mut events = vec![summary_event(
        trial.created_at,
        0,
        hparams_value(
            "_hparams_/session_start_info",
            HParamsData::SessionStartInfo(proto::SessionStartInfo {
                hparams,
                group_name: String::new(),
                start_time_secs: trial.created_at,
            }),
        ),
    )];
    let mut scalars = Scalars {
        seen: HashSet::new(),
    };
    for p in points(metrics, test, classes) {
        events.push(scalars.event(p.tag, p.step, p.time, p.value));
    }
    let end = match trial.status {
        TrialStatus::Done | TrialStatus::Pruned => Some(proto::STATUS_SUCCESS),
        TrialStatus::Failed => Some(proto::STATUS_FAILURE),
        TrialStatus::Queued
        | TrialStatus::Running
        | TrialStatus::Interrupted
        | TrialStatus::Paused => None,
    };
    if let Some(status) = end {
        let at = trial.finished_at.unwrap_or(trial.created_at);
        events.push(summary_event(
            at,
            metrics.last().map_or(0, |m| m.step),
            hparams_value(
                "_hparams_/session_end_info",
                HParamsData::SessionEndInfo(proto::SessionEndInfo {
                    status,
                    end_time_secs: at,
                }),
            ),
        ));
    }
    events
}

/// One scalar of a trial, as every exporter publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub tag: String,
    pub step: i64,
    /// Unix seconds.
    pub time: f64,
    pub value: f64,
}

/// A trial's scalars: every metric row (`split/name` at its global step),
/// then its test results at the step of the tested checkpoint's validation
/// (`test/loss`, `test/accuracy`, `test/class_accuracy/<class>`).
pub fn points(
    metrics: &[MetricRow],
    test: Option<&ExportTest>,
    classes: &[ClassAccuracy],
) -> Vec<Point> {
    let mut out: Vec<Point> = metrics
        .iter()
        .map(|m| Point {
            tag: tag(&m.split, &m.name),
            step: m.step,
            time: m.time,
            value: m.value,
        })
        .collect();
    if let Some(t) = test {
        let step = metrics
            .iter()
            .find(|m| m.split == "valid" && m.epoch == t.epoch)
            .or(metrics.last())
            .map_or(0, |m| m.step);
        let mut at = |tag: String, value: f64| {
            out.push(Point {
                tag,
                step,
                time: t.time,
                value,
            })
        };
        at("test/loss".into(), t.loss);
        at("test/accuracy".into(), t.accuracy);
        for c in classes {
            at(format!("test/class_accuracy/{}", c.class), c.accuracy);
        }
    }
    out
}

/// What syncing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutcome {
    Unchanged,
    New { records: usize },
    Appended { records: usize, repaired: bool },
}

const MARK: &str = ".sweep-export.g";

fn file_name(created_at: f64, generation: u32) -> String {
    format!(
        "events.out.tfevents.{:010}{MARK}{generation:06}",
        created_at.max(0.0) as i64
    )
}

/// The generation of one of our event files (`…sweep-export.g000002` → 2).
fn generation_of(name: &str) -> Option<u32> {
    if !name.starts_with("events.out.tfevents.") {
        return None;
    }
    let (_, g) = name.rsplit_once(MARK)?;
    (g.len() == 6).then(|| g.parse().ok()).flatten()
}

/// The file's records for a generation: the header, a SessionLog START from
/// the second generation on, then `body`.
fn records(created_at: f64, generation: u32, body: &[Event]) -> Vec<Vec<u8>> {
    let mut out = vec![
        Event {
            wall_time: created_at,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        }
        .encode_to_vec(),
    ];
    if generation > 0 {
        out.push(
            Event {
                wall_time: created_at,
                step: 0,
                what: Some(What::SessionLog(proto::SessionLog {
                    status: proto::SESSION_LOG_START,
                })),
            }
            .encode_to_vec(),
        );
    }
    out.extend(body.iter().map(Message::encode_to_vec));
    out
}

fn framed<'a>(records: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        tfrecord::frame(r, &mut out);
    }
    out
}

/// Makes the event file in `dir` hold exactly `body` (see the module docs).
pub fn sync_file(dir: &Path, created_at: f64, body: &[Event]) -> Result<FileOutcome, ExportError> {
    std::fs::create_dir_all(dir).map_err(ExportError::write(dir))?;
    let mut ours: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(ExportError::write(dir))? {
        let entry = entry.map_err(ExportError::write(dir))?;
        let name = entry.file_name();
        if let Some(g) = name.to_str().and_then(generation_of) {
            ours.push((g, entry.path()));
        }
    }
    ours.sort();
    // Older generations are left only by a kill between a rename and a remove.
    let current = ours.pop();
    for (_, old) in ours {
        std::fs::remove_file(&old).map_err(ExportError::write(&old))?;
    }
    let Some((generation, path)) = current else {
        let want = records(created_at, 0, body);
        crate::write_atomic(&dir.join(file_name(created_at, 0)), &framed(&want))?;
        return Ok(FileOutcome::New {
            records: want.len(),
        });
    };
    let bytes = std::fs::read(&path).map_err(ExportError::write(&path))?;
    let have = tfrecord::read(&bytes);
    let want = records(created_at, generation, body);
    let is_prefix = have.records.len() <= want.len()
        && have
            .records
            .iter()
            .zip(&want)
            .all(|(h, w)| *h == w.as_slice());
    if !is_prefix {
        let next = generation + 1;
        let want = records(created_at, next, body);
        crate::write_atomic(&dir.join(file_name(created_at, next)), &framed(&want))?;
        std::fs::remove_file(&path).map_err(ExportError::write(&path))?;
        return Ok(FileOutcome::New {
            records: want.len(),
        });
    }
    let repaired = have.good_len < bytes.len();
    let missing = &want[have.records.len()..];
    if missing.is_empty() && !repaired {
        return Ok(FileOutcome::Unchanged);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(ExportError::write(&path))?;
    if repaired {
        f.set_len(have.good_len as u64)
            .map_err(ExportError::write(&path))?;
    }
    f.seek(std::io::SeekFrom::Start(have.good_len as u64))
        .map_err(ExportError::write(&path))?;
    f.write_all(&framed(missing))
        .map_err(ExportError::write(&path))?;
    f.sync_data().map_err(ExportError::write(&path))?;
    Ok(FileOutcome::Appended {
        records: missing.len(),
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Vec<Event> {
        let mut s = Scalars {
            seen: HashSet::new(),
        };
        (0..n)
            .map(|i| {
                s.event(
                    "train/loss".into(),
                    i as i64,
                    1000.0 + i as f64,
                    1.0 / (i + 1) as f64,
                )
            })
            .collect()
    }

    fn only_file(dir: &Path) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }

    #[test]
    fn appends_what_is_missing_and_then_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            sync_file(d.path(), 1.0, &body(3)).unwrap(),
            FileOutcome::New { records: 4 }
        );
        assert_eq!(
            sync_file(d.path(), 1.0, &body(5)).unwrap(),
            FileOutcome::Appended {
                records: 2,
                repaired: false
            }
        );
        let before = std::fs::read(only_file(d.path())).unwrap();
        assert_eq!(
            sync_file(d.path(), 1.0, &body(5)).unwrap(),
            FileOutcome::Unchanged
        );
        assert_eq!(std::fs::read(only_file(d.path())).unwrap(), before);
        assert_eq!(tfrecord::read(&before).records.len(), 6);
    }

    #[test]
    fn a_cut_tail_is_repaired_and_completed() {
        let d = tempfile::tempdir().unwrap();
        sync_file(d.path(), 1.0, &body(4)).unwrap();
        let path = only_file(d.path());
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();
        assert_eq!(
            sync_file(d.path(), 1.0, &body(4)).unwrap(),
            FileOutcome::Appended {
                records: 1,
                repaired: true
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), full);
    }

    #[test]
    fn a_changed_past_rewrites_as_the_next_generation() {
        let d = tempfile::tempdir().unwrap();
        sync_file(d.path(), 1.0, &body(4)).unwrap();
        let mut changed = body(4);
        changed[1].wall_time += 1.0;
        assert_eq!(
            sync_file(d.path(), 1.0, &changed).unwrap(),
            FileOutcome::New { records: 6 }
        );
        let path = only_file(d.path());
        assert_eq!(
            generation_of(&path.file_name().unwrap().to_string_lossy()),
            Some(1)
        );
        assert_eq!(
            sync_file(d.path(), 1.0, &changed).unwrap(),
            FileOutcome::Unchanged
        );
    }

    #[test]
    fn metric_tags() {
        assert_eq!(metric_tag("val_accuracy"), "valid/accuracy");
        assert_eq!(metric_tag("val_loss"), "valid/loss");
    }
}
