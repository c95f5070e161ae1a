//! `[sweep] tensorboard = "DIR"`: `sweep run` keeps the TensorBoard files of
//! its sweep up to date while it runs (the same files as `sweep export
//! tensorboard DIR --sweep NAME --follow`), read back with TensorBoard's own
//! reader; and the key's mistakes, located in the sweep file.
use super::export::{
    assert_equals_db, event_file_if_any, expected, read_back, run_blocked_after_first_epoch,
    wait_for_first_epoch_in_tensorboard,
};
use crate::common::{EXIT_BAD_INPUT, Scratch, prerequisites};
use std::time::Duration;

#[test]
fn sweep_run_keeps_its_tensorboard_files_up_to_date() {
    let Some(python) = prerequisites::export_python() else {
        return;
    };
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    // Relative to where `sweep run` runs (the scratch folder), like `dataset`.
    let file = s
        .sweep_file("live")
        .sweep(r#"tensorboard = "tb/runs""#)
        .tiny_training()
        .write();
    let limit = Duration::from_secs(120);
    let (run, db) = run_blocked_after_first_epoch(&s, &file, limit);
    // The first epoch shows up in TensorBoard while the trial still runs.
    let logdir = s.path("tb/runs/live");
    let trial: String = db.scalar("SELECT id FROM trials");
    wait_for_first_epoch_in_tensorboard(&python, &logdir, &db, &trial, limit);
    std::fs::write(s.fake_dir().join("release"), b"").unwrap();
    let out = run.finish_within(limit);
    out.expect_success();
    assert!(
        out.stderr
            .contains("TensorBoard files up to date in tb/runs"),
        "{}",
        out.stderr
    );
    // The final pass after the run: every row, the trial's end, the HParams experiment.
    let read = read_back(&python, &logdir);
    assert_equals_db(&read, &expected(&db));
    assert_eq!(read["runs"][&trial]["session_end"], "STATUS_SUCCESS");
    assert_eq!(read["experiment"]["metrics"][0], "valid/accuracy");

    // The same files as `sweep export tensorboard`: exporting again writes nothing.
    let again = s
        .sweep(&["export", "tensorboard", "tb/runs", "--sweep", "live"])
        .output();
    again.expect_success();
    assert!(
        again.stderr.contains(" 0 record(s) written"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_tensorboard_key_that_cannot_be_a_folder_is_located() {
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    s.write("taken", "a file");
    for (value, says) in [
        (
            r#""taken""#,
            "tensorboard \"taken\" is a file, not a folder",
        ),
        (r#""taken/runs""#, "\"taken\" is a file"),
        (r#""""#, "`tensorboard` must name a folder"),
        ("true", "invalid type: boolean `true`, expected a string"),
    ] {
        let file = s
            .sweep_file("t")
            .sweep(&format!("tensorboard = {value}"))
            .write();
        // [sweep] name (line 2), dataset (3), tensorboard (4): the value's column.
        let out = s.run(&file).fake_worker("ok").output();
        out.expect_error(EXIT_BAD_INPUT, &["t.toml:4:15", says]);
        assert!(!s.db().exists(), "nothing is written for a bad sweep file");
    }
}

#[test]
fn a_tensorboard_folder_another_export_holds_stops_the_run_before_it_starts() {
    let s =
        Scratch::new().with_one_image_per_class("data", &["train", "valid", "test"], &["a", "b"]);
    let file = s
        .sweep_file("t")
        .sweep(r#"tensorboard = "tb""#)
        .tiny_training()
        .write();
    std::fs::create_dir_all(s.path("tb")).unwrap();
    // What a running `sweep export tensorboard tb` holds.
    let lock = std::fs::File::create(s.path("tb/.sweep-export.lock")).unwrap();
    lock.try_lock().unwrap();
    s.run(&file)
        .fake_worker("ok")
        .output()
        .expect_error(EXIT_BAD_INPUT, &["another `sweep export` is writing to tb"]);
    assert_eq!(
        s.open_db().count("SELECT count(*) FROM attempts"),
        0,
        "no trial started"
    );
    drop(lock);
    s.run(&file).fake_worker("ok").output().expect_success();
    assert!(event_file_if_any(&s.path("tb/t")).is_some());
}
