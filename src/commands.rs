//! One function per subcommand: turn parsed arguments into work and an exit
//! code. Errors become `CliError` with the documented exit code.
use crate::cli::{DataCommand, ReportArgs, RunArgs, StatusArgs};
use crate::scheduler::{self, Outcome, RunOptions};
use crate::store::{db, queries};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit codes (README "Exit codes").
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn bad_input(m: impl std::fmt::Display) -> Self {
        CliError { code: EXIT_BAD_INPUT, message: m.to_string() }
    }
    pub fn failed(m: impl std::fmt::Display) -> Self {
        CliError { code: EXIT_FAILED, message: m.to_string() }
    }
}

impl From<db::StoreError> for CliError {
    fn from(e: db::StoreError) -> Self {
        CliError::bad_input(e)
    }
}

pub type CmdResult = Result<i32, CliError>;

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(CliError::failed)
}

pub fn db_path(db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(db::default_path)
}

/// The dataset's identity: SHA-256 over every file's relative path and the
/// SHA-256 of its contents (hashed in parallel), so a changed image changes it.
pub fn dataset_hash(root: &Path) -> String {
    use rayon::prelude::*;
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => files.push(e.path()),
                _ => {}
            }
        }
    }
    files.sort();
    let digests: Vec<Vec<u8>> = files
        .par_iter()
        .map(|p| {
            let mut h = Sha256::new();
            h.update(p.strip_prefix(root).unwrap_or(p).to_string_lossy().as_bytes());
            h.update([0]);
            h.update(std::fs::read(p).unwrap_or_default());
            h.finalize().to_vec()
        })
        .collect();
    let mut h = Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn git_commit() -> Option<String> {
    let o = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

pub fn run(args: RunArgs, db: Option<PathBuf>) -> CmdResult {
    let plan = crate::plan::load(&args.file).map_err(CliError::bad_input)?;
    if args.dry_run {
        print!("{}", dry_run_table(&plan));
        return Ok(EXIT_OK);
    }
    let db = db_path(db);
    let rt = runtime()?;
    rt.block_on(async {
        let pool = db::open(&db, true).await?;
        let info = serde_json::json!({
            "sweep_version": env!("CARGO_PKG_VERSION"),
            "git_commit": git_commit(),
            "libtorch": crate::doctor::libtorch_version(),
            "cuda": crate::doctor::libtorch_version().split_once('+').map(|(_, v)| v.to_string()),
            "gpus": crate::doctor::gpu_names(),
            "host": std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        });
        let hash = dataset_hash(&plan.dataset);
        let name = plan.name.clone();
        let opts = RunOptions { results: args.results.clone(), retry_failed: args.retry_failed, plain: args.plain, grace: Duration::from_secs(args.grace) };
        let outcome = scheduler::run(plan, opts, pool.clone(), info, hash)
            .await
            .map_err(|e| if e.to_string().contains("already running") { CliError::bad_input(e) } else { CliError::failed(format!("{e:#}")) })?;
        // Summary table of this sweep.
        if let Ok(rows) = queries::trials(&pool, &name).await
            && let Ok(r) = crate::report::build(&name, "accuracy", rows, None)
            && let Ok(t) = crate::report::render(&r, "table")
        {
            print!("{t}");
        }
        pool.close().await;
        Ok(match outcome {
            Outcome::AllDone { ran, skipped } => {
                eprintln!("all trials succeeded ({ran} run, {skipped} already done)");
                EXIT_OK
            }
            Outcome::SomeFailed { failed } => {
                eprintln!("{failed} trial(s) failed; see `sweep status` and results/<sweep>/<trial>/attempt-N.log; rerun with --retry-failed");
                EXIT_FAILED
            }
            Outcome::Interrupted => {
                eprintln!("interrupted; run the same command again to resume");
                EXIT_INTERRUPTED
            }
        })
    })
}

fn dry_run_table(plan: &crate::plan::SweepPlan) -> String {
    let mut b = tabled::builder::Builder::default();
    let mut header = vec!["#".to_string(), "trial".into()];
    let keys: Vec<String> = if plan.varying.is_empty() { vec!["backbone".into()] } else { plan.varying.clone() };
    header.extend(keys.iter().cloned());
    header.extend(["epochs", "image_size", "batch_size"].map(String::from));
    b.push_record(header);
    for (i, t) in plan.trials.iter().enumerate() {
        let v = serde_json::to_value(&t.config).unwrap_or_default();
        let mut row = vec![(i + 1).to_string(), t.id.clone()];
        row.extend(keys.iter().map(|k| v.get(k).map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).unwrap_or_default()));
        row.extend([t.config.epochs.to_string(), t.config.image_size.to_string(), t.config.batch_size.to_string()]);
        b.push_record(row);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::rounded());
    format!("sweep {} — {} trials planned (dry run: nothing written or launched)\n{t}\n", plan.name, plan.trials.len())
}

