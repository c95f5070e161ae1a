//! One function per subcommand: turn parsed arguments into work and an exit
//! code. Failures are `error::Error` variants, which carry their exit code.
use crate::cli::{
    DataCommand, GcArgs, GenerateCommand, HeadArg, ReportArgs, RunArgs, ServeArgs, Shell,
    StatusArgs,
};
use crate::coordinator::launcher::Launcher;
use crate::coordinator::launcher::local::{LocalLauncher, find_worker};
use crate::coordinator::{self, Outcome, RunOptions, retention};
pub use crate::error::{
    CmdResult, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Error as CliError,
};
use crate::report::rank::{self, Metric};
use crate::spec::{Keep, KeepPrecision};
use crate::store::{TrialStatus, db, queries};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::failed)
}

pub fn db_path(db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(db::default_path)
}

fn git_commit() -> Option<String> {
    let o = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

pub fn run(args: RunArgs, db: Option<PathBuf>) -> CmdResult {
    let plan = crate::spec::load(&args.file)?;
    crate::preflight::check_pretrained(&plan)?;
    if args.dry_run {
        print!("{}", dry_run_table(&plan));
        return Ok(EXIT_OK);
    }
    let launcher: Arc<dyn Launcher> = match &plan.slurm {
        Some(spec) => {
            crate::spec::slurm::check_tools(spec)?;
            Arc::new(
                crate::coordinator::launcher::slurm::SlurmLauncher::from_env(
                    spec.clone(),
                    &plan.name,
                    plan.program.is_some(),
                )?,
            )
        }
        None if plan.program.is_some() => Arc::new(LocalLauncher::for_programs()),
        None => Arc::new(LocalLauncher::from_env()?),
    };
    let db = db_path(db);
    let rt = runtime()?;
    rt.block_on(async {
        let pool = db::open(&db, true).await?;
        let mut info = serde_json::json!({
            "sweep_version": env!("CARGO_PKG_VERSION"),
            "git_commit": git_commit(),
            "host": std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        });
        if let (Some(info), serde_json::Value::Object(worker)) = (info.as_object_mut(), launcher.describe().await) {
            info.extend(worker);
        }
        let hash = match plan.program {
            Some(_) => String::new(),
            None => crate::dataset::hash::content_hash(&plan.dataset),
        };
        let name = plan.name.clone();
        let opts = RunOptions { results: args.results.clone(), retry_failed: args.retry_failed, plain: args.plain, grace: Duration::from_secs(args.grace) };
        let (done, live) = match plan.tensorboard() {
            Some(out) => {
                let (done, until) = tokio::sync::oneshot::channel::<()>();
                (Some(done), Some(tensorboard_beside_run(&db, out, name.clone(), until).await?))
            }
            None => (None, None),
        };
        let outcome = coordinator::run(plan, opts, launcher, pool.clone(), info, hash).await;
        drop(done);
        if let Some(live) = live {
            live.await;
        }
        let outcome = outcome?;
        // Summary table of this sweep.
        // A program sweep: ranked by its own metric, with its own columns.
        let program = crate::report::program::ProgramSweep::load(&pool, &name).await.ok().flatten();
        if let Ok(rows) = queries::trials(&pool, &name).await
            && let Some(r) = match &program {
                Some(p) => rank::report(&name, None, Some(p.metric.clone()), Some(p), rows).ok(),
                None => Some(rank::build(&name, Metric::Accuracy, rows, None)),
            }
            && let Ok(t) = rank::render(&r, "table")
        {
            print!("{t}");
        }
        if let Err(e) = db::checkpoint(&pool).await {
            sweep_protocol::log!("warning: could not fold the write-ahead log into {}: {e}; copy {0}-wal along with it", db.display());
        }
        pool.close().await;
        Ok(match outcome {
            Outcome::AllDone { ran, skipped } => {
                sweep_protocol::log!("all trials succeeded ({ran} run, {skipped} already done)");
                EXIT_OK
            }
            Outcome::SomeFailed { failed } => {
                sweep_protocol::log!("{failed} trial(s) failed; see `sweep status` and results/<sweep>/<trial>/attempt-N.log; rerun with --retry-failed");
                EXIT_FAILED
            }
            Outcome::Interrupted => {
                sweep_protocol::log!("interrupted; run the same command again to resume");
                EXIT_INTERRUPTED
            }
        })
    })
}

/// `[sweep] tensorboard`: OUT locked before the run launches anything (a
/// `sweep export` already writing there is an error, exit 2), then the
/// export crate's follow loop beside the run, on its own read-only pool as
/// `sweep export tensorboard OUT --sweep NAME --follow` would be; it makes a
/// final pass once `until` fires (the run ended, however). In process rather
/// than a child `sweep export`: the root crate already links the exporter,
/// and the run's Ctrl-C handling then covers it too. The returned future
/// ends when that final pass has, and says how it went.
async fn tensorboard_beside_run(
    db: &Path,
    out: PathBuf,
    name: String,
    until: tokio::sync::oneshot::Receiver<()>,
) -> Result<impl std::future::Future<Output = ()>, CliError> {
    let lock = sweep_export::lock_out(&out)?;
    let pool = db::open(db, false).await?;
    let task = tokio::spawn(async move {
        let r = sweep_export::tensorboard::beside_run(&pool, &out, &name, async {
            let _ = until.await;
        })
        .await;
        pool.close().await;
        drop(lock);
        match r {
            Ok(n) => sweep_protocol::log!(
                "TensorBoard files up to date in {} ({n} record(s) written); view them with `tensorboard --logdir {}`",
                out.display(),
                out.join(&name).display()
            ),
            Err(e) => sweep_protocol::log!(
                "warning: the TensorBoard files in {} may be behind the database: {e}; complete them with `sweep export tensorboard {} --sweep {name}`",
                out.display(),
                out.display()
            ),
        }
    });
    Ok(async move {
        if let Err(e) = task.await {
            sweep_protocol::log!("warning: the TensorBoard export beside the run stopped: {e}");
        }
    })
}

fn dry_run_table(plan: &crate::spec::SweepPlan) -> String {
    let mut b = tabled::builder::Builder::default();
    let mut header = vec!["#".to_string(), "trial".into()];
    let keys: Vec<String> = if plan.varying.is_empty() {
        vec!["backbone".into()]
    } else {
        plan.varying.clone()
    };
    header.extend(keys.iter().cloned());
    let columns: &[&str] = match plan.program {
        Some(_) => &["epochs"],
        None => &["epochs", "image_size", "batch_size"],
    };
    header.extend(columns.iter().map(|c| c.to_string()));
    b.push_record(header);
    for (i, t) in plan.trials.iter().enumerate() {
        let v = t.config.to_json();
        let mut row = vec![(i + 1).to_string(), t.id.clone()];
        row.extend(keys.iter().map(|k| {
            v.get(k)
                .map(sweep_protocol::config::value_text)
                .unwrap_or_default()
        }));
        row.extend(columns.iter().map(|c| {
            v.get(*c)
                .map(sweep_protocol::config::value_text)
                .unwrap_or_else(|| "-".into())
        }));
        b.push_record(row);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::rounded());
    let mut out = format!(
        "sweep {} — {} trials planned (dry run: nothing written or launched)\n{t}\n",
        plan.name,
        plan.trials.len()
    );
    if let Some(space) = &plan.search {
        out.push_str(&tpe_space_text(space));
    }
    out
}

/// `[random] sampler = "tpe"`: what `--dry-run` says beyond the startup draws.
fn tpe_space_text(space: &crate::spec::search::SearchSpace) -> String {
    let per_point = space.seed_count();
    let mut out = format!(
        "sampler tpe: {} random startup draws (above), then {} points proposed while the sweep runs ({per_point} trial{} each, one per seed), over:\n",
        space.startup,
        space.samples - space.startup,
        if per_point == 1 { "" } else { "s" }
    );
    let w = space.dims.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, d) in &space.dims {
        out.push_str(&format!("  {k:<w$}  {}\n", d.describe()));
    }
    out
}

