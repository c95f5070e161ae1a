//! Datasets, on the coordinator's side: the shared `sweep-dataset` crate
//! (ImageFolder scan, content hash, demo generator, decoded-image cache),
//! re-exported so the flow reads `crate::dataset::…`, and [`decoded`], which
//! builds the shared cache before a sweep's first trial.
pub use sweep_dataset::{cache, demo, hash, imagefolder};
pub mod decoded;
