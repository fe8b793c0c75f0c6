//! `ClassSampler.sample(n_obs)` in Python: the requests the Rust class sampler makes for an
//! epoch, so users can preview them as annbatch's samplers allow.

use pyo3::prelude::*;

use super::run;
use crate::sampler::{ClassSampler, ClassWeights, Sampler};

/// The load requests of epoch `epoch` of a class sampler over `codes` (one per row): a list of
/// `(ranges, splits)`, `ranges` as `(start, stop)` pairs and `splits` as lists of positions.
#[pyfunction]
#[pyo3(signature = (codes, n_categories, *, batch_size, chunk_size, preload_nchunks,
    class_weights=None, num_samples=None, drop_last=false, seed=0, epoch=0))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn class_requests(
    py: Python<'_>,
    codes: Vec<i64>,
    n_categories: usize,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
    class_weights: Option<Vec<f64>>,
    num_samples: Option<u64>,
    drop_last: bool,
    seed: u64,
    epoch: u64,
) -> PyResult<Vec<(Vec<(u64, u64)>, Vec<Vec<usize>>)>> {
    run(py, || {
        let weights = class_weights.map_or(ClassWeights::Balanced, ClassWeights::Weights);
        let mut sampler = ClassSampler::new(
            &codes,
            n_categories,
            weights,
            batch_size,
            chunk_size,
            preload_nchunks,
        )?
        .drop_last(drop_last)
        .seed(seed);
        if let Some(n) = num_samples {
            sampler = sampler.num_samples(n);
        }
        let n_obs = codes.len() as u64;
        let requests = sampler
            .requests(n_obs, epoch)?
            .map(|request| {
                request.map(|r| {
                    let ranges = r.requests.iter().map(|x| (x.start, x.end)).collect();
                    (ranges, r.splits)
                })
            })
            .collect();
        requests
    })
}
