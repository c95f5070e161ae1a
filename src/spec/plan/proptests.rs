//! Property tests: parsing and validating a sweep file never panics, however
//! it is mangled: the answer is a plan or a located error. 64 cases per
//! property by default; set SWEEP_PROPTEST_CASES for more.
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn config() -> Config {
    let cases = std::env::var("SWEEP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A valid ImageFolder root (validation lists the image files but does
/// not decode them) and an empty weights file.
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "valid", "test"] {
        for class in ["a", "b"] {
            let d = dir.path().join("ds").join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("0.png"), b"not decoded at validation").unwrap();
        }
    }
    std::fs::write(dir.path().join("w.safetensors"), b"").unwrap();
    dir
}

/// A sweep file that uses every section and most parameters.
fn valid_file(root: &Path) -> String {
    format!(
        r#"[sweep]
name = "prop"
dataset = "{ds}"
seeds = [0, 1]
metric = "val_accuracy"
description = "property test"

[defaults]
backbone = "resnet18"
epochs = 2
image_size = 32
batch_size = 8
schedule = "step"
head = {{ hidden = [16], dropout = 0.1 }}
augment = ["hflip", "random_resized_crop"]
skip_bad_images = true

[grid]
lr = [0.01, 0.1]
optimizer = ["sgd", "adam"]

[random]
samples = 2
weight_decay = {{ loguniform = [1e-5, 1e-3] }}
gamma = {{ uniform = [0.1, 0.5] }}
batch_size = {{ choice = [16, 32] }}
step_size = {{ int = [3, 7] }}

[[trial]]
backbone = "resnet34"
lr = 0.01
momentum = 0.8
nesterov = true

[pretrained]
resnet50 = "{w}"

[resources]
gpus = "all"
trials_per_gpu = 1
cpu_workers = 1
timeout = "90m"
retries = 1
"#,
        ds = root.join("ds").display(),
        w = root.join("w.safetensors").display()
    )
}

const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "32",
    "1024",
    "100001",
    "9223372036854775807",
    "-9223372036854775808",
    "0.0",
    "-0.0",
    "1e-320",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "inf",
    "-inf",
    "nan",
    "9.999999999999998",
    "10.0",
    "0.5",
    "true",
    "false",
    "\"\"",
    "\"all\"",
    "\"resnet18\"",
    "\"vgg19_bn\"",
    "\"original\"",
    "\"sgd\"",
    "\"cosine\"",
    "\"90m\"",
    "\"0s\"",
    "\"584942417355y\"",
    "\"\\u0000\"",
    "\"../..\"",
    "[]",
    "[[]]",
    "[1, 2]",
    "[0, 0]",
    "[\"hflip\"]",
    "[1, \"a\"]",
    "{}",
    "{ hidden = [] }",
    "{ hidden = [0] }",
    "{ dropout = 1.0 }",
    "{ choice = [] }",
    "{ choice = [1] }",
    "{ uniform = [1, 1] }",
    "{ uniform = [-1e308, 1e308] }",
    "{ loguniform = [0, 1] }",
    "{ loguniform = [1e300, 1.0000000000000002e300] }",
    "{ loguniform = [9.999999999999998, 10.0] }",
    "{ int = [-1e300, 1e300] }",
    "{ int = [1.2, 1.4] }",
    "{ int = [1, 2, 3] }",
    "{ a = 1, b = 2 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
];
/// Keys to mutate with: every parameter plus other table keys and junk.
const EXTRA_KEYS: &[&str] = &[
    "seed",
    "seeds",
    "samples",
    "name",
    "dataset",
    "metric",
    "description",
    "gpus",
    "trials_per_gpu",
    "cpu_workers",
    "timeout",
    "retries",
    "resnet50",
    "x",
    "\"quoted key\"",
    "a.b",
];
fn keys() -> Vec<&'static str> {
    PARAM_KEYS
        .iter()
        .copied()
        .chain(EXTRA_KEYS.iter().copied())
        .collect()
}
const HEADERS: &[&str] = &[
    "[sweep]",
    "[defaults]",
    "[grid]",
    "[random]",
    "[[trial]]",
    "[pretrained]",
    "[resources]",
    "[[grid]]",
    "[x]",
    "[sweep.sub]",
    "[",
];

#[derive(Debug, Clone)]
enum Edit {
    InsertText(usize, String),
    Delete(usize, usize),
    SetValue(usize, usize),
    InsertLine(usize, String),
    SwapLines(usize, usize),
    DuplicateLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = prop::sample::select(keys());
    let value = prop::sample::select(VALUES);
    // Mostly edits that keep the file TOML, so that most cases reach validation.
    prop_oneof![
        1 => (any::<usize>(), prop_oneof!["\\PC{1,4}", "[\\[\\]{}=,\"'#.\n ]{1,3}"]).prop_map(|(p, t)| Edit::InsertText(p, t)),
        1 => (any::<usize>(), 1usize..20).prop_map(|(p, n)| Edit::Delete(p, n)),
        6 => (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Edit::SetValue(l, v)),
        2 => (any::<usize>(), prop_oneof![
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            prop::sample::select(HEADERS).prop_map(String::from),
            "[a-z_]{1,10} = [0-9]{1,4}",
        ]).prop_map(|(p, l)| Edit::InsertLine(p, l)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let n = lines.len().max(1);
        match e {
            Edit::InsertText(p, t) => {
                let chars: Vec<char> = text.chars().collect();
                let at = p % (chars.len() + 1);
                text = chars[..at]
                    .iter()
                    .chain(t.chars().collect::<Vec<_>>().iter())
                    .chain(chars[at..].iter())
                    .collect();
                continue;
            }
            Edit::Delete(p, len) => {
                let chars: Vec<char> = text.chars().collect();
                let at = p % (chars.len() + 1);
                let end = (at + len).min(chars.len());
                text = chars[..at].iter().chain(chars[end..].iter()).collect();
                continue;
            }
            Edit::SetValue(l, v) => {
                // Replace the value of the n-th `key = value` line.
                let assignments: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].contains(" = "))
                    .collect();
                let line = assignments.get(l % assignments.len().max(1)).copied();
                if let Some((i, k)) =
                    line.and_then(|i| lines[i].split_once(" = ").map(|(k, _)| (i, k.to_string())))
                {
                    lines[i] = format!("{k} = {}", VALUES[*v]);
                }
            }
            Edit::InsertLine(p, l) => lines.insert(p % (lines.len() + 1), l.clone()),
            Edit::SwapLines(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % n, b % n);
                }
            }
            Edit::DuplicateLine(p) => {
                if !lines.is_empty() {
                    let l = lines[p % n].clone();
                    lines.insert(p % n, l);
                }
            }
        }
        text = lines.join("\n") + "\n";
    }
    text
}

