//! `sweep` is libtorch-free: it links no torch, c10 or CUDA library, and every
//! read-only command works on a machine without libtorch — here, a copy of
//! the binary alone in a fresh directory, run in a mount namespace where the
//! libtorch directory is hidden under an empty tmpfs.
use crate::common;
use common::prerequisites::missing;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sweep");

#[test]
fn sweep_links_no_torch_or_cuda_library() {
    let out = Command::new("ldd").arg(BIN).output().expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in ["torch", "c10", "cuda", "cudnn", "nccl", "cublas"] {
        assert!(!text.contains(lib), "sweep links {lib}:\n{text}");
    }
}

/// The libtorch directory `make test` installed (LIBTORCH), if any.
fn libtorch_dir() -> Option<PathBuf> {
    std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
}

#[test]
fn read_only_commands_work_with_libtorch_hidden() {
    let Some(torch) = libtorch_dir() else {
        missing(
            "LIBTORCH (the libtorch directory to hide)",
            "run the tests through `make test`, which exports it",
        );
        return;
    };
    let probe = Command::new("unshare").args(["--mount", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        missing(
            &format!("unshare --mount ({probe:?})"),
            "it needs root (CI runs as root) and util-linux",
        );
        return;
    }
    // A results.db with one finished sweep, made with the fake worker.
    let work = common::demo_dir();
    let w = work.path();
    std::fs::write(
        w.join("s.toml"),
        "[sweep]\nname = \"copied\"\ndataset = \"data\"\n[grid]\nlr = [0.1, 0.01]\n",
    )
    .unwrap();
    let run = Command::new(BIN)
        .args(["--db", "results.db", "run", "s.toml", "--plain"])
        .current_dir(w)
        .env(
            "SWEEP_WORKER_CMD",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_worker.py"),
        )
        .env_remove("SWEEP_DB")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // "Another machine": the binary and the database copied to a fresh directory.
    let laptop = tempfile::tempdir().unwrap();
    let l = laptop.path();
    std::fs::copy(BIN, l.join("sweep")).unwrap();
    std::fs::copy(w.join("results.db"), l.join("results.db")).unwrap();
    let trial = {
        let o = Command::new("sqlite3")
            .arg(l.join("results.db"))
            .arg("SELECT id FROM trials LIMIT 1")
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let commands: Vec<Vec<String>> = vec![
        vec!["report".into()],
        vec!["report".into(), "--format".into(), "json".into()],
        vec!["report".into(), "--html".into(), "report.html".into()],
        vec!["status".into()],
        vec!["show".into(), trial.clone()],
        vec!["plot".into(), "--out".into(), "plots".into()],
    ];
    for args in &commands {
        // Hide libtorch: an empty tmpfs over its directory, in a private mount namespace.
        let script = format!(
            "mount -t tmpfs none '{}' && exec ./sweep --db results.db \"$@\"",
            torch.display()
        );
        let out = Command::new("unshare")
            .args(["--mount", "sh", "-c", &script, "sh"])
            .args(args)
            .current_dir(l)
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("SWEEP_DB")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "sweep {args:?} failed without libtorch:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout.is_empty() || args[0] == "report" && args.len() > 1,
            "sweep {args:?} printed nothing"
        );
    }
    assert!(
        std::fs::read_to_string(l.join("report.html"))
            .unwrap()
            .contains(&trial)
    );
    assert!(
        std::fs::read_dir(l.join("plots"))
            .unwrap()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "png"))
    );
    let q = Command::new("sqlite3")
        .arg(l.join("results.db"))
        .arg("SELECT count(*) FROM trials WHERE status = 'done'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), "2");
}

/// Without a worker, `sweep run` says where it looked and exits 2.
#[test]
fn run_without_a_worker_says_where_it_looked() {
    let laptop = common::demo_dir();
    let l = laptop.path();
    std::fs::copy(BIN, l.join("sweep")).unwrap();
    std::fs::write(
        l.join("s.toml"),
        "[sweep]\nname = \"nw\"\ndataset = \"data\"\n",
    )
    .unwrap();
    let out = Command::new(l.join("sweep"))
        .args(["--db", "r.db", "run", "s.toml"])
        .current_dir(l)
        .env("PATH", "/usr/bin:/bin")
        .env_remove("SWEEP_WORKER")
        .env_remove("SWEEP_WORKER_CMD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot find the worker program `sweep-worker`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&l.join("sweep-worker").display().to_string()),
        "names the place beside sweep: {stderr}"
    );
    assert!(stderr.contains("SWEEP_WORKER"), "{stderr}");
    assert!(!l.join("r.db").exists(), "nothing written");
}
