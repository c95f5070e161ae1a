//! Start-up: what a run restores and checks before the dispatcher's loop
//! begins. The queue from the database (done trials skipped), the TPE
//! proposer and the stopper rebuilt from what a previous run recorded,
//! checkpoints nobody knows set aside, finished trials tidied, the GPU list
//! and the free space checked. Runs once, before any trial starts; never
//! touches run state the loop owns.
use super::{Queued, release};
use crate::coordinator::RunError;
use crate::coordinator::RunOptions;
use crate::coordinator::launcher::{Launcher, SlotRequest, gpus_of};
use crate::coordinator::proposer::Proposer;
use crate::coordinator::retention;
use crate::coordinator::stopping::{Action, Decision, Stopper};
use crate::spec::{CpuWorkers, GpuSelection, SweepPlan};
use crate::store::TrialStatus;
use crate::store::recorder;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

/// The slots `[resources]` asks for; `cpu_workers = "auto"` is resolved
/// here, for a sweep of `trials` trials whose largest memory estimate is
/// `per_trial`, on `cores` cores.
pub(super) fn slot_request(
    plan: &SweepPlan,
    trials: usize,
    per_trial: u64,
    cores: u32,
) -> SlotRequest {
    let r = &plan.resources;
    SlotRequest {
        gpus: match &r.gpus {
            GpuSelection::All => None,
            GpuSelection::List(l) => Some(l.clone()),
        },
        trials_per_gpu: r.trials_per_gpu,
        cpu_workers: match r.cpu_workers {
            CpuWorkers::Fixed(n) => n,
            CpuWorkers::Auto => crate::coordinator::launcher::auto_cpu_workers(
                cores,
                trials,
                crate::coordinator::launcher::mem_available(),
                per_trial,
            ),
        },
    }
}

/// `[resources] gpus = [...]` asks for GPUs by name: when none of them is
/// there the trials would all run on the CPU, so that is an error, before
/// anything is written; when some are missing, a warning names them.
pub(super) async fn check_gpu_list(
    plan: &SweepPlan,
    launcher: &dyn Launcher,
) -> Result<(), RunError> {
    let GpuSelection::List(wanted) = &plan.resources.gpus else {
        return Ok(());
    };
    if wanted.is_empty() || plan.slurm.is_some() {
        return Ok(());
    }
    let request = |gpus: Option<Vec<u32>>| SlotRequest {
        gpus,
        trials_per_gpu: 1,
        cpu_workers: 1,
    };
    let got_slots = launcher.slots(&request(Some(wanted.clone()))).await;
    let got = gpus_of(&got_slots);
    let mut distinct = wanted.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if got.len() >= distinct.len() {
        return Ok(());
    }
    let all_slots = launcher.slots(&request(None)).await;
    let all = gpus_of(&all_slots);
    let listed = wanted
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let seen = if all.is_empty() {
        "no GPU is visible here (nvidia-smi, CUDA_VISIBLE_DEVICES)".to_string()
    } else {
        format!("the GPUs visible here are [{}]", all.join(", "))
    };
    if got.is_empty() {
        return Err(RunError::Resources(format!(
            "{}: [resources] gpus = [{listed}], but none of these GPUs is here: {seen}; list some of those, or write gpus = \"all\" (which trains on the CPU when there is no GPU)",
            plan.file.display()
        )));
    }
    sweep_protocol::log!(
        "warning: [resources] gpus = [{listed}]: only {} of these GPUs is here ({seen}); running on [{}]",
        got.len(),
        got.join(", ")
    );
    Ok(())
}

/// `[random] sampler = "tpe"`: the proposals a previous run made join the
/// plan (their trials resume like planned ones), and the proposer is rebuilt
/// with the validation results so far. Also returns the startup draws as the
/// sequence's first rows (written once; a rerun ignores them).
pub(super) async fn restore_proposer(
    plan: &mut SweepPlan,
    pool: &sqlx::SqlitePool,
    sweep_id: i64,
) -> Result<(Option<Proposer>, Vec<recorder::ProposalRow>), RunError> {
    let Some(space) = plan.search.clone() else {
        return Ok((None, vec![]));
    };
    let recorded: Vec<(i64, Vec<f64>)> = crate::store::proposals::of_sweep(pool, sweep_id)
        .await?
        .into_iter()
        .map(|(k, _, c)| (k, c))
        .collect();
    let (mut proposer, resumed) = Proposer::new(space, plan.objective(), &plan.trials, &recorded)?;
    let startup = proposer.startup_rows(sweep_id, &plan.trials);
    plan.trials.extend(resumed);
    let (split, name) = proposer.metric().db_key();
    for (trial, epoch, value) in
        crate::store::queries::validation_history(pool, &plan.name, split, name).await?
    {
        proposer.observe_metric(&trial, epoch as u32, value);
    }
    Ok((Some(proposer), startup))
}

