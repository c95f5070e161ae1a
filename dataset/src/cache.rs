//! The shared decoded-image cache: every image of a dataset decoded and
//! resized once per (dataset content hash, cache size), stored as plain RGB8
//! in files that every worker maps read-only, so that trials and sweeps on
//! the same data share one copy in the kernel's page cache and a worker's
//! memory no longer grows with the dataset.
//!
//! Layout, under [`root`] (`$SWEEP_CACHE_DIR`, else
//! `${XDG_CACHE_HOME:-~/.cache}/sweep/decoded`):
//!
//! ```text
//! <hash>-<size>/            size = the stored shorter side, or "original"
//!     meta.json             format, dataset, hash, size, classes, the scan's
//!                           digest, per split: image count, bytes, failures
//!     train.bin valid.bin test.bin
//!     last_used             its mtime: when a run last opened the cache
//!     synced                present once every file above is on disk
//! <hash>-<size>.lock        the builders' lock (flock; released when a
//!                           builder dies, even by kill -9)
//! .<hash>-<size>.tmp-<pid>  a build in progress
//! ```
//!
//! A split file is `SWEEPDC1`, the image count (u64 LE), then one 24-byte
//! index record per image (u32 item — its index in the scanned split —, u32
//! width, u32 height, u32 zero, u64 offset; little endian), then the pixels.
//!
//! Built once, in parallel on every core, by whoever needs it first (the
//! coordinator, before the first trial starts; a worker only when the cache
//! was removed under a running sweep), under the lock, into a temporary
//! directory that is renamed into place: a cache directory that exists is
//! complete, and a build killed half-way leaves only a temporary directory
//! that is never read and that the next builder removes. The fsync comes
//! after the rename, on a background thread, so trials need not wait for the
//! writeback; until it leaves `synced`, the kernel's page cache holds the
//! files whole (a killed process loses nothing there), and a cache found
//! without it after the machine restarted is rebuilt (`meta.json` records
//! the boot it was built in).
//!
//! Images that do not decode are recorded with their reason in `meta.json`
//! rather than failing the build: whether a trial skips them or fails on them
//! is its own `skip_bad_images` setting, decided when it opens the cache.
//!
//! Must never depend on tch or on the database.
use crate::imagefolder::{self as data, DataError, Entry, Layout, Split, SplitCache, SplitFiles};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Bumped whenever the files' layout or the decode/resize path changes bytes.
pub const FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"SWEEPDC1";
const RECORD: usize = 24;
const SPLITS: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

