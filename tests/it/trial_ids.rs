//! Trial ids never change across upgrades: a finished trial is never rerun, so
//! a changed id would rerun (and duplicate) every finished trial. The ids below
//! were planned by sweep 0.1.0 (commit 21a69d1) from tests/fixtures/pinned-ids.toml.
use crate::common;

use common::{Scratch, repo_path};

const PINNED: [&str; 22] = [
    "b4823aa934",
    "2e958956d3",
    "d81072f2d2",
    "843f573d50",
    "27da157454",
    "2a62854a9a",
    "101bb84bac",
    "ba66794a6b",
    "4aaa874a57",
    "54bd4a1d7a",
    "b9f1c392f2",
    "dcf91f2ab8",
    "d37137f967",
    "c7e4696a1e",
    "7061e115de",
    "4b1ffdbf06",
    "f862f5a57b",
    "c61cc34f2d",
    "e549c34621",
    "3b8a8d6885",
    "28390726b2",
    "5b2666fb22",
];

#[test]
fn ids_of_a_fixed_sweep_file_are_pinned() {
    // The fixture names its dataset `data/demo`, relative to the current directory.
    let s = Scratch::new().with_demo_in("data/demo", 4, 32);
    let out = s
        .sweep(&["run"])
        .arg(repo_path("tests/fixtures/pinned-ids.toml"))
        .arg("--dry-run")
        .output();
    out.expect_success();
    let ids: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('│').nth(2))
        .map(str::trim)
        .filter(|s| s.len() == 10 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(ids, PINNED, "{}", out.stdout);
}
