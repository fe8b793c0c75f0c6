//! `O_DIRECT` reads requested before their turn, so that a direct epoch keeps many reads in
//! flight without a decode thread per read.
//!
//! With direct I/O every read waits on the device: a decode thread that reads, then decodes,
//! leaves the CPU idle while it waits, and the device idle while it decodes (two threads
//! reached 35 % of the page-cache figure, sixteen 75 %). The loader hands the byte ranges of
//! the fetches after the one being decoded to [`ReadAhead::submit`]; a process-wide set of
//! [`IO_THREADS`] threads reads them (ranges of one file whose aligned blocks touch are read
//! with one request, up to [`MAX_READ`] bytes) into aligned buffers. A decode thread's read
//! finds the request that covers it ([`ReadAhead::find`]) and takes its bytes, waits for a
//! read in progress, or does a read still queued itself (so a read never waits on a busy
//! queue). Dropping the [`Ticket`] frees the bytes and skips what is still queued.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};

use super::direct::Aligned;
use super::OpenFile;

/// Threads that do read-ahead reads, for the whole process (each waits on the device, not on
/// the CPU: the depth of the device's queue, not the core count, sizes it).
pub(super) const IO_THREADS: usize = 16;

/// The longest span one read-ahead request reads.
const MAX_READ: u64 = 4 << 20;

/// `O_DIRECT`'s block: ranges whose blocks touch are read together.
const BLOCK: u64 = 4096;

/// Bytes of freed read buffers a store keeps for reuse (a fresh buffer is page-faulted and
/// zeroed): about what one fetch frees on the data measured (blosc-lz4, ~30 MB a fetch), so
/// that the next fetch's reads mostly reuse them; more would only add to the epoch's memory.
const POOLED_BYTES: usize = 64 << 20;

/// One read-ahead request: a span of one file and what became of it.
pub(super) struct Read {
    start: u64,
    end: u64,
    state: Mutex<State>,
    landed: Condvar,
}

enum State {
    Queued,
    Reading,
    /// The buffer and where the span's bytes are in it.
    Landed(Arc<Pooled>, Range<usize>),
    /// The read failed; the reader reads again itself and reports the error there.
    Failed,
}

/// The requests of one ticket, per file key, sorted by first byte and disjoint.
struct Reads {
    by_key: HashMap<String, Vec<Arc<Read>>>,
}

/// The read-ahead of one local store: the tickets still held, and freed read buffers.
#[derive(Default)]
pub(super) struct ReadAhead {
    live: Mutex<Vec<Arc<Reads>>>,
    pool: Arc<Pool>,
}

/// What holds one fetch's read-ahead bytes: dropping it frees them.
pub(crate) struct Ticket {
    owner: Weak<ReadAhead>,
    reads: Arc<Reads>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tickets = self.live.lock().map_or(0, |live| live.len());
        f.debug_struct("ReadAhead")
            .field("tickets", &tickets)
            .finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|r| !Arc::ptr_eq(r, &self.reads));
        }
    }
}

/// A read for an I/O thread: the read is skipped once its ticket is gone.
struct Job {
    file: Arc<OpenFile>,
    read: Weak<Read>,
    pool: Weak<Pool>,
}

impl ReadAhead {
    /// Queues reads of `ranges` (each `(key, file, byte range)`, checked to lie inside its
    /// file) and returns their ticket. Without I/O threads (none could be started), nothing is
    /// queued and reads go to the device as before.
    pub(super) fn submit(
        self: &Arc<Self>,
        mut ranges: Vec<(String, Arc<OpenFile>, Range<u64>)>,
    ) -> Ticket {
        ranges.retain(|(_, _, r)| r.start < r.end);
        ranges.sort_by(|(a, _, ra), (b, _, rb)| (a, ra.start, ra.end).cmp(&(b, rb.start, rb.end)));
        let mut by_key: HashMap<String, Vec<Arc<Read>>> = HashMap::new();
        let mut jobs = Vec::new();
        let mut current: Option<(String, Arc<OpenFile>, Range<u64>)> = None;
        let mut close = |key: String, file: Arc<OpenFile>, span: Range<u64>| {
            let read = Arc::new(Read {
                start: span.start,
                end: span.end,
                state: Mutex::new(State::Queued),
                landed: Condvar::new(),
            });
            jobs.push(Job {
                file,
                read: Arc::downgrade(&read),
                pool: Arc::downgrade(&self.pool),
            });
            by_key.entry(key).or_default().push(read);
        };
        for (key, file, range) in ranges {
            match &mut current {
                Some((k, _, span))
                    if *k == key
                        && range.start / BLOCK <= span.end.div_ceil(BLOCK)
                        && range.end.max(span.end) - span.start <= MAX_READ =>
                {
                    span.end = span.end.max(range.end);
                }
                _ => {
                    if let Some((k, f, span)) = current.take() {
                        close(k, f, span);
                    }
                    current = Some((key, file, range));
                }
            }
        }
        if let Some((k, f, span)) = current {
            close(k, f, span);
        }
        let reads = Arc::new(Reads { by_key });
        let ticket = Ticket {
            owner: Arc::downgrade(self),
            reads: reads.clone(),
        };
        if jobs.is_empty() {
            return ticket;
        }
        let Some(queue) = io_threads() else {
            return ticket;
        };
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reads);
        for job in jobs {
            if queue.send(job).is_err() {
                break;
            }
        }
        ticket
    }

    /// The bytes of `len` bytes at `offset` of `key` (the file `file`), when a held ticket
    /// covers them and its read did not fail: the buffer and where they are in it.
    pub(super) fn find(
        &self,
        key: &str,
        file: &File,
        offset: u64,
        len: u64,
    ) -> Option<(Arc<Pooled>, Range<usize>)> {
        let end = offset.checked_add(len)?;
        let read = {
            let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.iter().find_map(|reads| {
                let list = reads.by_key.get(key)?;
                let at = list.partition_point(|r| r.start <= offset).checked_sub(1)?;
                list.get(at).filter(|r| end <= r.end).cloned()
            })?
        };
        let (buf, span) = read.bytes(file, &self.pool)?;
        let from = span.start + usize::try_from(offset - read.start).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        (to <= span.end).then_some((buf, from..to))
    }
}

