//! What stays on disk. A running, queued, failed or interrupted trial keeps
//! every file (it may resume); once a trial is `done` only what
//! `[resources] keep` names is left, and a `pruned` trial (never promoted)
//! keeps no checkpoint unless `keep = "all"`. Files are removed only after
//! the database has committed the trial's final status, so a crash in between
//! leaves extra files (removed by the next run or `sweep gc`), never a trial
//! that claims to be resumable without its state.
//!
//! With `[resources] keep_precision = "half"` the weights a done trial keeps
//! are then rewritten as float16 ([`halve_kept`], see `precision`); a trial
//! that may still resume, and a pruned one, is never rewritten.
use crate::precision::{self, Halving};
use crate::{Keep, KeepPrecision};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
pub use sweep_protocol::trial_dir::{BEST, LAST, TRAIN_STATE};
use sweep_store::TrialStatus;

/// The checkpoint files of a trial in `status` that `keep` lets go.
pub fn removable(status: TrialStatus, keep: Keep) -> &'static [&'static str] {
    match (status, keep) {
        (_, Keep::All) => &[],
        (TrialStatus::Done, Keep::Best) => &[LAST, TRAIN_STATE],
        (TrialStatus::Done, Keep::BestLast) => &[TRAIN_STATE],
        (TrialStatus::Pruned, _) => &[BEST, LAST, TRAIN_STATE],
        _ => &[],
    }
}

/// What a clean-up removed (or, dry, would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub files: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Freed {
    fn add_assign(&mut self, o: Freed) {
        self.files += o.files;
        self.bytes += o.bytes;
    }
}

/// Removes the files of trial directory `dir` that `keep` does not keep for
/// a trial in `status`, and any half-written `*.tmp.safetensors` a killed
/// write left in a finished trial. A missing file is not an error.
pub fn apply(dir: &Path, status: TrialStatus, keep: Keep, dry_run: bool) -> io::Result<Freed> {
    let mut freed = Freed::default();
    if !matches!(status, TrialStatus::Done | TrialStatus::Pruned) {
        return Ok(freed);
    }
    let mut victims: Vec<std::path::PathBuf> = removable(status, keep)
        .iter()
        .map(|f| dir.join(f))
        .collect();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_name()
                    .to_string_lossy()
                    .ends_with(".tmp.safetensors")
                {
                    victims.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(freed),
        Err(e) => return Err(e),
    }
    let mut found = Vec::new();
    for path in victims {
        match std::fs::symlink_metadata(&path) {
            Ok(m) => found.push((path, m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    // `best` is often a second name of `last` (the worker links them when
    // the last epoch is the best): removing one name frees nothing, removing
    // every name frees the bytes once.
    let frees: Vec<u64> = (0..found.len())
        .map(|k| {
            let m = &found[k].1;
            let first_name = !found[..k].iter().any(|(_, o)| same_file(o, m));
            let all_names_go =
                found.iter().filter(|(_, o)| same_file(o, m)).count() as u64 >= m.nlink();
            if first_name && all_names_go {
                m.len()
            } else {
                0
            }
        })
        .collect();
    for ((path, _), bytes) in found.into_iter().zip(frees) {
        if !dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot remove {}: {e}", path.display()),
                    ));
                }
            }
        }
        freed += Freed { files: 1, bytes };
    }
    Ok(freed)
}

/// Two names of one file (a hard link).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// [`same_file`] by path; false when either is missing.
pub fn same_files(a: &Path, b: &Path) -> bool {
    matches!((std::fs::metadata(a), std::fs::metadata(b)), (Ok(a), Ok(b)) if same_file(&a, &b))
}

/// What rewriting kept weights as float16 did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Halved {
    /// Files rewritten.
    pub files: u64,
    /// Bytes saved by them.
    pub bytes: u64,
    /// Files left in float32, and why (a value beyond float16's range), for a warning.
    pub kept_full: Vec<String>,
}

impl std::ops::AddAssign for Halved {
    fn add_assign(&mut self, o: Halved) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.kept_full.extend(o.kept_full);
    }
}

/// The weights files a done trial keeps under `keep` (what `keep_precision` applies to).
pub fn kept_weights(keep: Keep) -> &'static [&'static str] {
    match keep {
        Keep::Best => &[BEST],
        Keep::BestLast | Keep::All => &[BEST, LAST],
    }
}

