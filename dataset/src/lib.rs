//! Everything about an image dataset that needs no libtorch, shared by the
//! coordinator (`sweep`: validation, `data show`, the demo generator, the
//! content hash) and the worker (`sweep-worker`: decoding and batches).
//!
//! - [`imagefolder`]: ImageFolder scan, bounded decoding, torchvision-equivalent
//!   resize/crop/flip on plain `u8` buffers, deterministic batches.
//! - [`demo`]: the synthetic 12-class zodiac dataset behind `make demo`.
//! - [`hash`]: the dataset's content hash.
//! - [`cache`]: the shared, memory-mapped decoded-image cache.
//!
//! Must never depend on tch or on the database.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod cache;
pub mod demo;
pub mod hash;
pub mod imagefolder;
