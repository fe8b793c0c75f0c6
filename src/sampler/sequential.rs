//! Rows in storage order: annbatch's `SequentialSampler`.

use super::ChunkPlan;

/// Reads `chunk_size * preload_nchunks` rows at a time, in order, and yields them in order.
///
/// ```
/// use annbatch::sampler::{Sampler, SequentialSampler};
/// let s = SequentialSampler::new(64, 16, 4);
/// assert_eq!(s.n_batches(700), 11);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequentialSampler(ChunkPlan);

impl SequentialSampler {
    /// `batch_size` rows per batch, read `chunk_size` rows per range, `preload_nchunks` ranges
    /// per fetch.
    pub fn new(batch_size: usize, chunk_size: u64, preload_nchunks: usize) -> Self {
        Self(ChunkPlan::new(
            batch_size,
            chunk_size,
            preload_nchunks,
            false,
        ))
    }

    /// Drop the last incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.0.drop_last = drop_last;
        self
    }

    /// The underlying plan.
    pub fn plan(&self) -> &ChunkPlan {
        &self.0
    }
}

delegate_to_plan!(SequentialSampler);