/// With `precision` half, rewrites the weights a `done` trial in `dir` keeps
/// as float16 (`best.safetensors`, and `last.safetensors` where `keep` keeps
/// it; never the training state). Any other status, or full precision, is
/// left alone. A missing file is not an error; a file already in float16 is
/// not rewritten. Run it after [`apply`], which removes what is not kept.
pub fn halve_kept(
    dir: &Path,
    status: TrialStatus,
    keep: Keep,
    precision: KeepPrecision,
    dry_run: bool,
) -> io::Result<Halved> {
    let mut out = Halved::default();
    if status != TrialStatus::Done || precision != KeepPrecision::Half {
        return Ok(out);
    }
    // Names of one file (best linked to last) stay one file: the first is
    // rewritten, the others become names of the rewritten file.
    let mut done: Vec<(std::path::PathBuf, std::fs::Metadata)> = Vec::new();
    for name in kept_weights(keep) {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if let Some((first, _)) = done.iter().find(|(_, m)| same_file(m, &meta)) {
            if !dry_run && std::fs::metadata(first).is_ok_and(|now| !same_file(&now, &meta)) {
                link_over(first, &path)?;
            }
            continue;
        }
        done.push((path.clone(), meta));
        match precision::halve_file(&path, dry_run)? {
            Halving::Halved { before, after } => {
                out.files += 1;
                out.bytes += before.saturating_sub(after);
            }
            Halving::NothingToDo => {}
            Halving::OutOfRange { tensor, value } => {
                out.kept_full.push(format!("{}: tensor `{tensor}` holds {value:e}, beyond float16's range (±65504); the file stays float32", path.display()))
            }
        }
    }
    Ok(out)
}

