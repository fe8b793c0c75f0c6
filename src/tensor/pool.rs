//! Batch memory reused across batches: a pool of torch storages handed out again once every
//! tensor made from them has been dropped.
//!
//! Each batch's large arrays (column indices, values, dense rows) are views into a pooled
//! storage. The consumer owns its batch as usual; when it drops the batch (in Rust, Python or
//! C++), the storage's reference count falls back to the pool's own, and the next batch is
//! written into memory that is already paged in. On the machines we measure, a fresh
//! page-faulted allocation costs ~50× a warm memcpy, and glibc gives large freed blocks back
//! to the kernel, so without the pool every batch pays those faults again.
//!
//! A storage is reused only if nothing but the pool refers to it: one tensor, one strong and no
//! weak reference to the storage, and the same memory as when it was allocated (torch's
//! `share_memory_`, used by DataLoader worker processes, swaps a storage's memory in place;
//! such a storage leaves the pool). The counts come from `storage_probe.cpp`, since tch does
//! not expose them; built without libtorch's headers, the pool allocates afresh every time.

use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::assemble::{Element, Memory};
use crate::error::Result;

/// Spare elements allocated beyond a request, so that the next batch (whose size differs by a
/// few percent) fits: one eighth.
const HEADROOM_DIVISOR: usize = 8;

/// Requests smaller than this many bytes are not pooled: glibc serves them from its heaps
/// without fresh pages.
const MIN_POOLED_BYTES: usize = 256 * 1024;

/// A storage found busy on more than this many times the pool's size requests in a row is
/// dropped from the pool (its memory stays with whoever holds it).
const BUSY_PATIENCE: usize = 4;

/// Storages kept for reuse (see the [module docs](self)).
pub(crate) struct StoragePool {
    slots: Mutex<Vec<Slot>>,
    max_slots: usize,
    /// Page-lock new storages for this CUDA device.
    pinned: Option<Device>,
}

/// One pooled storage: the 1-D tensor owning it (never handed out itself; only views of it
/// are), and the memory it had when allocated.
struct Slot {
    base: Tensor,
    kind: Kind,
    elements: usize,
    data: usize,
    nbytes: usize,
    /// Requests since the storage was last seen free.
    busy: usize,
}

// SAFETY: a `Slot`'s tensor is only touched under the pool's mutex (tch's `Tensor` is `Send`);
// the address is kept as a plain number, never dereferenced.
unsafe impl Send for Slot {}

impl std::fmt::Debug for StoragePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoragePool")
            .field("max_slots", &self.max_slots)
            .finish()
    }
}

impl StoragePool {
    /// A pool keeping at most `max_slots` storages (each about one batch array's size). The
    /// memory it holds is at most what that many batch arrays take; it is freed with the pool.
    pub(crate) fn new(max_slots: usize) -> Self {
        Self {
            slots: Mutex::new(Vec::new()),
            max_slots,
            pinned: None,
        }
    }

    /// A pool whose storages are page-locked for `device` (a CUDA device), so that copies to it
    /// read them directly. Only for callers that wait for their copies to complete before
    /// dropping the host tensors (see [`crate::cuda`]).
    #[cfg(feature = "cuda")]
    pub(crate) fn pinned(max_slots: usize, device: Device) -> Self {
        Self {
            pinned: Some(device),
            ..Self::new(max_slots)
        }
    }

    /// Whether this build can tell when a storage is free (see the [module docs](self)).
    pub(crate) fn enabled() -> bool {
        cfg!(storage_probe)
    }

