//! Throughput measurement shared by `annbatch demo`, `annbatch bench-loader` and
//! `benches/throughput.rs`: cells/s of a loader epoch and of the decode-only ceiling.

use std::time::Instant;

use crate::collection::DatasetCollection;
use crate::error::Result;
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
    let batches = loader.epoch(epoch)?;
    timed(t, batches, max_cells, |b| {
        b.x.size().first().copied().unwrap_or(0) as u64
    })
}

/// Streams epoch `epoch` (up to `max_cells` cells) as the DLPack batches the Python and C front
/// ends hand out, each dropped (returned to the pool) as soon as it is counted, and times it.
///
/// # Errors
/// As [`Loader::dl_epoch`], and any read error of the epoch.
pub fn dl_loader_rate(loader: &Loader, epoch: u64, max_cells: u64) -> Result<Rate> {
    let t = Instant::now();
    let batches = loader.dl_epoch(epoch)?;
    timed(t, batches, max_cells, |b| b.x.rows())
}

/// Cells of `batches` (counted by `rows`) from `t` on, until they end or pass `max_cells`.
fn timed<B>(
    t: Instant,
    batches: impl IntoIterator<Item = Result<B>>,
    max_cells: u64,
    rows: impl Fn(&B) -> u64,
) -> Result<Rate> {
    let (mut cells, mut first) = (0u64, None);
    for batch in batches {
        let batch = batch?;
        first.get_or_insert_with(|| t.elapsed().as_secs_f64());
        cells += rows(&batch);
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

/// Rows per read of [`decode_ceiling`]: a fetch of the loader at 32 × 256.
pub const CEILING_ROWS_PER_READ: u64 = 8192;

/// The decode ceiling: every dataset's `X` read in order, [`CEILING_ROWS_PER_READ`] rows at a
/// time, into one reused batch buffer (warmed by an untimed first read), on all threads of the
/// current rayon pool. Each inner chunk is decoded once and its values written once — the work
/// no loader can skip. A loader epoch reads the same chunks in random order and also shuffles,
/// cuts and hands out batches: its cells/s over this one is how close it comes.
///
/// Run it in a process of its own, not before a loader epoch it is compared with: it warms
/// the page cache and the allocator for whatever follows.
///
/// # Errors
/// Any read error of the collection.
pub fn decode_ceiling(collection: &DatasetCollection) -> Result<Rate> {
    let mut buffer = collection.new_batch();
    let pieces = || {
        collection.datasets().iter().flat_map(|d| {
            let n = d.n_obs();
            (0..n.div_ceil(CEILING_ROWS_PER_READ)).map(move |i| {
                let start = i * CEILING_ROWS_PER_READ;
                (d, start..(start + CEILING_ROWS_PER_READ).min(n))
            })
        })
    };
    if let Some((d, rows)) = pieces().next() {
        d.x().read_rows(&[rows], &mut buffer)?;
    }
    let t = Instant::now();
    for (d, rows) in pieces() {
        d.x().read_rows(&[rows], &mut buffer)?;
    }
    let seconds = t.elapsed().as_secs_f64();
    Ok(Rate {
        cells: collection.n_obs(),
        seconds,
        first_batch: seconds,
    })
}

/// Every stored chunk of every dataset's `X` decoded once into per-thread buffers and
/// nothing else (no values written anywhere): the decoder alone, the part of
/// [`decode_ceiling`] that is not placing values.
///
/// # Errors
/// Any read error of the collection.
pub fn decoder_alone(collection: &DatasetCollection) -> Result<Rate> {
    let t = Instant::now();
    for dataset in collection.datasets() {
        dataset.x().decode_pass()?;
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
