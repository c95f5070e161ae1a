//! Trial ids never change across upgrades: a finished trial is never rerun, so
//! a changed id would rerun (and duplicate) every finished trial. The ids below
//! were planned by sweep 0.1.0 (commit 21a69d1) from tests/fixtures/pinned-ids.toml.
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

const PINNED: [&str; 22] = [
    "b4823aa934", "2e958956d3", "d81072f2d2", "843f573d50", "27da157454", "2a62854a9a", "101bb84bac", "ba66794a6b", "4aaa874a57", "54bd4a1d7a", "b9f1c392f2",
    "dcf91f2ab8", "d37137f967", "c7e4696a1e", "7061e115de", "4b1ffdbf06", "f862f5a57b", "c61cc34f2d", "e549c34621", "3b8a8d6885", "28390726b2", "5b2666fb22",
];

#[test]
fn ids_of_a_fixed_sweep_file_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(BIN).args(["data", "demo", "data/demo", "--per-class", "4", "--image-size", "32"]).current_dir(dir.path()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pinned-ids.toml");
    let out = Command::new(BIN).arg("run").arg(&fixture).arg("--dry-run").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> =
        text.lines().filter_map(|l| l.split('│').nth(2)).map(str::trim).filter(|s| s.len() == 10 && s.chars().all(|c| c.is_ascii_hexdigit())).collect();
    assert_eq!(ids, PINNED, "{text}");
}