    /// Allocates `count` storages of `n` elements of `T` (plus the headroom [`Self::take`]
    /// adds) and pages them in on every core, so that the first batches find memory already
    /// paged in: a loader calls it when built, and its first batch does not pay the page
    /// faults (~30 ms for the ~110 MB of 4096/32/256 on two cores). Does nothing where storages cannot be
    /// reused, for small arrays, or past the pool's size.
    pub(crate) fn prewarm<T: tch::kind::Element>(&self, n: usize, count: usize) -> Result<()> {
        let bytes = n.saturating_mul(T::KIND.elt_size_in_bytes());
        if !Self::enabled() || bytes < MIN_POOLED_BYTES {
            return Ok(());
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.max_slots.saturating_sub(slots.len());
        let mut fresh = Vec::with_capacity(count.min(room));
        for _ in 0..count.min(room) {
            fresh.push(Slot::new(T::KIND, n + n / HEADROOM_DIVISOR, self.pinned)?);
        }
        // The storages are new and only `fresh` refers to them: nothing else touches them.
        super::paging::page_in(&fresh.iter().map(|s| (s.data, s.nbytes)).collect::<Vec<_>>());
        slots.extend(fresh);
        Ok(())
    }

    /// A contiguous 1-D CPU tensor of `n` elements of `T`, whose memory is uninitialised (or
    /// holds an earlier batch): the caller must write every element before anyone reads it.
    pub(crate) fn take<T: tch::kind::Element>(&self, n: usize) -> Result<Tensor> {
        let bytes = n.saturating_mul(T::KIND.elt_size_in_bytes());
        if !Self::enabled() || self.max_slots == 0 || bytes < MIN_POOLED_BYTES {
            let t = Tensor::f_empty([n as i64], (T::KIND, Device::Cpu))?;
            return Ok(match self.pinned {
                Some(device) if bytes >= MIN_POOLED_BYTES => t.f_pin_memory(device)?,
                _ => t,
            });
        }
        // A poisoned lock only means another thread panicked while holding it; the slots
        // themselves are always consistent (each is pushed or removed whole).
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Storages whose memory was swapped from under us are no longer ours to reuse, and
        // those held elsewhere for long (a batch the consumer keeps) are left to their holders.
        let patience = BUSY_PATIENCE * self.max_slots;
        slots.retain(|s| s.owns_its_memory() && s.busy <= patience);
        let mut best: Option<(usize, usize)> = None;
        let mut spare: Option<usize> = None;
        for (i, slot) in slots.iter_mut().enumerate() {
            if !slot.is_free() {
                slot.busy += 1;
                continue;
            }
            slot.busy = 0;
            if slot.kind != T::KIND {
                continue;
            }
            if slot.elements >= n {
                if best.is_none_or(|(_, elements)| elements > slot.elements) {
                    best = Some((i, slot.elements));
                }
            } else {
                spare = Some(i);
            }
        }
        if let Some((i, _)) = best {
            return slots[i].view(n);
        }
        let elements = n + n / HEADROOM_DIVISOR;
        let slot = Slot::new(T::KIND, elements, self.pinned)?;
        let view = slot.view(n)?;
        if slots.len() < self.max_slots {
            slots.push(slot);
        } else if let Some(i) = spare {
            // Full, with a free storage too small for today's batches: trade it for this one.
            slots[i] = slot;
        }
        Ok(view)
    }
}

/// A batch array being assembled: a CPU tensor from the pool that no other tensor refers to
/// yet (only [`StoragePool::array`] makes one), written through [`Memory::slice`].
pub(crate) struct PooledArray<T> {
    tensor: Tensor,
    len: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T> PooledArray<T> {
    /// The filled array, as a tensor (from here on it may be shared).
    pub(crate) fn into_tensor(self) -> Tensor {
        self.tensor
    }
}

impl Memory for StoragePool {
    type Array<T: Element> = PooledArray<T>;

    fn array<T: Element>(&self, n: usize) -> Result<PooledArray<T>> {
        Ok(PooledArray {
            tensor: self.take::<T>(n)?,
            len: n,
            _element: std::marker::PhantomData,
        })
    }