impl Read {
    /// This read's bytes: landed, waited for, or read now when still queued.
    fn bytes(&self, file: &File, pool: &Arc<Pool>) -> Option<(Arc<Pooled>, Range<usize>)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*state {
                State::Landed(buf, span) => return Some((buf.clone(), span.clone())),
                State::Failed => return None,
                State::Reading => {
                    state = self
                        .landed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                State::Queued => {
                    *state = State::Reading;
                    drop(state);
                    self.fill(file, Arc::downgrade(pool));
                    state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Takes the read if it is still queued.
    fn claim(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, State::Queued) {
            *state = State::Reading;
            return true;
        }
        false
    }

    /// Reads the span (claimed by the caller) and wakes whoever waits on it; a read that fails
    /// or unwinds leaves it [`State::Failed`], never in progress.
    fn fill(&self, file: &File, pool: Weak<Pool>) {
        struct Settle<'a>(&'a Read, Option<State>);
        impl Drop for Settle<'_> {
            fn drop(&mut self) {
                let done = self.1.take().unwrap_or(State::Failed);
                *self.0.state.lock().unwrap_or_else(PoisonError::into_inner) = done;
                self.0.landed.notify_all();
            }
        }
        let mut settle = Settle(self, None);
        let len = usize::try_from(self.end - self.start).ok();
        let mut buf = Pooled::take(pool, len.unwrap_or(0));
        if let Some(Ok(span)) = len.map(|len| buf.aligned.read(file, self.start, len)) {
            settle.1 = Some(State::Landed(Arc::new(buf), span));
        }
    }
}

/// The I/O threads' queue, started on first use; `None` when no thread could be started.
fn io_threads() -> Option<&'static crossbeam_channel::Sender<Job>> {
    static QUEUE: OnceLock<Option<crossbeam_channel::Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            let mut started = 0;
            for i in 0..IO_THREADS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("annbatch-direct-read-{i}"))
                    .stack_size(256 << 10)
                    .spawn(move || {
                        for job in rx.iter() {
                            if let Some(read) = job.read.upgrade() {
                                if read.claim() {
                                    read.fill(&job.file.file, job.pool);
                                }
                            }
                        }
                    });
                started += usize::from(spawned.is_ok());
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

/// Freed read buffers of one store, and their bytes.
#[derive(Default)]
pub(super) struct Pool {
    free: Mutex<(Vec<Aligned>, usize)>,
}

/// A read buffer that goes back to its store's pool when dropped.
pub(super) struct Pooled {
    aligned: Aligned,
    home: Weak<Pool>,
}

impl Pooled {
    /// The smallest pooled buffer that holds `len` bytes (and the blocks around them), else
    /// the largest (grown by its read), else a new one.
    fn take(home: Weak<Pool>, len: usize) -> Self {
        let need = len.saturating_add(2 * BLOCK as usize);
        let aligned = home
            .upgrade()
            .and_then(|pool| {
                let mut free = pool.free.lock().unwrap_or_else(PoisonError::into_inner);
                let fits = |a: &Aligned| a.capacity() >= need;
                let at = (0..free.0.len())
                    .filter(|&i| fits(&free.0[i]))
                    .min_by_key(|&i| free.0[i].capacity())
                    .or_else(|| (0..free.0.len()).max_by_key(|&i| free.0[i].capacity()))?;
                let a = free.0.swap_remove(at);
                free.1 -= a.capacity();
                Some(a)
            })
            .unwrap_or_default();
        Self { aligned, home }
    }

    /// The buffer's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        self.aligned.bytes()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(pool) = self.home.upgrade() else {
            return;
        };
        let aligned = std::mem::take(&mut self.aligned);
        let size = aligned.capacity();
        let mut free = pool.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.1 + size <= POOLED_BYTES {
            free.1 += size;
            free.0.push(aligned);
        }
    }
}