pub fn report(args: ReportArgs, db: Option<PathBuf>) -> CmdResult {
    if !crate::report::METRICS.contains(&args.best.as_str()) {
        return Err(CliError::bad_input(format!("unknown metric {:?}; valid metrics: {}", args.best, crate::report::METRICS.join(", "))));
    }
    if !crate::report::FORMATS.contains(&args.format.as_str()) {
        return Err(CliError::bad_input(format!("unknown format {:?}; valid formats: {}", args.format, crate::report::FORMATS.join(", "))));
    }
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, args.sweep.as_deref()).await.map_err(CliError::bad_input)?;
        let mut filters = Vec::new();
        let valid_keys: Vec<&str> = crate::plan::PARAM_KEYS.iter().copied().chain(["seed"]).collect();
        for f in &args.filters {
            let Some((k, v)) = f.split_once('=') else {
                return Err(CliError::bad_input(format!("--where {f:?} is not KEY=VALUE, e.g. --where backbone=resnet50")));
            };
            if !valid_keys.contains(&k) {
                return Err(CliError::bad_input(format!("unknown --where key {k:?}; valid keys: {}", valid_keys.join(", "))));
            }
            filters.push((k.to_string(), queries::FilterValue::parse(v)));
        }
        if let Some(s) = &args.status {
            const STATUSES: [&str; 5] = ["queued", "running", "done", "failed", "interrupted"];
            if !STATUSES.contains(&s.as_str()) {
                return Err(CliError::bad_input(format!("unknown --status {s:?}; valid: {}", STATUSES.join(", "))));
            }
        }
        if let Some(k) = &args.group_by
            && !valid_keys.contains(&k.as_str())
        {
            return Err(CliError::bad_input(format!("unknown --group-by key {k:?}; valid keys: {}", valid_keys.join(", "))));
        }
        let rows = queries::trials_filtered(&pool, &sweep, &filters, args.status.as_deref()).await.map_err(CliError::failed)?;
        let params: Vec<serde_json::Map<String, serde_json::Value>> =
            rows.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.params).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()).collect();
        let by_id: std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>> = rows.iter().map(|r| r.trial.clone()).zip(params).collect();
        let r = crate::report::build(&sweep, &args.best, rows, args.top).map_err(CliError::bad_input)?;
        match &args.group_by {
            Some(k) => {
                let ordered: Vec<_> = r.rows.iter().map(|row| by_id.get(&row.trial).cloned().unwrap_or_default()).collect();
                let g = crate::report::group(&r, k, &ordered);
                print!("{}", crate::report::render_groups(&g, &args.format).map_err(CliError::bad_input)?);
            }
            None => print!("{}", crate::report::render(&r, &args.format).map_err(CliError::bad_input)?),
        }
        if let Some(path) = &args.html {
            crate::html::write_html(&pool, &sweep, &r, path).await.map_err(CliError::failed)?;
            eprintln!("wrote {}", path.display());
        }
        Ok(EXIT_OK)
    })
}

pub fn status(args: StatusArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, args.sweep.as_deref()).await.map_err(CliError::bad_input)?;
        let rows = queries::trials(&pool, &sweep).await.map_err(CliError::failed)?;
        let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
        println!(
            "sweep {sweep}: {} trials — queued {}, running {}, done {}, failed {}, interrupted {}",
            rows.len(),
            count("queued"),
            count("running"),
            count("done"),
            count("failed"),
            count("interrupted")
        );
        let mut b = tabled::builder::Builder::default();
        b.push_record(["trial", "backbone", "lr", "seed", "status", "epoch", "val acc", "test acc", "attempts", "device"].map(String::from));
        for r in &rows {
            b.push_record([
                r.trial.clone(),
                r.backbone.clone(),
                r.lr.to_string(),
                r.seed.to_string(),
                r.status.clone(),
                format!("{}/{}", r.epochs_done, r.epochs),
                r.val_accuracy.map(|v| format!("{:.2}%", v * 100.0)).unwrap_or_else(|| "-".into()),
                r.test_accuracy.map(|v| format!("{:.2}%", v * 100.0)).unwrap_or_else(|| "-".into()),
                r.attempts.to_string(),
                r.device.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let mut t = b.build();
        t.with(tabled::settings::Style::rounded());
        println!("{t}");
        Ok(EXIT_OK)
    })
}

