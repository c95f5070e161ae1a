//! Mistakes in sweep files, end to end through the real binary.
//!
//! Every case runs `sweep --db <tmp>/results.db run <file>` on a broken sweep
//! file and checks the documented contract: exit code 2, one
//! `error: FILE:LINE:COL: message` pointing at the offending key or value, a
//! helpful message, and nothing written (no database, no results folder).
use crate::common;

use common::{EXIT_BAD_INPUT, Out, Scratch};
use std::path::{Path, PathBuf};

/// A minimal valid ImageFolder root `data/` (planning lists its files but
/// decodes none), and `no_test/`, a dataset that lacks test/.
fn scratch() -> Scratch {
    let classes = ["a", "b"];
    Scratch::new()
        .with_one_image_per_class("data", &["train", "valid", "test"], &classes)
        .with_one_image_per_class("no_test", &["train", "valid"], &classes)
}

/// Writes sweep file `<name>.toml`, replacing `{ds}` (the valid dataset) and
/// `{tmp}` (the scratch folder) with absolute paths.
fn write(s: &Scratch, name: &str, text: &str) -> PathBuf {
    let (ds, tmp) = (s.data(), s.root().to_path_buf());
    let text = text
        .replace("{ds}", ds.to_str().expect("utf-8 temp path"))
        .replace("{tmp}", tmp.to_str().expect("utf-8 temp path"));
    s.write(format!("{name}.toml"), text)
}

/// `sweep --db results.db run FILE --results results/ --plain [extra…]`, from the scratch folder.
fn run(s: &Scratch, file: &Path, extra: &[&str]) -> Out {
    s.run(file).args(extra).output()
}

