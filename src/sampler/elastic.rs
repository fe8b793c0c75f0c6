//! Elastic sharding: one global order of an epoch's samples, whatever the world size.
//!
//! With [`ChunkPlan::elastic`] the epoch is defined once, by `(seed, epoch)` alone: the chunk
//! order, then *global fetches* of `chunk_size × preload_nchunks` consecutive rows of it, each
//! fetch's rows permuted (seeded by the fetch's global index) and cut into *global batches*.
//! Shards (ranks × DataLoader workers) take disjoint, contiguous runs of those global batches;
//! a shard reads only the fetches its batches are in (a fetch at the border of two runs is read
//! by both).
//!
//! ```text
//! global batches:  |g0 g1 g2 g3|g4 g5 g6 g7|g8 g9 ...     (| = fetch border)
//! 2 ranks:          rank 0: g0..g5           rank 1: g6..g11
//! 3 ranks:          rank 0: g0..g3    rank 1: g4..g7    rank 2: g8..g11
//! ```
//!
//! So the batches and their order do not depend on the world size, and an [`ElasticState`] —
//! the global batches of the epoch not yet delivered — resumes on any number of ranks: saved
//! where `N` ranks each delivered `b` batches ([`ElasticState::after`]), it is split afresh
//! among the `M` ranks that resume it, nothing lost and nothing repeated.
//!
//! With equal shards (the default) each shard gets `⌊remaining / shards⌋` batches; the last few
//! of the epoch (fewer than the shards) are not delivered.

use std::ops::Range;

use rand::seq::SliceRandom;

use super::chunks::{stream_ranges, ChunkPlan, PURPOSE_ROW_SHUFFLE};
use super::elastic_state::ElasticState;
use super::{stream_rng, LoadRequest, Requests};
use crate::error::{Error, Result};

impl ChunkPlan {
    /// Global batches per full fetch.
    fn batches_per_fetch(&self) -> u64 {
        (self.fetch_rows() / self.batch_size.max(1) as u64).max(1)
    }

    /// The epoch's global batches: every full fetch's, then the last fetch's (its last batch
    /// short, or dropped with `drop_last`).
    pub(crate) fn global_batches(&self, n_obs: u64) -> u64 {
        let fetch = self.fetch_rows().max(1);
        let bs = self.batch_size.max(1) as u64;
        let last = n_obs % fetch;
        let last = if self.drop_last {
            last / bs
        } else {
            last.div_ceil(bs)
        };
        (n_obs / fetch) * self.batches_per_fetch() + last
    }

    /// The state epoch `epoch` starts from: the resumed one, or all of it.
    pub(crate) fn elastic_state(&self, n_obs: u64, epoch: u64) -> Result<ElasticState> {
        let total = self.global_batches(n_obs);
        match &self.resume {
            Some(state) if state.epoch == epoch => {
                state.check(total)?;
                Ok(state.clone())
            }
            _ => Ok(ElasticState::fresh(epoch, total)),
        }
    }

    /// This shard's global batches of epoch `epoch`.
    pub(crate) fn elastic_mine(&self, n_obs: u64, epoch: u64) -> Result<Vec<Range<u64>>> {
        let (index, count) = self.shard;
        Ok(self
            .elastic_state(n_obs, epoch)?
            .shard(index, count, self.equal_shards))
    }

    /// This shard's load requests: one per global fetch its batches are in.
    pub(crate) fn elastic_requests(&self, n_obs: u64, epoch: u64) -> Result<Requests<'_>> {
        let mine = self.elastic_mine(n_obs, epoch)?;
        let per = self.batches_per_fetch();
        // (fetch, batches of it) in order; consecutive ranges in one fetch are merged.
        let mut groups: Vec<(u64, Vec<u64>)> = Vec::new();
        for range in mine {
            let mut g = range.start;
            while g < range.end {
                let fetch = g / per;
                let end = range.end.min((fetch + 1) * per);
                match groups.last_mut() {
                    Some((f, js)) if *f == fetch => js.extend(g % per..g % per + (end - g)),
                    _ => groups.push((fetch, (g % per..g % per + (end - g)).collect())),
                }
                g = end;
            }
        }
        let order = self.chunk_order(n_obs, epoch);
        let (fetch_rows, bs) = (self.fetch_rows(), self.batch_size.max(1));
        Ok(Box::new(groups.into_iter().map(move |(fetch, js)| {
            let start = fetch * fetch_rows;
            let rows = usize::try_from(fetch_rows.min(n_obs - start))
                .map_err(|e| Error::Internal(e.to_string()))?;
            let mut positions: Vec<usize> = (0..rows).collect();
            if self.shuffle {
                positions.shuffle(&mut stream_rng(
                    self.seed,
                    epoch,
                    PURPOSE_ROW_SHUFFLE,
                    fetch,
                ));
            }
            let splits = js
                .iter()
                .map(|&j| {
                    let a = (j as usize).saturating_mul(bs).min(rows);
                    positions[a..(a + bs).min(rows)].to_vec()
                })
                .filter(|s| !s.is_empty())
                .collect();
            Ok(LoadRequest {
                requests: stream_ranges(&order, self.chunk_size, n_obs, start..start + rows as u64),
                splits,
            })
        })))
    }
}
