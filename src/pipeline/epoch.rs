//! One epoch's producer: the sampler's load requests from a resume point on, each built into
//! batches on the rayon pool and sent in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use super::batches::{Batches, LoaderState, Outlet};
use super::stats::Counters;
use crate::error::{catch_panic, Error, Result};
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
    /// Cuts a request (its batches from the given one on) into the requests built in its
    /// place, one after another (the memory bound); `None` builds each request whole.
    pub(crate) plan: Option<PlanFn>,
}

/// See [`Epoch::plan`].
pub(crate) type PlanFn = Arc<dyn Fn(LoadRequest, usize) -> Result<Vec<LoadRequest>> + Send + Sync>;

/// A request waiting its turn: the batches to skip, and what holds its read-ahead bytes.
type Pending = (LoadRequest, usize, Option<Box<dyn Send>>);

/// Starts reading a request's bytes; dropping what it returns frees them.
pub(crate) type ReadAheadFn = Arc<dyn Fn(&LoadRequest) -> Box<dyn Send> + Send + Sync>;

/// One request's batches, each with its row count, and the time spent reading and decoding.
pub(crate) struct Built<T> {
    pub(crate) batches: Vec<(T, u64)>,
    pub(crate) read: Duration,
}

/// Requests built at once, from the second on. A build has steps on one thread (sizing the
/// batches, cutting their runs, making the tensors: ~8 % of a 4096/32/256 epoch) during
/// which the pool's other threads would wait; with the next request in the making they decode
/// its chunks instead. The first request is built alone, for the first batch's sake.
pub(crate) const BUILDS_IN_FLIGHT: usize = 2;

/// A request in the making on the pool (its result and the time it took arrive on the
/// channel), or a sampler error waiting for the requests before it.
enum InFlight<T> {
    Building(Receiver<(Result<Built<T>>, Duration)>),
    Failed(Error),
}

/// Streams the epoch: `build(request, first)` makes the batches `request.splits[first..]` (it
/// runs on `epoch.pool`, two requests at a time once the first is out); batches are sent in
/// request order as each request is built. Batches travel with their row counts, which the
/// consumer's end counts in the loader's stats.
///
/// # Errors
/// [`crate::error::Error::Thread`] when the producer thread cannot start; the sampler's errors for an
/// epoch it rejects. Errors while producing arrive through the iterator.
pub(crate) fn run<T: Send + 'static>(
    epoch: Epoch,
    build: impl Fn(&LoadRequest, usize) -> Result<Built<T>> + Send + Sync + 'static,
) -> Result<Batches<T>> {
    epoch.sampler.validate(epoch.n_obs)?;
    let remaining = epoch
        .sampler
        .n_batches(epoch.n_obs)
        .saturating_sub(epoch.state.batches);
    let build = Arc::new(build);
    let Epoch {
        sampler,
        n_obs,
        state,
        pool,
        capacity,
        stats,
        read_ahead,
        plan,
    } = epoch;
    let counters = stats.clone();
    Batches::spawn(
        capacity,
        state,
        remaining,
        stats,
        move |outlet: &Outlet<T>| {
            let requests = planned(pending(sampler.as_ref(), n_obs, state)?, plan, &counters);
            let mut building = VecDeque::new();
            let produced = produce(
                outlet,
                requests,
                read_ahead,
                &mut building,
                &|(request, first, held): Pending| {
                    let (tx, rx) = bounded(1);
                    let build = build.clone();
                    pool.spawn(move || {
                        let _fetch = tracing::debug_span!(
                            "fetch",
                            epoch = state.epoch,
                            rows = request.n_rows(),
                            batches = request.splits.len().saturating_sub(first)
                        )
                        .entered();
                        let started = Instant::now();
                        let built = catch_panic(|| build(&request, first));
                        drop(held);
                        // The producer may have gone (the consumer left): nobody to tell.
                        let _ = tx.send((built, started.elapsed()));
                    });
                    InFlight::Building(rx)
                },
                &counters,
            );
            // Nothing of an epoch outlives its producer: wait for the builds still running.
            for in_flight in building {
                if let InFlight::Building(rx) = in_flight {
                    let _ = rx.recv();
                }
            }
            produced
        },
    )
}