struct Case {
    name: &'static str,
    toml: &'static str,
    /// 1-based line and column (in characters) of the offending key or value.
    at: (usize, usize),
    /// Fragments the message (or its help line) must contain.
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown_top_level_table",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grdi]\nlr = [0.1]\n",
        at: (5, 2),
        says: &["unknown field `grdi`", "help: did you mean `grid`?"],
    },
    Case {
        name: "unknown_key_in_sweep",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\nseeds = [0]\nepochs = 3\n",
        at: (5, 1),
        says: &[
            "unknown field `epochs`",
            "help: valid keys here: name, dataset, seeds, metric, direction, description, tensorboard",
        ],
    },
    Case {
        name: "misspelt_key_in_sweep",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\nmetrc = \"val_loss\"\n",
        at: (4, 1),
        says: &["unknown field `metrc`", "did you mean `metric`?"],
    },
    Case {
        name: "misspelt_parameter_in_defaults",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nlr = 0.01\nepoch = 3\n",
        at: (7, 1),
        says: &["unknown parameter `epoch`", "did you mean `epochs`?"],
    },
    Case {
        name: "seed_in_grid",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grid]\nlr = [0.1, 0.01]\nseed = [0, 1]\n",
        at: (7, 1),
        says: &["unknown parameter `seed`", "[sweep] seeds = ["],
    },
    Case {
        name: "misspelt_parameter_in_trial",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[[trial]]\nlr = 0.1\n\n[[trial]]\nbatchsize = 16\n",
        at: (9, 1),
        says: &[
            "unknown parameter `batchsize`",
            "did you mean `batch_size`?",
        ],
    },
    Case {
        name: "lr_wrong_type",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nlr = \"fast\"\n",
        at: (6, 6),
        says: &["`lr` must be a number, got \"fast\""],
    },
    Case {
        name: "lr_zero",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nepochs = 2\nlr = 0.0\n",
        at: (7, 6),
        says: &["`lr` must be > 0", "got 0"],
    },
    Case {
        // One bad value among good ones, in a multi-line array: the error points
        // at the bad value itself, not at the array's `[`.
        name: "lr_grid_one_bad_value",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grid]\nlr = [\n  0.1,\n  -0.5,\n  0.01,\n]\n",
        at: (8, 3),
        says: &["`lr` must be > 0", "got -0.5"],
    },
    Case {
        name: "epochs_zero",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nepochs = 0\n",
        at: (6, 10),
        says: &["`epochs` must be between 1 and 10000, got 0"],
    },
    Case {
        name: "image_size_too_small",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nimage_size = 16\n",
        at: (6, 14),
        says: &["`image_size` must be between 32 and 1024, got 16"],
    },
    Case {
        name: "unknown_backbone_in_defaults",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nbackbone = \"resnet51\"\n",
        at: (6, 12),
        says: &[
            "unknown backbone \"resnet51\"",
            "valid backbones: resnet18, resnet34, resnet50, resnet101, vgg16_bn, vgg19_bn, convnext_tiny, convnext_small, efficientnet_b0, efficientnet_v2_s, mobilenet_v3_large, regnet_y_3_2gf, vit_b_16, swin_t",
        ],
    },
    Case {
        name: "unknown_backbone_among_grid_values",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grid]\nbackbone = [\"resnet18\", \"resnet51\", \"resnet34\"]\n",
        at: (6, 25),
        says: &[
            "unknown backbone \"resnet51\"",
            "did you mean `resnet50`?",
            "valid backbones:",
        ],
    },
    Case {
        name: "unknown_optimizer",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\noptimizer = \"adagrad\"\n",
        at: (6, 13),
        says: &[
            "unknown optimizer \"adagrad\"",
            "valid optimizers: sgd, adam, adamw",
        ],
    },
    Case {
        name: "unknown_schedule",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nschedule = \"linear\"\n",
        at: (6, 12),
        says: &[
            "unknown schedule \"linear\"",
            "valid schedules: none, step, cosine",
        ],
    },
    Case {
        name: "grid_value_not_an_array",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grid]\nlr = 0.1\n",
        at: (6, 6),
        says: &["grid `lr` must be an array of values", "write lr = [...]"],
    },
    Case {
        name: "grid_empty_array",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[grid]\nlr = [0.1]\nepochs = []\n",
        at: (7, 10),
        says: &["grid `epochs` has no values"],
    },
    Case {
        name: "dataset_missing",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{tmp}/nowhere\"\n",
        at: (3, 11),
        says: &["/nowhere\" does not exist", "sweep data demo"],
    },
    Case {
        name: "dataset_without_test_split",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{tmp}/no_test\"\n",
        at: (3, 11),
        says: &["is not an ImageFolder root: missing test/"],
    },
    Case {
        name: "sweep_name_with_spaces",
        toml: "[sweep]\nname = \"my sweep\"\ndataset = \"{ds}\"\n",
        at: (2, 8),
        says: &["invalid sweep name \"my sweep\"", "letters, digits"],
    },
    Case {
        name: "sweep_name_missing",
        toml: "# no name\n[sweep]\ndataset = \"{ds}\"\n",
        at: (2, 1),
        says: &["missing field `name`"],
    },
    Case {
        name: "unknown_metric",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\nmetric = \"acc\"\n",
        at: (4, 10),
        says: &[
            "unknown metric \"acc\"",
            "valid metrics: val_accuracy, val_loss",
        ],
    },
    Case {
        // Columns count characters, not bytes.
        name: "column_counts_characters",
        toml: "sweep = { name = \"t\", description = \"café ☕ → naïve\", metric = \"acc\", dataset = \"{ds}\" }\n",
        at: (1, 64),
        says: &["unknown metric \"acc\""],
    },
    Case {
        name: "negative_seed",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\nseeds = [0, -1]\n",
        at: (4, 13),
        says: &["a seed must be ≥ 0"],
    },
    Case {
        name: "invalid_timeout",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[resources]\ntimeout = \"soon\"\n",
        at: (6, 11),
        says: &["invalid timeout \"soon\"", "\"90m\""],
    },
    Case {
        name: "cpu_workers_zero",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[resources]\ncpu_workers = 0\n",
        at: (6, 15),
        says: &["`cpu_workers` must be between 1 and 256, got 0"],
    },
    Case {
        name: "cpu_workers_not_a_number",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[resources]\ncpu_workers = \"all\"\n",
        at: (6, 15),
        says: &[
            "`cpu_workers` must be \"auto\" or a number of trials, got \"all\"",
            "cpu_workers = 2",
        ],
    },
    Case {
        name: "gpus_not_a_list",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[resources]\ngpus = \"some\"\n",
        at: (6, 8),
        says: &[
            "`gpus` must be \"all\" or a list of device indices",
            "gpus = [0, 1]",
        ],
    },
    Case {
        name: "pretrained_file_missing",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[pretrained]\nresnet18 = \"{tmp}/weights/resnet18.safetensors\"\n",
        at: (6, 12),
        says: &["resnet18.safetensors\" does not exist"],
    },
    Case {
        name: "pretrained_key_not_a_backbone",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[pretrained]\nresnet = \"{tmp}/weights/resnet.safetensors\"\n",
        at: (6, 1),
        says: &["unknown backbone \"resnet\"", "valid backbones:"],
    },
    // A choice TPE may propose after the startup draw (here resnet18) is
    // held to the cross-checks a grid value is: vit_b_16 at 100 px.
    Case {
        name: "tpe_choice_refused_as_a_grid_value_is",
        toml: "[sweep]\nname = \"tpe\"\ndataset = \"{ds}\"\n\n[defaults]\nimage_size = 100\n\n[random]\nsamples = 4\nsampler = \"tpe\"\nstartup = 1\nbackbone = { choice = [\"resnet18\", \"vit_b_16\"] }\n",
        at: (6, 1),
        says: &[
            "vit_b_16 needs image_size to be a multiple of 16 (its patch size), not 100",
            "sampler = \"tpe\" may propose every choice",
        ],
    },
    Case {
        name: "head_unknown_key",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nhead = { hidden = [256], dropuot = 0.1 }\n",
        at: (6, 8),
        says: &["unknown head key `dropuot`", "`hidden` and `dropout`"],
    },
    Case {
        name: "random_without_samples",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[random]\nlr = { loguniform = [0.001, 0.1] }\n",
        at: (5, 1),
        says: &["[random] needs `samples = N`"],
    },
    Case {
        name: "loguniform_low_not_positive",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[random]\nsamples = 4\nlr = { loguniform = [0.0, 0.1] }\n",
        at: (7, 6),
        says: &["`loguniform` needs", "low > 0"],
    },
    Case {
        // Used to panic inside rand (exit 101).
        name: "uniform_infinite_bound",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[random]\nsamples = 2\nlr = { uniform = [-inf, 0.1] }\n",
        at: (7, 6),
        says: &["`uniform` needs finite [low, high]"],
    },
    Case {
        // Every choice is checked, not only the ones this sweep's seed draws
        // (sweep "c" with one sample happens to draw 0.1).
        name: "random_choice_one_bad_value",
        toml: "[sweep]\nname = \"c\"\ndataset = \"{ds}\"\n\n[random]\nsamples = 1\nlr = { choice = [0.1, -1.0] }\n",
        at: (7, 6),
        says: &["`lr` must be > 0", "got -1"],
    },
    Case {
        name: "toml_unclosed_string",
        toml: "[sweep]\nname = \"t\ndataset = \"{ds}\"\n",
        at: (2, 10),
        says: &["invalid basic string"],
    },
    Case {
        name: "toml_duplicate_key",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n\n[defaults]\nlr = 0.1\nlr = 0.2\n",
        at: (7, 1),
        says: &["duplicate key `lr`"],
    },
    Case {
        name: "stopping_mode_with_median",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[grid]\nlr = [0.1]\n[stopping]\nmethod = \"median\"\nmode = \"promote\"\n",
        at: (8, 8),
        says: &[
            "`mode` applies to asha and hyperband",
            "set method = \"asha\" or \"hyperband\"",
        ],
    },
    Case {
        name: "unknown_stopping_mode",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[grid]\nlr = [0.1]\n[stopping]\nmethod = \"asha\"\nmode = \"pause\"\n",
        at: (8, 8),
        says: &["unknown stopping mode \"pause\"", "valid modes: stop"],
    },
    Case {
        name: "pbt_with_tpe",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[random]\nsamples = 12\nsampler = \"tpe\"\nlr = { loguniform = [0.001, 0.1] }\n[stopping]\nmethod = \"pbt\"\n",
        at: (9, 10),
        says: &["cannot take sampler = \"tpe\"", "sampler = \"random\""],
    },
    Case {
        name: "pbt_perturbs_batch_size",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[grid]\nlr = [0.1]\n[stopping]\nmethod = \"pbt\"\n[stopping.perturb]\nbatch_size = [0.5, 2]\n",
        at: (9, 1),
        says: &[
            "pbt cannot change `batch_size`",
            "it may change lr, weight_decay",
        ],
    },
    Case {
        name: "interval_without_pbt",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[grid]\nlr = [0.1]\n[stopping]\nmethod = \"asha\"\ninterval = 2\n",
        at: (8, 12),
        says: &["`interval` applies to method = \"pbt\" only"],
    },
    Case {
        name: "pbt_quantile_out_of_range",
        toml: "[sweep]\nname = \"t\"\ndataset = \"{ds}\"\n[grid]\nlr = [0.1]\n[stopping]\nmethod = \"pbt\"\nquantile = 0.75\n",
        at: (8, 12),
        says: &["`quantile` must be above 0 and at most 0.5, got 0.75"],
    },
];

