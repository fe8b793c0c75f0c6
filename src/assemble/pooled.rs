//! Pooled host memory for batches handed out through DLPack: each array a buffer that goes back
//! to its pool when its last holder (a [`crate::dlpack::DlArray`], the consumer's tensor through
//! the DLPack deleter) lets it go, and is handed to a later batch only then.
//!
//! For a loader that copies batches to a GPU, the pool's buffers are page-locked once, when
//! allocated ([`PageLock`], the `cuda` feature's), so the copy engine reads them directly; they
//! are unlocked before they are freed.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::memory::{Element, Memory};
use crate::error::Result;

/// Page-locks host memory for a device's copy engine (see the [module docs](self)).
pub trait PageLock: Send + Sync + std::fmt::Debug {
    /// Locks the `bytes` bytes at `address`; false when the driver refuses (the buffer is then
    /// used as it is, and never unlocked).
    fn lock(&self, address: usize, bytes: usize) -> bool;
    /// Unlocks what [`Self::lock`] locked at `address`; called before the memory is freed.
    fn unlock(&self, address: usize);
}

/// Buffers smaller than this are not page-locked: locking costs a driver call, and the copy of
/// a small array is cheap either way.
const MIN_LOCKED_BYTES: usize = 64 << 10;

/// Batch memory from a bounded pool of reused buffers (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct PooledMemory {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    free: Mutex<Vec<FreeBuffer>>,
    /// Buffers kept for reuse at most; more are freed when released.
    max_free: usize,
    /// Page-locks new buffers, for a loader that copies batches to a GPU.
    page_lock: Option<Arc<dyn PageLock>>,
}

struct FreeBuffer {
    type_id: TypeId,
    capacity: usize,
    /// A [`HostBuffer<T>`] of the element type `type_id`.
    buffer: Box<dyn Any + Send>,
}

/// A buffer's elements; page-locked by `locked` while it holds them.
struct HostBuffer<T> {
    vec: Vec<T>,
    locked: Option<Arc<dyn PageLock>>,
}

impl<T> Default for HostBuffer<T> {
    fn default() -> Self {
        Self {
            vec: Vec::new(),
            locked: None,
        }
    }
}

impl<T> Drop for HostBuffer<T> {
    fn drop(&mut self) {
        if let Some(lock) = self.locked.take() {
            lock.unlock(self.vec.as_ptr() as usize);
        }
    }
}

impl std::fmt::Debug for FreeBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeBuffer")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl PooledMemory {
    /// A pool that keeps at most `max_free` released buffers.
    #[cfg(test)]
    pub(crate) fn new(max_free: usize) -> Self {
        Self::with_page_lock(max_free, None)
    }

    /// A pool that keeps at most `max_free` released buffers, page-locked by `page_lock` when
    /// allocated.
    pub fn with_page_lock(max_free: usize, page_lock: Option<Arc<dyn PageLock>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                free: Mutex::new(Vec::new()),
                max_free,
                page_lock,
            }),
        }
    }

    /// Released buffers waiting for reuse.
    #[cfg(test)]
    pub(crate) fn free_buffers(&self) -> usize {
        self.shared.lock().len()
    }
}

impl PooledMemory {
    /// Adds `count` released buffers of `n` (plus an eighth) elements of `T` to the pool, the
    /// pages of their first `n` written once, so that the first batches do not take the page
    /// faults (and the kernel's clearing of each new page) while the consumer waits. Within
    /// `max_free`.
    pub fn prewarm<T: Element>(&self, n: usize, count: usize) {
        let room = self
            .shared
            .max_free
            .saturating_sub(self.shared.lock().len());
        let size = n.saturating_add(n / 8);
        let mut buffers: Vec<HostBuffer<T>> = (0..count.min(room))
            .map(|_| self.shared.fresh(size))
            .collect();
        // One page at a time: a store the compiler cannot drop (the zero page calloc maps is
        // replaced by a page of our own).
        let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
        // The mean batch's pages; the headroom above it is paged in when a batch uses it.
        let touch = |buffer: &mut HostBuffer<T>| {
            let buffer = &mut buffer.vec;
            for i in (0..n.min(buffer.len())).step_by(step) {
                buffer[i] = std::hint::black_box(T::default());
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let per_thread = buffers.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for part in buffers.chunks_mut(per_thread) {
                scope.spawn(move || part.iter_mut().for_each(touch));
            }
        });
        for buffer in buffers {
            self.shared.give_back(buffer);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FreeBuffer>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new buffer of `n` elements, page-locked where the pool locks its buffers.
    fn fresh<T: Element>(&self, n: usize) -> HostBuffer<T> {
        let vec = vec![T::default(); n];
        let bytes = vec.capacity() * std::mem::size_of::<T>();
        let locked = match &self.page_lock {
            Some(lock) if bytes >= MIN_LOCKED_BYTES && lock.lock(vec.as_ptr() as usize, bytes) => {
                Some(lock.clone())
            }
            _ => None,
        };
        HostBuffer { vec, locked }
    }

    /// The smallest free buffer holding at least `n` elements of `T`, if any.
    fn take<T: Element>(&self, n: usize) -> Option<HostBuffer<T>> {
        let mut free = self.lock();
        let id = TypeId::of::<T>();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.type_id == id && b.capacity >= n)
            .min_by_key(|(_, b)| b.capacity)
            .map(|(i, _)| i)?;
        let buffer = free.swap_remove(best).buffer;
        buffer.downcast::<HostBuffer<T>>().ok().map(|b| *b)
    }

    fn give_back<T: Element>(&self, buffer: HostBuffer<T>) {
        let mut free = self.lock();
        if free.len() < self.max_free {
            free.push(FreeBuffer {
                type_id: TypeId::of::<T>(),
                capacity: buffer.vec.capacity(),
                buffer: Box::new(buffer),
            });
        }
    }
}

/// One batch array from a [`PooledMemory`]: `used` elements of a reused buffer.
pub struct PooledArray<T: Element> {
    /// Every element initialised (`len` ≥ `used`): a reused buffer is not written again.
    buffer: HostBuffer<T>,
    used: usize,
    home: Weak<Shared>,
}

impl<T: Element> PooledArray<T> {
    /// The array's elements.
    pub fn as_slice(&self) -> &[T] {
        &self.buffer.vec[..self.used]
    }
}

impl<T: Element> AsMut<[T]> for PooledArray<T> {
    fn as_mut(&mut self) -> &mut [T] {
        &mut self.buffer.vec[..self.used]
    }
}

impl<T: Element> Drop for PooledArray<T> {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give_back(std::mem::take(&mut self.buffer));
        }
    }
}

