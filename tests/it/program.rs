//! `[program]`: a user's own training program as the trial process, with the
//! real binary and real processes (small POSIX shell programs; the PyTorch
//! example with the project's PyTorch). What the program gets (argv, env,
//! parameters file), what it gives (records of any name, its log, its exit),
//! how it is stopped (SIGTERM, SIGKILL after `stop_grace`), and that crashes
//! and Ctrl-C lose nothing and leave nothing running.
use crate::common::{self, EXIT_BAD_INPUT, Scratch, alive, assert_all_die, prerequisites};
use std::time::Duration;

/// A scratch folder with `prog.sh` (the given shell body) and `NAME.toml`.
fn program(s: &Scratch, body: &str) {
    s.write("prog.sh", format!("#!/bin/sh\n{body}\n"));
}

fn sweep_toml(s: &Scratch, name: &str, rest: &str) -> std::path::PathBuf {
    s.write(
        format!("{name}.toml"),
        format!("[sweep]\nname = \"{name}\"\n{rest}\n"),
    )
}

fn ids_by(db: &common::Db, key: &str) -> Vec<(String, String)> {
    db.query(&format!(
        "SELECT id, json_extract(params, '$.{key}') || '' FROM trials ORDER BY ordinal"
    ))
}

#[test]
fn the_program_gets_its_argv_environment_and_parameters_file() {
    let s = Scratch::new();
    program(
        &s,
        r#"d=$SWEEP_TRIAL_DIR
for a in "$@"; do printf '%s\n' "$a"; done > "$d/argv"
env | grep -E '^(SWEEP_|CUDA_VISIBLE_DEVICES=|PYTHONUNBUFFERED=|MY_VAR=)' | sort > "$d/env"
cp "$SWEEP_PARAMS" "$d/params.copy"
pwd > "$d/pwd"
sh -c 'sleep 300' &
echo $! > "$d/bg.pid"
echo '{"epoch": 1, "score": 0.5}'"#,
    );
    s.fresh_dir("work");
    let file = sweep_toml(
        &s,
        "args",
        r#"metric = "score"
[program]
command = ["sh", "../prog.sh", "--lr={lr}", "{name}", "{hidden}", "{amp}", { flag = "--amp", when = "amp" }, "{{x}}", "{trial_dir}", "{trial_id}/{attempt}/{sweep}", "{seed}"]
workdir = "work"
env = { MY_VAR = "hello world" }
[defaults]
lr = 0.0003
name = "a b"
hidden = [512, 256]
[grid]
amp = [true, false]
[resources]
trials_per_gpu = 1
"#,
    );
    // The background child holds the program's stdout: the trial must end
    // with the program, not 300 s later with the child.
    s.run(&file)
        .env("SWEEP_FAKE_GPUS", "2")
        .output_within(Duration::from_secs(120))
        .expect_success();
    let db = s.open_db();
    let trials = ids_by(&db, "amp");
    assert_eq!(trials.len(), 2);
    for (id, amp) in &trials {
        let dir = s.results().join("args").join(id);
        let dir_abs = std::path::absolute(&dir).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let mut expect = vec![
            "--lr=0.0003".to_string(),
            "a b".into(),
            "512,256".into(),
            amp.replace('1', "true").replace('0', "false"),
        ];
        if amp == "1" {
            expect.push("--amp".into());
        }
        expect.extend([
            "{x}".into(),
            dir_abs.display().to_string(),
            format!("{id}/1/args"),
            "0".into(),
        ]);
        assert_eq!(
            read("argv").lines().collect::<Vec<_>>(),
            expect,
            "trial {id}"
        );
        let env = read("env");
        let device: String =
            db.scalar_with("SELECT device FROM attempts WHERE trial_id = ?", &[id]);
        let gpu = device.strip_prefix("cuda:").expect("a GPU slot");
        for want in [
            format!("SWEEP_TRIAL_ID={id}"),
            format!("SWEEP_TRIAL_DIR={}", dir_abs.display()),
            "SWEEP_ATTEMPT=1".into(),
            format!("SWEEP_PARAMS={}", dir_abs.join("params.json").display()),
            format!("CUDA_VISIBLE_DEVICES={gpu}"),
            "PYTHONUNBUFFERED=1".into(),
            "MY_VAR=hello world".into(),
        ] {
            assert!(env.lines().any(|l| l == want), "{want} missing from\n{env}");
        }
        let params: serde_json::Value = serde_json::from_str(&read("params.copy")).unwrap();
        let stored: String = db.scalar_with("SELECT params FROM trials WHERE id = ?", &[id]);
        assert_eq!(
            params,
            serde_json::from_str::<serde_json::Value>(&stored).unwrap()
        );
        assert_eq!(params["hidden"], serde_json::json!([512, 256]));
        assert_eq!(
            read("pwd").trim(),
            std::path::absolute(s.path("work"))
                .unwrap()
                .display()
                .to_string()
        );
        // What the program left running went with it.
        let bg: i32 = read("bg.pid").trim().parse().unwrap();
        assert!(
            !alive(bg),
            "the program's background child {bg} outlived it"
        );
    }
    let devices: Vec<String> = db
        .query::<(String,)>("SELECT device FROM attempts ORDER BY device")
        .into_iter()
        .map(|(d,)| d)
        .collect();
    assert_eq!(devices, ["cuda:0", "cuda:1"], "one trial per GPU");
}

