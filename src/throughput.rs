//! Throughput measurement shared by `annbatch demo`, `annbatch bench-loader` and
//! `benches/throughput.rs`: cells/s of a loader epoch and of the decode-only ceiling.

use std::time::Instant;

use crate::batch::XBatch;
use crate::collection::DatasetCollection;
use crate::error::Result;
#[cfg(feature = "tch")]
use crate::loader::Loader;

/// One timed run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Cells delivered.
    pub cells: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Seconds until the first batch arrived.
    pub first_batch: f64,
}

impl Rate {
    /// Cells per second.
    pub fn cells_per_second(&self) -> f64 {
        self.cells as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// Streams epoch `epoch` (up to `max_cells` cells) as `tch::Tensor` batches and times it.
///
/// # Errors
/// As [`Loader::epoch`], and any read error of the epoch.
#[cfg(feature = "tch")]
pub fn loader_rate(loader: &Loader, epoch: u64, max_cells: u64) -> Result<Rate> {
    let t = Instant::now();
    let (mut cells, mut first) = (0u64, None);
    for batch in loader.epoch(epoch)? {
        let batch = batch?;
        first.get_or_insert_with(|| t.elapsed().as_secs_f64());
        cells += batch.x.size().first().copied().unwrap_or(0) as u64;
        if cells >= max_cells {
            break;
        }
    }
    Ok(Rate {
        cells,
        seconds: t.elapsed().as_secs_f64(),
        first_batch: first.unwrap_or(0.0),
    })
}

/// The decode-only ceiling: every dataset read whole into `buffer` (pass the same one each
/// time: a fresh one pays its page faults), so each inner chunk is decoded exactly once, on all
/// cores of the current rayon pool.
///
/// # Errors
/// Any read error of the collection.
pub fn decode_ceiling(collection: &DatasetCollection, buffer: &mut XBatch) -> Result<Rate> {
    let t = Instant::now();
    for w in collection.offsets().windows(2) {
        collection.read_rows(&[w[0]..w[1]], buffer)?;
    }
    let seconds = t.elapsed().as_secs_f64();
    Ok(Rate {
        cells: collection.n_obs(),
        seconds,
        first_batch: seconds,
    })
}

/// The median of `values` (0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
