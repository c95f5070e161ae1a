//! The read side of a `[program]` sweep (a user's own training program as the
//! trial): `report` (every format, `--best` with the program's own names,
//! `--group-by`, `--where`), `status`, `show`, `plot` and `report --html`
//! on a database written the way `sweep run` writes one: the store's
//! `register`, then the recorder fed the program's `Record` messages.
//!
//! The fixture, sweep `mylab` (`[sweep] metric = "val_acc"`, direction max):
//!
//! | trial | lr | dropout | val_acc by epoch | val_loss by epoch | test_acc (epoch) | step `loss` | status | wall s |
//! |---|---|---|---|---|---|---|---|---|
//! | a1… | 0.01 | 0.1 | 0.5, **0.8**, 0.6 | 0.9, **0.3**, 0.62 | 0.9 (2), **0.66 (3)** | 3 records | done | 30 |
//! | b2… | 0.001 | 0.1 | 0.4, **0.75** | 1.0, **0.5** | 0.7 (2) | - | done | 20 |
//! | c3… | 0.01 | 0.3 | **0.72** | **0.4** | - | - | pruned | 5 |
//! | d4… | 0.001 | 0.3 | - | - | - | 2 records | done | 10 |
//!
//! Ranked by the best over the epochs, a1 (0.8) leads; ranked by the last
//! value it would trail. By val_loss (lower is better, by its name) a1 (0.3)
//! leads; by its last value it would trail. By test_acc (the last reported)
//! b2 (0.7) leads a1 (0.66, although a1 once reported 0.9). d4 never
//! reported val_acc: unranked, listed last.
//!
//! A second program sweep, `minscore` (metric `score`, direction min), ranks
//! its own metric the sweep's way although the name says nothing; a built-in
//! sweep `builtin` keeps the built-in names.
use crate::common::{self, Scratch};
use std::path::Path;
use std::sync::OnceLock;
use sweep_protocol::{TrialConfig, TrialParams, WorkerMessage};
use sweep_store::TrialStatus;
use sweep_store::recorder::{NewSweep, Recorder, StoreEvent, register};

const A: &str = "a1a1a1a1a1";
const B: &str = "b2b2b2b2b2";
const C: &str = "c3c3c3c3c3";
const D: &str = "d4d4d4d4d4";
const S1: &str = "e5e5e5e5e5";
const S2: &str = "f6f6f6f6f6";

fn params(kv: serde_json::Value) -> TrialParams {
    TrialParams::Program(kv.as_object().cloned().unwrap())
}

fn record(trial: &str, epoch: Option<u32>, step: Option<u64>, kv: &[(&str, f64)]) -> StoreEvent {
    StoreEvent::Worker {
        trial: trial.into(),
        attempt: 1,
        msg: WorkerMessage::Record {
            epoch,
            step,
            values: kv.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        },
    }
}

fn started(trial: &str) -> StoreEvent {
    StoreEvent::AttemptStarted {
        trial: trial.into(),
        attempt: 1,
        pid: None,
        device: "cpu".into(),
        batch_size: 0,
    }
}

fn status(trial: &str, status: TrialStatus) -> StoreEvent {
    StoreEvent::TrialStatus {
        trial: trial.into(),
        status,
    }
}

fn ended(trial: &str) -> StoreEvent {
    StoreEvent::AttemptEnded {
        trial: trial.into(),
        attempt: 1,
        exit_code: Some(0),
        signal: None,
        error_class: None,
        message: None,
    }
}

