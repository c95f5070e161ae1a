//! The trial's data: the splits decoded once (or mapped from the shared
//! cache), the thread counts, and the background thread that builds each
//! epoch's batches. Never touches the model.
use super::failure::{classify_panic, panic_message, torch_message};
use super::journal::send;
use super::*;
use std::sync::mpsc::Receiver;

/// Per-run data, decoded once.
pub(super) struct Data {
    pub(super) layout: Layout,
    pub(super) train: Arc<SplitCache>,
    pub(super) valid: SplitCache,
    pub(super) test: SplitCache,
}

pub(super) fn load_data(job: &WorkerJob) -> Result<Data, Failure> {
    let t0 = Instant::now();
    let layout =
        data::scan(&job.dataset).map_err(|e| Failure::new(ErrorClass::Data, e.to_string()))?;
    let skip = job.config.skip_bad_images;
    let de = |e: data::DataError| Failure::new(ErrorClass::Data, e.to_string());
    let (train, valid, test) = match shared_cache(job, &layout) {
        Some(ready) => {
            let open = |files| sweep_dataset::cache::open_split(&ready, files, skip).map_err(de);
            (
                open(&layout.train)?,
                open(&layout.valid)?,
                open(&layout.test)?,
            )
        }
        None => {
            let short = job.config.cache_short();
            let load = |files| data::load_split_at(files, short, skip).map_err(de);
            (
                load(&layout.train)?,
                load(&layout.valid)?,
                load(&layout.test)?,
            )
        }
    };
    let counts = |split: &str, c: &SplitCache| {
        let mut v = vec![0usize; layout.classes.len()];
        for &l in &c.labels {
            if let Some(x) = v.get_mut(l as usize) {
                *x += 1;
            }
        }
        SplitCounts {
            split: split.into(),
            counts: v,
        }
    };
    send(WorkerMessage::Data {
        classes: layout.classes.clone(),
        counts: vec![
            counts("train", &train),
            counts("valid", &valid),
            counts("test", &test),
        ],
        skipped: train.skipped + valid.skipped + test.skipped,
        decode_s: t0.elapsed().as_secs_f64(),
    })?;
    Ok(Data {
        layout,
        train: Arc::new(train),
        valid,
        test,
    })
}

/// The shared decoded-image cache for this trial, when the coordinator sent
/// the dataset's hash: normally built by the coordinator before the first
/// trial, built here (under the same lock) only if it has gone missing since.
/// A cache that cannot be built (an unwritable cache directory, a full disk)
/// is not fatal: the worker decodes into its own memory as before.
pub(super) fn shared_cache(
    job: &WorkerJob,
    layout: &Layout,
) -> Option<sweep_dataset::cache::Ready> {
    use sweep_dataset::cache;
    let hash = job.dataset_hash.as_deref().filter(|_| cache::enabled())?;
    let root = cache::root();
    match cache::ensure(
        &root,
        &job.dataset,
        layout,
        hash,
        job.config.cache_short(),
        0,
    ) {
        Ok(ready) => {
            let how = if ready.built { "built" } else { "mapped" };
            sweep_protocol::log!("{how} the decoded-image cache {}", ready.dir.display());
            Some(ready)
        }
        Err(e) => {
            sweep_protocol::log!(
                "warning: decoding into memory instead of the shared cache under {}: {e}",
                root.display()
            );
            None
        }
    }
}

pub(super) fn threads(job: &WorkerJob) -> (i32, usize) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let total = if job.threads == 0 {
        cores
    } else {
        job.threads as usize
    };
    if tch::Cuda::is_available() {
        // The model runs on the GPU: the host's work is mostly batch assembly
        // (crop, resize, flip), which then sets the pace. Three quarters of
        // the cores assemble batches; torch keeps a quarter for its host ops.
        let torch = (total / 4).max(1);
        return (torch as i32, total.saturating_sub(torch).max(1));
    }
    // On few cores batch assembly is cheap next to the model: give torch every
    // core and one loader thread; from 4 cores on, set a quarter aside.
    if total >= 4 {
        ((total - total / 4) as i32, total / 4)
    } else {
        (total as i32, 1)
    }
}

pub(super) type Loaded<T> = Result<T, Failure>;

/// Builds the epoch's batches (chunks of `order`, at most `batches` of them)
/// on a thread of its own, two ahead of compute. A batch that cannot be built
/// ends the epoch with a `data` failure; a panic while building one ends it
/// with an `internal` failure (`oom` when memory ran out) that names the
/// epoch and batch — never with a channel that just closes, which would
/// look like the end of the epoch.
pub(super) fn spawn_loader<T, E, F>(
    order: Vec<usize>,
    bs: usize,
    batches: usize,
    epoch: u32,
    mut build: F,
) -> Receiver<Loaded<T>>
where
    T: Send + 'static,
    F: FnMut(&[usize]) -> Result<T, E> + Send + 'static,
    E: std::fmt::Display,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        for (i, chunk) in order.chunks(bs.max(1)).take(batches).enumerate() {
            let item = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(chunk)))
            {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(m)) => Err(Failure::new(
                    ErrorClass::Data,
                    format!("epoch {epoch} batch {}: {m}", i + 1),
                )),
                Err(p) => {
                    // Pinned host memory is allocated here: running out of it is `oom`.
                    let raw = panic_message(&*p);
                    Err(match classify_panic(&raw) {
                        ErrorClass::Oom => Failure::new(
                            ErrorClass::Oom,
                            format!("epoch {epoch} batch {}: {}", i + 1, torch_message(&raw)),
                        ),
                        _ => Failure::new(
                            ErrorClass::Internal,
                            format!(
                                "the data loader panicked building batch {} of epoch {epoch}: {raw}",
                                i + 1
                            ),
                        ),
                    })
                }
            };
            let failed = item.is_err();
            if tx.send(item).is_err() || failed {
                return;
            }
        }
    });
    rx
}
