//! The ImageFolder scan: `train/`, `valid/`, `test/`, one folder per class,
//! the same classes in every split. Reads directory entries only, never an image.
use super::*;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// The file list of one split: (path, class index).
#[derive(Debug, Clone)]
pub struct SplitFiles {
    pub split: Split,
    pub items: Vec<(PathBuf, i64)>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub classes: Vec<String>,
    pub train: SplitFiles,
    pub valid: SplitFiles,
    pub test: SplitFiles,
}

pub(super) fn split_dir(root: &Path, split: Split) -> Result<PathBuf, DataError> {
    let candidates: &[&str] = match split {
        Split::Train => &["train"],
        Split::Valid => &["valid", "val"],
        Split::Test => &["test"],
    };
    candidates
        .iter()
        .map(|c| root.join(c))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            DataError::Layout(format!(
                "{}: missing split folder {}/",
                root.display(),
                candidates.join("/ or ")
            ))
        })
}

pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Every image file under a class folder, as torchvision's ImageFolder finds
/// them: subfolders included, symlinks followed (`os.walk(followlinks=True)`),
/// directories in sorted path order and files sorted within each. A directory
/// reached twice (a symlink cycle, or two links to one folder) is walked once.
pub(super) fn images_under(class_dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![class_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::metadata(&d).map_err(|e| DataError::Io {
            path: d.clone(),
            source: e,
        })?;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for p in list_dir(&d)? {
            // metadata() follows symlinks; a dangling link is neither and is ignored.
            if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(p);
            }
        }
        dirs.push(d);
    }
    dirs.sort_by(|a, b| a.to_string_lossy().cmp(&b.to_string_lossy()));
    let mut out = Vec::new();
    for d in dirs {
        for p in list_dir(&d)? {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .unwrap_or_default();
            if EXTENSIONS.contains(&ext.as_str())
                && !std::fs::metadata(&p).is_ok_and(|m| m.is_dir())
            {
                out.push(p);
            }
        }
    }
    Ok(out)
}

pub(super) fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for p in list_dir(dir)? {
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                DataError::Layout(format!(
                    "{}: class folder name is not valid UTF-8; rename it",
                    p.display()
                ))
            })?;
            if !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// Scans an ImageFolder root. Class names are the sorted folder names of
/// `train/` and must be the same in every split.
pub fn scan(root: &Path) -> Result<Layout, DataError> {
    let train_dir = split_dir(root, Split::Train)?;
    let classes = class_dirs(&train_dir)?;
    if classes.len() < 2 {
        return Err(DataError::Layout(format!(
            "{}: found {} class folder(s); an ImageFolder needs at least 2",
            train_dir.display(),
            classes.len()
        )));
    }
    let mut splits = Vec::new();
    for split in [Split::Train, Split::Valid, Split::Test] {
        let dir = split_dir(root, split)?;
        let here = class_dirs(&dir)?;
        for c in &classes {
            if !here.contains(c) {
                return Err(DataError::Layout(format!(
                    "class {c:?} is missing from split {}: expected folder {}",
                    split.name(),
                    dir.join(c).display()
                )));
            }
        }
        for c in &here {
            if !classes.contains(c) {
                return Err(DataError::Layout(format!(
                    "class {c:?} in {} is not in train/ ({})",
                    dir.display(),
                    classes.join(", ")
                )));
            }
        }
        let mut items = Vec::new();
        for (ci, c) in classes.iter().enumerate() {
            let cdir = dir.join(c);
            let found = images_under(&cdir)?;
            if found.is_empty() {
                return Err(DataError::Layout(format!(
                    "class folder {} has no images (looked for {}, subfolders included); add images or remove the folder from every split",
                    cdir.display(),
                    EXTENSIONS.join(", ")
                )));
            }
            items.extend(found.into_iter().map(|p| (p, ci as i64)));
        }
        splits.push(SplitFiles { split, items });
    }
    let mut it = splits.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(train), Some(valid), Some(test)) => Ok(Layout {
            classes,
            train,
            valid,
            test,
        }),
        _ => Err(DataError::Layout("internal: split scan incomplete".into())),
    }
}
