//! Class-balanced or weighted sampling from an obs categorical: mixed-class batches.

use std::ops::Range;

use rand::Rng;

use super::chunks::splits;
use super::{check_fetch_shape, check_shard, stream_rng, LoadRequest, Requests, Sampler};
use crate::error::{Error, Result};
use crate::store::Column;

const PURPOSE_CLASS_FETCH: u64 = 3;

/// How often each class is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// Every class present equally often.
    Balanced,
    /// Relative weight per category (index = category code); need not sum to 1.
    Weights(Vec<f64>),
}

/// Draws rows by class: each fetch of `chunk_size * preload_nchunks` rows splits its rows among
/// the classes by a multinomial draw with the class weights, fills each class's quota with
/// random contiguous runs of up to `chunk_size` rows of that class, and shuffles the fetched rows
/// together, so batches mix classes in the weighted proportions (annbatch's categorical sampler gives
/// one class per batch). Sampling is with replacement; an epoch is `num_samples` rows
/// (default `n_obs`). Sharded over ranks or DataLoader workers ([`ClassSampler::shard`]), each
/// shard draws `num_samples / world_size` rows from its own random stream, so every shard has the
/// same number of batches and the shards together draw an epoch's worth.
///
/// Chunks never cross a class boundary, so on a collection shuffled without grouping
/// (classes interleaved row by row) most chunks are single rows: correct, but every row costs a
/// chunk decode. Convert with `groupby` on the class column to get long runs and fast reads.
#[derive(Debug, Clone)]
pub struct ClassSampler {
    /// Maximal runs of equal code, per class.
    runs: Vec<Vec<Range<u64>>>,
    /// Cumulative run lengths per class (for uniform row draws).
    cumulative: Vec<Vec<u64>>,
    /// Class probabilities (sum 1 over classes with rows).
    probabilities: Vec<f64>,
    n_obs: u64,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
    num_samples: Option<u64>,
    drop_last: bool,
    seed: u64,
    rank: u64,
    world_size: u64,
}