/// Checks one failing run; returns a description of what is wrong, if anything.
fn check_failure(file: &Path, out: &Out, at: (usize, usize), says: &[&str]) -> Vec<String> {
    let stderr = &out.stderr;
    let mut problems = Vec::new();
    if out.code != Some(EXIT_BAD_INPUT) {
        problems.push(format!(
            "exit status {:?}, expected {EXIT_BAD_INPUT}",
            out.code
        ));
    }
    let location = format!("error: {}:{}:{}: ", file.display(), at.0, at.1);
    if !stderr.contains(&location) {
        problems.push(format!("stderr lacks `{location}`"));
    }
    for s in says {
        if !stderr.contains(s) {
            problems.push(format!("stderr lacks {s:?}"));
        }
    }
    if !out.stdout.is_empty() {
        problems.push(format!("unexpected stdout: {}", out.stdout));
    }
    problems
}

/// Runs one case in its own scratch directory; a description of what went wrong, if anything.
fn run_case(case: &Case) -> Option<String> {
    let s = scratch();
    let file = write(&s, case.name, case.toml);
    let out = run(&s, &file, &[]);
    let mut problems = check_failure(&file, &out, case.at, case.says);
    if s.db().exists() {
        problems.push("the database file was created".into());
    }
    if s.results().exists() {
        problems.push("the results folder was created".into());
    }
    (!problems.is_empty()).then(|| {
        format!(
            "case {}:\n  - {}\n  stderr: {}\n",
            case.name,
            problems.join("\n  - "),
            out.stderr.trim_end().replace('\n', "\n          ")
        )
    })
}