    fn slice<T: Element>(array: &mut PooledArray<T>) -> &mut [T] {
        if array.len == 0 {
            return &mut [];
        }
        // SAFETY: the tensor is a contiguous CPU tensor of `len` elements of `T` (non-null since
        // len > 0, from `take`) whose storage no other tensor refers to: fresh, or a pooled
        // storage found free and handed out once; the only handle is inside this array, which
        // is borrowed mutably for the slice's lifetime, so the slice is the one access.
        unsafe { std::slice::from_raw_parts_mut(array.tensor.data_ptr() as *mut T, array.len) }
    }

    fn truncate<T: Element>(array: &mut PooledArray<T>, n: usize) -> Result<()> {
        if n < array.len {
            array.tensor = array.tensor.f_narrow(0, 0, n as i64)?;
            array.len = n;
        }
        Ok(())
    }
}

impl Slot {
    fn new(kind: Kind, elements: usize, pinned: Option<Device>) -> Result<Self> {
        let mut base = Tensor::f_empty([elements as i64], (kind, Device::Cpu))?;
        if let Some(device) = pinned {
            base = base.f_pin_memory(device)?;
        }
        let (data, nbytes) = match probe(&base) {
            Some(p) => (p.data as usize, p.nbytes as usize),
            None => (0, 0),
        };
        Ok(Self {
            base,
            kind,
            elements,
            data,
            nbytes,
            busy: 0,
        })
    }

    /// A view of the first `n` elements: a tensor of its own, counted by the storage.
    fn view(&self, n: usize) -> Result<Tensor> {
        Ok(self.base.f_narrow(0, 0, n as i64)?)
    }

    /// Only the pool refers to the storage (see the [module docs](self)).
    fn is_free(&self) -> bool {
        probe(&self.base).is_some_and(|p| {
            p.tensor_refs == 1
                && p.storage_refs == 1
                && p.storage_weak == 1
                && p.data as usize == self.data
                && p.nbytes as usize == self.nbytes
        })
    }

    /// The storage still has the memory it was allocated with.
    fn owns_its_memory(&self) -> bool {
        self.data != 0
            && probe(&self.base)
                .is_some_and(|p| p.data as usize == self.data && p.nbytes as usize == self.nbytes)
    }
}

/// What `annbatch_storage_probe` reports (its C struct).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Probe {
    tensor_refs: u64,
    storage_refs: u64,
    storage_weak: u64,
    data: *mut std::ffi::c_void,
    nbytes: u64,
}

#[cfg(storage_probe)]
fn probe(t: &Tensor) -> Option<Probe> {
    unsafe extern "C" {
        fn annbatch_storage_probe(tensor: *const std::ffi::c_void, out: *mut Probe) -> i32;
    }
    let mut out = Probe {
        tensor_refs: 0,
        storage_refs: 0,
        storage_weak: 0,
        data: std::ptr::null_mut(),
        nbytes: 0,
    };
    // SAFETY: `t.as_ptr()` is a live `at::Tensor*` for the duration of the call (borrowed from
    // `t`); the probe only reads it, writes `out`, and catches every C++ exception.
    let status = unsafe { annbatch_storage_probe(t.as_ptr().cast(), &mut out) };
    (status == 0).then_some(out)
}

#[cfg(not(storage_probe))]
fn probe(_: &Tensor) -> Option<Probe> {
    None
}

#[cfg(all(test, storage_probe))]
mod tests {
    use super::*;

    const N: usize = 1 << 20;

    fn ptr(t: &Tensor) -> usize {
        t.data_ptr() as usize
    }

