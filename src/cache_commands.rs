//! `sweep cache ls | build | clear` and `sweep bench data`: the shared
//! decoded-image cache (`sweep_dataset::cache`) seen from the command line.
//! `bench data` runs the worker's own input pipeline (the same cache build,
//! epoch order and batch assembly functions of `sweep-dataset`), without the
//! model, so that it measures what feeds a GPU and nothing else.
use crate::cli::{BenchCommand, CacheCommand};
use crate::dataset::{cache, hash, imagefolder as data};
use crate::error::{CmdResult, EXIT_OK, Error as CliError};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use sweep_protocol::config::{CacheSize, TrialConfig};

/// `--cache-size` as the stored shorter side (`None`: original).
fn parse_cache_size(image_size: u32, arg: Option<&str>) -> Result<Option<u32>, CliError> {
    let cfg = match arg {
        None => TrialConfig {
            image_size,
            ..TrialConfig::default()
        },
        Some("original") => TrialConfig {
            image_size,
            cache_size: Some(CacheSize::ORIGINAL),
            ..TrialConfig::default()
        },
        Some(n) => match n.parse::<u32>() {
            Ok(n) if (image_size..=8192).contains(&n) => TrialConfig {
                image_size,
                cache_size: Some(CacheSize::Short(n)),
                ..TrialConfig::default()
            },
            _ => {
                return Err(CliError::bad_input(format!(
                    "--cache-size {n:?} is not a shorter side between the image size ({image_size}) and 8192, nor \"original\""
                )));
            }
        },
    };
    Ok(cfg.cache_short())
}

fn scan(dataset: &Path) -> Result<data::Layout, CliError> {
    data::scan(dataset).map_err(|e| {
        CliError::bad_input(format!(
            "{e}; the dataset must be an ImageFolder with train/, valid/ and test/"
        ))
    })
}

