//! Pooled host memory for batches handed out through DLPack: each array a buffer that goes back
//! to its pool when its last holder (a [`crate::dlpack::DlArray`], the consumer's tensor through
//! the DLPack deleter) lets it go, and is handed to a later batch only then.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::memory::{Element, Memory};
use crate::error::Result;

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
}

struct FreeBuffer {
    type_id: TypeId,
    capacity: usize,
    /// A `Vec<T>` of the element type `type_id`.
    buffer: Box<dyn Any + Send>,
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
    pub fn new(max_free: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                free: Mutex::new(Vec::new()),
                max_free,
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
        let mut buffers: Vec<Vec<T>> = (0..count.min(room))
            .map(|_| vec![T::default(); size])
            .collect();
        // One page at a time: a store the compiler cannot drop (the zero page calloc maps is
        // replaced by a page of our own).
        let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
        // The mean batch's pages; the headroom above it is paged in when a batch uses it.
        let touch = |buffer: &mut Vec<T>| {
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

    /// The smallest free `Vec<T>` holding at least `n` elements, if any.
    fn take<T: Element>(&self, n: usize) -> Option<Vec<T>> {
        let mut free = self.lock();
        let id = TypeId::of::<T>();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.type_id == id && b.capacity >= n)
            .min_by_key(|(_, b)| b.capacity)
            .map(|(i, _)| i)?;
        let buffer = free.swap_remove(best).buffer;
        buffer.downcast::<Vec<T>>().ok().map(|b| *b)
    }

    fn give_back<T: Element>(&self, buffer: Vec<T>) {
        let mut free = self.lock();
        if free.len() < self.max_free {
            free.push(FreeBuffer {
                type_id: TypeId::of::<T>(),
                capacity: buffer.capacity(),
                buffer: Box::new(buffer),
            });
        }
    }
}

/// One batch array from a [`PooledMemory`]: `used` elements of a reused buffer.
pub struct PooledArray<T: Element> {
    /// Every element initialised (`len` ≥ `used`): a reused buffer is not written again.
    buffer: Vec<T>,
    used: usize,
    home: Weak<Shared>,
}

impl<T: Element> PooledArray<T> {
    /// The array's elements.
    pub fn as_slice(&self) -> &[T] {
        &self.buffer[..self.used]
    }
}

impl<T: Element> AsMut<[T]> for PooledArray<T> {
    fn as_mut(&mut self) -> &mut [T] {
        &mut self.buffer[..self.used]
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
                if buffer.len() < n {
                    // Within the capacity: writes only the elements never written before.
                    buffer.resize(n, T::default());
                }
                buffer
            }
            None => vec![T::default(); n],
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
}