impl ClassSampler {
    /// From per-row category `codes` (`-1` = missing, never drawn) over `n_categories`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a code past `n_categories`, weights that do not match the
    /// categories, no drawable class, or a fetch shape annbatch refuses.
    pub fn new(
        codes: &[i64],
        n_categories: usize,
        weights: ClassWeights,
        batch_size: usize,
        chunk_size: u64,
        preload_nchunks: usize,
    ) -> Result<Self> {
        // `n_categories` is the caller's number: nothing is sized by it before it is checked
        // against what exists (the weights given, the codes' largest value).
        if let ClassWeights::Weights(w) = &weights {
            if w.len() != n_categories {
                return Err(Error::parameter(
                    "weights",
                    w.len(),
                    format!("need one weight per category ({n_categories})"),
                ));
            }
        }
        let max_code = codes.iter().copied().max().unwrap_or(-1);
        if let Some(bad) = usize::try_from(max_code)
            .ok()
            .filter(|&c| c >= n_categories)
            .map(|_| max_code)
        {
            return Err(Error::parameter(
                "codes",
                bad,
                format!("category code outside 0..{n_categories}"),
            ));
        }
        let n_classes = match &weights {
            ClassWeights::Weights(w) => w.len(),
            // Classes past the largest code have no rows and are never drawn.
            ClassWeights::Balanced => usize::try_from(max_code + 1).unwrap_or(0),
        };
        let mut runs: Vec<Vec<Range<u64>>> = vec![Vec::new(); n_classes];
        let mut i = 0usize;
        while i < codes.len() {
            let code = codes[i];
            let start = i;
            while i < codes.len() && codes[i] == code {
                i += 1;
            }
            if code < 0 {
                continue;
            }
            let class = usize::try_from(code)
                .ok()
                .filter(|&c| c < n_classes)
                .ok_or_else(|| {
                    Error::parameter(
                        "codes",
                        code,
                        format!("category code outside 0..{n_categories}"),
                    )
                })?;
            runs[class].push(start as u64..i as u64);
        }
        let cumulative: Vec<Vec<u64>> = runs
            .iter()
            .map(|r| {
                r.iter()
                    .scan(0, |acc, r| {
                        *acc += r.end - r.start;
                        Some(*acc)
                    })
                    .collect()
            })
            .collect();
        let raw: Vec<f64> = match weights {
            ClassWeights::Balanced => runs
                .iter()
                .map(|r| if r.is_empty() { 0.0 } else { 1.0 })
                .collect(),
            ClassWeights::Weights(w) => {
                if let Some(bad) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
                    return Err(Error::parameter(
                        "weights",
                        bad,
                        "weights must be finite and >= 0",
                    ));
                }
                w.iter()
                    .zip(&runs)
                    .map(|(&x, r)| if r.is_empty() { 0.0 } else { x })
                    .collect()
            }
        };
        let total: f64 = raw.iter().sum();
        if total <= 0.0 {
            return Err(Error::parameter(
                "weights",
                total,
                "no class with rows has a positive weight",
            ));
        }
        Ok(Self {
            runs,
            cumulative,
            probabilities: raw.iter().map(|x| x / total).collect(),
            n_obs: codes.len() as u64,
            batch_size,
            chunk_size,
            preload_nchunks,
            num_samples: None,
            drop_last: false,
            seed: 0,
            rank: 0,
            world_size: 1,
        })
    }

    /// From a categorical obs column.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a column that is not categorical, and as [`Self::new`].
    pub fn from_column(
        column: &Column,
        weights: ClassWeights,
        batch_size: usize,
        chunk_size: u64,
        preload_nchunks: usize,
    ) -> Result<Self> {
        match column {
            Column::Categorical {
                codes, categories, ..
            } => Self::new(
                codes,
                categories.len(),
                weights,
                batch_size,
                chunk_size,
                preload_nchunks,
            ),
            _ => Err(Error::parameter(
                "column",
                "not categorical",
                "ClassSampler needs a categorical column",
            )),
        }
    }

    /// Rows per epoch (default: `n_obs`).
    pub fn num_samples(mut self, n: u64) -> Self {
        self.num_samples = Some(n);
        self
    }
    /// Drop the last incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }
    /// The random seed. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Shard `rank` of `world_size` (ranks times DataLoader workers): its own random stream and
    /// an equal share of the epoch's rows.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `rank < world_size`.
    pub fn shard(mut self, rank: u64, world_size: u64) -> Result<Self> {
        check_shard(rank, world_size)?;
        self.rank = rank;
        self.world_size = world_size;
        Ok(self)
    }
    /// Probability of drawing each class.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    fn epoch_rows(&self) -> u64 {
        let rows = self.num_samples.unwrap_or(self.n_obs) / self.world_size;
        if self.drop_last {
            rows - rows % self.batch_size as u64
        } else {
            rows
        }
    }

    /// Rows per class for a fetch of `rows` rows: a multinomial draw with the class weights.
    fn quotas(&self, rng: &mut impl Rng, rows: u64) -> Vec<u64> {
        let mut quotas = vec![0u64; self.probabilities.len()];
        for _ in 0..rows {
            let mut u: f64 = rng.random();
            let mut class = None;
            for (c, &p) in self.probabilities.iter().enumerate() {
                if p > 0.0 {
                    class = Some(c);
                    if u < p {
                        break;
                    }
                    u -= p;
                }
            }
            // Rounding can leave u past the last class: take the last class with rows.
            if let Some(c) = class {
                quotas[c] += 1;
            }
        }
        quotas
    }

    /// A chunk of class `class`: a uniform row of it and up to `max` following rows of its run.
    fn draw(&self, rng: &mut impl Rng, class: usize, max: u64) -> Range<u64> {
        let cumulative = &self.cumulative[class];
        let total = cumulative.last().copied().unwrap_or(0);
        let target = rng.random_range(0..total);
        let run_index = cumulative.partition_point(|&c| c <= target);
        let run = &self.runs[class][run_index];
        let before = if run_index == 0 {
            0
        } else {
            cumulative[run_index - 1]
        };
        let start = run.start + (target - before);
        start..(start + max.min(self.chunk_size)).min(run.end)
    }
}

impl Sampler for ClassSampler {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn batches_per_request(&self) -> usize {
        super::batches_per_fetch(self.batch_size, self.chunk_size, self.preload_nchunks)
    }

    fn validate(&self, n_obs: u64) -> Result<()> {
        check_fetch_shape(self.batch_size, self.chunk_size, self.preload_nchunks)?;
        if n_obs != self.n_obs {
            return Err(Error::parameter(
                "codes",
                self.n_obs,
                format!("the class column has {} rows, the data {n_obs}", self.n_obs),
            ));
        }
        if self.epoch_rows() == 0 {
            return Err(Error::parameter(
                "num_samples",
                self.epoch_rows(),
                "an epoch (per shard) has no full batch",
            ));
        }
        Ok(())
    }