fn ago(t: Option<SystemTime>) -> String {
    let Some(d) = t.and_then(|t| SystemTime::now().duration_since(t).ok()) else {
        return "-".into();
    };
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn cache(cmd: CacheCommand) -> CmdResult {
    let root = cache::root();
    match cmd {
        CacheCommand::Ls => {
            let listed = cache::list(&root);
            if listed.is_empty() {
                println!("no decoded-image caches under {}", root.display());
                return Ok(EXIT_OK);
            }
            let mut b = tabled::builder::Builder::default();
            b.push_record(["dataset", "hash", "size", "images", "bytes", "last used"]);
            let mut total = 0;
            for l in &listed {
                total += l.bytes;
                match &l.meta {
                    Some(m) => b.push_record([
                        m.dataset.clone(),
                        m.content_hash.clone(),
                        m.cache_size.clone(),
                        m.images().to_string(),
                        crate::trialfiles::retention::human_bytes(l.bytes),
                        ago(l.last_used),
                    ]),
                    None => b.push_record([
                        if l.building {
                            "(a build in progress, or killed)".to_string()
                        } else {
                            "(damaged: rebuilt when next used)".to_string()
                        },
                        l.key
                            .trim_start_matches('.')
                            .split('-')
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                        "-".into(),
                        "-".into(),
                        crate::trialfiles::retention::human_bytes(l.bytes),
                        "-".into(),
                    ]),
                }
            }
            let mut t = b.build();
            t.with(tabled::settings::Style::rounded());
            println!("{t}");
            println!(
                "{} cache(s), {} under {}",
                listed.len(),
                crate::trialfiles::retention::human_bytes(total),
                root.display()
            );
            Ok(EXIT_OK)
        }
        CacheCommand::Build {
            dataset,
            image_size,
            cache_size,
        } => {
            let short = parse_cache_size(image_size, cache_size.as_deref())?;
            let layout = scan(&dataset)?;
            let t0 = Instant::now();
            let h = hash::content_hash(&dataset);
            let r =
                cache::ensure(&root, &dataset, &layout, &h, short, 0).map_err(CliError::failed)?;
            let what = if r.built {
                format!("built in {:.1} s", t0.elapsed().as_secs_f64())
            } else {
                "already there".to_string()
            };
            println!(
                "{}: {} images at size {} ({what})",
                r.dir.display(),
                r.meta.images(),
                r.meta.cache_size
            );
            Ok(EXIT_OK)
        }
        CacheCommand::Clear { all, dataset } => {
            let target = dataset.as_deref().map(|d| {
                (
                    std::fs::canonicalize(d)
                        .ok()
                        .map(|p| p.display().to_string()),
                    d.to_string(),
                )
            });
            let pick = |l: &cache::Listed| match &target {
                None => all,
                Some((path, given)) => {
                    let key = l.key.trim_start_matches('.');
                    l.meta
                        .as_ref()
                        .is_some_and(|m| Some(&m.dataset) == path.as_ref())
                        || (given.len() >= 4 && key.starts_with(given.as_str()))
                }
            };
            let removed = cache::remove(&root, pick).map_err(CliError::failed)?;
            if removed.is_empty() {
                return match dataset {
                    Some(d) => Err(CliError::bad_input(format!(
                        "no decoded-image cache of {d:?} under {}; `sweep cache ls` lists them",
                        root.display()
                    ))),
                    None => {
                        println!("no decoded-image caches under {}", root.display());
                        Ok(EXIT_OK)
                    }
                };
            }
            let mut freed = 0;
            for r in &removed {
                match r {
                    cache::Removed::Removed { key, bytes } => {
                        freed += bytes;
                        println!(
                            "removed {key} ({})",
                            crate::trialfiles::retention::human_bytes(*bytes)
                        );
                    }
                    cache::Removed::Busy { key } => println!("kept {key}: a build is using it"),
                }
            }
            println!("freed {}", crate::trialfiles::retention::human_bytes(freed));
            Ok(EXIT_OK)
        }
    }
}

/// One timed pass over the training split, as a worker's loader makes it.
/// The batch buffer is reused from batch to batch, as a worker fills each
/// batch's tensor in place.
fn epoch_pass(
    pool: &rayon::ThreadPool,
    split: &data::SplitCache,
    cfg: &TrialConfig,
    epoch: u32,
    buf: &mut Vec<u8>,
) -> Result<(usize, Duration), CliError> {
    let t0 = Instant::now();
    let order = data::epoch_order(split.len(), cfg.seed, epoch);
    let per = (cfg.image_size * cfg.image_size * 3) as usize;
    let mut n = 0;
    for chunk in order.chunks(cfg.batch_size as usize) {
        buf.resize(per * chunk.len(), 0);
        let labels = pool
            .install(|| {
                data::train_batch_into(
                    split,
                    chunk,
                    cfg.image_size,
                    &cfg.augment,
                    cfg.seed,
                    epoch,
                    buf,
                )
            })
            .map_err(CliError::failed)?;
        n += labels.len();
        std::hint::black_box(&buf);
    }
    Ok((n, t0.elapsed()))
}

pub fn bench(cmd: BenchCommand) -> CmdResult {
    let BenchCommand::Data {
        dataset,
        image_size,
        batch_size,
        epochs,
        threads,
        cache_size,
        json,
    } = cmd;
    let short = parse_cache_size(image_size, cache_size.as_deref())?;
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let cfg = TrialConfig {
        image_size,
        batch_size,
        ..TrialConfig::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(CliError::failed)?;
    // A fresh cache of its own, so that epoch 1 decodes every image as a first run would.
    let root = cache::root().join(format!(".bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = (|| {
        let t0 = Instant::now();
        let layout = scan(&dataset)?;
        let h = hash::content_hash(&dataset);
        let ready = cache::ensure(&root, &dataset, &layout, &h, short, threads)
            .map_err(CliError::failed)?;
        let train = cache::open_split(&ready, &layout.train, true).map_err(CliError::failed)?;
        let decode = t0.elapsed();
        let mut buf = Vec::new();
        let (n, first) = epoch_pass(&pool, &train, &cfg, 1, &mut buf)?;
        let mut later = Vec::new();
        for e in 2..=epochs {
            later.push(epoch_pass(&pool, &train, &cfg, e, &mut buf)?.1);
        }
        // The validation and test splits are decoded into the cache too, but a
        // training epoch (and torchvision's, which this is compared with) does
        // not decode them: their share is reported, not counted in epoch 1.
        let others = ready
            .meta
            .splits
            .iter()
            .filter(|s| s.split != layout.train.split.name());
        let (other_images, other_s) =
            others.fold((0, 0.0), |(n, t), s| (n + s.images, t + s.seconds));
        Ok::<_, CliError>((
            n,
            ready.meta.images(),
            decode,
            first,
            later,
            other_images,
            Duration::from_secs_f64(other_s).min(decode),
        ))
    })();
    let _ = std::fs::remove_dir_all(&root);
    let (n, decoded, decode, first, later, other_images, other) = result?;
    let train_decode = decode - other;
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let epoch1 = n as f64 / (train_decode + first).as_secs_f64().max(1e-9);
    let later_total: Duration = later.iter().sum();
    let later_rate = n as f64 * later.len() as f64 / later_total.as_secs_f64().max(1e-9);
    if json {
        let v = serde_json::json!({
            "dataset": dataset.display().to_string(),
            "images": n,
            "decoded": decoded,
            "image_size": image_size,
            "batch_size": batch_size,
            "threads": threads,
            "cache_size": cache::size_label(short),
            "decode_s": decode.as_secs_f64(),
            "epoch1_decode_s": train_decode.as_secs_f64(),
            "epoch1_batches_s": first.as_secs_f64(),
            "other_splits_images": other_images,
            "other_splits_decode_s": other.as_secs_f64(),
            "epoch1_img_s": epoch1,
            "later_img_s": later_rate,
            "later_epochs_img_s": later.iter().map(|d| rate(*d)).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!(
            "bench data {}: {n} training images ({decoded} decoded in all splits), image_size {image_size}, batch {batch_size}, {threads} thread(s), cache size {}",
            dataset.display(),
            cache::size_label(short)
        );
        println!(
            "epoch 1 (hash + decode + resize the training split into the cache, then batches): {epoch1:.0} img/s  (decode {:.2} s, batches {:.2} s)",
            train_decode.as_secs_f64(),
            first.as_secs_f64()
        );
        println!(
            "validation and test splits ({other_images} images) decoded into the cache too, in {:.2} s: not part of a training epoch",
            other.as_secs_f64()
        );
        for (i, d) in later.iter().enumerate() {
            println!(
                "epoch {} (crop, resize, flip from the mapped cache): {:.0} img/s",
                i + 2,
                rate(*d)
            );
        }
    }
    Ok(EXIT_OK)
}
