//! What the CLI generates from its own definition at run time, and the closed
//! sets of values it takes straight from the domain enums:
//!
//! * `sweep generate man` is a roff man page naming every subcommand (what
//!   `make install` writes to share/man/man1/sweep.1);
//! * `sweep completions bash|zsh|fish` are scripts that complete the
//!   subcommands;
//! * `report --status` and `gc --keep` / `--keep-precision` take
//!   `TrialStatus`, `Keep` and `KeepPrecision` as clap value enums: a bad
//!   value is exit 2 with the valid ones listed, exactly the ones they were
//!   (`pruned` is not a `--status`).
use crate::common;

use common::{EXIT_BAD_INPUT, sweep};

/// Every subcommand of `sweep`, as `sweep --help` lists them.
const SUBCOMMANDS: [&str; 13] = [
    "run",
    "report",
    "status",
    "show",
    "plot",
    "data",
    "doctor",
    "predict",
    "gc",
    "completions",
    "generate",
    "cache",
    "bench",
];

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let out = sweep(&["generate", "man"]).output();
    out.expect_success();
    let page = out.stdout_utf8();
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH title line:\n{page}"));
    assert!(th.starts_with(".TH sweep 1 "), "title line: {th}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(
            page.lines().any(|l| l == section),
            "no {section:?}:\n{page}"
        );
    }
    // roff escapes '-' as '\-': the subcommands are listed as sweep\-run(1) …
    for sub in SUBCOMMANDS {
        let entry = format!("sweep\\-{sub}(1)");
        assert!(page.contains(&entry), "the man page lacks {entry}:\n{page}");
    }
    // Every request line is a known roff/man macro or a comment: nothing else
    // (e.g. stray text starting with '.') would render as a request.
    for line in page.lines().filter(|l| l.starts_with('.')) {
        let name = line[1..].split_whitespace().next().unwrap_or("");
        assert!(
            [
                "TH", "SH", "SS", "TP", "IP", "PP", "P", "LP", "RS", "RE", "B", "I", "BR", "IR",
                "RB", "RI", "BI", "IB", "br", "sp", "nf", "fi", "ie", "el", "\\\"", "in", "ti",
                "if", "ad", "nh", "hy", "ne", "EX", "EE",
            ]
            .contains(&name),
            "unexpected roff request {line:?}"
        );
    }
}

#[test]
fn completions_complete_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = sweep(&["completions", shell]).output();
        out.expect_success();
        let script = out.stdout_utf8();
        for sub in SUBCOMMANDS {
            assert!(
                script.contains(sub),
                "{shell} completions lack the subcommand {sub}:\n{script}"
            );
        }
        // The values of the domain enums are completed too.
        for value in ["interrupted", "best+last", "half"] {
            assert!(
                script.contains(value),
                "{shell} completions lack the value {value}"
            );
        }
    }
}

#[test]
fn report_status_takes_exactly_the_five_statuses() {
    sweep(&["report", "--status", "bogus"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &[
                "invalid value 'bogus' for '--status <STATUS>'",
                "[possible values: queued, running, done, failed, interrupted]",
            ],
        );
    // Pruned is a status of the store, not a value of `--status`.
    sweep(&["report", "--status", "pruned"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["invalid value 'pruned'"]);
}

#[test]
fn gc_keep_and_keep_precision_take_the_sweep_file_names() {
    sweep(&["gc", "--keep", "bogus"]).output().expect_error(
        EXIT_BAD_INPUT,
        &[
            "invalid value 'bogus' for '--keep <KEEP>'",
            "[possible values: best, best+last, all]",
        ],
    );
    sweep(&["gc", "--keep-precision", "bogus"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &[
                "invalid value 'bogus' for '--keep-precision <KEEP_PRECISION>'",
                "[possible values: full, half]",
            ],
        );
}

/// The values are listed bare in `--help`, as before they were enums: the
/// enums' doc comments are for readers of the code.
#[test]
fn gc_help_lists_the_values_bare() {
    let out = sweep(&["gc", "--help"]).output();
    out.expect_success();
    let help = out.stdout_utf8();
    assert!(
        help.contains("[possible values: best, best+last, all]"),
        "{help}"
    );
    assert!(help.contains("[possible values: full, half]"), "{help}");
    assert!(!help.contains("Possible values:"), "{help}");
}
