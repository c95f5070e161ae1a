//! The dispatcher against a fake launcher: no process, no Python, no libtorch,
//! so scheduling decisions (slots, retries, backoff, OOM halving, permanent
//! failures, outcomes) are tested in milliseconds. The subprocess path is
//! covered by tests/scheduler.rs with the scripted fake worker.
use super::launcher::{
    Attempt, AttemptControl, BoxFuture, ExitStatus, LaunchSpec, Launcher, Slot, SlotRequest,
    slots_for,
};
use super::{Outcome, RunOptions, run};
use crate::spec::{PlannedTrial, Resources, SweepPlan};
use crate::store::db;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sweep_protocol::{SelectMetric, TrialConfig, WorkerMessage};

/// What one scripted attempt does: the messages it prints and its exit code.
#[derive(Clone)]
struct Script {
    messages: Vec<WorkerMessage>,
    code: i32,
}

fn ok_script() -> Script {
    let mut m = vec![WorkerMessage::Hello {
        protocol: sweep_protocol::PROTOCOL_VERSION,
        trial: "t".into(),
        pid: 1,
        libtorch: "fake".into(),
        device: "cpu".into(),
        cuda: false,
        threads: 1,
    }];
    m.push(WorkerMessage::Epoch {
        epoch: 1,
        train_loss: 1.0,
        train_accuracy: 0.5,
        val_loss: 1.0,
        val_accuracy: 0.5,
        step: 1,
        seconds: 0.1,
        images_per_s: 10.0,
    });
    m.push(WorkerMessage::Done {
        epochs: 1,
        wall_s: 0.1,
        images_per_s: 10.0,
        best_val_accuracy: 0.5,
        timings: None,
    });
    Script {
        messages: m,
        code: 0,
    }
}

fn error_script(class: sweep_protocol::ErrorClass) -> Script {
    Script {
        messages: vec![WorkerMessage::Error {
            class,
            message: format!("scripted {}", class.as_str()),
        }],
        code: 1,
    }
}

/// Per trial id, the scripts of its attempts in order (the last one repeats).
#[derive(Default)]
struct FakeLauncher {
    slots: u32,
    scripts: HashMap<String, Vec<Script>>,
    started: Mutex<Vec<(String, u32)>>,
}

struct NoControl;

impl AttemptControl for NoControl {
    fn terminate(&self) {}
    fn kill(&self) {}
    fn pid(&self) -> Option<u32> {
        None
    }
}

impl Launcher for FakeLauncher {
    fn slots<'a>(&'a self, request: &'a SlotRequest) -> BoxFuture<'a, Vec<Slot>> {
        Box::pin(async move {
            slots_for(
                &[],
                &SlotRequest {
                    cpu_workers: self.slots,
                    ..request.clone()
                },
            )
        })
    }

    fn start(&self, spec: &LaunchSpec) -> std::io::Result<Attempt> {
        let mut started = self.started.lock().unwrap();
        let n = started.iter().filter(|(t, _)| *t == spec.job.trial).count();
        started.push((spec.job.trial.clone(), spec.job.config.batch_size));
        let scripts = self
            .scripts
            .get(&spec.job.trial)
            .cloned()
            .unwrap_or_else(|| vec![ok_script()]);
        let script = scripts
            .get(n)
            .or(scripts.last())
            .cloned()
            .unwrap_or_else(ok_script);
        let mut out = Vec::new();
        for m in &script.messages {
            out.extend(serde_json::to_vec(m).unwrap());
            out.push(b'\n');
        }
        let code = script.code;
        Ok(Attempt {
            stdout: Box::pin(std::io::Cursor::new(out)),
            control: Arc::new(NoControl),
            exit: Box::pin(async move {
                Ok(ExitStatus {
                    code: Some(code),
                    signal: None,
                })
            }),
        })
    }

    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        Box::pin(async { serde_json::json!({"worker": "fake"}) })
    }
}

fn plan(trials: &[&str], retries: u32) -> SweepPlan {
    SweepPlan {
        name: "fake".into(),
        file: "fake.toml".into(),
        toml: String::new(),
        dataset: "data".into(),
        metric: "val_accuracy".into(),
        select: SelectMetric::ValAccuracy,
        stopping: crate::spec::Stopping::none(crate::spec::Objective::builtin(
            SelectMetric::ValAccuracy,
        )),
        maximize: true,
        program: None,
        description: None,
        resources: Resources {
            retries,
            ..Resources::default()
        },
        trials: trials
            .iter()
            .map(|id| PlannedTrial {
                id: id.to_string(),
                config: sweep_protocol::TrialParams::Builtin(TrialConfig {
                    batch_size: 32,
                    ..TrialConfig::default()
                }),
            })
            .collect(),
        varying: vec![],
        slurm: None,
        search: None,
    }
}