/// Parse + validate, as `sweep run` does; an error must point inside the file.
fn check(text: String) -> Result<(), TestCaseError> {
    let src = Source {
        path: PathBuf::from("prop.toml"),
        text,
    };
    let result = src.parse().and_then(|raw| build(&src, raw));
    match result {
        Ok(plan) => {
            prop_assert!(
                !plan.trials.is_empty() && plan.trials.len() <= MAX_TRIALS,
                "{} trials",
                plan.trials.len()
            );
        }
        Err(e) => {
            let lines = src.text.lines().count() + 1;
            prop_assert!(
                e.line >= 1 && e.line <= lines && e.col >= 1,
                "error outside the file: {e}\n---\n{}",
                src.text
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

#[test]
fn the_base_file_is_valid() {
    let dir = dataset();
    let src = Source {
        path: "prop.toml".into(),
        text: valid_file(dir.path()),
    };
    let plan = build(&src, src.parse().unwrap()).unwrap();
    // (2 lr × 2 optimizers × 2 draws + 1 trial) × 2 seeds
    assert_eq!(plan.trials.len(), 18);
}

#[test]
fn cpu_workers_is_auto_unless_a_number_is_given() {
    let dir = dataset();
    let base = valid_file(dir.path());
    let workers = |line: &str| {
        let src = Source {
            path: "prop.toml".into(),
            text: base.replace("cpu_workers = 1\n", line),
        };
        build(&src, src.parse().unwrap())
            .unwrap()
            .resources
            .cpu_workers
    };
    assert_eq!(workers("cpu_workers = 1\n"), CpuWorkers::Fixed(1));
    assert_eq!(workers("cpu_workers = 3\n"), CpuWorkers::Fixed(3));
    assert_eq!(workers("cpu_workers = \"auto\"\n"), CpuWorkers::Auto);
    assert_eq!(workers(""), CpuWorkers::Auto);
}

#[test]
fn mutated_sweep_files_never_panic() {
    let dir = dataset();
    let base = valid_file(dir.path());
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(edit(), 1..5), |edits| {
            check(apply_edits(&base, &edits))
        })
        .unwrap();
}

#[test]
fn one_value_swapped_never_panics() {
    // Every value of every assignment, exhaustively: small and deterministic.
    let dir = dataset();
    let base = valid_file(dir.path());
    let assignments = base.lines().filter(|l| l.contains(" = ")).count();
    for line in 0..assignments {
        for v in 0..VALUES.len() {
            check(apply_edits(&base, &[Edit::SetValue(line, v)])).unwrap();
        }
    }
}

#[test]
fn arbitrary_text_never_panics() {
    let mut runner = TestRunner::new(config());
    runner.run(&"\\PC{0,300}", check).unwrap();
    runner
        .run(&"[\\[\\]{}=,\"'#.\na-z0-9 ]{0,300}", check)
        .unwrap();
}

#[test]
fn deep_nesting_and_huge_grids_are_errors() {
    let dir = dataset();
    let base = valid_file(dir.path());
    for depth in [100, 10_000] {
        check(base.replace("epochs = 2", &format!("epochs = {}", "[".repeat(depth)))).unwrap();
        check(base.replace(
            "epochs = 2",
            &format!("epochs = {}1{}", "[".repeat(depth), "]".repeat(depth)),
        ))
        .unwrap();
    }
    // 10^8 grid points: refused before they are built.
    let values = format!(
        "[{}]",
        (1..=100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let huge = base.replace("[grid]\n", &format!("[grid]\nepochs = {values}\nstep_size = {values}\nlog_every = {values}\nmax_batches = {values}\n"));
    let src = Source {
        path: "prop.toml".into(),
        text: huge,
    };
    let e = build(&src, src.parse().unwrap()).unwrap_err();
    assert!(e.message.contains("the limit is 100000"), "{e}");
    // Adjacent large floats have equal logarithms: an error, not rand's "empty range" panic.
    let src = Source {
        path: "prop.toml".into(),
        text: base.replace(
            "{ loguniform = [1e-5, 1e-3] }",
            "{ loguniform = [1e300, 1.0000000000000002e300] }",
        ),
    };
    let e = build(&src, src.parse().unwrap()).unwrap_err();
    assert!(e.message.contains("loguniform"), "{e}");
}