/// `SWEEP_DECODED_CACHE=off` (or `0`, `false`): workers decode into their own
/// memory, as before the shared cache existed.
pub fn enabled() -> bool {
    !matches!(
        std::env::var("SWEEP_DECODED_CACHE").as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

/// Where caches live: `$SWEEP_CACHE_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/sweep/decoded`.
pub fn root() -> PathBuf {
    if let Some(d) = std::env::var_os("SWEEP_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sweep").join("decoded")
}

/// "73" or "original".
pub fn size_label(short: Option<u32>) -> String {
    short.map_or_else(|| "original".to_string(), |s| s.to_string())
}

/// The directory name of a cache.
pub fn key(hash: &str, short: Option<u32>) -> String {
    format!("{hash}-{}", size_label(short))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    /// Index of the file in the scanned split.
    pub item: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMeta {
    pub split: String,
    pub images: usize,
    pub bytes: u64,
    pub failed: Vec<Failed>,
    /// Wall seconds its decode took (0 in caches built before it was recorded).
    #[serde(default)]
    pub seconds: f64,
}

/// `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// The dataset root the cache was built from (absolute).
    pub dataset: String,
    pub content_hash: String,
    /// "73" or "original".
    pub cache_size: String,
    pub classes: Vec<String>,
    /// SHA-256 over the scanned file list (relative paths, labels): the check
    /// that the items the index refers to are the files a reader scans.
    pub layout_digest: String,
    pub splits: Vec<SplitMeta>,
    /// Seconds since the Unix epoch.
    pub built_at: u64,
    pub build_seconds: f64,
    /// The kernel's boot id when the cache was built. The files are renamed
    /// into place before they are on disk (the fsync runs afterwards, in the
    /// background, and leaves the `synced` marker): within the same boot the
    /// page cache holds them whole, and after a restart a cache without the
    /// marker is rebuilt. None (caches built before this field): fsynced
    /// before the rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Meta {
    pub fn images(&self) -> usize {
        self.splits.iter().map(|s| s.images).sum()
    }
}

/// A cache ready to be mapped.
#[derive(Debug, Clone)]
pub struct Ready {
    pub dir: PathBuf,
    pub meta: Meta,
    /// Whether this call built it (false: it was there already).
    pub built: bool,
}

fn cache_err(msg: String) -> DataError {
    DataError::Cache(msg)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |e| cache_err(format!("{}: {e}", path.display()))
}

/// SHA-256 over the relative path bytes and label of every scanned file.
pub fn layout_digest(root: &Path, layout: &Layout) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h = Sha256::new();
    for c in &layout.classes {
        h.update(c.as_bytes());
        h.update([0]);
    }
    for files in [&layout.train, &layout.valid, &layout.test] {
        h.update(files.split.name().as_bytes());
        for (p, label) in &files.items {
            h.update(p.strip_prefix(root).unwrap_or(p).as_os_str().as_bytes());
            h.update([0]);
            h.update(label.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn files_of(layout: &Layout, split: Split) -> &SplitFiles {
    match split {
        Split::Train => &layout.train,
        Split::Valid => &layout.valid,
        Split::Test => &layout.test,
    }
}

/// Reads and checks `meta.json` of a finished cache directory.
pub fn read_meta(dir: &Path) -> Result<Meta, DataError> {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let meta: Meta =
        serde_json::from_str(&text).map_err(|e| cache_err(format!("{}: {e}", path.display())))?;
    if meta.format != FORMAT {
        return Err(cache_err(format!(
            "{}: format {} (this version reads {FORMAT})",
            path.display(),
            meta.format
        )));
    }
    Ok(meta)
}

/// Opens the finished cache for (hash, size) if it is there and whole:
/// `meta.json` says so, and every split file has the size it records.
pub fn find(
    root: &Path,
    hash: &str,
    short: Option<u32>,
    layout_digest: &str,
) -> Result<Option<Ready>, DataError> {
    let dir = root.join(key(hash, short));
    if !dir.is_dir() {
        return Ok(None);
    }
    let meta = read_meta(&dir)?;
    if meta.content_hash != hash || meta.cache_size != size_label(short) {
        return Err(cache_err(format!(
            "{}: holds {} at size {}, not {hash} at {}",
            dir.display(),
            meta.content_hash,
            meta.cache_size,
            size_label(short)
        )));
    }
    if meta.layout_digest != layout_digest {
        return Err(cache_err(format!(
            "{}: its file list is not the dataset's",
            dir.display()
        )));
    }
    if meta.boot_id.is_some() && !dir.join(SYNCED).exists() && meta.boot_id != boot_id() {
        return Err(cache_err(format!(
            "{}: built before the machine restarted and never confirmed on disk",
            dir.display()
        )));
    }
    for s in &meta.splits {
        let path = dir.join(format!("{}.bin", s.split));
        let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        if len != s.bytes {
            return Err(cache_err(format!(
                "{}: {len} bytes, meta.json says {}",
                path.display(),
                s.bytes
            )));
        }
    }
    Ok(Some(Ready {
        dir,
        meta,
        built: false,
    }))
}

/// The cache of `dataset` (content hash `hash`, already scanned as `layout`)
/// at shorter side `short` (`None`: full resolution): the existing one, or
/// built now under the lock. `threads` = 0: every core.
pub fn ensure(
    root: &Path,
    dataset: &Path,
    layout: &Layout,
    hash: &str,
    short: Option<u32>,
    threads: usize,
) -> Result<Ready, DataError> {
    let digest = layout_digest(dataset, layout);
    if let Ok(Some(r)) = find(root, hash, short, &digest) {
        touch(&r.dir);
        sync_in_background(&r);
        return Ok(r);
    }
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let k = key(hash, short);
    let lock_path = root.join(format!("{k}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    // Blocks while another process builds this cache; released by the kernel
    // when the holder exits, however it exits.
    lock.lock().map_err(io_err(&lock_path))?;
    match find(root, hash, short, &digest) {
        Ok(Some(r)) => {
            touch(&r.dir);
            sync_in_background(&r);
            return Ok(r);
        }
        Ok(None) => {}
        Err(e) => {
            // Damaged (a disk error, a hand edit): rebuilt. Readers that have
            // it mapped keep their pages.
            sweep_protocol::log!("warning: rebuilding the decoded-image cache: {e}");
            let _ = std::fs::remove_dir_all(root.join(&k));
        }
    }
    remove_stale_builds(root, &k);
    let tmp = root.join(format!(".{k}.tmp-{}", std::process::id()));
    let built = build(&tmp, dataset, layout, hash, short, &digest, threads);
    let meta = match built {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if meta.boot_id.is_none() {
        // No boot id to tell a restart by: on disk before it is in place.
        sync_files(&tmp)?;
    }
    let dir = root.join(&k);
    std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    touch(&dir);
    drop(lock);
    let ready = Ready {
        dir,
        meta,
        built: true,
    };
    sync_in_background(&ready);
    Ok(ready)
}

/// The marker file of a cache whose files are known to be on disk.
const SYNCED: &str = "synced";

/// This boot of the machine (Linux); None elsewhere.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// fsyncs one file or directory.
fn fsync(path: &Path) -> Result<(), DataError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// fsyncs every file of a cache directory, then the directory.
fn sync_files(dir: &Path) -> Result<(), DataError> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            fsync(&e.path())?;
        }
    }
    fsync(dir)
}

/// Puts a cache that is in place but not yet known to be on disk there, on a
/// thread of its own, so that the first trial need not wait for gigabytes of
/// writeback: fsync the files, the directory and its parent, then leave the
/// `synced` marker. A process that exits first leaves no marker; the next
/// run in the same boot starts the sync again, and after a restart such a
/// cache is rebuilt ([`find`]).
fn sync_in_background(ready: &Ready) {
    if ready.meta.boot_id.is_none() || ready.dir.join(SYNCED).exists() {
        return;
    }
    let dir = ready.dir.clone();
    let spawned = std::thread::Builder::new()
        .name("cache-sync".into())
        .spawn(move || {
            let synced = sync_files(&dir).and_then(|_| {
                let parent = dir.parent().unwrap_or(&dir);
                fsync(parent)?;
                let marker = dir.join(SYNCED);
                File::create(&marker)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err(&marker))?;
                fsync(&dir)
            });
            if let Err(e) = synced
                && dir.exists()
            {
                // A disk error: no marker, so a restart rebuilds it. (Removed
                // under us, by `cache clear` or a rebuild, needs no word.)
                sweep_protocol::log!(
                    "note: the decoded-image cache is not yet confirmed on disk: {e}"
                );
            }
        });
    if spawned.is_err() {
        let _ = sync_files(&ready.dir);
    }
}

/// Temporary directories of builds that died (their lock is ours now).
fn remove_stale_builds(root: &Path, key: &str) {
    let prefix = format!(".{key}.tmp-");
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn touch(dir: &Path) {
    // Best effort: a cache on a read-only file system is still usable.
    let path = dir.join("last_used");
    if let Ok(f) = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn build(
    tmp: &Path,
    dataset: &Path,
    layout: &Layout,
    hash: &str,
    short: Option<u32>,
    digest: &str,
    threads: usize,
) -> Result<Meta, DataError> {
    let t0 = Instant::now();
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| cache_err(format!("cannot start decoder threads: {e}")))?;
    let mut splits = Vec::new();
    for split in SPLITS {
        let path = tmp.join(format!("{}.bin", split.name()));
        splits.push(pool.install(|| write_split(&path, files_of(layout, split), short))?);
        if std::env::var("SWEEP_CACHE_FAILPOINT").as_deref() == Ok("pause-after-train") {
            // For the kill -9 test: a build stopped half-way, on purpose.
            sweep_protocol::log!(
                "failpoint: decoded-image cache build paused in {}",
                tmp.display()
            );
            loop {
                std::thread::park();
            }
        }
    }
    let meta = Meta {
        format: FORMAT,
        dataset: std::fs::canonicalize(dataset)
            .unwrap_or_else(|_| dataset.to_path_buf())
            .display()
            .to_string(),
        content_hash: hash.to_string(),
        cache_size: size_label(short),
        classes: layout.classes.clone(),
        layout_digest: digest.to_string(),
        splits,
        built_at: now_secs(),
        build_seconds: t0.elapsed().as_secs_f64(),
        boot_id: boot_id(),
    };
    let path = tmp.join("meta.json");
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| cache_err(e.to_string()))?;
    File::create(&path)
        .and_then(|mut f| f.write_all(&json))
        .map_err(io_err(&path))?;
    Ok(meta)
}

/// Decodes a split in parallel, each thread writing its image straight into
/// the file at an offset it reserves (`pwrite`), so no thread waits for
/// another's write and memory stays at one image a thread whatever the
/// dataset. The index (in file-list order) says where each image lies; the
/// pixels lie in the order the threads finished them.
fn write_split(
    path: &Path,
    files: &SplitFiles,
    short: Option<u32>,
) -> Result<SplitMeta, DataError> {
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;
    let t0 = Instant::now();
    let file = File::create(path).map_err(io_err(path))?;
    let n = files.items.len();
    let header = (MAGIC.len() + 8 + n * RECORD) as u64;
    let end = Mutex::new(header);
    // Outer error: the build's (a write failed); inner: the image's (it did not decode).
    let placed: Vec<Result<(u32, u32, u64), DataError>> = files
        .items
        .par_iter()
        .map(|(p, _)| {
            let written = data::decode_with(p, short, |width, height, pixels| {
                let offset = {
                    let mut end = end.lock().unwrap_or_else(|e| e.into_inner());
                    let at = *end;
                    *end += pixels.len() as u64;
                    at
                };
                file.write_all_at(pixels, offset)
                    .map(|_| (width, height, offset))
            });
            match written {
                Ok(Ok(placed)) => Ok(Ok(placed)),
                Ok(Err(e)) => Err(io_err(path)(e)),
                Err(e) => Ok(Err(e)),
            }
        })
        .collect::<Result<_, DataError>>()?;
    let mut index: Vec<u8> = Vec::with_capacity(n * RECORD);
    let (mut images, mut failed) = (0usize, Vec::new());
    for (item, r) in placed.into_iter().enumerate() {
        match r {
            Ok((width, height, offset)) => {
                index.extend_from_slice(&(item as u32).to_le_bytes());
                index.extend_from_slice(&width.to_le_bytes());
                index.extend_from_slice(&height.to_le_bytes());
                index.extend_from_slice(&0u32.to_le_bytes());
                index.extend_from_slice(&offset.to_le_bytes());
                images += 1;
            }
            Err(e) => {
                let reason = match e {
                    DataError::BadImage { reason, .. } => reason,
                    e => e.to_string(),
                };
                failed.push(Failed { item, reason })
            }
        }
    }
    let mut head = Vec::with_capacity(16 + index.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(images as u64).to_le_bytes());
    head.extend_from_slice(&index);
    file.write_all_at(&head, 0).map_err(io_err(path))?;
    let bytes = end.into_inner().unwrap_or_else(|e| e.into_inner());
    // Unused index records (failed images) stay zero; the pixels start after the full index.
    file.set_len(bytes).map_err(io_err(path))?;
    Ok(SplitMeta {
        split: files.split.name().to_string(),
        images,
        bytes,
        failed,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Maps one split of a ready cache. Failed images are the trial's error, or
/// skipped with a warning when `skip_bad` (as an in-memory decode does).
pub fn open_split(
    ready: &Ready,
    files: &SplitFiles,
    skip_bad: bool,
) -> Result<SplitCache, DataError> {
    let name = files.split.name();
    let meta = ready
        .meta
        .splits
        .iter()
        .find(|s| s.split == name)
        .ok_or_else(|| cache_err(format!("{}: no split {name}", ready.dir.display())))?;
    if let Some(f) = meta.failed.first()
        && !skip_bad
    {
        let path = files
            .items
            .get(f.item)
            .map(|(p, _)| p.clone())
            .unwrap_or_default();
        return Err(DataError::BadImage {
            path,
            reason: f.reason.clone(),
        });
    }
    for f in &meta.failed {
        if let Some((p, _)) = files.items.get(f.item) {
            sweep_protocol::log!(
                "warning: skipping {}: cannot read image {}: {}",
                p.display(),
                p.display(),
                f.reason
            );
        }
    }
    if meta.images == 0 {
        return Err(DataError::Layout(format!(
            "split {name} has no readable images"
        )));
    }
    let path = ready.dir.join(format!("{name}.bin"));
    let file = File::open(&path).map_err(io_err(&path))?;
    // SAFETY: cache files are written once, renamed into place and never
    // modified afterwards (a rebuild or `cache clear` unlinks them, which
    // leaves existing mappings intact).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
    let bad = |m: String| cache_err(format!("{}: {m}", path.display()));
    if map.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("not a decoded-image cache file".into()));
    }
    let count = map
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0) as usize;
    if count != meta.images {
        return Err(bad(format!(
            "{count} images, meta.json says {}",
            meta.images
        )));
    }
    let (mut entries, mut labels, mut paths) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let u32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .and_then(|x| x.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    };
    for i in 0..count {
        let rec = map
            .get(16 + i * RECORD..16 + (i + 1) * RECORD)
            .ok_or_else(|| bad("index cut short".into()))?;
        let item = u32_at(rec, 0) as usize;
        let offset = rec
            .get(16..24)
            .and_then(|x| x.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let (p, label) = files.items.get(item).ok_or_else(|| {
            bad(format!(
                "image {i} refers to file {item} of {}",
                files.items.len()
            ))
        })?;
        entries.push(Entry {
            offset,
            width: u32_at(rec, 4),
            height: u32_at(rec, 8),
        });
        labels.push(*label);
        paths.push(p.clone());
    }
    SplitCache::mapped(map, entries, labels, paths, meta.failed.len())
        .map_err(|e| bad(e.to_string()))
}

/// One cache as `sweep cache ls` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub dir: PathBuf,
    /// None: not a finished cache (a build in progress, or damaged).
    pub meta: Option<Meta>,
    pub bytes: u64,
    pub last_used: Option<SystemTime>,
    pub building: bool,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Every cache under `root`, finished ones first, by key.
pub fn list(root: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !e.path().is_dir() {
            continue;
        }
        let building = name.starts_with('.');
        let meta = if building {
            None
        } else {
            read_meta(&e.path()).ok()
        };
        let last_used = std::fs::metadata(e.path().join("last_used"))
            .and_then(|m| m.modified())
            .ok();
        out.push(Listed {
            key: name,
            bytes: dir_bytes(&e.path()),
            dir: e.path(),
            meta,
            last_used,
            building,
        });
    }
    out.sort_by(|a, b| (a.building, &a.key).cmp(&(b.building, &b.key)));
    out
}

/// What `remove` did with one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Removed {
        key: String,
        bytes: u64,
    },
    /// A build holds its lock: left alone.
    Busy {
        key: String,
    },
}

/// Removes the caches (finished or left over by a killed build) that `pick`
/// selects, each under its lock so that no build is cut short. Processes
/// that have one mapped keep reading it until they exit.
pub fn remove(root: &Path, pick: impl Fn(&Listed) -> bool) -> Result<Vec<Removed>, DataError> {
    let mut out = Vec::new();
    for l in list(root).into_iter().filter(|l| pick(l)) {
        let base = l.key.trim_start_matches('.');
        let base = base.split(".tmp-").next().unwrap_or(base);
        let lock_path = root.join(format!("{base}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {
                std::fs::remove_dir_all(&l.dir).map_err(io_err(&l.dir))?;
                out.push(Removed::Removed {
                    key: l.key.clone(),
                    bytes: l.bytes,
                });
                if !root.join(base).exists() {
                    let _ = std::fs::remove_file(&lock_path);
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                out.push(Removed::Busy { key: l.key.clone() })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagefolder::{load_split_at, scan};

    /// [`dataset`] in a folder of its own, scanned, and an empty cache root.
    fn scanned_dataset() -> (tempfile::TempDir, tempfile::TempDir, Layout) {
        let data = tempfile::tempdir().unwrap();
        dataset(data.path());
        let layout = scan(data.path()).unwrap();
        (data, tempfile::tempdir().unwrap(), layout)
    }

    fn dataset(dir: &Path) {
        for (split, n) in [("train", 5), ("valid", 2), ("test", 2)] {
            for (c, class) in ["a", "b"].iter().enumerate() {
                let d = dir.join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                for i in 0..n {
                    let w = 30 + 7 * i + c as u32;
                    image::RgbImage::from_fn(w, 24 + 3 * i, |x, y| {
                        image::Rgb([(x * 5) as u8, (y * 9) as u8, (i * 40 + c as u32) as u8])
                    })
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
                }
            }
        }
    }

    /// The mapped cache holds exactly the bytes an in-memory decode does, at a
    /// resized size and at the original resolution.
    #[test]
    fn mapped_images_equal_decoded_ones() {
        let (data, root, layout) = scanned_dataset();
        for short in [Some(37), None] {
            let ready = ensure(root.path(), data.path(), &layout, "h", short, 2).unwrap();
            assert!(ready.built);
            for files in [&layout.train, &layout.valid, &layout.test] {
                let mapped = open_split(&ready, files, false).unwrap();
                let mem = load_split_at(files, short, false).unwrap();
                assert!(mapped.is_mapped());
                assert_eq!(mapped.len(), mem.len());
                assert_eq!(mapped.labels, mem.labels);
                assert_eq!(mapped.paths, mem.paths);
                for i in 0..mem.len() {
                    let (a, b) = (mapped.image(i).unwrap(), mem.image(i).unwrap());
                    assert_eq!(
                        (a.width, a.height, a.pixels),
                        (b.width, b.height, b.pixels),
                        "{:?} image {i}",
                        files.split
                    );
                }
            }
            let again = ensure(root.path(), data.path(), &layout, "h", short, 2).unwrap();
            assert!(!again.built, "the second call opens the first one's cache");
        }
        let listed = list(root.path());
        assert_eq!(
            listed.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(),
            ["h-37", "h-original"]
        );
        assert!(listed.iter().all(|l| l.meta.as_ref().is_some_and(|m| m.images() == 18) && l.last_used.is_some()));
    }

    /// Broken files are recorded, and each reader decides: skip, or fail
    /// naming the first one, as `load_split` does.
    #[test]
    fn bad_images_follow_skip_bad() {
        let data = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        dataset(data.path());
        std::fs::write(data.path().join("train/a/1.png"), b"not a png").unwrap();
        let layout = scan(data.path()).unwrap();
        let ready = ensure(root.path(), data.path(), &layout, "h", Some(32), 1).unwrap();
        let e = open_split(&ready, &layout.train, false)
            .unwrap_err()
            .to_string();
        let mem = load_split_at(&layout.train, Some(32), false)
            .unwrap_err()
            .to_string();
        assert_eq!(e, mem);
        let s = open_split(&ready, &layout.train, true).unwrap();
        assert_eq!((s.len(), s.skipped), (9, 1));
    }

    /// A damaged cache (a split file cut short) is found out and rebuilt.
    #[test]
    fn a_damaged_cache_is_rebuilt() {
        let (data, root, layout) = scanned_dataset();
        let ready = ensure(root.path(), data.path(), &layout, "h", Some(32), 1).unwrap();
        let f = File::options()
            .write(true)
            .open(ready.dir.join("valid.bin"))
            .unwrap();
        f.set_len(100).unwrap();
        let digest = layout_digest(data.path(), &layout);
        assert!(find(root.path(), "h", Some(32), &digest).is_err());
        let again = ensure(root.path(), data.path(), &layout, "h", Some(32), 1).unwrap();
        assert!(again.built);
        assert_eq!(open_split(&again, &layout.valid, false).unwrap().len(), 4);
    }

    /// The fsync runs after the rename, in the background, and leaves
    /// `synced`. A cache without it is trusted in the boot that built it
    /// (the page cache holds it whole) and rebuilt after a restart, when
    /// its bytes may never have reached the disk.
    #[test]
    fn an_unsynced_cache_from_before_a_restart_is_rebuilt() {
        let (data, root, layout) = scanned_dataset();
        let digest = layout_digest(data.path(), &layout);
        let ready = ensure(root.path(), data.path(), &layout, "h", Some(32), 1).unwrap();
        assert!(ready.built);
        assert_eq!(ready.meta.boot_id, boot_id(), "meta.json records this boot");
        let marker = ready.dir.join(SYNCED);
        let t0 = Instant::now();
        while !marker.exists() {
            assert!(
                t0.elapsed().as_secs() < 60,
                "the background sync left no marker"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Synced: trusted whatever the boot.
        let mut meta = ready.meta.clone();
        meta.boot_id = Some("an-earlier-boot".into());
        std::fs::write(
            ready.dir.join("meta.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        assert!(find(root.path(), "h", Some(32), &digest).unwrap().is_some());
        // Not synced, this boot: trusted.
        std::fs::remove_file(&marker).unwrap();
        let mut this_boot = meta.clone();
        this_boot.boot_id = boot_id();
        std::fs::write(
            ready.dir.join("meta.json"),
            serde_json::to_vec(&this_boot).unwrap(),
        )
        .unwrap();
        assert!(find(root.path(), "h", Some(32), &digest).unwrap().is_some());
        // Not synced, an earlier boot: damaged, and rebuilt by the next run.
        std::fs::write(
            ready.dir.join("meta.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        let e = find(root.path(), "h", Some(32), &digest)
            .unwrap_err()
            .to_string();
        assert!(e.contains("restarted"), "{e}");
        let again = ensure(root.path(), data.path(), &layout, "h", Some(32), 1).unwrap();
        assert!(again.built);
        assert_eq!(again.meta.boot_id, boot_id());
        assert_eq!(open_split(&again, &layout.train, false).unwrap().len(), 10);
    }
}