/// The producer's loop: keeps the read-ahead queue (the requests being built and up to
/// `depth` after them, each with its read-ahead) and up to [`BUILDS_IN_FLIGHT`] builds going
/// (`start` spawns one), and sends each request's batches in order. A sampler's error waits
/// its turn, after the batches before it.
fn produce<T>(
    outlet: &Outlet<T>,
    mut requests: impl Iterator<Item = Result<(LoadRequest, usize)>>,
    read_ahead: Option<(usize, ReadAheadFn)>,
    building: &mut VecDeque<InFlight<T>>,
    start: &dyn Fn(Pending) -> InFlight<T>,
    counters: &Counters,
) -> Result<()> {
    let (depth, read) = match read_ahead {
        Some((depth, read)) => (depth, Some(read)),
        None => (0, None),
    };
    let mut queue: VecDeque<Result<Pending>> = VecDeque::new();
    let (mut ended, mut delivered) = (false, false);
    loop {
        while queue.len() + building.len() <= depth && !ended {
            match requests.next() {
                None => ended = true,
                Some(Err(e)) => {
                    queue.push_back(Err(e));
                    ended = true;
                }
                Some(Ok((request, first))) => {
                    let held = read.as_ref().map(|read| read(&request));
                    queue.push_back(Ok((request, first, held)));
                }
            }
        }
        let window = if delivered { BUILDS_IN_FLIGHT } else { 1 };
        while building.len() < window {
            if outlet.quit() {
                return Ok(());
            }
            match queue.pop_front() {
                None => break,
                Some(Err(e)) => building.push_back(InFlight::Failed(e)),
                Some(Ok(pending)) => building.push_back(start(pending)),
            }
        }
        let (built, took) = match building.pop_front() {
            None => return Ok(()),
            Some(InFlight::Failed(e)) => return Err(e),
            Some(InFlight::Building(rx)) => rx
                .recv()
                .map_err(|_| Error::Internal("a request's build ended without a result".into()))?,
        };
        let built = built?;
        counters.read(built.read);
        let assemble = took.saturating_sub(built.read);
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
        delivered = true;
    }
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

/// `requests` as `plan` cuts them (each part built whole, from its first batch).
fn planned<'a>(
    requests: impl Iterator<Item = Result<(LoadRequest, usize)>> + 'a,
    plan: Option<PlanFn>,
    counters: &'a Counters,
) -> Box<dyn Iterator<Item = Result<(LoadRequest, usize)>> + 'a> {
    let Some(plan) = plan else {
        return Box::new(requests);
    };
    Box::new(requests.flat_map(move |request| {
        let parts: Vec<Result<(LoadRequest, usize)>> =
            match request.and_then(|(request, first)| plan(request, first)) {
                Ok(parts) => {
                    if parts.len() > 1 {
                        counters.split_fetch();
                    }
                    parts.into_iter().map(|part| Ok((part, 0))).collect()
                }
                Err(e) => vec![Err(e)],
            };
        parts
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SequentialSampler;

    /// An epoch of 10 sequential requests of 4 rows (one batch each) over 40 rows.
    fn epoch(threads: usize) -> Epoch {
        Epoch {
            sampler: Arc::new(SequentialSampler::new(4, 4, 1)),
            n_obs: 40,
            state: LoaderState::default(),
            pool: Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool"),
            ),
            capacity: 2,
            stats: Arc::new(Counters::default()),
            read_ahead: None,
            plan: None,
        }
    }

    /// Each batch is its request's first row; every other request (rows 0, 8, 16, ...) builds
    /// slowly, so the one after it, built at the same time, finishes first.
    fn first_row(request: &LoadRequest, _first: usize) -> Result<Built<u64>> {
        let row = request.requests.first().map_or(0, |r| r.start);
        if row.is_multiple_of(8) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Built {
            batches: vec![(row, 4)],
            read: Duration::ZERO,
        })
    }

    #[test]
    fn batches_arrive_in_request_order_when_a_later_build_finishes_first() {
        let batches = run(epoch(4), first_row).expect("epoch");
        let rows: Vec<u64> = batches.map(|b| b.expect("batch")).collect();
        assert_eq!(rows, (0..40).step_by(4).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_build_ends_the_epoch_after_the_batches_before_it() {
        for fail_at in [0, 12, 36] {
            let batches = run(epoch(2), move |request, first| {
                if request.requests.first().map(|r| r.start) == Some(fail_at) {
                    return Err(Error::Internal(format!("build at {fail_at}")));
                }
                first_row(request, first)
            })
            .expect("epoch");
            let got: Vec<Result<u64>> = batches.collect();
            let ok: Vec<u64> = got
                .iter()
                .filter_map(|b| b.as_ref().ok().copied())
                .collect();
            assert_eq!(ok, (0..fail_at).step_by(4).collect::<Vec<_>>(), "{fail_at}");
            assert!(
                matches!(got.last(), Some(Err(Error::Internal(m))) if m.contains("build at")),
                "{fail_at}: {:?}",
                got.last()
            );
        }
    }

    #[test]
    fn a_panicking_build_is_an_error_not_a_hang() {
        let batches = run(epoch(2), |request, first| {
            if request.requests.first().map(|r| r.start) == Some(20) {
                panic!("a build panics");
            }
            first_row(request, first)
        })
        .expect("epoch");
        let got: Vec<Result<u64>> = batches.collect();
        assert_eq!(got.len(), 6, "five batches, then the error");
        assert!(got.last().is_some_and(|b| b.is_err()));
    }

    #[test]
    fn no_build_outlives_an_epoch_left_early() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let counted = running.clone();
        let mut batches = run(epoch(2), move |request, first| {
            counted.fetch_add(1, Ordering::SeqCst);
            let built = first_row(request, first);
            counted.fetch_sub(1, Ordering::SeqCst);
            built
        })
        .expect("epoch");
        assert_eq!(batches.next().map(|b| b.expect("batch")), Some(0));
        // Dropping joins the producer, which waits for its builds in flight.
        drop(batches);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
