//! Batches: the epoch's seeded order, and a batch's images transformed in
//! parallel into one caller-owned buffer. Randomness per image comes from
//! (seed, epoch, index), so batches do not depend on thread scheduling.
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Why a batch could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The caller's buffer does not hold exactly the batch.
    #[error("a batch of {images} images of {per} bytes needs {} bytes, not {got}", .images * .per)]
    Buffer {
        images: usize,
        per: usize,
        got: usize,
    },
    /// An index beyond the split.
    #[error("index out of range")]
    IndexOutOfRange,
    #[error(transparent)]
    Transform(#[from] TransformError),
}

/// A batch of HWC u8 images and labels.
pub struct Batch {
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
}

/// Seeded per-epoch permutation: the same seed gives the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

/// Builds a train batch; each image's randomness comes from (seed, epoch, index)
/// so the result does not depend on thread scheduling.
pub fn train_batch(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    augment: &[String],
    seed: u64,
    epoch: u32,
) -> Result<Batch, BatchError> {
    let mut pixels = vec![0u8; (s * s * 3) as usize * idx.len()];
    let labels = train_batch_into(cache, idx, s, augment, seed, epoch, &mut pixels)?;
    Ok(Batch { pixels, labels })
}

/// [`train_batch`] into `out` (`idx.len()` · S·S·3 bytes, every one
/// overwritten: it need not be zeroed): the caller's buffer, reused from
/// batch to batch or the memory of the tensor that feeds the model. Returns
/// the labels.
pub fn train_batch_into(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    augment: &[String],
    seed: u64,
    epoch: u32,
    out: &mut [u8],
) -> Result<Vec<i64>, BatchError> {
    fill_batch(cache, idx, s, out, |i, img, out| {
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(1_000_003) ^ ((epoch as u64) << 40) ^ i as u64,
        );
        train_transform(img, s, augment, &mut rng, out)
    })
}

pub fn eval_batch(cache: &SplitCache, idx: &[usize], s: u32) -> Result<Batch, BatchError> {
    let mut pixels = vec![0u8; (s * s * 3) as usize * idx.len()];
    let labels = eval_batch_into(cache, idx, s, &mut pixels)?;
    Ok(Batch { pixels, labels })
}

/// [`eval_batch`] into `out`, as [`train_batch_into`].
pub fn eval_batch_into(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    out: &mut [u8],
) -> Result<Vec<i64>, BatchError> {
    fill_batch(cache, idx, s, out, |_, img, out| {
        eval_transform(img, s, out)
    })
}

/// Writes image `idx[k]` of `cache`, transformed by `transform` (given the
/// image's index), into the k-th S·S·3 slice of `out`, in parallel; returns
/// the labels. `out` must hold exactly `idx.len()` images.
pub(super) fn fill_batch(
    cache: &SplitCache,
    idx: &[usize],
    s: u32,
    out: &mut [u8],
    transform: impl Fn(usize, &ImageView, &mut [u8]) -> Result<(), TransformError> + Sync,
) -> Result<Vec<i64>, BatchError> {
    let per = (s * s * 3) as usize;
    if out.len() != per * idx.len() {
        return Err(BatchError::Buffer {
            images: idx.len(),
            per,
            got: out.len(),
        });
    }
    out.par_chunks_mut(per)
        .zip(idx.par_iter())
        .try_for_each(|(out, &i)| {
            let img = cache.image(i).ok_or(BatchError::IndexOutOfRange)?;
            transform(i, &img, out).map_err(BatchError::from)
        })?;
    Ok(idx
        .iter()
        .map(|&i| cache.labels.get(i).copied().unwrap_or(0))
        .collect())
}
