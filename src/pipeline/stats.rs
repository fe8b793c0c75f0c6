//! Where a loader's time goes: counters the producer and the consumer update as batches flow,
//! read as a [`LoaderStats`] snapshot (cheap: a few relaxed atomic adds per batch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Cumulative counters of one loader, over all its epochs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    cells: AtomicU64,
    read_ns: AtomicU64,
    assemble_ns: AtomicU64,
    blocked_ns: AtomicU64,
    starved_ns: AtomicU64,
    iterating_ns: AtomicU64,
    split_fetches: AtomicU64,
}

fn add(counter: &AtomicU64, d: Duration) {
    counter.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

impl Counters {
    /// A batch of `cells` rows handed to the consumer.
    pub(crate) fn delivered(&self, cells: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.cells.fetch_add(cells, Ordering::Relaxed);
    }
    /// Time spent reading and decoding chunks into batches.
    pub(crate) fn read(&self, d: Duration) {
        add(&self.read_ns, d);
    }
    /// Time spent on the rest of building batches (memory, row pointers, obs, device upload).
    pub(crate) fn assembled(&self, d: Duration) {
        add(&self.assemble_ns, d);
    }
    /// Time the producer waited for room in the channel (the consumer is the bottleneck).
    pub(crate) fn blocked(&self, d: Duration) {
        add(&self.blocked_ns, d);
    }
    /// Time the consumer waited for a batch (the loader is the bottleneck).
    pub(crate) fn starved(&self, d: Duration) {
        add(&self.starved_ns, d);
    }
    /// A fetch built in several groups, to stay within the memory bound.
    pub(crate) fn split_fetch(&self) {
        self.split_fetches.fetch_add(1, Ordering::Relaxed);
    }
    /// Time an epoch's iterator was alive.
    pub(crate) fn iterated(&self, d: Duration) {
        add(&self.iterating_ns, d);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> LoaderStats {
        let secs = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 * 1e-9;
        LoaderStats {
            batches: self.batches.load(Ordering::Relaxed),
            cells: self.cells.load(Ordering::Relaxed),
            seconds: secs(&self.iterating_ns),
            read_seconds: secs(&self.read_ns),
            assemble_seconds: secs(&self.assemble_ns),
            consumer_seconds: secs(&self.blocked_ns),
            starved_seconds: secs(&self.starved_ns),
            split_fetches: self.split_fetches.load(Ordering::Relaxed),
        }
    }
}

/// Where a loader's time went, summed over every epoch since it was built
/// (`Loader::stats`).
///
/// The producer's time splits into `read_seconds` (reading and decoding chunks straight into
/// the batches, on all decode threads), `assemble_seconds` (the rest of building batches: row
/// pointers, obs columns, placing on the device) and `consumer_seconds` (waiting for the
/// consumer to take batches: the training step is the bottleneck). `starved_seconds` is the
/// consumer's side: time it waited for a batch (the loader is the bottleneck).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoaderStats {
    /// Batches delivered.
    pub batches: u64,
    /// Rows (cells) delivered.
    pub cells: u64,
    /// Wall-clock seconds the epochs' iterators were alive.
    pub seconds: f64,
    /// Seconds the producer spent reading and decoding.
    pub read_seconds: f64,
    /// Seconds the producer spent on the rest of assembly and placement.
    pub assemble_seconds: f64,
    /// Seconds the producer waited for the consumer.
    pub consumer_seconds: f64,
    /// Seconds the consumer waited for the loader.
    pub starved_seconds: f64,
    /// Fetches built in several groups of batches to stay within the memory bound
    /// ([`crate::LoaderOptions::batch_memory`]); each group decodes its own chunks.
    pub split_fetches: u64,
}

impl LoaderStats {
    /// Cells per second over the time the iterators were alive.
    pub fn cells_per_second(&self) -> f64 {
        self.cells as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

impl std::fmt::Display for LoaderStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cells in {} batches, {:.0} cells/s; producer: read+decode {:.2} s, assemble {:.2} s, \
             waiting for the consumer {:.2} s; consumer waiting for batches {:.2} s",
            self.cells,
            self.batches,
            self.cells_per_second(),
            self.read_seconds,
            self.assemble_seconds,
            self.consumer_seconds,
            self.starved_seconds
        )
    }
}