async fn write_fixture(db: &Path) {
    let pool = sweep_store::db::open(db, true).await.unwrap();
    let pa = params(serde_json::json!({"lr": 0.01, "dropout": 0.1, "epochs": 3, "seed": 0}));
    let pb = params(serde_json::json!({"lr": 0.001, "dropout": 0.1, "epochs": 3, "seed": 0}));
    let pc = params(serde_json::json!({"lr": 0.01, "dropout": 0.3, "epochs": 3, "seed": 0}));
    let pd = params(serde_json::json!({"lr": 0.001, "dropout": 0.3, "epochs": 3, "seed": 0}));
    let command = r#"["python","train.py","--lr","{lr}","--dropout","{dropout}"]"#;
    register(
        &pool,
        &NewSweep {
            name: "mylab",
            file: "mylab.toml".into(),
            toml: "",
            description: None,
            metric: "val_acc",
            maximize: true,
            program: Some(command.into()),
            dataset: String::new(),
            dataset_hash: "",
            system_info: serde_json::json!({}),
            trials: vec![(A, &pa), (B, &pb), (C, &pc), (D, &pd)],
        },
    )
    .await
    .unwrap();
    let s1 = params(serde_json::json!({"width": 8}));
    let s2 = params(serde_json::json!({"width": 16}));
    register(
        &pool,
        &NewSweep {
            name: "minscore",
            file: "minscore.toml".into(),
            toml: "",
            description: None,
            metric: "score",
            maximize: false,
            program: Some(r#"["./train.sh"]"#.into()),
            dataset: String::new(),
            dataset_hash: "",
            system_info: serde_json::json!({}),
            trials: vec![(S1, &s1), (S2, &s2)],
        },
    )
    .await
    .unwrap();
    let builtin = TrialParams::Builtin(TrialConfig::default());
    register(
        &pool,
        &NewSweep {
            name: "builtin",
            file: "builtin.toml".into(),
            toml: "",
            description: None,
            metric: "val_accuracy",
            maximize: true,
            program: None,
            dataset: "data".into(),
            dataset_hash: "h",
            system_info: serde_json::json!({}),
            trials: vec![("0a0a0a0a0a", &builtin)],
        },
    )
    .await
    .unwrap();
    let (rec, writer) = Recorder::spawn(&pool).await.unwrap();
    for t in [A, B, C, D, S1, S2] {
        rec.send(started(t));
        rec.send(status(t, TrialStatus::Running));
    }
    // a1: best val_acc 0.8 at epoch 2, last 0.6; best val_loss 0.3; test_acc 0.9 then 0.66.
    for (e, acc, loss) in [(1, 0.5, 0.9), (2, 0.8, 0.3), (3, 0.6, 0.62)] {
        rec.send(record(
            A,
            Some(e),
            None,
            &[("val_acc", acc), ("val_loss", loss)],
        ));
    }
    rec.send(record(A, Some(2), None, &[("test_acc", 0.9)]));
    rec.send(record(A, Some(3), None, &[("test_acc", 0.66)]));
    for (s, v) in [(10, 2.0), (20, 1.5), (30, 1.1)] {
        rec.send(record(A, None, Some(s), &[("loss", v)]));
    }
    // b2
    for (e, acc, loss) in [(1, 0.4, 1.0), (2, 0.75, 0.5)] {
        rec.send(record(
            B,
            Some(e),
            None,
            &[("val_acc", acc), ("val_loss", loss)],
        ));
    }
    rec.send(record(B, Some(2), None, &[("test_acc", 0.7)]));
    // c3: one epoch, then pruned.
    rec.send(record(
        C,
        Some(1),
        None,
        &[("val_acc", 0.72), ("val_loss", 0.4)],
    ));
    // d4: step records only; it never reports the sweep's metric.
    for (s, v) in [(5, 3.0), (15, 2.5)] {
        rec.send(record(D, Some(1), Some(s), &[("loss", v)]));
    }
    // minscore: lower is better for its metric, whatever the name says.
    rec.send(record(S1, Some(1), None, &[("score", 0.5), ("a,b", 1.0)]));
    rec.send(record(S2, Some(1), None, &[("score", 0.2), ("a,b", 2.0)]));
    for t in [A, B, C, D, S1, S2] {
        rec.send(ended(t));
        rec.send(status(
            t,
            if t == C {
                TrialStatus::Pruned
            } else {
                TrialStatus::Done
            },
        ));
    }
    rec.flush().await.unwrap();
    drop(rec);
    writer.await.unwrap().unwrap();
    // The coordinator sets a program trial's wall time when it ends.
    for (t, w) in [(A, 30.0), (B, 20.0), (C, 5.0), (D, 10.0)] {
        sqlx::query("UPDATE trials SET wall_s = ? WHERE id = ?")
            .bind(w)
            .bind(t)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

fn fixture() -> &'static Scratch {
    static F: OnceLock<Scratch> = OnceLock::new();
    F.get_or_init(|| {
        let s = Scratch::until_exit();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(write_fixture(&s.db()));
        s
    })
}

fn ok(args: &[&str]) -> String {
    let out = fixture().sweep(args).output();
    out.expect_success();
    out.stdout_utf8().to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = fixture().sweep(args).output();
    out.expect_success();
    out.json()
}

/// The trial ids of a json report, in row order.
fn order(r: &serde_json::Value) -> Vec<String> {
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["trial"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_default_ranking_is_the_sweeps_metric_best_over_the_epochs() {
    let r = json(&["report", "--sweep", "mylab", "--format", "json"]);
    assert_eq!(order(&r), [A, B, C, D]);
    assert_eq!(r["metric"], "val_acc");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows[0]["metrics"]["val_acc"], 0.8);
    assert_eq!(rows[0]["rank"], 1);
    assert_eq!(rows[2]["status"], "pruned");
    assert_eq!(rows[3]["rank"], serde_json::Value::Null);
    assert_eq!(rows[3]["metrics"]["val_acc"], serde_json::Value::Null);
    assert_eq!(rows[0]["wall_s"], 30.0);
    assert_eq!(rows[0]["epochs"], 3);
    // No columns of the built-in trainer that would always be empty.
    for k in ["val_accuracy", "test_accuracy", "test_loss", "images_per_s"] {
        assert!(rows[0].get(k).is_none(), "{k} in {}", rows[0]);
    }
    assert_eq!(r["program"]["unranked"], 1);
    assert_eq!(r["program"]["sweep_metric"], "val_acc");
    assert_eq!(r["checkpoints_picked_by"], serde_json::Value::Null);
}

#[test]
fn the_table_has_the_programs_columns_and_says_who_is_unranked() {
    let t = ok(&["report", "--sweep", "mylab"]);
    assert!(
        t.starts_with(
            "sweep mylab — 4 trials, ranked by val_acc (highest over the epochs, higher is better)\n"
        ),
        "{t}"
    );
    let header = t.lines().nth(2).unwrap();
    let cells: Vec<&str> = header
        .split('│')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "rank", "trial", "lr", "dropout", "val_acc", "epochs", "status", "wall s"
        ],
        "{t}"
    );
    let row_of = |id: &str| t.lines().find(|l| l.contains(id)).unwrap().to_string();
    assert!(row_of(A).contains("│ 1    │"), "{t}");
    assert!(row_of(A).contains("0.8000"), "{t}");
    assert!(row_of(C).contains("pruned at epoch 1"), "{t}");
    assert!(row_of(D).starts_with("│ -    │"), "{t}");
    assert!(
        t.ends_with("1 trial(s) did not report val_acc: listed last, unranked\n"),
        "{t}"
    );
    let md = ok(&["report", "--sweep", "mylab", "--format", "markdown"]);
    assert!(
        md.starts_with("**sweep mylab — 4 trials, ranked by val_acc"),
        "{md}"
    );
    assert!(md.contains("| rank | trial "), "{md}");
    assert!(
        md.ends_with("\n1 trial(s) did not report val_acc: listed last, unranked\n"),
        "{md}"
    );
}

#[test]
fn another_epoch_metric_ranks_by_its_best_value_in_its_own_direction() {
    // val_loss: lower is better (its name), best over the epochs: a1 0.3, c3 0.4, b2 0.5.
    let r = json(&[
        "report", "--sweep", "mylab", "--best", "val_loss", "--format", "json",
    ]);
    assert_eq!(order(&r), [A, C, B, D]);
    assert_eq!(r["ranked_by"], "lowest over the epochs, lower is better");
    assert_eq!(
        r["program"]["columns"],
        serde_json::json!(["val_acc", "val_loss"])
    );
    assert_eq!(r["rows"][0]["metrics"]["val_loss"], 0.3);
    assert_eq!(r["rows"][0]["metrics"]["val_acc"], 0.8);
    let t = ok(&["report", "--sweep", "mylab", "--best", "val_loss"]);
    assert!(t.contains("; the sweep's metric is val_acc"), "{t}");
    assert!(t.contains("1 trial(s) did not report val_loss"), "{t}");
}

#[test]
fn a_test_metric_ranks_by_its_last_value() {
    let r = json(&[
        "report", "--sweep", "mylab", "--best", "test_acc", "--format", "json",
    ]);
    assert_eq!(order(&r), [B, A, C, D]);
    assert_eq!(r["rows"][1]["metrics"]["test_acc"], 0.66);
    assert_eq!(r["program"]["unranked"], 2);
    assert_eq!(r["rows"][2]["rank"], serde_json::Value::Null);
    let t = ok(&["report", "--sweep", "mylab", "--best", "test_acc"]);
    assert!(t.contains("last reported value, higher is better"), "{t}");
    assert!(t.contains("2 trial(s) did not report test_acc"), "{t}");
}

#[test]
fn time_ranks_a_program_sweep_by_wall_time() {
    let r = json(&[
        "report", "--sweep", "mylab", "--best", "time", "--format", "json",
    ]);
    assert_eq!(order(&r), [C, D, B, A]);
    assert_eq!(r["program"]["unranked"], 0);
}

#[test]
fn the_sweeps_direction_ranks_its_own_metric() {
    // `score` would be "higher is better" by its name; the sweep says min.
    let r = json(&["report", "--sweep", "minscore", "--format", "json"]);
    assert_eq!(order(&r), [S2, S1]);
    assert_eq!(r["ranked_by"], "lowest over the epochs, lower is better");
    // Any other name goes by its suffix: higher is better for `a,b`.
    let csv = ok(&[
        "report", "--sweep", "minscore", "--best", "a,b", "--format", "csv",
    ]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "rank,trial,width,score,\"a,b\",epochs,status,wall_s"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("1,{S2},16,0.2,2.0,1,done,")),
        "{csv}"
    );
}