/// The shell example, one trial at a time (so ASHA's verdicts follow from the
/// known curve): the three best learning rates run to the end, the others are
/// stopped at the first rung, and every stopped trial keeps what it reported.
#[test]
fn the_shell_example_is_swept_with_asha_and_ranked_by_its_own_metric() {
    let s = Scratch::new();
    let file = s.write(
        "shell.toml",
        common::shell_example("[resources]\ncpu_workers = 1"),
    );
    let out = s.run(&file).env("TRAIN_SLEEP", "0.05").output();
    out.expect_success();
    let db = s.open_db();
    let status: Vec<(String, String, i64)> = db.query(
        "SELECT json_extract(params, '$.lr') || '', status, epochs_done FROM trials ORDER BY ordinal",
    );
    assert_eq!(
        status,
        [
            ("0.1".to_string(), "done".to_string(), 9),
            ("0.03".into(), "done".into(), 9),
            ("0.01".into(), "done".into(), 9),
            ("0.003".into(), "pruned".into(), 1),
            ("0.001".into(), "pruned".into(), 1),
            ("0.0003".into(), "pruned".into(), 1),
        ],
        "{}",
        out.report()
    );
    // Decisions are on the program's metric; a pruned trial keeps its records.
    assert_eq!(
        db.count("SELECT COUNT(*) FROM decisions WHERE metric = 'val_acc' AND action = 'stop'"),
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.status = 'pruned' AND m.split = 'epoch' AND m.name = 'val_acc'"),
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'test' AND name = 'test_acc'"),
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE finished_at IS NULL"),
        0
    );
    // The known curve, to the digit the program printed.
    let best: f64 =
        db.scalar("SELECT MAX(value) FROM metrics WHERE split = 'epoch' AND name = 'val_acc'");
    assert!((best - 0.9 * (1.0 - 0.6f64.powi(9))).abs() < 1e-6, "{best}");
    let sweep: (String, String) =
        db.query::<(String, String)>("SELECT direction, program FROM sweeps")[0].clone();
    assert_eq!(sweep.0, "max");
    assert!(sweep.1.contains("train.sh"), "{}", sweep.1);
    // `sweep report` ranks by the program's metric, best first.
    let report = s.sweep(&["report", "--format", "json"]).output();
    report.expect_success();
    let lrs: Vec<f64> = report.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["params"]["lr"].as_f64().unwrap())
        .collect();
    assert_eq!(lrs, [0.01, 0.03, 0.1, 0.003, 0.001, 0.0003]);
    // The run's own summary is that ranking too.
    assert!(
        out.stdout_utf8().contains("ranked by val_acc"),
        "{}",
        out.report()
    );
}

