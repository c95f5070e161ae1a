//! Datasets, on the coordinator's side: the shared `sweep-dataset` crate
//! (ImageFolder scan, content hash, demo generator), re-exported so the flow
//! reads `crate::dataset::…`.
pub use sweep_dataset::{demo, hash, imagefolder};