#[test]
fn every_mistake_is_located_and_explained() {
    assert!(CASES.len() >= 18, "only {} cases", CASES.len());
    let mut names = std::collections::BTreeSet::new();
    for case in CASES {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
    }
    // Each run mostly waits on loading libtorch: spread the cases over threads.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = CASES
            .chunks(CASES.len().div_ceil(threads))
            .map(|chunk| s.spawn(move || chunk.iter().filter_map(run_case).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a case thread panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.concat()
    );
}

#[test]
fn failing_runs_leave_an_existing_database_byte_identical() {
    let s = scratch();
    // Not a real database: any byte change (or a migration run) would show.
    let before: Vec<u8> = b"SQLite format 3\0 -- placeholder, must survive untouched\n"
        .iter()
        .copied()
        .chain(0u8..=255)
        .collect();
    std::fs::write(s.db(), &before).expect("write db placeholder");
    for name in [
        "unknown_top_level_table",
        "lr_grid_one_bad_value",
        "dataset_missing",
        "toml_unclosed_string",
    ] {
        let case = CASES.iter().find(|c| c.name == name).expect("case exists");
        let file = write(&s, case.name, case.toml);
        let out = run(&s, &file, &[]);
        let problems = check_failure(&file, &out, case.at, case.says);
        assert!(
            problems.is_empty(),
            "{name}: {problems:?}\nstderr: {}",
            out.stderr
        );
        let after = std::fs::read(s.db()).expect("the database file is still there");
        assert!(
            after == before,
            "{name}: the existing database changed ({} bytes → {} bytes)",
            before.len(),
            after.len()
        );
        for suffix in ["-wal", "-shm", "-journal"] {
            let side = PathBuf::from(format!("{}{suffix}", s.db().display()));
            assert!(!side.exists(), "{name}: {} was created", side.display());
        }
    }
}

#[test]
fn missing_sweep_file_names_the_path() {
    let s = scratch();
    let file = s.path("sweeps").join("does-not-exist.toml");
    let out = run(&s, &file, &[]);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(EXIT_BAD_INPUT), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {}:1:1: cannot read sweep file",
            file.display()
        )),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("help: check the path"), "stderr: {stderr}");
    assert!(
        !s.db().exists(),
        "the database file was created; stderr: {stderr}"
    );
}

