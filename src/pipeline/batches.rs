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
        if self.rx.is_some() {
            self.stats.iterated(self.started.elapsed());
        }
        self.quit.store(true, Ordering::Relaxed);
        // Disconnect first so a producer blocked in `send` wakes up, then join it.
        self.rx.take();
        if let Some(handle) = self.handle.take() {
            // The producer catches its own panics; a join error cannot carry anything new.
            let _ = handle.join();
        }
    }
}

impl<T> Iterator for Batches<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        let waiting = Instant::now();
        let item = self.rx.as_ref()?.recv().ok();
        let waited = waiting.elapsed();
        self.stats.starved(waited);
        if waited > Duration::from_millis(10) {
            tracing::debug!(
                waited_ms = waited.as_secs_f64() * 1e3,
                "consumer waited for a batch"
            );
        }
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