/// ASHA's verdict is SIGTERM to the program's process group: a program that
/// dies of it and one that ignores it (SIGKILLed after `stop_grace`) are both
/// `pruned`, with the values they reported.
#[test]
fn a_stopped_program_gets_sigterm_then_sigkill_after_the_grace() {
    let s = Scratch::new();
    program(
        &s,
        // stdin closed: the stop line written after SIGTERM meets a
        // closed pipe, which must not take the coordinator down (SIGPIPE).
        r#"exec 0<&-
[ "$1" = true ] && trap '' TERM
e=0
while [ $e -lt 8 ]; do
  e=$((e + 1))
  awk -v q="$2" -v e=$e 'BEGIN { printf "{\"epoch\": %d, \"acc\": %.4f}\n", e, q * e / 10 }'
  sleep 0.3
done"#,
    );
    let file = sweep_toml(
        &s,
        "term",
        &format!(
            r#"metric = "acc"
[program]
command = ["sh", {:?}, "{{ignore}}", "{{quality}}"]
[grid]
ignore = [false, true]
quality = [0.9, 0.5]
[defaults]
epochs = 8
[resources]
cpu_workers = 1
[stopping]
method = "asha"
min_epochs = 1
reduction = 2
stop_grace = 1
"#,
            s.path("prog.sh").display().to_string()
        ),
    );
    let out = s.run(&file).output_within(Duration::from_secs(120));
    out.expect_success();
    let db = s.open_db();
    type Row = (String, String, String, Option<i64>, Option<i64>);
    let rows: Vec<Row> = db.query(
        "SELECT json_extract(t.params, '$.ignore') || '', json_extract(t.params, '$.quality') || '', t.status, a.signal, a.exit_code
         FROM trials t JOIN attempts a ON a.trial_id = t.id ORDER BY t.ordinal",
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (ignore, quality, status, signal, _) in &rows {
        if quality == "0.9" {
            assert_eq!(status, "done", "{rows:?}");
        } else {
            assert_eq!(status, "pruned", "{rows:?}\n{}", out.report());
            let want = if ignore == "1" {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            assert_eq!(*signal, Some(want as i64), "ignore={ignore}: {rows:?}");
        }
    }
    assert!(out.stderr.contains("sending SIGKILL"), "{}", out.report());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials t WHERE status = 'pruned' AND (SELECT COUNT(*) FROM metrics m WHERE m.trial_id = t.id AND m.name = 'acc') >= 1"),
        2,
        "pruned trials keep the values they reported"
    );
}

#[test]
fn garbage_huge_lines_silence_and_a_crash_are_handled() {
    let s = Scratch::new();
    program(
        &s,
        r#"case $1 in
chatty)
  echo "plain log line"
  echo "{not json"
  echo '{"foo": 1}'
  echo '{"epoch": "two", "m": 1}'
  head -c 9000000 /dev/zero | tr '\0' x; echo
  echo '{"epoch": 1, "m": 0.5, "note": "hi", "bad": NaN}'
  echo '{"step": 7, "loss": 2.5}' ;;
silent) ;;
crash)
  i=0; while [ $i -lt 30 ]; do i=$((i + 1)); echo "stderr line $i" >&2; done
  exit 3 ;;