pub fn report(args: ReportArgs, db: Option<PathBuf>) -> CmdResult {
    let format = args.format.as_str();
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, args.sweep.as_deref()).await?;
        // `[sweep] metric` picked each trial's checkpoint; it also ranks unless --best says otherwise.
        let picked_by = queries::sweep_meta(&pool, &sweep).await?.map(|m| m.metric);
        // A program sweep (`[program]`) ranks by the names its program reported.
        let program = crate::report::program::ProgramSweep::load(&pool, &sweep).await?;
        let mut filters = Vec::new();
        let program_keys = match &program {
            Some(_) => crate::report::program::param_keys(&queries::trials(&pool, &sweep).await?),
            None => Vec::new(),
        };
        let valid_keys: Vec<&str> = match &program {
            Some(_) => program_keys.iter().map(String::as_str).collect(),
            None => sweep_protocol::PARAM_KEYS
                .iter()
                .copied()
                .chain(["seed"])
                .collect(),
        };
        for f in &args.filters {
            let Some((k, v)) = f.split_once('=') else {
                return Err(CliError::bad_input(format!(
                    "--where {f:?} is not KEY=VALUE, e.g. --where backbone=resnet50"
                )));
            };
            if !valid_keys.contains(&k) {
                return Err(CliError::bad_input(format!(
                    "unknown --where key {k:?}; valid keys: {}",
                    valid_keys.join(", ")
                )));
            }
            filters.push((k.to_string(), queries::FilterValue::parse(v)));
        }
        if let Some(k) = &args.group_by
            && !valid_keys.contains(&k.as_str())
        {
            return Err(CliError::bad_input(format!(
                "unknown --group-by key {k:?}; valid keys: {}",
                valid_keys.join(", ")
            )));
        }
        let rows = queries::trials_filtered(&pool, &sweep, &filters, args.status).await?;
        let params: Vec<serde_json::Map<String, serde_json::Value>> = rows
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.params)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
            })
            .collect();
        let by_id: std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>> =
            rows.iter().map(|r| r.trial.clone()).zip(params).collect();
        // Every matching trial, ranked; --top cuts the rows shown, never what --group-by computes over.
        let mut r = rank::report(
            &sweep,
            args.best.as_deref(),
            picked_by,
            program.as_ref(),
            rows,
        )?;
        match &args.group_by {
            Some(k) => {
                let ordered: Vec<_> = r
                    .rows
                    .iter()
                    .map(|row| by_id.get(&row.trial).cloned().unwrap_or_default())
                    .collect();
                let g = rank::group(&r, k, &ordered, args.top);
                print!("{}", rank::render_groups(&g, format)?);
                r.rows.truncate(args.top.unwrap_or(usize::MAX));
            }
            None => {
                r.rows.truncate(args.top.unwrap_or(usize::MAX));
                print!("{}", rank::render(&r, format)?);
            }
        }
        if let Some(path) = &args.html {
            crate::report::html::write_html(&pool, &sweep, &r, path).await?;
            sweep_protocol::log!("wrote {}", path.display());
        }
        if args.importance
            && let Some(table) = sweep_serve::importance_table(&pool, &sweep).await?
        {
            print!("\n{table}");
        }
        Ok(EXIT_OK)
    })
}