/// Runs the plan through the dispatcher; returns the outcome, the launcher
/// (what was started) and (trial, status, attempts) from the database.
async fn dispatch(
    plan: SweepPlan,
    launcher: FakeLauncher,
) -> (Outcome, Arc<FakeLauncher>, Vec<(String, String, i64)>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(&dir.path().join("r.db"), true).await.unwrap();
    let opts = RunOptions {
        results: dir.path().join("results"),
        retry_failed: false,
        plain: true,
        grace: Duration::from_secs(1),
    };
    let launcher = Arc::new(launcher);
    let outcome = run(
        plan,
        opts,
        launcher.clone(),
        pool.clone(),
        serde_json::json!({}),
        "hash".into(),
    )
    .await
    .unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT t.id, t.status, (SELECT count(*) FROM attempts a WHERE a.trial_id = t.id) FROM trials t ORDER BY t.ordinal")
            .fetch_all(&pool)
            .await
            .unwrap();
    (outcome, launcher, rows)
}

#[tokio::test]
async fn every_trial_runs_once_on_the_slots_it_is_given() {
    let (outcome, launcher, rows) = dispatch(
        plan(&["a", "b", "c"], 1),
        FakeLauncher {
            slots: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome, Outcome::AllDone { ran: 3, skipped: 0 });
    assert_eq!(
        rows,
        [
            ("a".into(), "done".into(), 1),
            ("b".into(), "done".into(), 1),
            ("c".into(), "done".into(), 1)
        ]
    );
    assert_eq!(launcher.started.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_crash_is_retried_and_a_config_error_is_not() {
    use sweep_protocol::ErrorClass;
    let mut l = FakeLauncher {
        slots: 1,
        ..Default::default()
    };
    l.scripts.insert(
        "crashy".into(),
        vec![
            Script {
                messages: vec![],
                code: 3,
            },
            ok_script(),
        ],
    );
    l.scripts
        .insert("bad".into(), vec![error_script(ErrorClass::Config)]);
    let (outcome, _, rows) = dispatch(plan(&["crashy", "bad"], 2), l).await;
    assert_eq!(outcome, Outcome::SomeFailed { failed: 1 });
    assert_eq!(
        rows,
        [
            ("crashy".into(), "done".into(), 2),
            ("bad".into(), "failed".into(), 1)
        ]
    );
}

#[tokio::test]
async fn out_of_memory_retries_with_half_the_batch_until_the_budget_is_spent() {
    use sweep_protocol::ErrorClass;
    let mut l = FakeLauncher {
        slots: 1,
        ..Default::default()
    };
    l.scripts
        .insert("big".into(), vec![error_script(ErrorClass::Oom)]);
    let (outcome, launcher, rows) = dispatch(plan(&["big"], 1), l).await;
    assert_eq!(outcome, Outcome::SomeFailed { failed: 1 });
    assert_eq!(rows, [("big".into(), "failed".into(), 2)]);
    assert_eq!(
        *launcher.started.lock().unwrap(),
        [("big".to_string(), 32), ("big".to_string(), 16)]
    );
}

#[tokio::test]
async fn a_rerun_of_a_finished_sweep_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(&dir.path().join("r.db"), true).await.unwrap();
    let opts = || RunOptions {
        results: dir.path().join("results"),
        retry_failed: false,
        plain: true,
        grace: Duration::from_secs(1),
    };
    let first = Arc::new(FakeLauncher {
        slots: 1,
        ..Default::default()
    });
    run(
        plan(&["a", "b"], 0),
        opts(),
        first.clone(),
        pool.clone(),
        serde_json::json!({}),
        "h".into(),
    )
    .await
    .unwrap();
    let second = Arc::new(FakeLauncher {
        slots: 1,
        ..Default::default()
    });
    let outcome = run(
        plan(&["a", "b"], 0),
        opts(),
        second.clone(),
        pool.clone(),
        serde_json::json!({}),
        "h".into(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::AllDone { ran: 0, skipped: 2 });
    assert!(second.started.lock().unwrap().is_empty());
}
