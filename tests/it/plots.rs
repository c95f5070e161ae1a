//! Charts, the dataset overview and the HTML report, driven through the real
//! binary on a tiny real sweep (2 trials, 12 classes, 32 px, built once per
//! test run and shared): PNGs decode at their stated sizes, SVGs are whole
//! documents, errors are clear, the HTML stands alone, and headless Chromium
//! renders it (Chromium is installed by the test when SWEEP_INSTALL_CHROMIUM=1
//! and running as root, as `make test` does; otherwise that test fails under
//! CI and is skipped, with the reason, elsewhere).
use crate::common;

use common::{Scratch, prerequisites, sweep};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The shared sweep `plots` and its two trial ids: demo data (4 train images
/// per class), resnet18 with a small head, lr 0.01 and 0.02, two epochs, then
/// one extra sweep `idle` whose only trial never ran (for the "no metrics
/// yet" errors).
fn fixture() -> &'static (Scratch, Vec<String>) {
    static F: OnceLock<(Scratch, Vec<String>)> = OnceLock::new();
    F.get_or_init(|| {
        let s = Scratch::until_exit().with_demo(4, 32);
        let file = s.sweep_file("plots").tiny_training().grid("backbone = [\"resnet18\"]\nlr = [0.01, 0.02]").write();
        let run = s.run(&file).output();
        assert!(run.succeeded(), "sweep run failed:\n{}", run.stderr);

        let db = s.open_db();
        // An older sweep with one queued trial and no metrics.
        db.execute("INSERT INTO sweeps (name, file, toml, dataset, status, created_at, updated_at) VALUES ('idle', 'idle.toml', '', 'data', 'running', 0, 0)");
        db.execute(
            "INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, created_at)
             SELECT 'feedface00', id, 0, '{\"backbone\":\"resnet18\",\"lr\":0.1,\"seed\":0}', 'resnet18', 0.1, 1, 8, 32, 0, 'queued', 0 FROM sweeps WHERE name = 'idle'",
        );
        let trials: Vec<String> = db
            .query::<(String,)>("SELECT t.id FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = 'plots' ORDER BY t.ordinal")
            .into_iter()
            .map(|(t,)| t)
            .collect();
        assert_eq!(trials.len(), 2);
        (s, trials)
    })
}

fn check_png(path: &Path, size: (u32, u32)) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!((img.width(), img.height()), size, "{}", path.display());
    let rgb = img.to_rgb8();
    let colours: HashSet<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 8,
        "{} looks blank ({} colours)",
        path.display(),
        colours.len()
    );
}

fn check_svg(path: &Path, size: Option<(u32, u32)>) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("<svg"),
        "{}: {}",
        path.display(),
        &text[..text.len().min(80)]
    );
    assert!(text.trim_end().ends_with("</svg>"), "{}", path.display());
    assert!(text.contains("<text"), "{}: no text", path.display());
    if let Some((w, h)) = size {
        assert!(
            text.contains(&format!("width=\"{w}\" height=\"{h}\"")),
            "{}: not {w}×{h}",
            path.display()
        );
    }
    text
}

/// The paths a command printed, one a line.
fn lines(s: &str) -> Vec<PathBuf> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect()
}

#[test]
fn plot_writes_every_chart_as_png_and_svg_at_its_size() {
    let (s, trials) = fixture();
    let out = s.fresh_dir("plot-all");
    let written = lines(
        &s.sweep(&["plot", "--sweep", "plots", "--out", out.to_str().unwrap()])
            .output()
            .expect_success()
            .stdout,
    );
    let mut expected: Vec<(String, (u32, u32))> = Vec::new();
    for t in trials {
        expected.push((format!("{t}-curves"), (1000, 600)));
        expected.push((format!("{t}-confusion"), (800, 800)));
    }
    expected.push(("accuracy".into(), (1000, 600)));
    expected.push(("curves".into(), (1000, 600)));
    expected.push(("class-distribution".into(), (1000, 600)));
    assert_eq!(written.len(), expected.len() * 2, "{written:?}");
    for (stem, size) in &expected {
        let png = out.join(format!("{stem}.png"));
        let svg = out.join(format!("{stem}.svg"));
        assert!(
            written.contains(&png) && written.contains(&svg),
            "{stem} not reported: {written:?}"
        );
        check_png(&png, *size);
        check_svg(&svg, Some(*size));
    }
    // Class names on the confusion heatmap, trial ids in the overlay legend.
    let confusion =
        std::fs::read_to_string(out.join(format!("{}-confusion.svg", trials[0]))).unwrap();
    for class in ["dog", "dragon", "tiger"] {
        assert!(
            confusion.contains(&format!(">\n{class}\n<"))
                || confusion.contains(&format!(">{class}<")),
            "class {class} missing"
        );
    }
    let curves = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    for t in trials {
        assert!(curves.contains(t.as_str()), "legend lacks {t}");
    }
    // Atomic writes leave no temporary files behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn plot_one_trial_by_prefix_and_clear_errors() {
    let (s, trials) = fixture();
    let out = s.fresh_dir("plot-one");
    let out = out.to_str().unwrap();
    let t = &trials[1];
    let written = lines(
        &s.sweep(&["plot", "--trial", &t[..6], "--out", out])
            .output()
            .expect_success()
            .stdout,
    );
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            format!("{t}-curves.png"),
            format!("{t}-curves.svg"),
            format!("{t}-confusion.png"),
            format!("{t}-confusion.svg")
        ]
    );
    check_png(&Path::new(out).join(format!("{t}-curves.png")), (1000, 600));

    let fails = |args: &[&str]| {
        s.sweep(&[&["plot"], args, &["--out", out]].concat())
            .output()
            .expect_failure()
            .stderr
            .clone()
    };
    let err = fails(&["--sweep", "plots", "--trial", "0000000000"]);
    assert!(err.contains("no trial \"0000000000\""), "{err}");
    let err = fails(&["--trial", "not-hex"]);
    assert!(err.contains("is not a trial id"), "{err}");
    let err = fails(&["--trial", "feedface"]);
    assert!(err.contains("trial feedface00 has no metrics yet"), "{err}");
    let err = fails(&["--sweep", "idle"]);
    assert!(err.contains("sweep idle has no metrics yet"), "{err}");
    let err = fails(&["--sweep", "nope"]);
    assert!(err.contains("no sweep named \"nope\""), "{err}");
}

