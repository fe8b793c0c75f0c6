//! [`ElasticState`]: the global batches of an epoch not yet delivered (see `elastic.rs` for the
//! global order they index).

use std::ops::Range;

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