    fn n_batches(&self, _n_obs: u64) -> u64 {
        self.epoch_rows().div_ceil(self.batch_size as u64)
    }

    fn requests(&self, n_obs: u64, epoch: u64) -> Result<Requests<'_>> {
        self.validate(n_obs)?;
        let fetch = self.chunk_size.saturating_mul(self.preload_nchunks as u64);
        let total = self.epoch_rows();
        Ok(Box::new((0..total.div_ceil(fetch)).map(move |k| {
            let rows = (total - k * fetch).min(fetch);
            // Shard streams interleave: one shard (world_size 1) keeps index k.
            let stream = k * self.world_size + self.rank;
            let mut rng = stream_rng(self.seed, epoch, PURPOSE_CLASS_FETCH, stream);
            let mut requests = Vec::new();
            for (class, quota) in self.quotas(&mut rng, rows).into_iter().enumerate() {
                let mut got = 0;
                while got < quota {
                    let r = self.draw(&mut rng, class, quota - got);
                    got += r.end - r.start;
                    requests.push(r);
                }
            }
            Ok(LoadRequest {
                requests,
                splits: splits(rows as usize, self.batch_size, Some(&mut rng)),
            })
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_equal_and_draw_differently() {
        let codes: Vec<i64> = (0..1000).map(|i| i % 4).collect();
        let make = || ClassSampler::new(&codes, 4, ClassWeights::Balanced, 10, 5, 4);
        let shards: Vec<Vec<LoadRequest>> = (0..3)
            .map(|rank| {
                let s = make().expect("sampler").shard(rank, 3).expect("shard");
                assert_eq!(s.n_batches(1000), 34);
                s.requests(1000, 0)
                    .expect("requests")
                    .collect::<Result<Vec<_>>>()
                    .expect("request")
            })
            .collect();
        let rows = |reqs: &[LoadRequest]| reqs.iter().map(LoadRequest::n_rows).sum::<u64>();
        assert!(shards.iter().all(|s| rows(s) == 333));
        assert_ne!(shards[0], shards[1]);
        let whole: Vec<LoadRequest> = make()
            .expect("sampler")
            .requests(1000, 0)
            .expect("requests")
            .collect::<Result<_>>()
            .expect("request");
        let first: Vec<LoadRequest> = make()
            .expect("sampler")
            .shard(0, 1)
            .expect("shard")
            .requests(1000, 0)
            .expect("requests")
            .collect::<Result<_>>()
            .expect("request");
        assert_eq!(whole, first);
        assert!(make().expect("sampler").shard(3, 3).is_err());
    }

    #[test]
    fn a_huge_category_count_allocates_nothing_by_it() {
        let codes: Vec<i64> = (0..100).map(|i| i % 3).collect();
        let huge = usize::MAX / 2;
        let s = ClassSampler::new(&codes, huge, ClassWeights::Balanced, 10, 5, 4).expect("ok");
        assert_eq!(s.runs.len(), 3);
        let err = ClassSampler::new(&codes, huge, ClassWeights::Weights(vec![1.0; 3]), 10, 5, 4)
            .expect_err("weights must match");
        assert!(err.to_string().contains("one weight per category"), "{err}");
        let err = ClassSampler::new(&codes, 2, ClassWeights::Balanced, 10, 5, 4)
            .expect_err("code 2 of 2 categories");
        assert!(err.to_string().contains("outside 0..2"), "{err}");
    }

    #[test]
    fn balanced_draws_match_the_weights() {
        // 90% class 0, 9% class 1, 1% class 2, interleaved.
        let codes: Vec<i64> = (0..10_000)
            .map(|i| {
                if i % 100 == 0 {
                    2
                } else if i % 10 == 0 {
                    1
                } else {
                    0
                }
            })
            .collect();
        let s = ClassSampler::new(&codes, 3, ClassWeights::Balanced, 100, 10, 50).expect("sampler");
        let mut counts = [0f64; 3];
        for req in s.requests(10_000, 0).expect("requests") {
            let req = req.expect("request");
            for r in &req.requests {
                for row in r.clone() {
                    counts[codes[row as usize] as usize] += 1.0;
                }
            }
        }
        let n: f64 = counts.iter().sum();
        assert_eq!(n, 10_000.0);
        for c in counts {
            assert!((c / n - 1.0 / 3.0).abs() < 0.03, "{counts:?}");
        }
    }
}