/// PBT: a trial that exploited another trains with the parameters of its
/// last `lineage` row (its id, from the parameters it started with, stays).
pub(super) async fn restore_lineage(
    plan: &mut SweepPlan,
    pool: &sqlx::SqlitePool,
) -> Result<(), sqlx::Error> {
    if plan.stopping.pbt.is_none() {
        return Ok(());
    }
    for row in crate::store::lineage::of_sweep(pool, &plan.name).await? {
        let Some(t) = plan.trials.iter_mut().find(|t| t.id == row.trial_id) else {
            continue;
        };
        let params = match &t.config {
            sweep_protocol::TrialParams::Builtin(_) => serde_json::from_str(&row.params)
                .ok()
                .map(sweep_protocol::TrialParams::Builtin),
            sweep_protocol::TrialParams::Program(_) => serde_json::from_str(&row.params)
                .ok()
                .map(sweep_protocol::TrialParams::Program),
        };
        match params {
            Some(p) => t.config = p,
            None => sweep_protocol::log!(
                "warning: trial {}: the parameters its lineage row gives at epoch {} do not parse; it goes on with the ones it had",
                row.trial_id,
                row.epoch
            ),
        }
    }
    Ok(())
}

/// Which planned trials to run: all but the done ones (and the failed ones
/// unless `retry_failed`). Returns (queue, skipped, skipped because failed).
pub(super) fn initial_queue(
    plan: &SweepPlan,
    state: &HashMap<String, recorder::TrialState>,
    retry_failed: bool,
) -> (VecDeque<Queued>, usize, usize) {
    let mut queue = VecDeque::new();
    let (mut skipped, mut skipped_failed) = (0, 0);
    for t in &plan.trials {
        let s = state.get(&t.id);
        match s.map(|s| s.status) {
            Some(st) if st.is_final() => skipped += 1,
            Some(TrialStatus::Failed) if !retry_failed => {
                skipped += 1;
                skipped_failed += 1;
            }
            _ => queue.push_back(Queued {
                trial: t.clone(),
                attempt: s.map(|s| s.attempts).unwrap_or(0) + 1,
                tries: 0,
                delay: Duration::ZERO,
            }),
        }
    }
    (queue, skipped, skipped_failed)
}

/// The class folders of train/ (validation checked the layout): one
/// directory read, not another walk of every image.
pub(super) fn train_classes(plan: &SweepPlan) -> u64 {
    std::fs::read_dir(plan.dataset.join("train"))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(1000) as u64
}

/// Finished trials whose clean-up a crash interrupted (or that ran with
/// another `keep` or `keep_precision`) are brought in line with this run's.
pub(super) fn tidy_finished(
    plan: &SweepPlan,
    opts: &RunOptions,
    state: &HashMap<String, recorder::TrialState>,
) {
    for t in &plan.trials {
        if let Some(s) = state.get(&t.id) {
            release(
                &opts.results.join(&plan.name).join(&t.id),
                s.status,
                plan.resources.keep,
                plan.resources.keep_precision,
                "",
            );
        }
    }
}

/// Warns (it does not refuse: estimates are estimates) when the results
/// directory's filesystem cannot hold the checkpoints the queued trials will write.
pub(super) fn warn_if_short_of_space(
    plan: &SweepPlan,
    opts: &RunOptions,
    queue: &VecDeque<Queued>,
    slots: usize,
    classes: u64,
) {
    let need = crate::coordinator::estimate::sweep_estimate(
        plan,
        queue.iter().filter_map(|q| q.trial.builtin()),
        classes,
        slots,
    );
    if let Some(free) = retention::free_space(&opts.results)
        && need > free
    {
        sweep_protocol::log!(
            "warning: the checkpoints of this sweep may need up to {} (keep = \"{}\", keep_precision = \"{}\"), but {} has {} free; \
             free space, set [resources] keep = \"best\" (and keep_precision = \"half\"), or run `sweep gc` on older sweeps",
            retention::human_bytes(need),
            plan.resources.keep.as_str(),
            plan.resources.keep_precision.as_str(),
            opts.results.display(),
            retention::human_bytes(free)
        );
    }
}

