//! Checks of a validated plan that need the worker, made before anything is
//! written or launched: each `[pretrained]` file must load into the model
//! its trials build (a ResNet `.pth` given to `convnext_tiny`, a truncated
//! file are exit 2 here, not a failed trial later).
//!
//! Why the worker and not the spec: only `sweep-worker` knows each model's
//! tensor names and shapes (for every backbone, head and image size) and
//! reads `.pth` pickles, and a second copy of either in this libtorch-free
//! crate would drift from the one that trains. `sweep-worker check-weights`
//! runs the very loading rules a trial applies (head replacement, ViT
//! position-embedding resizing), reading the whole file; it costs about a
//! second per distinct backbone and file. The spec stays pure (it never runs
//! a process); this module only asks and turns a refusal into the spec's
//! located error, at the `[pretrained]` entry.
//!
//! Skipped when there is nothing to check, when `SWEEP_WORKER_CMD` stands in
//! for the worker (it does not speak `check-weights`), and when no
//! `sweep-worker` is found here (the local launcher then says so itself; on
//! Slurm the trials check their own files on the compute nodes). A worker
//! that cannot answer (an older one, libtorch missing) is a warning: the
//! trials check again.
use crate::coordinator::launcher::local::find_worker;
use crate::spec::{SpecError, SweepPlan};
use std::process::{Command, Stdio};

/// Every `[pretrained]` file of `plan` loads into its trials' model, or the
/// first one that does not, located in the sweep file.
pub fn check_pretrained(plan: &SweepPlan) -> Result<(), SpecError> {
    if plan.program.is_some() {
        return Ok(());
    }
    let uses = plan.pretrained_uses();
    if uses.is_empty() || std::env::var_os("SWEEP_WORKER_CMD").is_some_and(|c| !c.is_empty()) {
        return Ok(());
    }
    let Ok(worker) = find_worker() else {
        if plan.slurm.is_some() {
            sweep_protocol::log!(
                "note: no sweep-worker here to check the [pretrained] files before submitting; each trial checks its own"
            );
        }
        return Ok(());
    };
    let job = serde_json::to_string(&uses).unwrap_or_default();
    let out = match Command::new(&worker)
        .args(["check-weights", "--job", &job])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            sweep_protocol::log!(
                "warning: cannot run {} to check the [pretrained] files ({e}); each trial checks its own",
                worker.display()
            );
            return Ok(());
        }
    };
    let verdicts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if verdicts.len() != uses.len() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        sweep_protocol::log!(
            "warning: {} could not check the [pretrained] files ({}); each trial checks its own",
            worker.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
        return Ok(());
    }
    for (cfg, v) in uses.iter().zip(&verdicts) {
        if let Some(e) = v["error"].as_str() {
            let weights = cfg
                .pretrained
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(plan.pretrained_error(
                &cfg.backbone,
                format!("[pretrained] {} = {weights:?} cannot be used: {e}", cfg.backbone),
                Some(format!(
                    "give {} a checkpoint of torchvision's {} (its state_dict as torch.save or .safetensors writes it), or remove the entry to train from scratch",
                    cfg.backbone, cfg.backbone
                )),
            ));
        }
    }
    Ok(())
}
