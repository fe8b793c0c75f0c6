//! Samplers decide which rows are read together and how fetched rows become batches.
//!
//! A sampler turns `(n_obs, epoch)` into a sequence of [`LoadRequest`]s, annbatch's contract:
//! `requests` are global row ranges to read (a *fetch*), and `splits` say which of the fetched
//! rows (numbered 0.. in request order) form each batch. Randomness comes from a `u64` seed
//! and the epoch through [`stream_rng`], keyed by what it decides (chunk order, request `k`'s
//! shuffle), so the same seed and epoch give the same batches whatever the thread count, and
//! a run can resume after `k` batches by regenerating and skipping.
//!
//! Built in: [`SequentialSampler`], [`RandomSampler`], [`DistributedSampler`] (rank / world
//! size), [`ClassSampler`] (class-balanced or weighted, mixed-class batches). Custom samplers
//! implement [`Sampler`].

/// Implements [`Sampler`] for a newtype over [`ChunkPlan`] by delegation.
macro_rules! delegate_to_plan {
    ($t:ty) => {
        impl $crate::sampler::Sampler for $t {
            fn batch_size(&self) -> usize {
                self.0.batch_size
            }
            fn validate(&self, n_obs: u64) -> $crate::error::Result<()> {
                self.0.validate(n_obs)
            }
            fn n_batches(&self, n_obs: u64) -> u64 {
                self.0.n_batches(n_obs)
            }
            fn batches_per_request(&self) -> usize {
                self.0.batches_per_request()
            }
            fn requests(
                &self,
                n_obs: u64,
                epoch: u64,
            ) -> $crate::error::Result<$crate::sampler::Requests<'_>> {
                self.0.requests(n_obs, epoch)
            }
        }
    };
}

mod chunks;
mod class;
mod distributed;
mod elastic;
mod elastic_state;
mod random;
mod sequential;

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

pub use chunks::ChunkPlan;
pub use class::{ClassSampler, ClassWeights};
pub use distributed::DistributedSampler;
pub use elastic_state::ElasticState;
pub use random::RandomSampler;
pub use sequential::SequentialSampler;

/// One fetch: the rows to read, and how they are cut into batches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadRequest {
    /// Global row ranges to read, in order; fetched rows are numbered 0.. in this order.
    pub requests: Vec<Range<u64>>,
    /// One entry per batch: positions of its rows among the fetched rows.
    pub splits: Vec<Vec<usize>>,
}

impl LoadRequest {
    /// Number of fetched rows.
    pub fn n_rows(&self) -> u64 {
        self.requests
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.end.saturating_sub(r.start)))
    }

    /// The same batches, reading only the rows the splits use: a sampler may list far more
    /// rows than its batches take (a custom one listing 10⁸ rows for 32), and what a fetch
    /// holds per row must follow its batches, not its ranges. Rows keep their request order;
    /// a request whose splits use every row comes back unchanged. Expects a validated request.
    pub(crate) fn compacted(self) -> LoadRequest {
        let entries: usize = self.splits.iter().map(Vec::len).sum();
        let n_rows = self.n_rows();
        // Every row used (the built-in samplers): a bitmap of the rows, no sort. Its size is
        // bounded by the splits, which the batches' memory bounds.
        if n_rows <= entries as u64 {
            let mut seen = vec![0u64; (n_rows as usize).div_ceil(64)];
            for &p in self.splits.iter().flatten() {
                if let Some(word) = seen.get_mut(p / 64) {
                    *word |= 1 << (p % 64);
                }
            }
            let used: u64 = seen.iter().map(|w| u64::from(w.count_ones())).sum();
            if used == n_rows {
                return self;
            }
        }
        let mut used: Vec<usize> = self.splits.iter().flatten().copied().collect();
        used.sort_unstable();
        used.dedup();
        // The global row of each used position, walking the ranges once.
        let mut requests: Vec<Range<u64>> = Vec::new();
        let mut ranges = self.requests.iter();
        let (mut range, mut start) = (ranges.next(), 0usize);
        for &p in &used {
            while let Some(r) = range {
                let len = (r.end - r.start) as usize;
                if p < start + len {
                    break;
                }
                start += len;
                range = ranges.next();
            }
            let Some(r) = range else { break };
            let row = r.start + (p - start) as u64;
            match requests.last_mut() {
                Some(last) if last.end == row => last.end += 1,
                _ => requests.push(row..row + 1),
            }
        }
        let splits = self
            .splits
            .iter()
            .map(|split| {
                split
                    .iter()
                    .map(|p| used.binary_search(p).unwrap_or_default())
                    .collect()
            })
            .collect();
        LoadRequest { requests, splits }
    }

    /// Checks that every split index points at a fetched row.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a range past `n_obs` or a split index past the fetched rows.
    pub fn validate(&self, n_obs: u64) -> Result<()> {
        if let Some(r) = self
            .requests
            .iter()
            .find(|r| r.start > r.end || r.end > n_obs)
        {
            return Err(Error::parameter(
                "LoadRequest.requests",
                format!("{}..{}", r.start, r.end),
                format!("ranges must lie within 0..{n_obs}"),
            ));
        }
        let n = self.n_rows();
        for split in &self.splits {
            if let Some(&i) = split.iter().find(|&&i| i as u64 >= n) {
                return Err(Error::parameter(
                    "LoadRequest.splits",
                    i,
                    format!("index past the {n} fetched rows"),
                ));
            }
        }
        Ok(())
    }
}