esac"#,
    );
    let file = sweep_toml(
        &s,
        "odd",
        &format!(
            r#"metric = "m"
[program]
command = ["sh", {:?}, "{{mode}}"]
[grid]
mode = ["chatty", "silent", "crash"]
[resources]
retries = 0
"#,
            s.path("prog.sh").display().to_string()
        ),
    );
    let out = s.run(&file).output();
    out.expect_exit(common::EXIT_FAILED);
    let db = s.open_db();
    let by_mode: Vec<(String, String)> = ids_by(&db, "mode");
    let id = |m: &str| by_mode.iter().find(|(_, v)| v == m).unwrap().0.clone();
    let status =
        |m: &str| -> String { db.scalar_with("SELECT status FROM trials WHERE id = ?", &[&id(m)]) };
    assert_eq!(status("chatty"), "done");
    assert_eq!(status("silent"), "done");
    assert_eq!(status("crash"), "failed");
    let rows: Vec<(String, String, f64)> = db.query_with(
        "SELECT split, name, value FROM metrics WHERE trial_id = ? ORDER BY split, name",
        &[&id("chatty")],
    );
    assert_eq!(
        rows,
        [
            ("epoch".to_string(), "m".to_string(), 0.5),
            ("step".into(), "loss".into(), 2.5)
        ]
    );
    for warning in [
        "not a metric record",
        "`epoch` must be an integer",
        "bad, note not recorded",
        "bytes ignored",
        &format!("trial {}: finished without reporting `m`", id("silent")),
    ] {
        assert!(
            out.stderr.contains(warning),
            "no {warning:?} in\n{}",
            out.report()
        );
    }
    let log = std::fs::read_to_string(
        s.results()
            .join("odd")
            .join(id("chatty"))
            .join("attempt-1.log"),
    )
    .unwrap();
    assert!(log.contains("plain log line\n{not json\n"), "{log}");
    let message: String = db.scalar_with(
        "SELECT message FROM attempts WHERE trial_id = ?",
        &[&id("crash")],
    );
    assert!(
        message.contains("code Some(3)") || message.contains("code 3"),
        "{message}"
    );
    assert!(
        message.contains("stderr line 30") && message.contains("stderr line 11"),
        "{message}"
    );
    assert!(
        !message.contains("stderr line 10\n"),
        "only the last 20 lines: {message}"
    );
}

#[test]
fn mistakes_in_program_sweeps_are_exit_2_and_nothing_is_written() {
    let s = Scratch::new();
    program(&s, "exit 0");
    let prog = s.path("prog.sh").display().to_string();
    for (name, body, says) in [
        (
            "placeholder",
            format!(
                "metric = \"m\"\n[program]\ncommand = [\"sh\", {prog:?}, \"{{lrr}}\"]\n[defaults]\nlr = 0.1"
            ),
            vec!["placeholder.toml:5:", "`{lrr}`", "did you mean `lr`?"],
        ),
        (
            "missing",
            "metric = \"m\"\n[program]\ncommand = [\"no-such-trainer-xyz\", \"--lr\"]".to_string(),
            vec!["missing.toml:5:", "not found on PATH"],
        ),
        (
            "direction",
            format!("metric = \"m\"\ndirection = \"up\"\n[program]\ncommand = [\"sh\", {prog:?}]"),
            vec!["direction.toml:4:", "unknown direction \"up\""],
        ),
        (
            "nometric",
            format!("[program]\ncommand = [\"sh\", {prog:?}]"),
            vec!["needs [sweep] metric"],
        ),
        (
            "flag",
            format!(
                "metric = \"m\"\n[program]\ncommand = [\"sh\", {prog:?}, {{ flag = \"--amp\", when = \"amp\" }}]\n[grid]\namp = [1, 2]"
            ),
            vec!["needs a boolean"],
        ),
        (
            "badname",
            format!(
                "metric = \"m\"\n[program]\ncommand = [\"sh\", {prog:?}]\n[defaults]\n\"my-lr\" = 1"
            ),
            vec!["not an identifier"],
        ),
    ] {
        let file = sweep_toml(&s, name, &body);
        s.run(&file).output().expect_error(EXIT_BAD_INPUT, &says);
        assert!(!s.db().exists(), "{name}: a database was written");
        assert!(!s.results().exists(), "{name}: results/ was written");
    }
}

