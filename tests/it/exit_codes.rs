//! The exit code says what really went wrong, through the real binary, one
//! test per class (docs/cli.md#exit-codes; `sweep::error` decides by variant):
//!
//! - 2, the user's input: a broken sweep file, a trial or sweep that is not in
//!   the database, an `--out` or `--html` that cannot be what it names;
//! - 1, the machine: a database that fails a query once opened, a chart or
//!   report that cannot be written where the user pointed (a full disk, a
//!   read-only place), never reported as "your input was wrong";
//! - 130, interrupted: Ctrl-C during a run, tested with real signals in
//!   `tests/scheduler.rs` (`ctrl_c_…`, exit 130 and nothing left behind).
//!
//! The fixture is one sweep of two trials run by the scripted fake worker
//! (`tests/fake_worker.py`, mode `ok`): real metrics in a real database, in
//! well under a second.
use crate::common;

use common::{Db, EXIT_BAD_INPUT, EXIT_FAILED, Scratch};
use std::path::Path;

/// A database with sweep `codes` (two finished trials, curves and test
/// results) and those trials' ids.
fn finished_sweep() -> (Scratch, Vec<String>) {
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    let file = s
        .sweep_file("codes")
        .tiny_training()
        .grid("lr = [0.01, 0.02]")
        .write();
    s.run(&file).fake_worker("ok").output().expect_exit(0);
    let trials = s
        .open_db()
        .query::<(String,)>("SELECT id FROM trials ORDER BY ordinal")
        .into_iter()
        .map(|(t,)| t)
        .collect::<Vec<_>>();
    assert_eq!(trials.len(), 2);
    (s, trials)
}

/// A place no one can create anything in, root included.
fn unwritable(name: &str) -> String {
    let p = Path::new("/proc").join(format!("sweep-test-{}-{name}", std::process::id()));
    assert!(
        std::fs::create_dir(&p).is_err(),
        "{} is writable",
        p.display()
    );
    p.display().to_string()
}