/// A trial the database has never run must not resume from checkpoints it
/// knows nothing about (a deleted database with an old `results/` left
/// behind): the worker would report their epochs, wall time and test accuracy
/// as this run's. The old directory is kept, renamed, and the trial starts fresh.
pub(super) fn set_aside_unknown_checkpoints(dir: &std::path::Path) -> Result<(), RunError> {
    if !sweep_protocol::trial_dir::RESUME_FILES
        .iter()
        .any(|f| dir.join(f).exists())
    {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = dir.with_file_name(format!("{name}.orphaned-{stamp}"));
    std::fs::rename(dir, &aside).map_err(|e| {
        RunError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot move {} aside: {e}", dir.display()),
        ))
    })?;
    sweep_protocol::log!(
        "warning: {} holds checkpoints of a run this database does not know (was the database deleted?); \
         moved them to {} and the trial starts fresh",
        dir.display(),
        aside.display()
    );
    Ok(())
}

/// Rebuilds the stopper from the database (decisions and validation
/// history), so a restarted coordinator judges like the one that died. An
/// epoch recorded before the crash whose decision was not is decided now
/// (none is lost); a trial that such a decision stops leaves the queue.
pub(super) async fn restore_stopper(
    plan: &SweepPlan,
    pool: &sqlx::SqlitePool,
    queue: &mut VecDeque<Queued>,
    pruned_now: &mut Vec<(Decision, bool)>,
) -> Result<Stopper, sqlx::Error> {
    use crate::store::queries;
    let mut stopper = Stopper::new(plan.stopping.clone());
    let max_epochs = plan
        .trials
        .iter()
        .filter_map(|t| t.config.epochs())
        .max()
        .unwrap_or(1);
    for (i, t) in plan.trials.iter().enumerate() {
        stopper.assign(&t.id, i, max_epochs);
    }
    let mut stopped = restore_decisions(&mut stopper, queries::decisions(pool, &plan.name).await?);
    let (split, name) = stopper.metric().db_key();
    let history = queries::validation_history(pool, &plan.name, split, name).await?;
    for (trial, epoch, value) in &history {
        stopper.observe(trial, *epoch as u32, *value);
    }
    let queued: HashSet<String> = queue.iter().map(|q| q.trial.id.clone()).collect();
    for trial in stopped.iter().filter(|t| queued.contains(*t)) {
        pruned_now.push((
            Decision {
                trial: trial.clone(),
                epoch: 0,
                rung: None,
                bracket: None,
                method: "restored",
                value: 0.0,
                cutoff: None,
                compared: 0,
                action: Action::Stop,
            },
            true,
        ));
    }
    decide_missed_epochs(
        plan,
        &mut stopper,
        history,
        &queued,
        &mut stopped,
        pruned_now,
    );
    queue.retain(|q| !stopped.contains(&q.trial.id));
    Ok(stopper)
}

/// The decisions a previous run recorded, back into `stopper`; returns the
/// trials told to stop.
fn restore_decisions(
    stopper: &mut Stopper,
    decisions: Vec<recorder::DecisionRow>,
) -> HashSet<String> {
    let mut stopped = HashSet::new();
    for d in decisions {
        if d.action == "stop" {
            // Told to stop before a restart: pruned, whatever its row says
            // (the coordinator may have died before recording the status).
            stopped.insert(d.trial_id.clone());
        }
        stopper.restore(&Decision {
            trial: d.trial_id,
            epoch: d.epoch as u32,
            rung: d.rung.map(|r| r as u32),
            bracket: d.bracket.map(|b| b as u32),
            method: "restored",
            value: d.value,
            cutoff: d.cutoff,
            compared: d.compared as usize,
            action: Action::parse(&d.action).unwrap_or(Action::Continue),
        });
    }
    stopped
}

/// Epochs of queued trials recorded before the crash whose decision was not:
/// decided now; a trial such a decision stops joins `stopped`.
fn decide_missed_epochs(
    plan: &SweepPlan,
    stopper: &mut Stopper,
    history: Vec<(String, i64, f64)>,
    queued: &HashSet<String>,
    stopped: &mut HashSet<String>,
    pruned_now: &mut Vec<(Decision, bool)>,
) {
    let epochs: HashMap<&str, u32> = plan
        .trials
        .iter()
        .map(|t| (t.id.as_str(), t.config.epochs().unwrap_or(u32::MAX)))
        .collect();
    for (trial, epoch, value) in history {
        let (Some(&n), true) = (epochs.get(trial.as_str()), queued.contains(&trial)) else {
            continue;
        };
        if stopped.contains(&trial) || stopper.is_decided(&trial, epoch as u32) {
            continue;
        }
        let ds = stopper.report(&trial, epoch as u32, n, value);
        let stop = ds.iter().any(Decision::stop);
        for d in ds {
            pruned_now.push((d, stop));
        }
        if stop {
            stopped.insert(trial);
        }
    }
}
