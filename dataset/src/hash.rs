//! A dataset's identity: SHA-256 over every file's relative path and the
//! SHA-256 of its contents (hashed in parallel), so a changed, added or removed
//! image changes it. Stored with each sweep; the decode cache is keyed by it.
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first 16 hex digits of the dataset's content hash.
pub fn content_hash(root: &Path) -> String {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => files.push(e.path()),
                _ => {}
            }
        }
    }
    files.sort();
    let digests: Vec<Vec<u8>> = files
        .par_iter()
        .map(|p| {
            let mut h = Sha256::new();
            h.update(
                p.strip_prefix(root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update([0]);
            h.update(std::fs::read(p).unwrap_or_default());
            h.finalize().to_vec()
        })
        .collect();
    let mut h = Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