/// `sweep serve`: the dashboard's logic is the `sweep-serve` crate.
pub fn serve(args: ServeArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    let results = results_dir(args.results, &db);
    runtime()?.block_on(sweep_serve::serve(sweep_serve::ServeOptions {
        db,
        results,
        host: args.host,
        port: args.port,
        token: args.token,
        open: args.open,
    }))?;
    Ok(EXIT_OK)
}

pub fn status(args: StatusArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, args.sweep.as_deref()).await?;
        let rows = queries::trials(&pool, &sweep).await?;
        let count = |s: TrialStatus| rows.iter().filter(|r| r.status == s).count();
        println!(
            "sweep {sweep}: {} trials — queued {}, running {}, paused {}, done {}, pruned {}, failed {}, interrupted {}",
            rows.len(),
            count(TrialStatus::Queued),
            count(TrialStatus::Running),
            count(TrialStatus::Paused),
            count(TrialStatus::Done),
            count(TrialStatus::Pruned),
            count(TrialStatus::Failed),
            count(TrialStatus::Interrupted)
        );
        if let Some(p) = crate::report::program::ProgramSweep::load(&pool, &sweep).await? {
            println!("{}", crate::report::program::status_table(&rows, &p));
        } else {
        let mut b = tabled::builder::Builder::default();
        b.push_record(["trial", "backbone", "lr", "seed", "status", "epoch", "val acc", "test acc", "attempts", "device"].map(String::from));
        for r in &rows {
            b.push_record([
                r.trial.clone(),
                r.backbone.clone(),
                r.lr.to_string(),
                r.seed.to_string(),
                r.status.to_string(),
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
        }
        let dir = results_dir(args.results, &db).join(&sweep);
        let free = retention::free_space(&dir).map(|f| format!(", {} free", retention::human_bytes(f))).unwrap_or_default();
        println!("disk: {} in {}{free}", retention::human_bytes(retention::disk_use(&dir)), dir.display());
        Ok(EXIT_OK)
    })
}

