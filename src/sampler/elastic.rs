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
use super::{stream_rng, LoadRequest, Requests};
use crate::error::{Error, Result};

/// The global batches of an epoch not yet delivered, whatever the world size that delivered the
/// others: save it from any rank (ranks in lockstep), resume it on any number of ranks.
///
/// ```
/// use annbatch::sampler::ElasticState;
/// // 10 global batches, 2 ranks each delivered 3 of their 5.
/// let state = ElasticState::fresh(0, 10).after(2, true, 3).expect("state");
/// assert_eq!(state.remaining, vec![3..5, 8..10]);
/// assert_eq!(state.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticState {
    /// The epoch.
    pub epoch: u64,
    /// Global batch ids, in sorted, disjoint ranges.
    pub remaining: Vec<Range<u64>>,
}

impl ElasticState {
    /// Epoch `epoch` with all its `total` global batches still to deliver.
    pub fn fresh(epoch: u64, total: u64) -> Self {
        Self {
            epoch,
            remaining: if total == 0 {
                Vec::new()
            } else {
                vec![0..total]
            },
        }
    }

    /// Global batches left.
    pub fn len(&self) -> u64 {
        self.remaining.iter().map(|r| r.end - r.start).sum()
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The global batches shard `index` of `count` takes: a contiguous run of the remaining
    /// ones (`equal`: `⌊len / count⌋` each; else balanced, the first shards one more).
    pub(crate) fn shard(&self, index: u64, count: u64, equal: bool) -> Vec<Range<u64>> {
        self.slice(run_of(self.len(), index, count, equal))
    }

    /// What remains once each of `count` shards (each a contiguous run of this state)
    /// has delivered its first `delivered` batches.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for no shards, or more batches delivered than a shard has.
    pub fn after(&self, count: u64, equal: bool, delivered: u64) -> Result<Self> {
        if count == 0 {
            return Err(Error::parameter("world_size", 0, "must be positive"));
        }
        let per_most = run_of(self.len(), 0, count, equal);
        if delivered > per_most.end - per_most.start {
            return Err(Error::parameter(
                "batches",
                delivered,
                format!("more than a shard of {count} holds in this state"),
            ));
        }
        let mut done = Vec::new();
        for index in 0..count {
            let run = run_of(self.len(), index, count, equal);
            let take = delivered.min(run.end - run.start);
            done.push(run.start..run.start + take);
        }
        // Positions (in the concatenation of `remaining`) not delivered, then back to ids.
        let mut keep: Vec<Range<u64>> = Vec::new();
        let mut at = 0u64;
        for d in &done {
            if d.start > at {
                keep.push(at..d.start);
            }
            at = at.max(d.end);
        }
        if at < self.len() {
            keep.push(at..self.len());
        }
        let mut remaining: Vec<Range<u64>> = Vec::new();
        for positions in keep {
            for r in self.slice(positions) {
                match remaining.last_mut() {
                    Some(last) if last.end == r.start => last.end = r.end,
                    _ => remaining.push(r),
                }
            }
        }
        Ok(Self {
            epoch: self.epoch,
            remaining,
        })
    }

    /// The ids at positions `positions` of the concatenation of `remaining`.
    fn slice(&self, positions: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = 0u64;
        for r in &self.remaining {
            let len = r.end - r.start;
            let (lo, hi) = (positions.start.max(at), positions.end.min(at + len));
            if lo < hi {
                out.push(r.start + (lo - at)..r.start + (hi - at));
            }
            at += len;
        }
        out
    }

    /// Checks that the ranges are sorted, disjoint and below `total`.
    pub(crate) fn check(&self, total: u64) -> Result<()> {
        let mut end = 0u64;
        for r in &self.remaining {
            if r.start < end || r.start > r.end || r.end > total {
                return Err(Error::parameter(
                    "remaining",
                    format!("{}..{}", r.start, r.end),
                    format!(
                        "global batch ranges must be sorted, disjoint and below {total} (this \
                         epoch's global batches): the state is of another collection or settings"
                    ),
                ));
            }
            end = r.end;
        }
        Ok(())
    }
}

/// Positions `[start, end)` of shard `index` of `count` in `len` items.
fn run_of(len: u64, index: u64, count: u64, equal: bool) -> Range<u64> {
    let count = count.max(1);
    if equal {
        let per = len / count;
        index * per..(index + 1) * per
    } else {
        let (per, extra) = (len / count, len % count);
        let start = index * per + index.min(extra);
        start..start + per + u64::from(index < extra)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_split_and_resume_without_loss_or_repeat() {
        let fresh = ElasticState::fresh(3, 10);
        assert_eq!(fresh.shard(0, 3, true), vec![0..3]);
        assert_eq!(fresh.shard(2, 3, true), vec![6..9]);
        assert_eq!(fresh.shard(0, 3, false), vec![0..4]);
        assert_eq!(fresh.shard(2, 3, false), vec![7..10]);
        let after = fresh.after(2, true, 3).expect("after");
        assert_eq!(after.remaining, vec![3..5, 8..10]);
        // Three ranks resume the four batches left: 1 each, one left over (equal shards) ...
        let shards: Vec<_> = (0..3).map(|i| after.shard(i, 3, true)).collect();
        assert_eq!(shards, vec![vec![3..4], vec![4..5], vec![8..9]]);
        // ... or all of them (balanced).
        let shards: Vec<_> = (0..3).map(|i| after.shard(i, 3, false)).collect();
        assert_eq!(shards, vec![vec![3..5], vec![8..9], vec![9..10]]);
        assert!(fresh.after(2, true, 6).is_err());
        assert!(ElasticState {
            epoch: 0,
            remaining: vec![4..6, 5..7]
        }
        .check(10)
        .is_err());
    }
}
