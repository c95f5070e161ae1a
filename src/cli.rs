//! Command-line interface (clap derive). Parsing only; `commands` does the work.
//!
//! Closed sets of the domain are taken as they are (`TrialStatus`,
//! `Keep`, `KeepPrecision` derive `ValueEnum` in their own crates), so no argument is
//! a string mapped onto an enum a second time. `report --best` is the
//! exception: a `[program]` sweep ranks by any name its program reported, so
//! the name is checked against the sweep (`sweep_report::rank::report`). The man page and the shell
//! completions are generated from this definition at run time (`sweep
//! generate man`, `sweep completions SHELL`), as ripgrep and just do.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use sweep_store::TrialStatus;
use sweep_trialfiles::{Keep, KeepPrecision};

/// `report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Markdown => "markdown",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// `predict --head`: the classifier the weights were trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadArg {
    /// torchvision's own classifier (`fc` / `classifier`).
    Original,
    /// The default 512-512 MLP head of a sweep.
    Mlp,
}

/// `completions SHELL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Parser)]
#[command(
    name = "sweep",
    version,
    about = "Hyperparameter sweeps for image classification: one coordinator, libtorch workers, SQLite results"
)]
pub struct Cli {
    /// SQLite database (default results/results.db).
    #[arg(long, global = true, env = "SWEEP_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run (or resume) every trial of a sweep file.
    Run(RunArgs),
    /// Rank the trials of a sweep.
    Report(ReportArgs),
    /// Queued, running, done and failed trials of a sweep (safe while it runs).
    Status(StatusArgs),
    /// One trial in depth: parameters, attempts, learning curves, test results, confusions.
    Show(ShowArgs),
    /// Charts as PNG and SVG: learning curves, accuracy per trial, confusion heatmaps, class counts.
    Plot(PlotArgs),
    /// A live, read-only web dashboard over the database (prints its URL; Ctrl-C stops it).
    Serve(ServeArgs),
    /// Datasets: generate the built-in demo ImageFolder.
    #[command(subcommand)]
    Data(DataCommand),
    /// The worker, libtorch, CUDA, cuDNN and thread information for this machine.
    Doctor(DoctorArgs),
    /// Classify images with a trial's best checkpoint or a weights file (JSON lines).
    Predict(PredictArgs),
    /// Remove checkpoints finished trials no longer need (`[resources] keep`, `keep_precision`), for older sweeps too.
    Gc(GcArgs),
    /// Publish results where people already look: TensorBoard event files, CSV (docs/export.md).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print a shell completion script (e.g. `sweep completions bash > /etc/bash_completion.d/sweep`).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (e.g. `sweep generate man > ~/.local/share/man/man1/sweep.1`).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// The shared decoded-image cache (every image decoded once per dataset and size): list, build, clear.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Benchmarks of parts of the pipeline.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The man page of sweep, as roff, on stdout.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Every cache: dataset, size, images, bytes, last used.
    Ls,
    /// Decode a dataset into the cache now (`sweep run` does it before the first trial).
    Build {
        /// ImageFolder root.
        dataset: PathBuf,
        /// The trials' image_size (the stored shorter side is round(S·256/224) unless --cache-size says otherwise).
        #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(32..=1024))]
        image_size: u32,
        /// The stored shorter side in pixels, or "original" (as the `cache_size` parameter).
        #[arg(long, value_name = "PIXELS|original")]
        cache_size: Option<String>,
    },
    /// Remove caches (those being built are left alone). Running trials keep what they mapped.
    Clear {
        /// Every cache.
        #[arg(long, conflicts_with = "dataset")]
        all: bool,
        /// The caches of this dataset (its folder, or a content-hash prefix as `cache ls` shows).
        #[arg(required_unless_present = "all")]
        dataset: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The input pipeline alone, as a worker runs it: epoch 1 decodes into a fresh cache, later epochs crop, resize and flip from it (img/s).
    Data {
        /// ImageFolder root.
        dataset: PathBuf,
        #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(32..=1024))]
        image_size: u32,
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        batch_size: u32,
        /// Epochs (the first includes decoding).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100))]
        epochs: u32,
        /// Threads for decoding and batch assembly (0: every core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// The stored shorter side in pixels, or "original".
        #[arg(long, value_name = "PIXELS|original")]
        cache_size: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sweep file (TOML), e.g. sweeps/quickstart.toml.
    pub file: PathBuf,
    /// Print the planned trials and exit; nothing is written or launched.
    #[arg(long)]
    pub dry_run: bool,
    /// Run failed trials again (finished ones are never rerun).
    #[arg(long)]
    pub retry_failed: bool,
    /// Where checkpoints and logs go: <results>/<sweep>/<trial>/.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results: PathBuf,
    /// One plain line per event even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Seconds between SIGTERM and SIGKILL when interrupted.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub grace: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Sweep name (default: the most recent).
    #[arg(long)]
    pub sweep: Option<String>,
    /// What ranks the trials (default: the sweep's `[sweep] metric`, which picked each trial's tested checkpoint):
    /// accuracy, loss, val_accuracy, val_loss, time or throughput; for a `[program]` sweep any epoch or test_* metric its program reported, or time.
    #[arg(long, value_name = "METRIC")]
    pub best: Option<String>,
    /// Show only the first N trials (with --group-by: the first N groups; the statistics still use every matching trial).
    #[arg(long)]
    pub top: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Aggregate over the other keys: mean ± std and a 95 % CI per value of KEY (e.g. backbone, lr), and the best value against each other (Welch's t-test, Holm-adjusted).
    #[arg(long, value_name = "KEY")]
    pub group_by: Option<String>,
    /// Keep trials whose parameter KEY equals VALUE (repeatable), e.g. --where backbone=resnet50.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Keep trials with this status.
    #[arg(long, value_enum)]
    pub status: Option<TrialStatus>,
    /// Also write one self-contained HTML report (table, charts, a section per trial).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also print which parameters matter: PED-ANOVA and Spearman's rank correlation with the sweep's metric.
    #[arg(long)]
    pub importance: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback one (e.g. 0.0.0.0) needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Required by every request (at least 16 letters, digits, '-' or '_'), or "generate" to have one made and printed in the URL.
    #[arg(long, env = "SWEEP_SERVE_TOKEN", value_name = "TOKEN|generate")]
    pub token: Option<String>,
    /// Open the page in this desktop's browser.
    #[arg(long)]
    pub open: bool,
    /// The results directory the sweeps ran with, for the attempt logs (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Trial id (as shown by report/status); a unique prefix is enough.
    pub trial: String,
    /// The results directory the sweep ran with, for the checkpoints line (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Sweep name (default: the most recent).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Only this trial's charts.
    #[arg(long)]
    pub trial: Option<String>,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub sweep: Option<String>,
    /// The results directory the sweep ran with (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only this sweep (default: every sweep in the database).
    #[arg(long)]
    pub sweep: Option<String>,
    /// What a done trial keeps: best, best+last or all (default: each sweep's own `[resources] keep`, else best).
    #[arg(long, value_enum)]
    pub keep: Option<Keep>,
    /// The precision of the weights a done trial keeps: half rewrites them as float16, full leaves them as they are
    /// (default: each sweep's own `[resources] keep_precision`, else full).
    #[arg(long, value_enum)]
    pub keep_precision: Option<KeepPrecision>,
    /// Say what would be removed or rewritten; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The results directory the sweeps ran with (default: the database's folder).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate the 12-class zodiac demo ImageFolder (train/ valid/ test/, PNG).
    Demo {
        /// Output directory (must not exist or be empty).
        out: PathBuf,
        /// Training images per class (valid and test get a quarter each).
        #[arg(long, default_value_t = 150)]
        per_class: usize,
        /// Side of the square images in pixels.
        #[arg(long, default_value_t = 32)]
        image_size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A grid of sample images per class and the class counts, as one PNG or SVG.
    Show {
        /// ImageFolder root.
        dataset: PathBuf,
        /// Output file (.png or .svg).
        #[arg(long)]
        out: PathBuf,
        /// Sample images per class.
        #[arg(long, default_value_t = 6)]
        per_class: usize,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Use this trial's best checkpoint, backbone, head, image size and class names.
    #[arg(long, conflicts_with_all = ["backbone", "weights"])]
    pub trial: Option<String>,
    /// Where the trial's checkpoints are (with --trial).
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results: PathBuf,
    /// torchvision's name: resnet18/34/50/101, vgg16_bn, vgg19_bn, convnext_tiny/small,
    /// efficientnet_b0, efficientnet_v2_s, mobilenet_v3_large, regnet_y_3_2gf, vit_b_16, swin_t.
    #[arg(long, requires_all = ["weights", "classes"])]
    pub backbone: Option<String>,
    /// `.safetensors` or torchvision `.pth` state_dict.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Number of classes of the classifier (predictions are then class indices).
    #[arg(long)]
    pub classes: Option<usize>,
    /// The classifier the weights were trained with.
    #[arg(long, value_enum, default_value_t = HeadArg::Original)]
    pub head: HeadArg,
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// Image files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `sweep export`: one subcommand per destination (docs/export.md).
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// TensorBoard event files: OUT/<sweep>/<trial>/ per trial (scalars, test results, HParams); rerun to update.
    Tensorboard(ExportTensorboardArgs),
    /// Two tidy CSV files for pandas: OUT/metrics.csv (one line per metric row) and OUT/trials.csv (trials with their parameters).
    Csv(ExportCsvArgs),
    /// An MLflow tracking server, through its REST API: one experiment per sweep, one run per trial, found again by its trial-id tag.
    Mlflow(ExportMlflowArgs),
}

#[derive(Debug, Args)]
pub struct ExportMlflowArgs {
    /// The tracking server, e.g. http://127.0.0.1:5000 (credentials: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD).
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_name = "URI")]
    pub tracking_uri: String,
    /// The experiment to log into (default: one named after each sweep).
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Only this sweep (default: every sweep of the database).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Keep exporting while `sweep run` writes; ends when the sweep is no longer running, or on Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: seconds between passes.
    #[arg(long, default_value_t = 5.0, requires = "follow", value_parser = positive_seconds)]
    pub interval: f64,
}

#[derive(Debug, Args)]
pub struct ExportTensorboardArgs {
    /// Folder to write (created if missing); point `tensorboard --logdir` at OUT/<sweep>.
    pub out: PathBuf,
    /// Only this sweep (default: every sweep of the database).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Keep exporting while `sweep run` writes; ends when the sweep is no longer running, or on Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: seconds between passes.
    #[arg(long, default_value_t = 2.0, requires = "follow", value_parser = positive_seconds)]
    pub interval: f64,
}

#[derive(Debug, Args)]
pub struct ExportCsvArgs {
    /// Folder to write metrics.csv and trials.csv into (created if missing).
    pub out: PathBuf,
    /// Only this sweep (default: every sweep of the database).
    #[arg(long)]
    pub sweep: Option<String>,
}

/// A polling interval that is not a number of seconds in range (clap
/// reports it as a usage error, exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a number of seconds between 0.05 and 3600")]
pub struct NotSeconds(String);

fn positive_seconds(s: &str) -> Result<f64, NotSeconds> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err(NotSeconds(s.to_string())),
    }
}
