//! Random contiguous chunks, shuffled again in memory: annbatch's `RandomSampler`.

use super::ChunkPlan;

/// Every row once per epoch: chunks of `chunk_size` rows in a random order, `preload_nchunks`
/// of them per fetch, the fetched rows permuted and cut into batches.
///
/// The randomness is a pure function of `(seed, epoch)`.
///
/// ```
/// use annbatch::sampler::{RandomSampler, Sampler};
/// let s = RandomSampler::new(4096, 32, 256).seed(7).drop_last(true);
/// assert_eq!(s.n_batches(100_000), 24);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSampler(ChunkPlan);

impl RandomSampler {
    /// `batch_size` rows per batch, read `chunk_size` rows per range, `preload_nchunks` ranges
    /// per fetch.
    pub fn new(batch_size: usize, chunk_size: u64, preload_nchunks: usize) -> Self {
        Self(ChunkPlan::new(
            batch_size,
            chunk_size,
            preload_nchunks,
            true,
        ))
    }

    /// Drop the last incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.0.drop_last = drop_last;
        self
    }

    /// The random seed. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// The underlying plan.
    pub fn plan(&self) -> &ChunkPlan {
        &self.0
    }
}

delegate_to_plan!(RandomSampler);