#[test]
fn data_show_writes_png_and_svg_overviews() {
    let (s, _) = fixture();
    let out = s.fresh_dir("data-show");
    let png = out.join("overview.png");
    let o = sweep(&["data", "show"])
        .arg(s.data())
        .arg("--out")
        .arg(&png)
        .args(["--per-class", "3"])
        .output();
    assert_eq!(
        lines(&o.expect_success().stdout),
        std::slice::from_ref(&png)
    );
    let img = image::open(&png).unwrap();
    // 12 classes: 96 + 12 × 70 + 44 pixels high; 3 thumbnails + label + counts wide.
    assert_eq!(img.height(), 96 + 12 * 70 + 44);
    assert!(
        img.width() >= 20 + 120 + 3 * 70 + 24 + 3 * 72 + 20,
        "width {}",
        img.width()
    );
    let colours: HashSet<[u8; 3]> = img.to_rgb8().pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 256,
        "thumbnails missing? {} colours",
        colours.len()
    );

    let svg = out.join("overview.svg");
    sweep(&["data", "show"])
        .arg(s.data())
        .arg("--out")
        .arg(&svg)
        .output()
        .expect_success();
    let text = check_svg(&svg, None);
    // Default 6 per class, but the demo has 4 training images per class.
    assert_eq!(text.matches("<image ").count(), 12 * 4);
    assert!(text.contains("data:image/png;base64,"));
    assert!(text.contains("rooster"));

    let o = sweep(&["data", "show"])
        .arg(s.data())
        .arg("--out")
        .arg(out.join("x.jpg"))
        .output();
    assert!(o.expect_failure().stderr.contains("use a .png or .svg"));
    let o = sweep(&["data", "show"])
        .arg(s.path("missing"))
        .arg("--out")
        .arg(out.join("x.png"))
        .output();
    assert!(o.expect_failure().stderr.contains("missing split folder"));
}

/// `sweep report --html` into a fresh folder `name`.
fn write_html(s: &Scratch, name: &str) -> PathBuf {
    let html = s.fresh_dir(name).join("report.html");
    s.sweep(&[
        "report",
        "--sweep",
        "plots",
        "--html",
        html.to_str().unwrap(),
    ])
    .output()
    .expect_success();
    html
}

#[test]
fn html_report_is_one_self_contained_file() {
    let (s, trials) = fixture();
    let path = write_html(s, "html");
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<table id=\"report\">"));
    for h in [
        "rank",
        "trial",
        "lr",
        "val acc",
        "test acc",
        "test loss",
        "epochs",
        "wall s",
        "img/s",
        "status",
    ] {
        assert!(html.contains(&format!("<th>{h}</th>")), "column {h}");
    }
    assert_eq!(
        html.matches("<section class=\"trial\"").count(),
        trials.len()
    );
    for t in trials {
        assert!(
            html.contains(&format!("<section class=\"trial\" id=\"trial-{t}\">")),
            "{t}"
        );
        assert!(html.contains(&format!("href=\"#trial-{t}\"")), "{t}");
    }
    for id in ["chart-accuracy", "chart-curves", "chart-class-distribution"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    // Sweep charts + curves and confusion per trial, all inline.
    assert_eq!(html.matches("<svg ").count(), 3 + 2 * trials.len());
    assert_eq!(
        html.matches("class=\"class-accuracy\"").count(),
        trials.len()
    );
    for bad in [
        "http://", "https://", "<script", "<link", "<img", "@import", "url(",
    ] {
        assert!(!html.contains(bad), "HTML refers to {bad:?}");
    }
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.html"], "temporary files left behind");
}

/// Runs headless Chromium with a time limit; stdout goes to `log`.
fn headless(chromium: &Path, profile: &Path, args: &[String], log: &Path) {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(log).unwrap())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} exited with {status}");
            return;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(browser) = prerequisites::chromium() else {
        return;
    };
    let (s, trials) = fixture();
    let html = write_html(s, "chromium");
    let dir = s.fresh_dir("chromium-run");
    let url = format!("file://{}", html.display());
    let shot = dir.join("shot.png");
    headless(
        &browser,
        &dir.join("profile"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000".into(),
            url.clone(),
        ],
        &dir.join("shot.log"),
    );
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", shot.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (1200, 2000));
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 32,
        "screenshot looks blank: {} colours",
        colours.len()
    );
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        non_white > 20_000,
        "screenshot is nearly empty: {non_white} non-white pixels"
    );

    let dom_path = dir.join("dom.html");
    headless(
        &browser,
        &dir.join("profile"),
        &["--dump-dom".into(), url],
        &dom_path,
    );
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(
        dom.contains("id=\"report\""),
        "DOM lacks the report table:\n{}",
        &dom[..dom.len().min(500)]
    );
    for t in trials {
        assert!(
            dom.contains(&format!("id=\"trial-{t}\"")),
            "DOM lacks trial section {t}"
        );
    }
    assert!(dom.matches("<svg").count() >= 3 + 2 * trials.len());
}
