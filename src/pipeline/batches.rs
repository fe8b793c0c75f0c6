//! An epoch's batches as an iterator fed by a background thread through a bounded channel:
//! the consumer's end ([`Batches`]) and the producer's ([`Outlet`]), with cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::stats::Counters;
use crate::error::{catch_panic, Error, Result};

/// A batch and its row count, as the channel carries it.
type Item<T> = Result<(T, u64)>;

/// Where an epoch stands: resume with [`crate::loader::Loader::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LoaderState {
    /// The epoch.
    pub epoch: u64,
    /// Batches already delivered in it.
    pub batches: u64,
}

/// What the producer sees of the consumer: a way to send and to notice it left.
pub(crate) struct Outlet<T> {
    tx: Sender<Item<T>>,
    quit: Arc<AtomicBool>,
}

impl<T> Outlet<T> {
    /// Whether the consumer has gone.
    pub(crate) fn quit(&self) -> bool {
        self.quit.load(Ordering::Relaxed)
    }

    /// Sends one batch with its row count (or the error that ends the epoch); `false` when the
    /// consumer has gone (stop producing).
    pub(crate) fn send(&self, item: Item<T>) -> bool {
        !self.quit() && self.tx.send(item).is_ok()
    }
}

/// An epoch's batches, produced in the background.
pub struct Batches<T> {
    rx: Option<Receiver<Item<T>>>,
    handle: Option<JoinHandle<()>>,
    quit: Arc<AtomicBool>,
    state: LoaderState,
    remaining: u64,
    failed: bool,
    stats: Arc<Counters>,
    started: Instant,
}

impl<T: Send + 'static> Batches<T> {
    /// Starts `produce` on a named background thread with a channel of `capacity` items.
    /// `remaining` is how many batches the epoch still holds (for `size_hint`).
    pub(crate) fn spawn(
        capacity: usize,
        state: LoaderState,
        remaining: u64,
        stats: Arc<Counters>,
        produce: impl FnOnce(&Outlet<T>) -> Result<()> + Send + 'static,
    ) -> Result<Self> {
        let (tx, rx) = bounded(capacity.max(1));
        let quit = Arc::new(AtomicBool::new(false));
        let outlet = Outlet {
            tx,
            quit: quit.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("annbatch-prefetch".into())
            .spawn(move || {
                if let Err(e) = catch_panic(|| produce(&outlet)) {
                    outlet.send(Err(e));
                }
            })
            .map_err(|source| Error::Thread {
                name: "annbatch-prefetch".into(),
                source,
            })?;
        Ok(Self {
            rx: Some(rx),
            handle: Some(handle),
            quit,
            state,
            remaining,
            failed: false,
            stats,
            started: Instant::now(),
        })
    }
}

impl<T> Batches<T> {
    /// The position after the batches delivered so far: pass it to `Loader::resume`.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    fn stop(&mut self) {
        self.stop_within(None);
    }

    /// Stops the producer and waits for it: at most `limit` when given (a producer inside
    /// code it does not own — a sampler written in Python that sleeps — is then left to end
    /// by itself, its batches discarded), else until it ends.
    pub(crate) fn stop_within(&mut self, limit: Option<Duration>) {
        if self.rx.is_some() {
            self.stats.iterated(self.started.elapsed());
        }
        self.quit.store(true, Ordering::Relaxed);
        // Disconnect first so a producer blocked in `send` wakes up, then join it.
        self.rx.take();
        let Some(handle) = self.handle.take() else {
            return;
        };
        if let Some(limit) = limit {
            let until = Instant::now() + limit;
            while !handle.is_finished() {
                if Instant::now() >= until {
                    tracing::warn!(
                        "an epoch's producer did not stop within {limit:?} (its sampler is \
                         still running); it ends by itself"
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // The producer catches its own panics; a join error cannot carry anything new.
        let _ = handle.join();
    }

    /// The next item, waiting at most `wait`: `Err(())` when none came in time (the epoch
    /// goes on; ask again), else what [`Iterator::next`] gives.
    // The Python front end's (it checks for Ctrl-C between waits).
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    pub(crate) fn next_within(
        &mut self,
        wait: Duration,
    ) -> std::result::Result<Option<Result<T>>, ()> {
        self.receive(Some(wait))
    }

    /// The next item, waiting at most `wait` (`None`: until one comes or the epoch ends);
    /// `Err(())` when none came in time. The wait counts as the consumer starving.
    fn receive(&mut self, wait: Option<Duration>) -> std::result::Result<Option<Result<T>>, ()> {
        if self.failed {
            return Ok(None);
        }
        let Some(rx) = self.rx.as_ref() else {
            return Ok(None);
        };
        let waiting = Instant::now();
        let item = match wait {
            None => rx.recv().ok(),
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(item) => Some(item),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.stats.starved(waiting.elapsed());
                    return Err(());
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
            },
        };
        let waited = waiting.elapsed();
        self.stats.starved(waited);
        if waited > Duration::from_millis(10) {
            tracing::debug!(
                waited_ms = waited.as_secs_f64() * 1e3,
                "consumer waited for a batch"
            );
        }
        Ok(self.received(item))
    }

    /// Accounts for what the channel gave.
    fn received(&mut self, item: Option<Item<T>>) -> Option<Result<T>> {
        match item {
            Some(Ok((batch, rows))) => {
                self.state.batches += 1;
                self.remaining = self.remaining.saturating_sub(1);
                self.stats.delivered(rows);
                Some(Ok(batch))
            }
            Some(Err(e)) => {
                self.failed = true;
                Some(Err(e))
            }
            None => {
                self.stop();
                None
            }
        }
    }
}

impl<T> Iterator for Batches<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        // Without a limit the wait ends only with an item or the epoch's end.
        self.receive(None).ok().flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed {
            0
        } else {
            self.remaining as usize
        };
        (0, Some(n))
    }
}

impl<T> Drop for Batches<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_a_batch_ends_in_time_and_the_epoch_goes_on() {
        let (go, wait) = crossbeam_channel::bounded::<()>(0);
        let mut batches = Batches::spawn(
            1,
            LoaderState::default(),
            1,
            Arc::default(),
            move |outlet: &Outlet<u8>| {
                let _ = wait.recv();
                outlet.send(Ok((7, 1)));
                Ok(())
            },
        )
        .expect("spawn");
        assert!(batches.next_within(Duration::from_millis(20)).is_err());
        go.send(()).expect("go");
        assert!(matches!(
            batches.next_within(Duration::from_secs(5)),
            Ok(Some(Ok(7)))
        ));
        assert!(matches!(
            batches.next_within(Duration::from_secs(5)),
            Ok(None)
        ));
    }

    #[test]
    fn stopping_within_a_limit_leaves_a_stuck_producer() {
        let (_keep, stuck) = crossbeam_channel::bounded::<()>(0);
        let mut batches = Batches::spawn(
            1,
            LoaderState::default(),
            1,
            Arc::default(),
            move |_: &Outlet<u8>| {
                let _ = stuck.recv_timeout(Duration::from_secs(30));
                Ok(())
            },
        )
        .expect("spawn");
        let started = Instant::now();
        batches.stop_within(Some(Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