/// A sweep file that does not parse: the user's input, before anything runs.
#[test]
fn a_broken_sweep_file_is_bad_input() {
    let s = Scratch::new();
    s.write("broken.toml", "[sweep\nname = \"x\"\n");
    s.sweep(&["run", "broken.toml"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["broken.toml:1:"]);
    assert!(!s.db().exists(), "a broken file created the database");
}

/// Names that are not in a database that works: the user's input (exit 2),
/// with the message that says so.
#[test]
fn what_is_not_in_the_database_is_bad_input() {
    let (s, trials) = finished_sweep();
    s.sweep(&["show", "0123456789"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["no trial \"0123456789\"", "sweep status"]);
    s.sweep(&["show", "nosuchtrial"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["is not a trial id"]);
    s.sweep(&["status", "--sweep", "nope"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &["no sweep named \"nope\"", "known sweeps: codes"],
        );
    s.sweep(&["plot", "--trial", "0123456789", "--out", "plots"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["no trial \"0123456789\""]);
    // Both trial ids start with a hex digit; their shared first digit, if
    // any, is ambiguous.
    let (a, b) = (&trials[0][..1], &trials[1][..1]);
    if a == b {
        s.sweep(&["show", a])
            .output()
            .expect_error(EXIT_BAD_INPUT, &["is ambiguous", "give more digits"]);
    }
}

/// `--out` that names a file, `--html` that names a folder, `data show` to
/// a file type it cannot write: the user's input (exit 2). `--html DIR` was
/// exit 1 before: it is what the user typed, not a failure of the machine.
#[test]
fn an_output_path_that_cannot_be_what_it_names_is_bad_input() {
    let (s, _) = finished_sweep();
    s.write("plots-file", "not a folder");
    s.sweep(&["plot", "--out", "plots-file"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &["--out", "plots-file is a file; pass a directory"],
        );
    std::fs::create_dir(s.path("report-dir")).unwrap();
    s.sweep(&["report", "--html", "report-dir"])
        .output()
        .expect_error(
            EXIT_BAD_INPUT,
            &["report-dir is a directory", "report.html"],
        );
    s.sweep(&["data", "show", "data", "--out", "overview.gif"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["unsupported file type \"gif\""]);
}

/// Charts, the HTML report and the dataset overview that cannot be written
/// where the user pointed (a read-only place; a full disk reads the same):
/// the machine's failure (exit 1), naming the path. Before, all three said 2.
#[test]
fn output_that_cannot_be_written_is_a_failure_not_bad_input() {
    let (s, trials) = finished_sweep();
    let out = unwritable("plots");
    s.sweep(&["plot", "--out", &out])
        .output()
        .expect_error(EXIT_FAILED, &["cannot create", &out]);
    // A folder where a chart file goes: the rename into place fails.
    let clash = s.path("plots").join(format!("{}-curves.png", trials[0]));
    std::fs::create_dir_all(&clash).unwrap();
    s.sweep(&["plot", "--out", "plots"])
        .output()
        .expect_error(EXIT_FAILED, &["cannot write", "-curves.png"]);
    let html = format!("{}/report.html", unwritable("html"));
    s.sweep(&["report", "--html", &html])
        .output()
        .expect_error(EXIT_FAILED, &["cannot create"]);
    let png = format!("{}/overview.png", unwritable("overview"));
    s.sweep(&["data", "show", "data", "--out", &png])
        .output()
        .expect_error(EXIT_FAILED, &["cannot create"]);
    // `data demo`: a folder that cannot be made is the machine's failure; an
    // output folder that already holds files is the user's input.
    let demo = format!("{}/demo", unwritable("demo"));
    s.sweep(&["data", "demo", &demo])
        .output()
        .expect_error(EXIT_FAILED, &["creating parent directory"]);
    s.sweep(&["data", "demo", "data"])
        .output()
        .expect_error(EXIT_BAD_INPUT, &["already exists and is not empty"]);
}

/// A database that opens but fails the query (here: its `sweeps` table is
/// gone, as after damage or a foreign tool's edit) is the machine's failure:
/// exit 1 with the database's own reason, never "no sweep named …" or
/// "no trial …", and never exit 2. Before, `resolve_sweep`/`resolve_trial`
/// folded the error into the "not found" string and exited 2.
#[test]
fn a_database_that_fails_a_query_is_a_failure_not_bad_input() {
    let (s, trials) = finished_sweep();
    Db::open(s.db()).execute("ALTER TABLE sweeps RENAME TO sweeps_elsewhere");
    let commands: [&[&str]; 5] = [
        &["status"],
        &["report"],
        &["status", "--sweep", "codes"],
        &["show", &trials[0]],
        &["plot", "--out", "plots"],
    ];
    for args in commands {
        let out = s.sweep(args).label(args.join(" ")).output();
        out.expect_error(
            EXIT_FAILED,
            &["reading the database", "no such table: sweeps"],
        );
        assert!(
            !out.stderr.contains("no sweep named") && !out.stderr.contains("no trial"),
            "{}: {}",
            args.join(" "),
            out.stderr
        );
    }
}

/// A database that cannot be opened: a file that is not a database is the
/// user's input (2); one the machine will not let us read (permissions here;
/// a lock held past the busy timeout or an I/O error the same way) is the
/// machine's failure (1), though the path is right.
#[test]
fn a_database_the_machine_cannot_open_is_a_failure_not_bad_input() {
    let (s, _) = finished_sweep();
    let garbage = s.path("garbage.db");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    s.sweep(&["status"])
        .db(&garbage)
        .output()
        .expect_error(EXIT_BAD_INPUT, &["cannot open database", "not a database"]);
    if !common::prerequisites::unreadable(&s.db()) {
        return;
    }
    s.sweep(&["status"])
        .without_read_override()
        .output()
        .expect_error(EXIT_FAILED, &["cannot open database"]);
}