/// `--results`, else the folder holding the database (`results/` by default).
fn results_dir(results: Option<PathBuf>, db: &Path) -> PathBuf {
    results.unwrap_or_else(|| match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

/// ", 23 MB by rewriting 1 file(s) as float16" (nothing without half precision).
fn halved_words(precision_asked: bool, h: &retention::Halved, dry_run: bool) -> String {
    if !precision_asked {
        return String::new();
    }
    let verb = if dry_run { "would rewrite" } else { "rewrote" };
    format!(
        ", {verb} {} file(s) as float16 saving {}",
        h.files,
        retention::human_bytes(h.bytes)
    )
}

pub fn gc(args: GcArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    let results = results_dir(args.results, &db);
    let forced = args.keep;
    let forced_precision = args.keep_precision;
    // What a sweep file that leaves them out gets.
    let defaults = crate::spec::Resources::default();
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let only = match &args.sweep {
            Some(n) => Some(queries::resolve_sweep(&pool, Some(n)).await?),
            None => None,
        };
        let sweeps = queries::sweep_files(&pool).await?;
        let verb = if args.dry_run { "would free" } else { "freed" };
        let mut total = retention::Freed::default();
        let mut total_halved = retention::Halved::default();
        let mut any_half = false;
        for (name, toml_text) in sweeps.iter().filter(|(n, _)| only.as_ref().is_none_or(|o| o == n)) {
            let Some(keep) = forced.or_else(|| crate::spec::resources_setting(toml_text, "keep", defaults.keep, Keep::parse)) else {
                sweep_protocol::log!("sweep {name}: its file asks for a `keep` this version does not know; skipped (pass --keep)");
                continue;
            };
            let precision = forced_precision.or_else(|| crate::spec::resources_setting(toml_text, "keep_precision", defaults.keep_precision, KeepPrecision::parse)).unwrap_or_else(|| {
                sweep_protocol::log!(
                    "sweep {name}: its file asks for a `keep_precision` this version does not know; its weights are left as they are (pass --keep-precision)"
                );
                KeepPrecision::Full
            });
            let half = precision == KeepPrecision::Half;
            any_half |= half;
            let mut freed = retention::Freed::default();
            let mut halved = retention::Halved::default();
            for (trial, status) in queries::trial_statuses(&pool, name).await? {
                let dir = results.join(name).join(&trial);
                freed += retention::apply(&dir, status, keep, args.dry_run).map_err(|e| CliError::failed(e.to_string()))?;
                halved += retention::halve_kept(&dir, status, keep, precision, args.dry_run).map_err(|e| CliError::failed(e.to_string()))?;
            }
            for w in &halved.kept_full {
                sweep_protocol::log!("warning: {w}");
            }
            let left = retention::disk_use(&results.join(name));
            let left = if args.dry_run { left.saturating_sub(freed.bytes + halved.bytes) } else { left };
            let precision_words = if half { ", keep_precision = \"half\"" } else { "" };
            println!(
                "sweep {name} (keep = \"{}\"{precision_words}): {verb} {} in {} file(s){}; {} left",
                keep.as_str(),
                retention::human_bytes(freed.bytes),
                freed.files,
                halved_words(half, &halved, args.dry_run),
                retention::human_bytes(left)
            );
            total += freed;
            total_halved += halved;
        }
        println!("{verb} {} in {} file(s) in all{}", retention::human_bytes(total.bytes), total.files, halved_words(any_half, &total_halved, args.dry_run));
        Ok(EXIT_OK)
    })
}