pub fn data(cmd: DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Demo { out, per_class, image_size, seed } => {
            let t0 = std::time::Instant::now();
            let s = crate::datagen::generate(&out, &crate::datagen::DemoOptions { per_class, image_size, seed })
                .map_err(|e| CliError::bad_input(format!("{e:#}")))?;
            eprintln!(
                "wrote {} ({} classes; train {}, valid {}, test {} images; {image_size}px) in {:.1}s",
                out.display(),
                crate::datagen::CLASSES.len(),
                s.train,
                s.valid,
                s.test,
                t0.elapsed().as_secs_f64()
            );
            Ok(EXIT_OK)
        }
        DataCommand::Show { dataset, out, per_class } => {
            let path = crate::plot::dataset_overview(&dataset, &out, per_class).map_err(CliError::bad_input)?;
            println!("{}", path.display());
            Ok(EXIT_OK)
        }
    }
}

pub fn show(a: crate::cli::ShowArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        print!("{}", crate::show::render(&pool, &a.trial).await.map_err(CliError::bad_input)?);
        Ok(EXIT_OK)
    })
}

pub fn plot(a: crate::cli::PlotArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, a.sweep.as_deref()).await.map_err(CliError::bad_input)?;
        let files = crate::plot::write_all(&pool, &sweep, a.trial.as_deref(), &a.out).await.map_err(CliError::bad_input)?;
        for f in files {
            println!("{}", f.display());
        }
        Ok(EXIT_OK)
    })
}

pub fn doctor(json: bool, db: Option<PathBuf>) -> CmdResult {
    let d = crate::doctor::collect(&db_path(db));
    if json {
        println!("{}", serde_json::to_string_pretty(&d).map_err(CliError::failed)?);
    } else {
        print!("{}", crate::doctor::render(&d));
    }
    Ok(EXIT_OK)
}

pub fn predict(a: crate::cli::PredictArgs, db: Option<PathBuf>) -> CmdResult {
    use crate::predict::{self, PredictModel};
    if a.image_size < 32 {
        return Err(CliError::bad_input(format!("--image-size {} is below the minimum of 32", a.image_size)));
    }
    let (model, named) = if let Some(trial) = &a.trial {
        let db = db_path(db);
        let (params, sweep, classes, trial) = runtime()?.block_on(async {
            let pool = db::open(&db, false).await?;
            let (trial, _) = queries::resolve_trial(&pool, None, trial).await.map_err(CliError::bad_input)?;
            queries::trial_for_predict(&pool, &trial).await.map_err(CliError::bad_input).map(|(p, s, c)| (p, s, c, trial))
        })?;
        let config: crate::config::TrialConfig =
            serde_json::from_str(&params).map_err(|e| CliError::failed(format!("trial {trial}: stored params unreadable: {e}")))?;
        if classes.is_empty() {
            return Err(CliError::bad_input(format!("trial {trial} has no test results yet (not finished?); predict needs a finished trial")));
        }
        let ckpt = a.results.join(&sweep).join(&trial).join("best.safetensors");
        (predict::model_from_trial(&config, ckpt, classes), true)
    } else {
        let (Some(backbone), Some(weights), Some(n)) = (a.backbone.clone(), a.weights.clone(), a.classes) else {
            return Err(CliError::bad_input("pass either --trial ID or --backbone NAME --weights FILE --classes N"));
        };
        if !crate::config::BACKBONES.contains(&backbone.as_str()) {
            return Err(CliError::bad_input(format!("unknown backbone {backbone:?}; valid backbones: {}", crate::config::BACKBONES.join(", "))));
        }
        let head = match a.head.as_str() {
            "original" => crate::config::Head::Original,
            "mlp" => crate::config::Head::default(),
            other => return Err(CliError::bad_input(format!("unknown --head {other:?}; valid: original, mlp"))),
        };
        if n < 1 {
            return Err(CliError::bad_input("--classes must be at least 1"));
        }
        (PredictModel { backbone, head, weights, classes: (0..n).map(|i| i.to_string()).collect(), image_size: a.image_size }, false)
    };
    predict::run(&model, &a.paths, named).map_err(CliError::bad_input)?;
    Ok(EXIT_OK)
}