impl Memory for PooledMemory {
    type Array<T: Element> = PooledArray<T>;

    fn array<T: Element>(&self, n: usize) -> Result<PooledArray<T>> {
        let buffer = match self.shared.take::<T>(n) {
            Some(mut buffer) => {
                if buffer.vec.len() < n {
                    // Within the capacity (no reallocation: a locked buffer stays where it was
                    // locked): writes only the elements never written before.
                    buffer.vec.resize(n, T::default());
                }
                buffer
            }
            None => self.shared.fresh(n),
        };
        Ok(PooledArray {
            buffer,
            used: n,
            home: Arc::downgrade(&self.shared),
        })
    }

    fn slice<T: Element>(array: &mut PooledArray<T>) -> &mut [T] {
        array.as_mut()
    }

    fn truncate<T: Element>(array: &mut PooledArray<T>, n: usize) -> Result<()> {
        array.used = array.used.min(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_only_once_released_and_the_pool_stays_bounded() {
        let pool = PooledMemory::new(2);
        let mut a = pool.array::<f32>(100).expect("array");
        a.as_mut().fill(7.0);
        let address = a.as_slice().as_ptr();
        // Live: a second array gets other memory.
        let b = pool.array::<f32>(100).expect("array");
        assert_ne!(b.as_slice().as_ptr(), address);
        drop(a);
        let c = pool.array::<f32>(50).expect("array");
        assert_eq!(
            c.as_slice().as_ptr(),
            address,
            "the released buffer is reused"
        );
        assert_eq!(c.as_slice().len(), 50);
        // Another type never takes it.
        drop(c);
        let d = pool.array::<i32>(10).expect("array");
        assert_ne!(d.as_slice().as_ptr().cast::<f32>(), address);
        let held: Vec<_> = (0..5)
            .map(|_| pool.array::<i64>(8).expect("array"))
            .collect();
        drop((b, d, held));
        assert_eq!(pool.free_buffers(), 2);
    }

    #[test]
    fn prewarmed_buffers_serve_the_first_batches() {
        let pool = PooledMemory::new(3);
        pool.prewarm::<f32>(1000, 5);
        assert_eq!(pool.free_buffers(), 3, "no more than the pool keeps");
        let a = pool.array::<f32>(1100).expect("array");
        assert_eq!(pool.free_buffers(), 2, "taken from the prewarmed ones");
        assert_eq!(a.as_slice().len(), 1100);
    }

    #[test]
    fn arrays_outlive_their_pool() {
        let pool = PooledMemory::new(4);
        let mut a = pool.array::<i64>(3).expect("array");
        a.as_mut().copy_from_slice(&[1, 2, 3]);
        drop(pool);
        assert_eq!(a.as_slice(), [1, 2, 3]);
    }

    /// Records what it is asked to lock and unlock.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<(&'static str, usize)>>,
    }

    impl PageLock for Recorder {
        fn lock(&self, address: usize, _bytes: usize) -> bool {
            self.calls.lock().expect("lock").push(("lock", address));
            true
        }
        fn unlock(&self, address: usize) {
            self.calls.lock().expect("lock").push(("unlock", address));
        }
    }

    #[test]
    fn large_buffers_are_locked_once_and_unlocked_before_they_are_freed() {
        let recorder = Arc::new(Recorder::default());
        let calls = |r: &Recorder| r.calls.lock().expect("lock").clone();
        let pool = PooledMemory::with_page_lock(1, Some(recorder.clone()));
        let n = MIN_LOCKED_BYTES / 4;
        let a = pool.array::<f32>(n).expect("array");
        let at = a.as_slice().as_ptr() as usize;
        let small = pool.array::<f32>(16).expect("array");
        assert_eq!(
            calls(&recorder),
            [("lock", at)],
            "small arrays are not locked"
        );
        drop((a, small));
        // Reused as it is: not locked again.
        let again = pool.array::<f32>(n - 1).expect("array");
        assert_eq!(again.as_slice().as_ptr() as usize, at);
        assert_eq!(calls(&recorder).len(), 1);
        // A second large array while the first is held; released into a full pool, it is freed.
        let b = pool.array::<f32>(n).expect("array");
        let bt = b.as_slice().as_ptr() as usize;
        drop(again);
        drop(b);
        assert_eq!(
            calls(&recorder),
            [("lock", at), ("lock", bt), ("unlock", bt)]
        );
        // The pool's own buffers are unlocked with it.
        drop(pool);
        assert_eq!(calls(&recorder).last(), Some(&("unlock", at)));
    }
}