#[test]
fn csv_has_the_programs_columns_and_an_empty_rank_when_unranked() {
    let csv = ok(&["report", "--sweep", "mylab", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "rank,trial,lr,dropout,val_acc,epochs,status,wall_s"
    );
    assert_eq!(lines[1], format!("1,{A},0.01,0.1,0.8,3,done,30.0"));
    assert_eq!(lines[4], format!(",{D},0.001,0.3,,0,done,10.0"));
    assert_eq!(lines.len(), 5, "{csv}");
}

#[test]
fn an_unknown_metric_is_bad_input_listing_the_sweeps_metrics() {
    fixture()
        .sweep(&["report", "--sweep", "mylab", "--best", "accuracy"])
        .output()
        .expect_error(
            common::EXIT_BAD_INPUT,
            &["sweep mylab has no metric \"accuracy\" to rank by; its metrics: val_acc, val_loss, test_acc, time"],
        );
    fixture()
        .sweep(&["report", "--sweep", "mylab", "--best", "loss"])
        .output()
        .expect_error(
            common::EXIT_BAD_INPUT,
            &["\"loss\"", "reported per step only"],
        );
    // A built-in sweep takes the built-in names, and lists them.
    fixture()
        .sweep(&["report", "--sweep", "builtin", "--best", "val_acc"])
        .output()
        .expect_error(
            common::EXIT_BAD_INPUT,
            &["sweep builtin has no metric \"val_acc\" to rank by; its metrics: accuracy, loss, val_accuracy, val_loss, time, throughput"],
        );
    fixture()
        .sweep(&[
            "report", "--sweep", "builtin", "--best", "val_loss", "--format", "json",
        ])
        .output()
        .expect_success();
}

#[test]
fn group_by_and_where_take_the_programs_parameters() {
    let g = json(&[
        "report",
        "--sweep",
        "mylab",
        "--group-by",
        "dropout",
        "--format",
        "json",
    ]);
    assert_eq!(g["metric"], "val_acc");
    assert_eq!(g["best"], 0.1);
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups[0]["n"], 2);
    assert!(
        (groups[0]["mean"].as_f64().unwrap() - 0.775).abs() < 1e-12,
        "{g}"
    );
    // d4 has no val_acc: its group has c3's value alone.
    assert_eq!(groups[1]["n"], 1);
    assert_eq!(groups[1]["trials"], serde_json::json!([C, D]));
    let t = ok(&["report", "--sweep", "mylab", "--group-by", "dropout"]);
    assert!(
        t.contains("best: dropout = 0.1 (highest mean val_acc, n = 2)"),
        "{t}"
    );
    fixture()
        .sweep(&["report", "--sweep", "mylab", "--group-by", "backbone"])
        .output()
        .expect_error(
            common::EXIT_BAD_INPUT,
            &["unknown --group-by key \"backbone\"; valid keys: dropout, epochs, lr, seed"],
        );
    let r = json(&[
        "report", "--sweep", "mylab", "--where", "lr=0.01", "--format", "json",
    ]);
    assert_eq!(order(&r), [A, C]);
}

