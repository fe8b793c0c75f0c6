//! The prefetch pipeline: a background thread turns load requests into batches while the
//! consumer trains.
//!
//! ```text
//! sampler ─▶ reader thread: fetch k+1 read + decoded (rayon pool, all chunks in parallel)
//!                 │ (two fetch buffers, recycled)
//!                 ▼
//!            producer thread: fetch k cut into batches, each sent when ready
//!                 ▼
//!            bounded channel (capacity `prefetch`) ─▶ consumer
//! ```
//!
//! Batches arrive in sampler order whatever the thread timing (one assembler, in-order sends).
//! Backpressure: the producer blocks when `prefetch` batches wait unconsumed, and the reader
//! when both fetch buffers are in use, so memory is bounded by `prefetch` batches + two fetch
//! buffers (`chunk_size * preload_nchunks` rows each) + one batch being assembled.
//! Dropping the [`Batches`] iterator sets a quit flag, disconnects the channel and joins the
//! thread. A producer error or panic arrives as one `Err` item, then the iterator ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{Error, Result};

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
    tx: Sender<Result<T>>,
    quit: Arc<AtomicBool>,
}

impl<T> Outlet<T> {
    /// Whether the consumer has gone.
    pub(crate) fn quit(&self) -> bool {
        self.quit.load(Ordering::Relaxed)
    }

    /// Sends one item; `false` when the consumer has gone (stop producing).
    pub(crate) fn send(&self, item: Result<T>) -> bool {
        !self.quit() && self.tx.send(item).is_ok()
    }
}

/// An epoch's batches, produced in the background.
pub struct Batches<T> {
    rx: Option<Receiver<Result<T>>>,
    handle: Option<JoinHandle<()>>,
    quit: Arc<AtomicBool>,
    state: LoaderState,
    remaining: u64,
    failed: bool,
}

impl<T: Send + 'static> Batches<T> {
    /// Starts `produce` on a named background thread with a channel of `capacity` items.
    /// `remaining` is how many batches the epoch still holds (for `size_hint`).
    pub(crate) fn spawn(
        capacity: usize,
        state: LoaderState,
        remaining: u64,
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
            .map_err(|source| Error::Io {
                path: "annbatch-prefetch thread".into(),
                source,
            })?;
        Ok(Self {
            rx: Some(rx),
            handle: Some(handle),
            quit,
            state,
            remaining,
            failed: false,
        })
    }
}

impl<T> Batches<T> {
    /// The position after the batches delivered so far: pass it to `Loader::resume`.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    fn stop(&mut self) {
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
        let item = self.rx.as_ref()?.recv().ok();
        match &item {
            Some(Ok(_)) => {
                self.state.batches += 1;
                self.remaining = self.remaining.saturating_sub(1);
            }
            Some(Err(_)) => self.failed = true,
            None => self.stop(),
        }
        item
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

/// Runs `f`, turning a panic into [`Error::WorkerPanic`] with the panic's message.
pub(crate) fn catch_panic(f: impl FnOnce() -> Result<()>) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(Error::WorkerPanic {
            message: panic_message(payload.as_ref()),
        }),
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