/// The coordinator SIGKILLed mid-sweep, then rerun: the program resumes from
/// its own checkpoint in the same `SWEEP_TRIAL_DIR`, and every epoch is
/// recorded once.
#[test]
fn kill_9_of_the_coordinator_and_a_rerun_lose_and_duplicate_nothing() {
    let s = Scratch::new();
    let file = sweep_toml(
        &s,
        "crash",
        &format!(
            r#"metric = "val_acc"
[program]
command = ["sh", {:?}, "--lr", "{{lr}}", "--epochs", "{{epochs}}", "--sleep", "0.3"]
[defaults]
epochs = 8
[grid]
lr = [0.01, 0.001]
"#,
            common::repo_path("examples/shell/train.sh")
                .display()
                .to_string()
        ),
    );
    let db = s.open_db();
    let mut run = s.run(&file).spawn();
    run.wait_for_stderr_line("an epoch record", |l| l.contains("] epoch 2: val_acc"));
    let pids: Vec<(i64,)> = db.query("SELECT pid FROM attempts WHERE pid IS NOT NULL");
    run.kill();
    let pids: Vec<i32> = pids.into_iter().map(|(p,)| p as i32).collect();
    assert_all_die(
        &pids,
        Duration::from_secs(10),
        "programs outliving their coordinator",
    );
    s.run(&file).output().expect_success();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'"),
        2
    );
    let per_epoch: Vec<(String, i64, i64)> = db.query(
        "SELECT trial_id, epoch, COUNT(*) FROM metrics WHERE split = 'epoch' AND name = 'val_acc' GROUP BY trial_id, epoch ORDER BY trial_id, epoch",
    );
    assert_eq!(per_epoch.len(), 16, "{per_epoch:?}");
    assert!(per_epoch.iter().all(|(_, _, n)| *n == 1), "{per_epoch:?}");
    for (id, _) in ids_by(&db, "lr") {
        let log =
            std::fs::read_to_string(s.results().join("crash").join(&id).join("attempt-2.log"))
                .unwrap();
        assert!(
            log.contains("resuming after epoch"),
            "trial {id} did not resume from SWEEP_TRIAL_DIR: {log}"
        );
    }
}

/// Ctrl-C stops every program's process group (children included) and the
/// run exits 130.
#[test]
fn ctrl_c_leaves_no_process_behind() {
    let s = Scratch::new();
    let marker = format!("sweep-ctrl-c-marker-{}", std::process::id());
    program(
        &s,
        &format!(
            r#"sh -c 'sleep 300; : {marker}' &
echo '{{"epoch": 1, "m": 1}}'
sleep 300"#
        ),
    );
    let file = sweep_toml(
        &s,
        "ctrlc",
        &format!(
            "metric = \"m\"\n[program]\ncommand = [\"sh\", {:?}, \"{{k}}\"]\n[grid]\nk = [1, 2]\n",
            s.path("prog.sh").display().to_string()
        ),
    );
    let mut run = s.run(&file).spawn();
    run.wait_for_stderr_line("both programs running", |l| l.contains("] epoch 1: m"));
    run.wait_for_stderr_line("both programs running", |l| l.contains("] epoch 1: m"));
    run.signal(libc::SIGINT);
    let out = run.finish_within(Duration::from_secs(30));
    out.expect_exit(130);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(&marker);
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            for p in &left {
                // SAFETY: the test's own stray processes.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            panic!("processes {left:?} outlived Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = s.open_db();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status = 'interrupted'"),
        2
    );
}

