//! A user's program (`[program]`) as the trial process: what it is started
//! with (argv, the `SWEEP_*` environment, its parameters file) and how its
//! stdout is read (JSON-object lines with an `epoch`/`step` are records,
//! every other line is its log). The launcher starts it like the worker, in
//! its own process group; the dispatcher stops it by signal.
use super::launcher::ProgramRun;
use crate::spec::PlannedTrial;
use crate::spec::program::{AttemptContext, ProgramSpec};
use std::path::Path;

/// The argv, environment and working directory of one attempt of `trial`.
pub fn run_for(
    spec: &ProgramSpec,
    sweep: &str,
    trial: &PlannedTrial,
    out_dir: &Path,
    attempt: u32,
    threads: u32,
    pause_after: Option<u32>,
) -> ProgramRun {
    // Absolute, so that it names the same folder from any `workdir` (and node).
    let dir = std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
    let params = trial.config.to_json();
    let argv = spec.render(
        &params,
        &AttemptContext {
            trial_id: &trial.id,
            trial_dir: &dir,
            attempt,
            sweep,
        },
    );
    let params_file = dir.join(sweep_protocol::trial_dir::PARAMS);
    let mut env: Vec<(String, String)> = vec![
        // Python block-buffers a piped stdout: records would arrive at exit,
        // too late for early stopping. The program's own env may say otherwise.
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("OMP_NUM_THREADS".into(), threads.to_string()),
    ];
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend([
        ("SWEEP_SWEEP".into(), sweep.to_string()),
        ("SWEEP_TRIAL_ID".into(), trial.id.clone()),
        ("SWEEP_TRIAL_DIR".into(), dir.display().to_string()),
        ("SWEEP_ATTEMPT".into(), attempt.to_string()),
        ("SWEEP_PARAMS".into(), params_file.display().to_string()),
        ("SWEEP_THREADS".into(), threads.to_string()),
    ]);
    // Promotion-based stopping: end after this epoch, checkpoint kept (a
    // `resumable` program is resumed from it when promoted).
    if let Some(e) = pause_after {
        env.push(("SWEEP_PAUSE_AFTER".into(), e.to_string()));
    }
    ProgramRun {
        argv,
        env,
        workdir: spec.workdir.clone(),
        params: (
            params_file,
            serde_json::to_string_pretty(&params).unwrap_or_default(),
        ),
    }
}
