//! The chunk plan behind [`super::SequentialSampler`], [`super::RandomSampler`] and
//! [`super::DistributedSampler`].
//!
//! An epoch is a stream of rows: contiguous chunks of `chunk_size` rows, in order or shuffled
//! (the incomplete chunk, if any, always last), so that every row appears exactly once. A shard
//! (rank, DataLoader worker) takes one contiguous slice of that stream. Its rows are read
//! `chunk_size * preload_nchunks` at a time (one [`LoadRequest`]), shuffled in memory and cut
//! into batches of `batch_size`.
//!
//! ```text
//! chunks (shuffled):  [c7][c2][c9][c0][c4][c1] ... [c_last<incomplete>]
//! request k:          |<---- preload_nchunks chunks ---->|   read, permute rows, split:
//! batches:            [b][b][b][b]   (chunk_size * preload_nchunks / batch_size of them)
//! ```

use std::ops::Range;

use rand::seq::SliceRandom;

use super::{check_fetch_shape, check_shard, stream_rng, LoadRequest, Requests, Sampler};
use crate::error::{Error, Result};

const PURPOSE_CHUNK_ORDER: u64 = 1;
pub(super) const PURPOSE_ROW_SHUFFLE: u64 = 2;

/// Chunked sampling configuration (annbatch's `ChunkSampler`, shardable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Rows per batch.
    pub batch_size: usize,
    /// Rows per contiguous read.
    pub chunk_size: u64,
    /// Chunks per fetch.
    pub preload_nchunks: usize,
    /// Shuffle chunk order and rows within each fetch.
    pub shuffle: bool,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Random seed (with the epoch number, the only source of randomness).
    pub seed: u64,
    /// This sampler's share of the epoch: `(index, count)`; `(0, 1)` is everything.
    pub shard: (u64, u64),
    /// With several shards: give each the same number of rows, dropping the remainder
    /// (which rows are dropped changes every epoch when shuffling). Otherwise shards differ
    /// by at most one row and together cover every row.
    pub equal_shards: bool,
    /// One global order of batches per `(seed, epoch)`, whatever the number of shards; shards
    /// take contiguous runs of global batches (see [`super::ElasticState`]). Default false
    /// (annbatch's `DistributedSampler`: contiguous runs of rows, `n_obs / shards` each).
    pub elastic: bool,
    /// With `elastic`: the epoch to resume and its global batches not yet delivered.
    pub resume: Option<super::ElasticState>,
}

impl ChunkPlan {
    /// A plan with annbatch's parameters, one shard.
    pub fn new(batch_size: usize, chunk_size: u64, preload_nchunks: usize, shuffle: bool) -> Self {
        Self {
            batch_size,
            chunk_size,
            preload_nchunks,
            shuffle,
            drop_last: false,
            seed: 0,
            shard: (0, 1),
            equal_shards: true,
            elastic: false,
            resume: None,
        }
    }

    /// Rows per fetch.
    pub fn fetch_rows(&self) -> u64 {
        self.chunk_size.saturating_mul(self.preload_nchunks as u64)
    }

    /// The stream positions `[start, end)` this shard reads.
    fn shard_span(&self, n_obs: u64) -> Range<u64> {
        let (index, count) = self.shard;
        if count <= 1 {
            return 0..n_obs;
        }
        if self.equal_shards {
            let mut per = n_obs / count;
            if self.drop_last {
                per -= per % self.batch_size as u64;
            }
            index * per..(index + 1) * per
        } else {
            let (per, extra) = (n_obs / count, n_obs % count);
            let start = index * per + index.min(extra);
            start..start + per + u64::from(index < extra)
        }
    }

    /// Chunk ids in epoch order: full chunks (shuffled or not), then the incomplete one.
    pub(super) fn chunk_order(&self, n_obs: u64, epoch: u64) -> Vec<u64> {
        let full = n_obs / self.chunk_size;
        let mut order: Vec<u64> = (0..full).collect();
        if self.shuffle {
            order.shuffle(&mut stream_rng(self.seed, epoch, PURPOSE_CHUNK_ORDER, 0));
        }
        if !n_obs.is_multiple_of(self.chunk_size) {
            order.push(full);
        }
        order
    }
}

/// Row ranges covering stream positions `span` of the chunk stream `order`.
pub(super) fn stream_ranges(
    order: &[u64],
    chunk_size: u64,
    n_obs: u64,
    span: Range<u64>,
) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut pos = span.start;
    while pos < span.end {
        let k = (pos / chunk_size) as usize;
        let chunk_start = order[k] * chunk_size;
        let chunk_len = chunk_size.min(n_obs - chunk_start);
        let offset = pos - k as u64 * chunk_size;
        let take = chunk_len.saturating_sub(offset).min(span.end - pos);
        if take == 0 {
            break; // only the last chunk may be short, so this cannot happen inside an epoch
        }
        let start = chunk_start + offset;
        match out.last_mut() {
            Some(last) if last.end == start => last.end += take,
            _ => out.push(start..start + take),
        }
        pos += take;
    }
    out
}