/// Pids whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// examples/pytorch: a plain PyTorch + torchvision script swept with TPE and
/// ASHA (fewer points and epochs than the file says, for CI's two cores),
/// ranked by its own metric.
#[test]
fn the_pytorch_example_runs_with_tpe_and_asha() {
    let Some(python) = python_with_torch() else {
        return;
    };
    let s = Scratch::new().with_demo_in("data/demo", 20, 32);
    let example =
        std::fs::read_to_string(common::repo_path("examples/pytorch/sweep.toml")).unwrap();
    let text = example
        .replace(
            "\"examples/pytorch/train.py\"",
            &format!(
                "{:?}",
                common::repo_path("examples/pytorch/train.py")
                    .display()
                    .to_string()
            ),
        )
        .replace("samples = 12", "samples = 5")
        .replace("startup = 6", "startup = 3")
        .replace("epochs = 9", "epochs = 3");
    assert_ne!(text, example);
    let file = s.write("pt.toml", text);
    let bin = python.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = s
        .run(&file)
        .env("PATH", path)
        .output_within(Duration::from_secs(400));
    out.expect_success();
    let db = s.open_db();
    assert_eq!(db.count("SELECT COUNT(*) FROM trials"), 5);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM proposals"),
        5,
        "TPE proposed after the startup draws"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM trials WHERE status NOT IN ('done', 'pruned')"),
        0,
        "{}",
        out.report()
    );
    assert!(db.count("SELECT COUNT(*) FROM trials WHERE status = 'done'") >= 1);
    assert!(db.count("SELECT COUNT(*) FROM decisions WHERE metric = 'val_acc'") >= 1);
    for name in ["train_loss", "train_acc", "val_loss", "val_acc"] {
        assert!(
            db.count(&format!(
                "SELECT COUNT(*) FROM metrics WHERE split = 'epoch' AND name = '{name}'"
            )) >= 5,
            "{name}"
        );
    }
    assert!(
        db.count("SELECT COUNT(*) FROM metrics WHERE split = 'test' AND name = 'test_acc'") >= 1
    );
}

/// The Python with torch and torchvision that `make test` exports as
/// SWEEP_PYTHON (the one the project installs libtorch from).
fn python_with_torch() -> Option<std::path::PathBuf> {
    match std::env::var_os("SWEEP_PYTHON").map(std::path::PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            prerequisites::missing(
                "SWEEP_PYTHON (the Python with torch)",
                "`make test` exports it; or set SWEEP_PYTHON=~/.cache/sweep/torch-2.11.0/bin/python",
            );
            None
        }
    }
}

/// TPE models a program's metric with its direction: a loss (minimised by
/// default) whose minimum is at x = 3 draws the proposals there. One trial
/// at a time, so that every proposal sees the same history run after run.
#[test]
fn tpe_minimises_a_programs_loss() {
    let s = Scratch::new();
    program(
        &s,
        r#"awk -v x="$1" 'BEGIN { printf "{\"epoch\": 1, \"val_loss\": %.6f}\n", (x - 3) ^ 2 }'"#,
    );
    let file = sweep_toml(
        &s,
        "tpe-loss",
        &format!(
            r#"metric = "val_loss"
[program]
command = ["sh", {:?}, "{{x}}"]
[random]
samples = 24
sampler = "tpe"
startup = 6
x = {{ uniform = [0.0, 10.0] }}
[resources]
cpu_workers = 1
"#,
            s.path("prog.sh").display().to_string()
        ),
    );
    s.run(&file).output().expect_success();
    let db = s.open_db();
    let mut tpe: Vec<f64> = db
        .query::<(f64,)>(
            "SELECT ABS(json_extract(params, '$.x') - 3) FROM proposals WHERE sampler = 'tpe'",
        )
        .into_iter()
        .map(|(d,)| d)
        .collect();
    tpe.sort_by(f64::total_cmp);
    assert_eq!(tpe.len(), 18);
    // Uniform draws on [0, 10] are 2.9 from x = 3 on average; proposals that
    // maximised the loss would sit near 0 or 10.
    let median = (tpe[8] + tpe[9]) / 2.0;
    assert!(
        median < 1.5,
        "TPE's proposals are not drawn to the minimum: |x - 3| {tpe:.2?}"
    );
    assert!(tpe[0] < 0.2, "no proposal near the minimum: {tpe:.2?}");
    let sweep: (String,) = db.query::<(String,)>("SELECT direction FROM sweeps")[0].clone();
    assert_eq!(sweep.0, "min");
}
