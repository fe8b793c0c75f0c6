//! One rank's share of every epoch: annbatch's `DistributedSampler`, shuffled across ranks.

use super::ChunkPlan;

/// Shards an epoch across `world_size` ranks (or DataLoader workers, or both).
///
/// All ranks derive the same chunk order from the shared seed and take disjoint, contiguous
/// slices of it, so the shards are disjoint; with `enforce_equal_batches` (the default) each rank
/// gets `n_obs / world_size` rows (rounded down to whole batches with `drop_last`) and the same
/// number of batches, the few remaining rows being dropped — different rows each epoch, since
/// the chunk order is reshuffled. Without it, shards differ by at most one row and together
/// cover every row.
///
/// ```
/// use annbatch::sampler::{DistributedSampler, Sampler};
/// let rank0 = DistributedSampler::new(64, 16, 4, 0, 2).seed(1);
/// let rank1 = DistributedSampler::new(64, 16, 4, 1, 2).seed(1);
/// assert_eq!(rank0.n_batches(700), rank1.n_batches(700));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedSampler(ChunkPlan);

impl DistributedSampler {
    /// Rank `rank` of `world_size`, shuffled, with annbatch's chunk parameters.
    pub fn new(
        batch_size: usize,
        chunk_size: u64,
        preload_nchunks: usize,
        rank: u64,
        world_size: u64,
    ) -> Self {
        let mut plan = ChunkPlan::new(batch_size, chunk_size, preload_nchunks, true);
        plan.shard = (rank, world_size);
        Self(plan)
    }

    /// Wraps a plan (e.g. of a [`super::SequentialSampler`]) with a rank and world size.
    pub fn from_plan(plan: ChunkPlan, rank: u64, world_size: u64) -> Self {
        Self(ChunkPlan {
            shard: (rank, world_size),
            ..plan
        })
    }

    /// Shuffle chunks and rows (default true).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.0.shuffle = shuffle;
        self
    }

    /// Drop each rank's last incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.0.drop_last = drop_last;
        self
    }

    /// The shared random seed: must be the same on every rank.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Equal row (and batch) counts on every rank (default true).
    pub fn enforce_equal_batches(mut self, equal: bool) -> Self {
        self.0.equal_shards = equal;
        self
    }

    /// The underlying plan.
    pub fn plan(&self) -> &ChunkPlan {
        &self.0
    }
}

delegate_to_plan!(DistributedSampler);