pub fn data(cmd: DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Demo {
            out,
            per_class,
            image_size,
            seed,
        } => {
            let t0 = std::time::Instant::now();
            let s = crate::dataset::demo::generate(
                &out,
                &crate::dataset::demo::DemoOptions {
                    per_class,
                    image_size,
                    seed,
                },
            )
            .map_err(|e| match e {
                crate::dataset::demo::DemoError::Request(m) => CliError::bad_input(m),
                e => CliError::failed(e),
            })?;
            sweep_protocol::log!(
                "wrote {} ({} classes; train {}, valid {}, test {} images; {image_size}px) in {:.1}s",
                out.display(),
                crate::dataset::demo::CLASSES.len(),
                s.train,
                s.valid,
                s.test,
                t0.elapsed().as_secs_f64()
            );
            Ok(EXIT_OK)
        }
        DataCommand::Show {
            dataset,
            out,
            per_class,
        } => {
            let path = crate::report::plot::dataset_overview(&dataset, &out, per_class)?;
            println!("{}", path.display());
            Ok(EXIT_OK)
        }
    }
}

pub fn show(a: crate::cli::ShowArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let results = results_dir(a.results.clone(), &db);
        print!(
            "{}",
            crate::report::show::render(&pool, &a.trial, Some(&results)).await?
        );
        Ok(EXIT_OK)
    })
}

pub fn plot(a: crate::cli::PlotArgs, db: Option<PathBuf>) -> CmdResult {
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        let sweep = queries::resolve_sweep(&pool, a.sweep.as_deref()).await?;
        let files =
            crate::report::plot::write_all(&pool, &sweep, a.trial.as_deref(), &a.out).await?;
        for f in files {
            println!("{}", f.display());
        }
        Ok(EXIT_OK)
    })
}

pub fn doctor(json: bool, db: Option<PathBuf>) -> CmdResult {
    let d = crate::doctor::collect(&db_path(db));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d).map_err(CliError::failed)?
        );
    } else {
        print!("{}", crate::doctor::render(&d));
    }
    Ok(EXIT_OK)
}

pub fn completions(shell: Shell) -> CmdResult {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "sweep", &mut std::io::stdout());
    Ok(EXIT_OK)
}

/// `sweep generate man`: the man page, rendered from the CLI definition at
/// run time (`make install` writes it to share/man/man1/sweep.1).
pub fn generate(what: GenerateCommand) -> CmdResult {
    use clap::CommandFactory;
    use std::io::Write;
    match what {
        GenerateCommand::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(crate::cli::Cli::command())
                .render(&mut page)
                .map_err(CliError::failed)?;
            std::io::stdout()
                .write_all(&page)
                .map_err(CliError::failed)?;
        }
    }
    Ok(EXIT_OK)
}

/// Resolves what to predict with (a trial from the database, or a weights
/// file), then runs `sweep-worker predict`, whose JSON lines go straight to
/// our stdout.
pub fn predict(a: crate::cli::PredictArgs, db: Option<PathBuf>) -> CmdResult {
    use sweep_protocol::{BACKBONES, Head, PredictJob, TrialConfig};
    if a.image_size < 32 {
        return Err(CliError::bad_input(format!(
            "--image-size {} is below the minimum of 32",
            a.image_size
        )));
    }
    let job = if let Some(trial) = &a.trial {
        let db = db_path(db);
        let (params, sweep, classes, trial) = runtime()?.block_on(async {
            let pool = db::open(&db, false).await?;
            let (trial, _) = queries::resolve_trial(&pool, None, trial).await?;
            let (p, s, c) = queries::trial_for_predict(&pool, &trial).await?;
            Ok::<_, CliError>((p, s, c, trial))
        })?;
        let config: TrialConfig = serde_json::from_str(&params).map_err(|e| {
            CliError::failed(format!("trial {trial}: stored params unreadable: {e}"))
        })?;
        if classes.is_empty() {
            return Err(CliError::bad_input(format!(
                "trial {trial} has no test results yet (not finished?); predict needs a finished trial"
            )));
        }
        let weights = a.results.join(&sweep).join(&trial).join(retention::BEST);
        if !weights.exists() {
            return Err(CliError::bad_input(format!(
                "trial {trial}: {} does not exist; a pruned trial keeps no checkpoint unless its sweep has [resources] keep = \"all\", \
                 and a trial run with another results directory needs --results DIR",
                weights.display()
            )));
        }
        PredictJob {
            backbone: config.backbone,
            head: config.head,
            weights,
            classes,
            named_classes: true,
            image_size: config.image_size,
            paths: a.paths,
        }
    } else {
        let (Some(backbone), Some(weights), Some(n)) =
            (a.backbone.clone(), a.weights.clone(), a.classes)
        else {
            return Err(CliError::bad_input(
                "pass either --trial ID or --backbone NAME --weights FILE --classes N",
            ));
        };
        if !BACKBONES.contains(&backbone.as_str()) {
            return Err(CliError::bad_input(format!(
                "unknown backbone {backbone:?}; valid backbones: {}",
                BACKBONES.join(", ")
            )));
        }
        if n < 1 {
            return Err(CliError::bad_input("--classes must be at least 1"));
        }
        let head = match a.head {
            HeadArg::Original => Head::Original,
            HeadArg::Mlp => Head::default(),
        };
        PredictJob {
            backbone,
            head,
            weights,
            classes: (0..n).map(|i| i.to_string()).collect(),
            named_classes: false,
            image_size: a.image_size,
            paths: a.paths,
        }
    };
    let worker = find_worker()?;
    let json = serde_json::to_string(&job).map_err(CliError::failed)?;
    let status = std::process::Command::new(&worker)
        .args(["predict", "--job", &json])
        .status()
        .map_err(|e| CliError::failed(format!("cannot run {}: {e}", worker.display())))?;
    match status.code() {
        Some(0) => Ok(EXIT_OK),
        // The worker printed the reason (a bad image or weights file) on stderr.
        Some(2) => Ok(EXIT_BAD_INPUT),
        _ => Ok(EXIT_FAILED),
    }
}

