//! One epoch's producer: the sampler's load requests from a resume point on, each built into
//! batches on the rayon pool and sent in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batches::{Batches, LoaderState, Outlet};
use super::stats::Counters;
use crate::error::Result;
use crate::sampler::{LoadRequest, Sampler};

/// What an epoch's producer needs.
pub(crate) struct Epoch {
    /// The request source.
    pub(crate) sampler: Arc<dyn Sampler>,
    /// Rows of the collection.
    pub(crate) n_obs: u64,
    /// Where to start.
    pub(crate) state: LoaderState,
    /// Threads that decode and assemble.
    pub(crate) pool: Arc<rayon::ThreadPool>,
    /// Batches that may wait in the channel.
    pub(crate) capacity: usize,
    /// The loader's counters.
    pub(crate) stats: Arc<Counters>,
    /// Requests the bytes of the fetches to come (object stores): how many fetches ahead, and
    /// the call that starts a request's reads (what it returns holds the bytes).
    pub(crate) read_ahead: Option<(usize, ReadAheadFn)>,
}

/// A request waiting its turn: the batches to skip, and what holds its read-ahead bytes.
type Pending = (LoadRequest, usize, Option<Box<dyn Send>>);

/// Starts reading a request's bytes; dropping what it returns frees them.
pub(crate) type ReadAheadFn = Arc<dyn Fn(&LoadRequest) -> Box<dyn Send> + Send + Sync>;

/// One request's batches, each with its row count, and the time spent reading and decoding.
pub(crate) struct Built<T> {
    pub(crate) batches: Vec<(T, u64)>,
    pub(crate) read: Duration,
}

/// Streams the epoch: `build(request, first)` makes the batches `request.splits[first..]` (it
/// runs on `epoch.pool`); each is sent as soon as its request is built. Batches travel with
/// their row counts, which the consumer's end counts in the loader's stats.
///
/// # Errors
/// [`crate::error::Error::Thread`] when the producer thread cannot start; the sampler's errors for an
/// epoch it rejects. Errors while producing arrive through the iterator.
pub(crate) fn run<T: Send + 'static>(
    epoch: Epoch,
    mut build: impl FnMut(&LoadRequest, usize) -> Result<Built<T>> + Send + 'static,
) -> Result<Batches<T>> {
    epoch.sampler.validate(epoch.n_obs)?;
    let remaining = epoch
        .sampler
        .n_batches(epoch.n_obs)
        .saturating_sub(epoch.state.batches);
    let Epoch {
        sampler,
        n_obs,
        state,
        pool,
        capacity,
        stats,
        read_ahead,
    } = epoch;
    let counters = stats.clone();
    Batches::spawn(
        capacity,
        state,
        remaining,
        stats,
        move |outlet: &Outlet<T>| {
            let (depth, start) = match read_ahead {
                Some((depth, start)) => (depth, Some(start)),
                None => (0, None),
            };
            let mut requests = pending(sampler.as_ref(), n_obs, state)?;
            // The request being built and up to `depth` after it, each with its read-ahead; a
            // sampler's error waits its turn, after the batches before it.
            let mut queue: VecDeque<Result<Pending>> = VecDeque::new();
            let mut ended = false;
            loop {
                while queue.len() <= depth && !ended {
                    match requests.next() {
                        None => ended = true,
                        Some(Err(e)) => {
                            queue.push_back(Err(e));
                            ended = true;
                        }
                        Some(Ok((request, first))) => {
                            let held = start.as_ref().map(|start| start(&request));
                            queue.push_back(Ok((request, first, held)));
                        }
                    }
                }
                let Some(item) = queue.pop_front() else {
                    break;
                };
                let (request, first, held) = item?;
                if outlet.quit() {
                    return Ok(());
                }
                let _fetch = tracing::debug_span!(
                    "fetch",
                    epoch = state.epoch,
                    rows = request.n_rows(),
                    batches = request.splits.len().saturating_sub(first)
                )
                .entered();
                let started = Instant::now();
                let built = pool.install(|| build(&request, first))?;
                drop(held);
                counters.read(built.read);
                let assemble = started.elapsed().saturating_sub(built.read);
                counters.assembled(assemble);
                tracing::debug!(
                    read_ms = built.read.as_secs_f64() * 1e3,
                    assemble_ms = assemble.as_secs_f64() * 1e3,
                    "assembled"
                );
                for (batch, rows) in built.batches {
                    let waited = Instant::now();
                    if !outlet.send(Ok((batch, rows))) {
                        return Ok(());
                    }
                    let waited = waited.elapsed();
                    counters.blocked(waited);
                    if waited > Duration::from_millis(10) {
                        tracing::debug!(
                            waited_ms = waited.as_secs_f64() * 1e3,
                            "producer waited for the consumer"
                        );
                    }
                }
            }
            Ok(())
        },
    )
}

/// The epoch's load requests from `state` on, each with how many of its leading batches were
/// already delivered (requests fully delivered are skipped), validated against `n_obs`.
fn pending(
    sampler: &dyn Sampler,
    n_obs: u64,
    state: LoaderState,
) -> Result<impl Iterator<Item = Result<(LoadRequest, usize)>> + '_> {
    let mut skip = state.batches;
    Ok(sampler
        .requests(n_obs, state.epoch)?
        .filter_map(move |request| {
            let request = match request {
                Ok(request) => request,
                Err(e) => return Some(Err(e)),
            };
            let n_splits = request.splits.len() as u64;
            if skip >= n_splits {
                skip -= n_splits;
                return None;
            }
            let first = std::mem::take(&mut skip) as usize;
            Some(request.validate(n_obs).map(|()| (request, first)))
        }))
}