/// Positions `0..rows`, permuted when `shuffle`, cut into batches of `batch_size`.
pub(crate) fn splits(
    rows: usize,
    batch_size: usize,
    rng: Option<&mut rand_chacha::ChaCha8Rng>,
) -> Vec<Vec<usize>> {
    let mut positions: Vec<usize> = (0..rows).collect();
    if let Some(rng) = rng {
        positions.shuffle(rng);
    }
    positions
        .chunks(batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

impl Sampler for ChunkPlan {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn batches_per_request(&self) -> usize {
        super::batches_per_fetch(self.batch_size, self.chunk_size, self.preload_nchunks)
    }

    fn validate(&self, n_obs: u64) -> Result<()> {
        check_fetch_shape(self.batch_size, self.chunk_size, self.preload_nchunks)?;
        if n_obs == 0 {
            return Err(Error::parameter("n_obs", 0, "the collection has no rows"));
        }
        // A chunk_size past n_obs is one short chunk of every row (as annbatch reads it).
        let (index, count) = self.shard;
        check_shard(index, count)?;
        if self.elastic {
            if self.elastic_state(n_obs, 0)?.len() < count && self.equal_shards {
                return Err(Error::parameter(
                    "world_size",
                    count,
                    format!("leaves no batch for a shard of {n_obs} rows"),
                ));
            }
            return Ok(());
        }
        if self.shard_span(n_obs).is_empty() {
            return Err(Error::parameter(
                "world_size",
                count,
                format!("leaves no rows (or no full batch) for a shard of {n_obs} rows"),
            ));
        }
        Ok(())
    }

    fn n_batches(&self, n_obs: u64) -> u64 {
        if self.elastic {
            // The epoch of a resumed state may hold fewer; `requests` knows the epoch.
            let epoch = self.resume.as_ref().map_or(0, |s| s.epoch);
            return self
                .elastic_mine(n_obs, epoch)
                .map_or(0, |mine| mine.iter().map(|r| r.end - r.start).sum());
        }
        let rows = {
            let span = self.shard_span(n_obs);
            span.end - span.start
        };
        let bs = self.batch_size.max(1) as u64;
        if self.drop_last {
            rows / bs
        } else {
            rows.div_ceil(bs)
        }
    }

    fn requests(&self, n_obs: u64, epoch: u64) -> Result<Requests<'_>> {
        self.validate(n_obs)?;
        if self.elastic {
            return self.elastic_requests(n_obs, epoch);
        }
        let order = self.chunk_order(n_obs, epoch);
        let span = self.shard_span(n_obs);
        let fetch = self.fetch_rows();
        let n_requests = (span.end - span.start).div_ceil(fetch);
        let shard = self.shard.0;
        Ok(Box::new((0..n_requests).filter_map(move |k| {
            let start = span.start + k * fetch;
            let mut rows = (span.end - start).min(fetch) as usize;
            if self.drop_last {
                rows -= rows % self.batch_size;
            }
            if rows == 0 {
                return None;
            }
            let requests =
                stream_ranges(&order, self.chunk_size, n_obs, start..start + rows as u64);
            let mut rng = self
                .shuffle
                .then(|| stream_rng(self.seed, epoch, PURPOSE_ROW_SHUFFLE, (shard << 40) | k));
            Some(Ok(LoadRequest {
                requests,
                splits: splits(rows, self.batch_size, rng.as_mut()),
            }))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(plan: &ChunkPlan, n: u64, epoch: u64) -> Vec<u64> {
        let mut rows = Vec::new();
        for req in plan.requests(n, epoch).expect("requests") {
            let req = req.expect("request");
            let fetched: Vec<u64> = req.requests.iter().flat_map(|r| r.clone()).collect();
            for split in &req.splits {
                rows.extend(split.iter().map(|&i| fetched[i]));
            }
        }
        rows
    }

    #[test]
    fn sequential_yields_rows_in_order() {
        let plan = ChunkPlan::new(64, 16, 4, false);
        assert_eq!(rows_of(&plan, 700, 0), (0..700).collect::<Vec<_>>());
        assert_eq!(plan.n_batches(700), 11);
    }

    #[test]
    fn shuffled_epochs_are_permutations_and_differ() {
        let plan = ChunkPlan::new(8, 4, 6, true);
        let a = rows_of(&plan, 103, 0);
        let b = rows_of(&plan, 103, 1);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, rows_of(&plan, 103, 0), "same seed and epoch, same rows");
    }

    #[test]
    fn a_chunk_longer_than_the_data_is_every_row_once() {
        for shuffle in [false, true] {
            let plan = ChunkPlan::new(32, 512, 4, shuffle);
            plan.validate(200)
                .expect("annbatch's defaults over 200 rows");
            let mut rows = rows_of(&plan, 200, 0);
            assert_eq!(plan.n_batches(200), 7);
            rows.sort_unstable();
            assert_eq!(rows, (0..200).collect::<Vec<_>>());
        }
    }

    #[test]
    fn stream_ranges_merge_adjacent_chunks() {
        assert_eq!(
            stream_ranges(&[0, 1, 3, 2], 4, 16, 2..15),
            vec![2..8, 12..16, 8..11]
        );
        // The short chunk comes last.
        assert_eq!(
            stream_ranges(&[2, 0, 3], 4, 14, 0..10),
            vec![8..12, 0..4, 12..14]
        );
    }

    #[test]
    fn impossible_parameters_are_errors() {
        let ok = ChunkPlan::new(64, 16, 4, true);
        assert!(ok.validate(700).is_ok());
        for bad in [
            ChunkPlan {
                batch_size: 0,
                ..ok.clone()
            },
            ChunkPlan {
                chunk_size: 0,
                ..ok.clone()
            },
            ChunkPlan {
                preload_nchunks: 0,
                ..ok.clone()
            },
            ChunkPlan {
                batch_size: 48,
                ..ok.clone()
            },
            ChunkPlan {
                batch_size: 128,
                ..ok.clone()
            },
            ChunkPlan {
                shard: (2, 2),
                ..ok.clone()
            },
            ChunkPlan {
                shard: (0, 800),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(700), Err(Error::InvalidParameter { .. })),
                "{bad:?}"
            );
        }
    }
}