/// `sweep export tensorboard|csv|mlflow`: the work is in the `sweep-export` crate.
pub fn export(cmd: crate::cli::ExportCommand, db: Option<PathBuf>) -> CmdResult {
    use crate::cli::ExportCommand;
    use sweep_export::follow::{Ended, once_or_follow};
    let code = |e: Ended| match e {
        Ended::Finished => EXIT_OK,
        Ended::Interrupted => EXIT_INTERRUPTED,
    };
    let db = db_path(db);
    runtime()?.block_on(async {
        let pool = db::open(&db, false).await?;
        match cmd {
            ExportCommand::Tensorboard(a) => {
                let _lock = sweep_export::lock_out(&a.out)?;
                let pass = || async {
                    let sweeps = sweep_export::selected_sweeps(&pool, a.sweep.as_deref()).await?;
                    let tally = sweep_export::tensorboard::export(&pool, &a.out, &sweeps).await?;
                    if tally.records > 0 || !a.follow {
                        sweep_protocol::log!("{}: {tally}", a.out.display());
                    }
                    Ok(())
                };
                let every = a.follow.then(|| Duration::from_secs_f64(a.interval));
                Ok(code(
                    once_or_follow(&pool, a.sweep.as_deref(), every, pass).await?,
                ))
            }
            ExportCommand::Mlflow(a) => {
                let client = sweep_export::mlflow::Client::new(&a.tracking_uri)
                    .map_err(sweep_export::ExportError::from)?;
                let pass = || async {
                    let sweeps = sweep_export::selected_sweeps(&pool, a.sweep.as_deref()).await?;
                    let tally = sweep_export::mlflow::export(
                        &pool,
                        &client,
                        a.experiment.as_deref(),
                        &sweeps,
                    )
                    .await?;
                    if tally.metrics + tally.params + tally.tags + tally.statuses > 0 || !a.follow {
                        sweep_protocol::log!("mlflow: {tally}");
                    }
                    Ok(())
                };
                let every = a.follow.then(|| Duration::from_secs_f64(a.interval));
                Ok(code(
                    once_or_follow(&pool, a.sweep.as_deref(), every, pass).await?,
                ))
            }
            ExportCommand::Csv(a) => {
                let _lock = sweep_export::lock_out(&a.out)?;
                let sweeps = sweep_export::selected_sweeps(&pool, a.sweep.as_deref()).await?;
                let w = sweep_export::csv::export(&pool, &a.out, &sweeps).await?;
                sweep_protocol::log!(
                    "{}: metrics.csv {} row(s){}, trials.csv {} row(s){}",
                    a.out.display(),
                    w.metrics_rows,
                    if w.metrics_written {
                        ""
                    } else {
                        " (unchanged)"
                    },
                    w.trials_rows,
                    if w.trials_written { "" } else { " (unchanged)" }
                );
                Ok(EXIT_OK)
            }
        }
    })
}