const VALID: &str = "\
# 2 backbones × 2 learning rates × 2 seeds = 8 trials.
[sweep]
name = \"dry-run-check\"
dataset = \"{ds}\"
seeds = [0, 1]

[defaults]
epochs = 2
image_size = 64
batch_size = 16

[grid]
backbone = [\"resnet18\", \"resnet34\"]
lr = [
  0.01,
  0.003,
]

[resources]
timeout = \"90m\"
cpu_workers = 2
";

/// The ten-hex-digit trial ids of a dry-run table, in order.
fn trial_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('│').map(str::trim).collect();
            // "│ # │ trial │ ..." → ["", "#", "trial", ...]
            let id = cells.get(2)?;
            (cells.get(1)?.parse::<usize>().is_ok()
                && id.len() == 10
                && id.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| id.to_string())
        })
        .collect()
}

#[test]
fn dry_run_lists_the_plan_and_writes_nothing() {
    let s = scratch();
    let file = write(&s, "valid", VALID);
    let out = run(&s, &file, &["--dry-run"]);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(
            "sweep dry-run-check — 8 trials planned (dry run: nothing written or launched)"
        ),
        "stdout: {stdout}"
    );
    let ids = trial_ids(stdout);
    assert_eq!(ids.len(), 8, "expected 8 trial rows; stdout: {stdout}");
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 8, "trial ids repeat; stdout: {stdout}");
    for (key, value) in [
        ("backbone", "resnet18"),
        ("backbone", "resnet34"),
        ("lr", "0.01"),
        ("lr", "0.003"),
        ("seed", "1"),
    ] {
        assert!(
            stdout.contains(key) && stdout.contains(value),
            "dry run lacks {key} {value}; stdout: {stdout}"
        );
    }
    assert!(!s.db().exists(), "the dry run created the database");
    assert!(
        !s.results().exists(),
        "the dry run created the results folder"
    );

    // The plan is deterministic: same file, same ids in the same order.
    let again = run(&s, &file, &["--dry-run"]);
    assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
    assert_eq!(
        trial_ids(&again.stdout),
        ids,
        "a second dry run planned different trials"
    );
    assert!(!s.db().exists(), "the second dry run created the database");
}
