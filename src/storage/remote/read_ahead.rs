//! Byte ranges requested before they are read, kept per ticket (one fetch of the loader).
//!
//! A ticket's ranges are sorted and coalesced per object (ranges at most `gap` bytes apart, up
//! to [`MAX_GET`] per request), then every GET is spawned at once behind the store's one
//! semaphore (shared by all tickets and the store's other batched reads; first come, first
//! served, so earlier tickets' GETs go first). A read finds
//! the GET whose range covers it and waits on it (or takes its finished bytes). Dropping the
//! ticket aborts what is still in flight and frees the bytes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use zarrs::storage::{Bytes, StoreKey};

/// The longest range one coalesced GET asks for: longer spans are split, so that one slow
/// response does not hold many reads.
const MAX_GET: u64 = 8 << 20;

/// A GET in flight or done, which any number of readers may wait on.
pub(super) type Fetch = Shared<BoxFuture<'static, Result<Bytes, Arc<object_store::Error>>>>;

/// A read-ahead GET that covers a read: its first byte and its bytes.
pub(super) struct Found {
    pub(super) start: u64,
    pub(super) bytes: Fetch,
}

/// One ticket's GETs: per object, by first byte, `(end, bytes)`.
struct Ranges {
    by_key: HashMap<String, BTreeMap<u64, (u64, Fetch)>>,
    aborts: Vec<tokio::task::AbortHandle>,
}

/// The read-ahead of one store.
#[derive(Default)]
pub(super) struct ReadAhead {
    live: Mutex<Vec<(u64, Arc<Ranges>)>>,
    next: AtomicU64,
}

impl ReadAhead {
    /// Spawns GETs for `ranges` (coalesced) on `runtime` and returns their ticket's id.
    pub(super) fn submit<F, Fut>(
        &self,
        runtime: &tokio::runtime::Runtime,
        mut ranges: Vec<(StoreKey, Range<u64>)>,
        gap: u64,
        permits: &Arc<tokio::sync::Semaphore>,
        get: F,
    ) -> u64
    where
        F: Fn(&str, Range<u64>) -> Fut,
        Fut: Future<Output = Result<Bytes, object_store::Error>> + Send + 'static,
    {
        ranges.retain(|(_, r)| r.start < r.end);
        ranges.sort_by(|(a, ra), (b, rb)| {
            (a.as_str(), ra.start, ra.end).cmp(&(b.as_str(), rb.start, rb.end))
        });
        let mut by_key: HashMap<String, BTreeMap<u64, (u64, Fetch)>> = HashMap::new();
        let mut aborts = Vec::new();
        let mut spawn = |key: &str, range: Range<u64>| {
            let request = get(key, range.clone());
            let permits = permits.clone();
            let task = runtime.spawn(async move {
                // The semaphore is never closed, so a permit always comes.
                let _permit = permits.acquire_owned().await;
                request.await
            });
            aborts.push(task.abort_handle());
            let bytes: Fetch = task
                .map(|joined| match joined {
                    Ok(Ok(bytes)) => Ok(bytes),
                    Ok(Err(e)) => Err(Arc::new(e)),
                    Err(e) => Err(Arc::new(object_store::Error::JoinError { source: e })),
                })
                .boxed()
                .shared();
            by_key
                .entry(key.to_string())
                .or_default()
                .insert(range.start, (range.end, bytes));
        };
        let mut current: Option<(StoreKey, Range<u64>)> = None;
        for (key, range) in ranges {
            match &mut current {
                Some((k, r))
                    if *k == key
                        && range.start <= r.end.saturating_add(gap)
                        && range.end.max(r.end) - r.start <= MAX_GET =>
                {
                    r.end = r.end.max(range.end);
                }
                _ => {
                    if let Some((k, r)) = current.take() {
                        spawn(k.as_str(), r);
                    }
                    current = Some((key, range));
                }
            }
        }
        if let Some((k, r)) = current {
            spawn(k.as_str(), r);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, Arc::new(Ranges { by_key, aborts })));
        id
    }

    /// The read-ahead GET covering `len` bytes at `offset` of `key`, if one was submitted.
    pub(super) fn find(&self, key: &str, offset: u64, len: u64) -> Option<Found> {
        let end = offset.checked_add(len)?;
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter().find_map(|(_, ranges)| {
            let (&start, (stop, bytes)) = ranges.by_key.get(key)?.range(..=offset).next_back()?;
            (*stop >= end).then(|| Found {
                start,
                bytes: bytes.clone(),
            })
        })
    }

    /// Forgets ticket `id`: aborts its GETs still in flight, frees its bytes.
    pub(super) fn release(&self, id: u64) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = live.iter().position(|(i, _)| *i == id) {
            let (_, ranges) = live.remove(at);
            for abort in &ranges.aborts {
                abort.abort();
            }
        }
    }
}