/// `path` as a new name of `file`, atomically (link to a temp name, rename).
fn link_over(file: &Path, path: &Path) -> io::Result<()> {
    let tmp = precision::temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(file, &tmp)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Bytes under `path` (files only, a file with several names once; symlinks
/// are not followed). 0 when absent.
pub fn disk_use(path: &Path) -> u64 {
    fn walk(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        if !meta.is_dir() {
            return if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                0
            } else {
                meta.len()
            };
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return 0;
        };
        entries.flatten().map(|e| walk(&e.path(), seen)).sum()
    }
    walk(path, &mut Default::default())
}

/// Bytes free for an unprivileged writer on the filesystem holding `path`
/// (its nearest existing ancestor), or `None` when it cannot be read.
pub fn free_space(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// "1.2 GB", "640 MB", "12 KB" (decimal units, as `df -H` prints).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial_dir(files: &[(&str, usize)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, len) in files {
            std::fs::write(d.path().join(name), vec![0u8; *len]).unwrap();
        }
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    const ALL: [(&str, usize); 6] = [
        (BEST, 10),
        (LAST, 10),
        (TRAIN_STATE, 30),
        ("state.json", 1),
        ("journal.jsonl", 1),
        ("attempt-1.log", 1),
    ];

    #[test]
    fn done_trial_keeps_what_keep_names() {
        for (keep, left) in [
            (
                Keep::Best,
                vec!["attempt-1.log", BEST, "journal.jsonl", "state.json"],
            ),
            (
                Keep::BestLast,
                vec!["attempt-1.log", BEST, "journal.jsonl", LAST, "state.json"],
            ),
            (
                Keep::All,
                vec![
                    "attempt-1.log",
                    BEST,
                    "journal.jsonl",
                    LAST,
                    "state.json",
                    TRAIN_STATE,
                ],
            ),
        ] {
            let d = trial_dir(&ALL);
            let freed = apply(d.path(), TrialStatus::Done, keep, false).unwrap();
            assert_eq!(names(d.path()), left, "{keep:?}");
            let expected = match keep {
                Keep::Best => Freed {
                    files: 2,
                    bytes: 40,
                },
                Keep::BestLast => Freed {
                    files: 1,
                    bytes: 30,
                },
                Keep::All => Freed::default(),
            };
            assert_eq!(freed, expected, "{keep:?}");
        }
    }

    #[test]
    fn pruned_trial_keeps_no_checkpoint_unless_all() {
        let d = trial_dir(&ALL);
        assert_eq!(
            apply(d.path(), TrialStatus::Pruned, Keep::BestLast, false).unwrap(),
            Freed {
                files: 3,
                bytes: 50
            }
        );
        assert_eq!(
            names(d.path()),
            vec!["attempt-1.log", "journal.jsonl", "state.json"]
        );
        let d = trial_dir(&ALL);
        assert_eq!(
            apply(d.path(), TrialStatus::Pruned, Keep::All, false).unwrap(),
            Freed::default()
        );
    }

    #[test]
    fn resumable_trials_keep_everything_and_dry_run_removes_nothing() {
        for status in [
            TrialStatus::Queued,
            TrialStatus::Running,
            TrialStatus::Failed,
            TrialStatus::Interrupted,
        ] {
            let d = trial_dir(&ALL);
            assert_eq!(
                apply(d.path(), status, Keep::Best, false).unwrap(),
                Freed::default()
            );
            assert_eq!(names(d.path()).len(), ALL.len());
        }
        let d = trial_dir(&ALL);
        assert_eq!(
            apply(d.path(), TrialStatus::Done, Keep::Best, true).unwrap(),
            Freed {
                files: 2,
                bytes: 40
            }
        );
        assert_eq!(names(d.path()).len(), ALL.len());
    }

    #[test]
    fn half_written_temporaries_go_and_a_missing_dir_is_nothing() {
        let d = trial_dir(&[(BEST, 10), ("last.tmp.safetensors", 7)]);
        assert_eq!(
            apply(d.path(), TrialStatus::Done, Keep::All, false).unwrap(),
            Freed { files: 1, bytes: 7 }
        );
        assert_eq!(
            apply(&d.path().join("nope"), TrialStatus::Done, Keep::Best, false).unwrap(),
            Freed::default()
        );
    }

    /// A trial folder whose three checkpoints are real float32 safetensors files.
    fn trial_with_weights() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..256)
            .flat_map(|i| (i as f32 / 10.0).to_le_bytes())
            .collect();
        for name in [BEST, LAST, TRAIN_STATE] {
            let t =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![256], &bytes)
                    .unwrap();
            safetensors::serialize_to_file([("w", t)], &None, &d.path().join(name)).unwrap();
        }
        d
    }

    fn dtypes(d: &Path) -> Vec<(String, Vec<&'static str>)> {
        [BEST, LAST, TRAIN_STATE]
            .iter()
            .filter(|n| d.join(n).exists())
            .map(|n| (n.to_string(), precision::float_dtypes(&d.join(n)).unwrap()))
            .collect()
    }

    #[test]
    fn only_a_done_trial_with_half_precision_has_its_kept_weights_rewritten() {
        // A trial that may still resume (or a pruned one, or full precision) is never touched.
        for (status, precision) in [
            (TrialStatus::Queued, KeepPrecision::Half),
            (TrialStatus::Running, KeepPrecision::Half),
            (TrialStatus::Failed, KeepPrecision::Half),
            (TrialStatus::Interrupted, KeepPrecision::Half),
            (TrialStatus::Pruned, KeepPrecision::Half),
            (TrialStatus::Done, KeepPrecision::Full),
        ] {
            let d = trial_with_weights();
            assert_eq!(
                halve_kept(d.path(), status, Keep::All, precision, false).unwrap(),
                Halved::default(),
                "{status:?} {precision:?}"
            );
            assert!(
                dtypes(d.path()).iter().all(|(_, t)| t == &["float32"]),
                "{status:?}: {:?}",
                dtypes(d.path())
            );
        }
        // best: best.safetensors alone; best+last and all: last too; the training state never.
        for (keep, halved) in [
            (Keep::Best, vec![BEST]),
            (Keep::BestLast, vec![BEST, LAST]),
            (Keep::All, vec![BEST, LAST]),
        ] {
            let d = trial_with_weights();
            let dry =
                halve_kept(d.path(), TrialStatus::Done, keep, KeepPrecision::Half, true).unwrap();
            assert!(
                dtypes(d.path()).iter().all(|(_, t)| t == &["float32"]),
                "a dry run writes nothing"
            );
            let done = halve_kept(
                d.path(),
                TrialStatus::Done,
                keep,
                KeepPrecision::Half,
                false,
            )
            .unwrap();
            assert_eq!(dry, done);
            assert_eq!(done.files, halved.len() as u64, "{keep:?}");
            assert!(done.bytes >= 500 * done.files, "{done:?}");
            for (name, t) in dtypes(d.path()) {
                assert_eq!(
                    t,
                    [if halved.contains(&name.as_str()) {
                        "float16"
                    } else {
                        "float32"
                    }],
                    "{keep:?} {name}"
                );
            }
            // Once is enough.
            assert_eq!(
                halve_kept(
                    d.path(),
                    TrialStatus::Done,
                    keep,
                    KeepPrecision::Half,
                    false
                )
                .unwrap(),
                Halved::default()
            );
        }
    }

    /// `best` as a second name of `last` (the worker links them when the
    /// last epoch is the best): its bytes are counted once, freed only when
    /// both names go, and halved once, the two names staying one file.
    #[test]
    fn a_best_linked_to_last_is_one_file() {
        let linked = || {
            let d = trial_dir(&[(LAST, 10), (TRAIN_STATE, 30), ("state.json", 1)]);
            std::fs::hard_link(d.path().join(LAST), d.path().join(BEST)).unwrap();
            d
        };
        let d = linked();
        assert_eq!(disk_use(d.path()), 41);
        assert_eq!(
            apply(d.path(), TrialStatus::Done, Keep::Best, true).unwrap(),
            Freed {
                files: 2,
                bytes: 30
            }
        );
        assert_eq!(
            apply(d.path(), TrialStatus::Done, Keep::Best, false).unwrap(),
            Freed {
                files: 2,
                bytes: 30
            }
        );
        assert_eq!(std::fs::metadata(d.path().join(BEST)).unwrap().len(), 10);
        let d = linked();
        assert_eq!(
            apply(d.path(), TrialStatus::Pruned, Keep::Best, true).unwrap(),
            Freed {
                files: 3,
                bytes: 40
            }
        );
        assert_eq!(
            apply(d.path(), TrialStatus::Pruned, Keep::Best, false).unwrap(),
            Freed {
                files: 3,
                bytes: 40
            }
        );

        let d = trial_with_weights();
        std::fs::remove_file(d.path().join(BEST)).unwrap();
        std::fs::hard_link(d.path().join(LAST), d.path().join(BEST)).unwrap();
        let before = disk_use(d.path());
        let dry = halve_kept(
            d.path(),
            TrialStatus::Done,
            Keep::BestLast,
            KeepPrecision::Half,
            true,
        )
        .unwrap();
        let done = halve_kept(
            d.path(),
            TrialStatus::Done,
            Keep::BestLast,
            KeepPrecision::Half,
            false,
        )
        .unwrap();
        assert_eq!((dry.clone(), done.files), (done.clone(), 1), "{done:?}");
        assert_eq!(
            before - disk_use(d.path()),
            done.bytes,
            "the saving reported is the saving made"
        );
        let (best, last) = (
            std::fs::metadata(d.path().join(BEST)).unwrap(),
            std::fs::metadata(d.path().join(LAST)).unwrap(),
        );
        assert!(same_file(&best, &last));
        assert_eq!(
            dtypes(d.path()),
            vec![
                (BEST.to_string(), vec!["float16"]),
                (LAST.to_string(), vec!["float16"]),
                (TRAIN_STATE.to_string(), vec!["float32"])
            ]
        );
        assert_eq!(names(d.path()), vec![BEST, LAST, TRAIN_STATE]);
    }

    #[test]
    fn a_rewrite_cut_short_leaves_a_temporary_that_the_tidy_step_removes() {
        let d = trial_with_weights();
        let tmp = precision::temp_path(&d.path().join(BEST));
        std::fs::write(&tmp, [0u8; 9]).unwrap();
        let state = std::fs::metadata(d.path().join(TRAIN_STATE)).unwrap().len();
        assert_eq!(
            apply(d.path(), TrialStatus::Done, Keep::BestLast, false).unwrap(),
            Freed {
                files: 2,
                bytes: state + 9
            }
        );
        assert!(!tmp.exists());
        assert_eq!(dtypes(d.path()).len(), 2, "best and last stay");
    }

    #[test]
    fn bytes_read_like_df() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(46_879_736), "47 MB");
        assert_eq!(human_bytes(1_234_000_000), "1.2 GB");
    }
}