    #[test]
    fn storage_is_reused_once_every_view_is_dropped() -> Result<()> {
        let pool = StoragePool::new(4);
        let a = pool.take::<f32>(N)?;
        let at = ptr(&a);
        // `a` is alive: a second request gets other memory.
        let b = pool.take::<f32>(N)?;
        assert_ne!(ptr(&b), at);
        drop(a);
        let c = pool.take::<f32>(N - 10)?;
        assert_eq!(ptr(&c), at);
        assert_eq!(c.size(), [(N - 10) as i64]);
        // A view of a view keeps the storage busy too.
        let values = c.f_narrow(0, 5, 10)?;
        drop(c);
        assert_ne!(ptr(&pool.take::<f32>(N)?), at);
        drop(values);
        assert_eq!(ptr(&pool.take::<f32>(N)?), at);
        Ok(())
    }

    #[test]
    fn a_sparse_tensor_holds_its_parts() -> Result<()> {
        let pool = StoragePool::new(4);
        let values = pool.take::<f32>(N)?;
        let col = pool.take::<i32>(N)?;
        let (v, c) = (ptr(&values), ptr(&col));
        let crow = Tensor::f_from_slice(&[0i32, N as i32])?;
        let x = Tensor::f_sparse_csr_tensor_crow_col_value_size(
            &crow,
            &col,
            &values,
            [1, i64::MAX / 2],
            (Kind::Float, Device::Cpu),
        )?;
        drop((values, col));
        // Kinds are kept apart, and the sparse tensor still refers to both.
        let (v2, c2) = (pool.take::<f32>(N)?, pool.take::<i32>(N)?);
        assert!(ptr(&v2) != v && ptr(&c2) != c);
        drop(x);
        assert_eq!(ptr(&pool.take::<f32>(N)?), v);
        assert_eq!(ptr(&pool.take::<i32>(N)?), c);
        Ok(())
    }

    #[test]
    fn memory_swapped_in_place_leaves_the_pool() -> Result<()> {
        let pool = StoragePool::new(4);
        let a = pool.take::<f32>(N)?;
        // Resizing past the storage's size gives it new memory in place (as share_memory_ does).
        let mut grown = a.f_narrow(0, 0, 1)?;
        let _ = grown.f_resize_([2 * N as i64])?;
        drop((a, grown));
        let owned = |pool: &StoragePool| -> Vec<bool> {
            let slots = pool.slots.lock().expect("pool lock");
            slots.iter().map(Slot::owns_its_memory).collect()
        };
        assert_eq!(owned(&pool), [false]);
        // The next request drops that storage instead of handing it out (addresses may repeat:
        // the old memory went back to the allocator).
        let _b = pool.take::<f32>(N)?;
        assert_eq!(owned(&pool), [true]);
        Ok(())
    }

    #[test]
    fn small_or_disabled_requests_are_fresh() -> Result<()> {
        let pool = StoragePool::new(0);
        drop(pool.take::<f32>(N)?);
        assert_eq!(pool.slots.lock().map(|s| s.len()).unwrap_or(1), 0);
        let small = StoragePool::new(4);
        drop(small.take::<f32>(16)?);
        assert_eq!(small.slots.lock().map(|s| s.len()).unwrap_or(1), 0);
        Ok(())
    }

    #[test]
    fn storages_held_for_long_leave_the_pool() -> Result<()> {
        let pool = StoragePool::new(2);
        let held = pool.take::<f32>(N)?;
        let at = ptr(&held);
        for _ in 0..=BUSY_PATIENCE * 2 + 1 {
            drop(pool.take::<f32>(N)?);
        }
        // Forgotten: the memory stays the holder's, and is not handed out once dropped.
        drop(held);
        let slots = pool.slots.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(slots, 1);
        assert_ne!(ptr(&pool.take::<f32>(N)?), at);
        Ok(())
    }

    #[test]
    fn full_pool_trades_a_too_small_storage() -> Result<()> {
        let pool = StoragePool::new(1);
        drop(pool.take::<f32>(N)?);
        // Larger than the free slot (with headroom): replaces it.
        let big = pool.take::<f32>(4 * N)?;
        let at = ptr(&big);
        drop(big);
        assert_eq!(ptr(&pool.take::<f32>(4 * N)?), at);
        Ok(())
    }
}