/// Iterator of an epoch's load requests. A request may fail (a sampler written in another
/// language, one that reads state): the epoch then ends with that error.
pub type Requests<'a> = Box<dyn Iterator<Item = Result<LoadRequest>> + Send + 'a>;

/// Produces the load requests of an epoch.
pub trait Sampler: Send + Sync {
    /// Rows per batch (the last batch of an epoch may be smaller unless `drop_last`).
    fn batch_size(&self) -> usize;

    /// Checks the configuration against the data size; called before each epoch.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting that does not fit the data.
    fn validate(&self, n_obs: u64) -> Result<()>;

    /// Number of batches an epoch yields.
    fn n_batches(&self, n_obs: u64) -> u64;

    /// Batches a typical request holds: the loader's default prefetch depth. Default 2.
    fn batches_per_request(&self) -> usize {
        2
    }

    /// The load requests of epoch `epoch`, in order. Must be a pure function of the sampler's
    /// configuration, `n_obs` and `epoch`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when the sampler cannot cover `n_obs` rows.
    fn requests(&self, n_obs: u64, epoch: u64) -> Result<Requests<'_>>;
}

/// A deterministic random stream for `(seed, epoch, purpose, index)`.
pub fn stream_rng(seed: u64, epoch: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (i, v) in [seed, epoch, purpose, index].into_iter().enumerate() {
        key[i * 8..(i + 1) * 8].copy_from_slice(&v.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Checks `name > 0`.
fn positive(name: &'static str, v: u64) -> Result<()> {
    if v == 0 {
        Err(Error::parameter(name, v, "must be positive"))
    } else {
        Ok(())
    }
}

/// Checks a shard: `world_size > 0` and `rank < world_size` (the one wording of this rule).
pub(crate) fn check_shard(rank: u64, world_size: u64) -> Result<()> {
    if world_size == 0 {
        return Err(Error::parameter("world_size", 0, "must be positive"));
    }
    if rank >= world_size {
        return Err(Error::parameter(
            "rank",
            rank,
            format!("must be below world_size {world_size}"),
        ));
    }
    Ok(())
}

/// Batches in one fetch of `preload_nchunks` chunks of `chunk_size` rows.
pub(crate) fn batches_per_fetch(
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
) -> usize {
    (chunk_size.saturating_mul(preload_nchunks as u64) / batch_size.max(1) as u64) as usize
}

/// annbatch's rule for chunked samplers: positive sizes, and a fetch of
/// `chunk_size * preload_nchunks` rows cut into whole batches.
pub(crate) fn check_fetch_shape(
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
) -> Result<()> {
    positive("batch_size", batch_size as u64)?;
    positive("chunk_size", chunk_size)?;
    positive("preload_nchunks", preload_nchunks as u64)?;
    let Some(fetch) = chunk_size.checked_mul(preload_nchunks as u64) else {
        return Err(Error::parameter(
            "preload_nchunks",
            preload_nchunks,
            format!("chunk_size * preload_nchunks overflows (chunk_size = {chunk_size})"),
        ));
    };
    let batch = batch_size as u64;
    if batch > fetch {
        return Err(Error::parameter(
            "batch_size",
            batch_size,
            format!("cannot exceed chunk_size * preload_nchunks = {fetch}"),
        ));
    }
    if !fetch.is_multiple_of(batch) {
        return Err(Error::parameter(
            "batch_size",
            batch_size,
            format!(
                "chunk_size * preload_nchunks = {fetch} must be divisible by batch_size (remainder {})",
                fetch % batch
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The global rows of every batch of `request`.
    fn batch_rows(request: &LoadRequest) -> Vec<Vec<u64>> {
        let rows: Vec<u64> = request.requests.iter().cloned().flatten().collect();
        request
            .splits
            .iter()
            .map(|s| s.iter().map(|&p| rows[p]).collect())
            .collect()
    }

    #[test]
    fn a_compacted_request_holds_only_the_rows_its_batches_use() {
        // 10⁸ rows listed, 32 used (some twice, out of order, across ranges).
        let request = LoadRequest {
            requests: vec![0..100_000_000, 200_000_000..200_000_010],
            splits: vec![
                (0..16).map(|i| i * 1_000_000).collect(),
                vec![99_999_999, 100_000_009, 100_000_000, 5, 5, 0],
            ],
        };
        let want: Vec<Vec<u64>> = vec![
            (0..16).map(|i| i * 1_000_000).collect(),
            vec![99_999_999, 200_000_009, 200_000_000, 5, 5, 0],
        ];
        let compact = request.clone().compacted();
        assert_eq!(compact.n_rows(), 20);
        assert_eq!(batch_rows(&compact), want);
        assert!(compact.validate(300_000_000).is_ok());
        // Consecutive used rows share a range.
        assert_eq!(compact.requests[0], 0..1);
        assert!(compact.requests.contains(&(99_999_999..100_000_000)));
    }

    #[test]
    fn a_request_using_every_row_is_left_as_it_is() {
        let request = LoadRequest {
            requests: vec![8..12, 0..4],
            splits: vec![vec![7, 0, 3], vec![1, 2, 4, 5, 6]],
        };
        assert_eq!(request.clone().compacted(), request);
        assert_eq!(
            LoadRequest {
                requests: vec![u64::MAX - 1..u64::MAX, 0..u64::MAX],
                splits: vec![]
            }
            .n_rows(),
            u64::MAX
        );
    }
}
