//! The prefetch pipeline: one background thread per epoch turns load requests into batches
//! while the consumer trains.
//!
//! ```text
//! sampler ─▶ producer thread: load requests, in order, two at a time being built
//!              on the rayon pool (each decodes all its chunks in parallel);
//!              sends each request's batches in order ─▶ bounded channel (capacity
//!              `prefetch`) ─▶ consumer
//! ```
//!
//! Batches arrive in sampler order whatever the thread timing (one producer, in-order sends).
//! Two requests are built at once (from the second on): the serial steps of one (sizing its
//! batches, cutting runs, making tensors) overlap the other's decoding. Backpressure: the
//! producer blocks when `prefetch` batches wait unconsumed, so memory is bounded by the waiting
//! batches + two requests' batches being built + those the consumer holds. Dropping the
//! [`Batches`] iterator sets a quit flag, disconnects the channel and joins the thread, which
//! first waits for the builds it started. A producer error or panic arrives as one `Err` item,
//! then the iterator ends.
//!
//! Observability: `tracing` events (`fetch`, `decode`, `assemble`, waits over 10 ms) at debug
//! level, and [`LoaderStats`] counters (read/decode vs assembly vs waiting on either side).

mod batches;
mod epoch;
mod stats;

pub use batches::{Batches, LoaderState};
pub(crate) use epoch::{run, Built, Epoch, PlanFn, ReadAheadFn, BUILDS_IN_FLIGHT};
pub(crate) use stats::Counters;
pub use stats::LoaderStats;
