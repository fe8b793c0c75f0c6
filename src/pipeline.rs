//! The prefetch pipeline: one background thread per epoch turns load requests into batches
//! while the consumer trains.
//!
//! ```text
//! sampler ─▶ producer thread: for each load request, in order,
//!              build its batches (decoding on the rayon pool, all chunks in parallel)
//!              send them one by one ─▶ bounded channel (capacity `prefetch`) ─▶ consumer
//! ```
//!
//! Batches arrive in sampler order whatever the thread timing (one producer, in-order sends).
//! Backpressure: the producer blocks when `prefetch` batches wait unconsumed, so memory is bounded
//! by the waiting batches + one request's batches being built + those the consumer holds. The
//! producer builds request k+1 while the consumer takes request k's batches from the channel.
//! Dropping the [`Batches`] iterator sets a quit flag, disconnects the channel and joins the
//! thread. A producer error or panic arrives as one `Err` item, then the iterator ends.
//!
//! Observability: `tracing` events (`fetch`, `decode`, `assemble`, waits over 10 ms) at debug
//! level, and [`LoaderStats`] counters (read/decode vs assembly vs waiting on either side).

mod batches;
mod epoch;
mod stats;

pub use batches::{Batches, LoaderState};
pub(crate) use epoch::{run, Built, Epoch, ReadAheadFn};
pub(crate) use stats::Counters;
pub use stats::LoaderStats;