#[test]
fn status_shows_the_sweeps_metric() {
    let t = ok(&["status", "--sweep", "mylab"]);
    assert!(
        t.starts_with("sweep mylab: 4 trials — queued 0, running 0, paused 0, done 3, pruned 1, failed 0, interrupted 0\n"),
        "{t}"
    );
    let header = t.lines().nth(2).unwrap();
    let cells: Vec<&str> = header
        .split('│')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "trial",
            "lr",
            "dropout",
            "status",
            "epoch",
            "best val_acc",
            "last val_acc",
            "attempts",
            "device"
        ],
        "{t}"
    );
    let row_of = |id: &str| t.lines().find(|l| l.contains(id)).unwrap().to_string();
    let a: Vec<String> = row_of(A)
        .split('│')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        a,
        [
            A, "0.01", "0.1", "done", "3/3", "0.8000", "0.6000", "1", "cpu"
        ]
    );
    assert!(row_of(D).contains("│ -            │ -            │"), "{t}");
}

#[test]
fn show_has_every_epoch_metric_per_epoch_and_the_test_values() {
    let t = ok(&["show", A]);
    assert!(
        t.starts_with(&format!(
            "trial {A} (sweep mylab) — done, epoch 3/3, device cpu\n"
        )),
        "{t}"
    );
    assert!(t.contains("\nparameters\n  dropout            0.1\n  epochs             3\n  lr                 0.01\n"), "{t}");
    assert!(t.contains("\nattempts\n"), "{t}");
    assert!(
        t.contains("metrics per epoch (val_acc: the sweep's metric, higher is better)\n"),
        "{t}"
    );
    let table: Vec<Vec<String>> = t
        .lines()
        .skip_while(|l| !l.starts_with("metrics per epoch"))
        .skip(1)
        .take_while(|l| !l.starts_with("best "))
        .filter(|l| l.starts_with('│'))
        .map(|l| {
            l.split('│')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        table,
        [
            vec!["epoch", "val_acc", "val_loss"],
            vec!["1", "0.5000", "0.9000"],
            vec!["2", "0.8000", "0.3000"],
            vec!["3", "0.6000", "0.6200"],
        ]
    );
    assert!(t.contains("\nbest val_acc 0.8000 at epoch 2\n"), "{t}");
    assert!(t.contains("\nstep metrics\n  loss "), "{t}");
    assert!(t.contains("2.0000 → 1.1000"), "{t}");
    assert!(t.ends_with("\ntest\n  test_acc 0.6600 (epoch 3)\n"), "{t}");
    let d = ok(&["show", D]);
    assert!(
        d.contains("val_acc (the sweep's metric) not reported: the trial is unranked"),
        "{d}"
    );
    assert!(d.ends_with("\ntest\n  no test_* values reported\n"), "{d}");
}

/// The text of every `<text>` element of an SVG document, entities decoded.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..t.find("</text>")?];
            Some(
                body.trim()
                    .replace("&apos;", "'")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}

#[test]
fn plot_draws_every_metric_the_sweeps_first() {
    let out = fixture().path("plots");
    let printed = ok(&["plot", "--sweep", "mylab", "--out", out.to_str().unwrap()]);
    let mut names: Vec<String> = printed
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = [A, B, C, D]
        .iter()
        .flat_map(|t| [format!("{t}-curves.png"), format!("{t}-curves.svg")])
        .chain(
            ["curves", "curves-val_loss", "curves-step-loss"]
                .iter()
                .flat_map(|s| [format!("{s}.png"), format!("{s}.svg")]),
        )
        .collect();
    want.sort();
    assert_eq!(names, want);
    // a1: val_acc, val_loss and the step loss: one row of three panels.
    let img = image::open(out.join(format!("{A}-curves.png"))).unwrap();
    assert_eq!((img.width(), img.height()), (1000, 330));
    let svg = std::fs::read_to_string(out.join(format!("{A}-curves.svg"))).unwrap();
    let texts = svg_texts(&svg);
    let at = |t: &str| {
        texts
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no text {t:?} in {texts:?}"))
    };
    assert!(
        at("val_acc") < at("val_loss"),
        "the sweep's metric comes first"
    );
    at("loss (per step)");
    let sweep_svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    let texts = svg_texts(&sweep_svg);
    assert!(
        texts.contains(&"val_acc (the sweep's metric, higher is better) — sweep mylab".to_string()),
        "{texts:?}"
    );
    for t in [A, B, C] {
        assert!(sweep_svg.contains(t), "{t} missing from curves.svg");
    }
    assert!(!sweep_svg.contains(D), "d4 never reported val_acc");
    let img = image::open(out.join("curves.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1000, 600));
    // One trial alone: its chart, and no note about a confusion matrix.
    let one = fixture().path("plot-one");
    let o = fixture()
        .sweep(&["plot", "--trial", D, "--out", one.to_str().unwrap()])
        .output();
    o.expect_success();
    assert!(!o.stderr.contains("confusion"), "{}", o.stderr);
    assert!(one.join(format!("{D}-curves.png")).is_file());
}

#[test]
fn the_html_report_has_the_programs_table_and_curves() {
    let file = fixture().path("mylab.html");
    ok(&[
        "report",
        "--sweep",
        "mylab",
        "--html",
        file.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        html.contains("<th>val_acc</th><th>epochs</th><th>status</th><th>wall s</th>"),
        "table header"
    );
    assert!(!html.contains("<th>val acc</th>"));
    assert!(html.contains("program <code>python train.py --lr {lr} --dropout {dropout}</code>"));
    assert!(html.contains("id=\"unranked\">1 trial(s) did not report val_acc"));
    let charts = [
        "chart-curves\"",
        "chart-curves-val_loss\"",
        "chart-curves-step-loss\"",
    ];
    let at: Vec<usize> = charts
        .iter()
        .map(|c| html.find(c).unwrap_or_else(|| panic!("{c}")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "the sweep's metric first"
    );
    let a = &html[html.find(&format!("id=\"trial-{A}\"")).unwrap()..];
    let a = &a[..a.find("</section>").unwrap()];
    assert!(a.contains("<h2>#1 trial"), "{a}");
    assert!(a.contains("class=\"chart curves\""), "{a}");
    assert!(
        a.contains(
            "<tr><td>test_acc</td><td class=\"num\">0.6600</td><td class=\"num\">3</td></tr>"
        ),
        "{a}"
    );
    let d = &html[html.find(&format!("id=\"trial-{D}\"")).unwrap()..];
    assert!(d.contains("<h2>#- trial"), "unranked");
}

/// The program query of docs/database.md returns each trial's best val_acc.
#[test]
fn the_documented_program_query_holds() {
    let doc = std::fs::read_to_string(common::repo_path("docs/database.md")).unwrap();
    let start = doc
        .find("```text\nSELECT t.id AS trial")
        .expect("docs/database.md has the program query")
        + "```text\n".len();
    let query = &doc[start..start + doc[start..].find("```").unwrap()];
    let rows: Vec<(String, f64, f64)> = fixture().open_db().query(query);
    assert_eq!(
        rows,
        [
            (A.to_string(), 0.01, 0.8),
            (B.to_string(), 0.001, 0.75),
            (C.to_string(), 0.01, 0.72)
        ]
    );
}
