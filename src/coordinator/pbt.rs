//! PBT's exploit step on disk: the exploiting trial's folder takes the
//! donor's checkpoint. The built-in trainer's resume files (weights, optimizer
//! state, counters, the best weights) are copied; a `[program]`'s folder is
//! mirrored, all but the files the coordinator writes there (attempt logs,
//! `params.json`). Each entry is copied under a temporary name and renamed
//! over, and the copy runs before the generation's rows are committed: a
//! coordinator killed midway finds the generation undecided, decides it
//! again (the same way: its draws are seeded) and copies again.
use std::io;
use std::path::Path;
use sweep_protocol::trial_dir::{BEST, JOURNAL, LAST, PARAMS, STATE, TRAIN_STATE};

const TMP_SUFFIX: &str = ".pbt-tmp";

/// Copies `donor`'s checkpoint into `trial` (both trial folders).
pub fn clone_checkpoint(donor: &Path, trial: &Path, program: bool) -> io::Result<()> {
    std::fs::create_dir_all(trial)?;
    if !program {
        for name in [TRAIN_STATE, LAST, BEST, STATE] {
            let from = donor.join(name);
            if from.exists() {
                copy_over(&from, &trial.join(name))?;
            } else {
                remove_any(&trial.join(name))?;
            }
        }
        return Ok(());
    }
    let ours = |name: &str| {
        name == PARAMS
            || name == JOURNAL
            || name.ends_with(TMP_SUFFIX)
            || (name.starts_with("attempt-") && name.ends_with(".log"))
    };
    let mut theirs = Vec::new();
    for e in std::fs::read_dir(donor)? {
        let name = e?.file_name();
        let Some(n) = name.to_str() else { continue };
        if !ours(n) {
            copy_over(&donor.join(n), &trial.join(n))?;
            theirs.push(n.to_string());
        }
    }
    for e in std::fs::read_dir(trial)? {
        let name = e?.file_name();
        let Some(n) = name.to_str() else { continue };
        if !ours(n) && !theirs.iter().any(|t| t == n) {
            remove_any(&trial.join(n))?;
        }
    }
    Ok(())
}

/// Copies a file or folder to `to.pbt-tmp`, then renames it over `to`.
fn copy_over(from: &Path, to: &Path) -> io::Result<()> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp);
    remove_any(tmp)?;
    copy_tree(from, tmp)?;
    if to.is_dir() && !to.is_symlink() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::rename(tmp, to)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_folder_is_mirrored_but_for_the_coordinators_files() {
        let t = tempfile::tempdir().unwrap();
        let (d, r) = (t.path().join("donor"), t.path().join("trial"));
        std::fs::create_dir_all(d.join("ckpt")).unwrap();
        std::fs::create_dir_all(r.join("stale")).unwrap();
        std::fs::write(d.join("model.txt"), "donor").unwrap();
        std::fs::write(d.join("ckpt/opt.bin"), "donor opt").unwrap();
        std::fs::write(d.join("attempt-1.log"), "donor log").unwrap();
        std::fs::write(d.join(PARAMS), "{\"lr\":1}").unwrap();
        std::fs::write(r.join("model.txt"), "mine").unwrap();
        std::fs::write(r.join("only-mine.txt"), "x").unwrap();
        std::fs::write(r.join("attempt-1.log"), "my log").unwrap();
        std::fs::write(r.join(PARAMS), "{\"lr\":2}").unwrap();
        clone_checkpoint(&d, &r, true).unwrap();
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("model.txt"), "donor");
        assert_eq!(read("ckpt/opt.bin"), "donor opt");
        assert_eq!(read("attempt-1.log"), "my log");
        assert_eq!(read(PARAMS), "{\"lr\":2}");
        assert!(!r.join("only-mine.txt").exists() && !r.join("stale").exists());
        let left: Vec<_> = std::fs::read_dir(&r)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(TMP_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Twice gives the same (a restarted coordinator copies again).
        clone_checkpoint(&d, &r, true).unwrap();
        assert_eq!(read("ckpt/opt.bin"), "donor opt");
    }

    #[test]
    fn the_builtin_trainers_resume_files_are_copied_and_its_journal_kept() {
        let t = tempfile::tempdir().unwrap();
        let (d, r) = (t.path().join("donor"), t.path().join("trial"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(&r).unwrap();
        for n in [TRAIN_STATE, LAST, BEST, STATE, JOURNAL] {
            std::fs::write(d.join(n), format!("donor {n}")).unwrap();
            std::fs::write(r.join(n), format!("mine {n}")).unwrap();
        }
        clone_checkpoint(&d, &r, false).unwrap();
        for n in [TRAIN_STATE, LAST, BEST, STATE] {
            assert_eq!(
                std::fs::read_to_string(r.join(n)).unwrap(),
                format!("donor {n}")
            );
        }
        assert_eq!(
            std::fs::read_to_string(r.join(JOURNAL)).unwrap(),
            format!("mine {JOURNAL}")
        );
    }
}
