//! The coordinator's part of the shared decoded-image cache
//! (`sweep_dataset::cache`): it builds the caches the queued trials need,
//! once, on every core, before the first trial starts, so that workers only
//! map them. Building here rather than in the first worker keeps the other
//! workers from waiting on the lock with a slot (and a GPU) held idle, and
//! needs no libtorch. A cache that cannot be built is a warning: the workers
//! then decode into their own memory, as they did before the cache existed.
use sweep_dataset::cache;
use sweep_dataset::imagefolder as data;

/// Builds (or finds) the cache of `dataset` for each stored size in
/// `shorts`; returns the hash the workers are to use it by, or `None` when
/// they are to decode by themselves.
pub async fn prepare(
    dataset: std::path::PathBuf,
    hash: String,
    shorts: Vec<Option<u32>>,
) -> Option<String> {
    if !cache::enabled() || shorts.is_empty() {
        return None;
    }
    tokio::task::spawn_blocking(move || prepare_blocking(&dataset, &hash, shorts))
        .await
        .ok()
        .flatten()
}

fn prepare_blocking(
    dataset: &std::path::Path,
    hash: &str,
    mut shorts: Vec<Option<u32>>,
) -> Option<String> {
    shorts.sort();
    shorts.dedup();
    // A layout error is the workers' to report, with the trial it fails.
    let layout = data::scan(dataset).ok()?;
    let root = cache::root();
    for short in shorts {
        let t0 = std::time::Instant::now();
        match cache::ensure(&root, dataset, &layout, hash, short, 0) {
            Ok(r) if r.built => sweep_protocol::log!(
                "decoded {} images of {} once at size {} in {:.1} s into {} (shared by every trial; `sweep cache ls`)",
                r.meta.images(),
                dataset.display(),
                cache::size_label(short),
                t0.elapsed().as_secs_f64(),
                r.dir.display()
            ),
            Ok(_) => {}
            Err(e) => {
                sweep_protocol::log!(
                    "warning: no shared decoded-image cache under {} ({e}); each worker decodes the dataset itself",
                    root.display()
                );
                return None;
            }
        }
    }
    Some(hash.to_string())
}
