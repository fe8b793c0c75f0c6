//! Device buffers reused across batches, each written again only after the work its last
//! consumer queued on it is done (see the [module docs](super)): a release records an event on
//! the consumer's stream, and the copy stream waits on that event before the next copy into the
//! buffer.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use cudarc::driver::{result, sys, CudaContext};

use super::driver_error;
use crate::dlpack::{DeviceOwner, CUDA_LEGACY_STREAM};
use crate::error::Result;

/// Spare bytes allocated beyond a request, so that the next batch (a few percent larger or
/// smaller) fits the same buffer: one eighth.
const HEADROOM_DIVISOR: usize = 8;

/// The smallest buffer allocated (`cuMemAlloc` refuses 0 bytes).
const MIN_BYTES: usize = 512;

/// The device's primary context, current on this thread while the guard lives; the thread's
/// previous context is current again after (a consumer's thread may work on another device).
pub(super) struct Current {
    /// Not `Send`: popped on the thread that pushed.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Current {
    pub(super) fn push(ctx: &CudaContext) -> Result<Self> {
        // SAFETY: `cu_ctx` is the primary context `ctx` retains for as long as it lives.
        unsafe { sys::cuCtxPushCurrent_v2(ctx.cu_ctx()) }
            .result()
            .map_err(|e| driver_error(ctx.ordinal(), e))?;
        Ok(Self {
            _thread: std::marker::PhantomData,
        })
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: pops what `push` pushed on this thread (the guard is not `Send`).
        let _ = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) };
    }
}

/// A CUDA event (timing off) of the device's primary context.
pub(super) struct Event {
    raw: sys::CUevent,
    ctx: Arc<CudaContext>,
}

// SAFETY: a CUevent handle may be used from any thread of the process; every call on it here
// runs with its context current.
unsafe impl Send for Event {}
// SAFETY: as above; recording and waiting are thread-safe driver calls.
unsafe impl Sync for Event {}

impl Event {
    /// A new event. Call with the context current.
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        let raw = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(|e| driver_error(ctx.ordinal(), e))?;
        Ok(Self {
            raw,
            ctx: ctx.clone(),
        })
    }

    /// Records the work queued on `stream` so far. Call with the context current.
    pub(super) fn record(&self, stream: usize) -> Result<()> {
        // SAFETY: the event is alive; `stream` is a stream of this context (or a default
        // stream handle).
        unsafe { result::event::record(self.raw, stream as sys::CUstream) }
            .map_err(|e| driver_error(self.ctx.ordinal(), e))
    }

    /// Makes `stream` wait (on the device) for the work this event recorded. Call with the
    /// context current.
    pub(super) fn make_wait(&self, stream: usize) -> Result<()> {
        // SAFETY: as in `record`.
        unsafe {
            result::stream::wait_event(
                stream as sys::CUstream,
                self.raw,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(|e| driver_error(self.ctx.ordinal(), e))
    }

    /// Blocks until the recorded work is done. Call with the context current.
    fn synchronize(&self) -> Result<()> {
        // SAFETY: the event is alive.
        unsafe { result::event::synchronize(self.raw) }
            .map_err(|e| driver_error(self.ctx.ordinal(), e))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Ok(_current) = Current::push(&self.ctx) {
            // SAFETY: the event is alive and destroyed once (work it recorded may still run:
            // the driver frees it when that is done).
            let _ = unsafe { result::event::destroy(self.raw) };
        }
    }
}

/// Device buffers kept for reuse (see the [module docs](self)).
pub(super) struct DevicePool {
    shared: Arc<Shared>,
}

struct Shared {
    ctx: Arc<CudaContext>,
    free: Mutex<Vec<Released>>,
    /// Released buffers kept at most; more are freed.
    max_free: usize,
}

/// A buffer given back by its consumer, with the event after which it may be written.
struct Released {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    after: Event,
}

impl Released {
    /// Frees the memory once the consumer's work on it is done. Call with the context current.
    fn free(self) -> Result<()> {
        self.after.synchronize()?;
        // SAFETY: the buffer was allocated by `DevicePool::take`, nothing uses it any more
        // (its consumer released it and the work queued on it is done), and it is freed once.
        unsafe { result::free_sync(self.ptr) }
            .map_err(|e| driver_error(self.after.ctx.ordinal(), e))
    }
}

impl DevicePool {
    /// A pool keeping at most `max_free` released buffers of `ctx`'s device.
    pub(super) fn new(ctx: Arc<CudaContext>, max_free: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                ctx,
                free: Mutex::new(Vec::new()),
                max_free,
            }),
        }
    }

    /// A buffer of at least `bytes` that `stream` may write: a released one (the smallest that
    /// fits; `stream` then waits for its last consumer's work) or a new one. Call with the
    /// context current.
    pub(super) fn take(
        &self,
        bytes: usize,
        stream: usize,
        ready: &Arc<Event>,
    ) -> Result<DeviceBuffer> {
        let reused = {
            let mut free = self.shared.lock();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.bytes >= bytes)
                .min_by_key(|(_, b)| b.bytes)
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        let (ptr, capacity) = match reused {
            Some(released) => {
                let waited = released.after.make_wait(stream);
                if let Err(e) = waited {
                    // Not ours to write yet: give it back rather than race the consumer.
                    self.shared.give_back(released);
                    return Err(e);
                }
                (released.ptr, released.bytes)
            }
            None => {
                let capacity = bytes
                    .saturating_add(bytes / HEADROOM_DIVISOR)
                    .max(MIN_BYTES);
                // SAFETY: a plain allocation on the current context.
                let ptr = unsafe { result::malloc_sync(capacity) }
                    .map_err(|e| driver_error(self.shared.ctx.ordinal(), e))?;
                (ptr, capacity)
            }
        };
        Ok(DeviceBuffer {
            ptr,
            bytes: capacity,
            home: Arc::downgrade(&self.shared),
            ctx: self.shared.ctx.clone(),
            ready: ready.clone(),
            consumer: CUDA_LEGACY_STREAM,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Released>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `released` for reuse, or frees it when the pool is full. Call with the context
    /// current.
    fn give_back(&self, released: Released) {
        let mut free = self.lock();
        if free.len() < self.max_free {
            free.push(released);
            return;
        }
        drop(free);
        if let Err(e) = released.free() {
            tracing::warn!("a CUDA batch buffer could not be freed: {e}");
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let free = std::mem::take(self.free.get_mut().unwrap_or_else(PoisonError::into_inner));
        let Ok(_current) = Current::push(&self.ctx) else {
            return;
        };
        for released in free {
            if let Err(e) = released.free() {
                tracing::warn!("a CUDA batch buffer could not be freed: {e}");
            }
        }
    }
}

/// One batch array's device memory: the owner of a `kDLCUDA` [`crate::dlpack::DlArray`].
pub(super) struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    home: Weak<Shared>,
    ctx: Arc<CudaContext>,
    /// Recorded on the copy stream after the batch's copies.
    ready: Arc<Event>,
    /// The stream the consumer named: where its work on the memory is queued.
    consumer: usize,
}

impl DeviceBuffer {
    /// The device address of the first byte.
    pub(super) fn address(&self) -> sys::CUdeviceptr {
        self.ptr
    }

    /// The address as DLPack's data pointer.
    pub(super) fn data(&self) -> *mut c_void {
        self.ptr as *mut c_void
    }

    /// Gives the buffer back once the work queued on the consumer's stream is done.
    fn release(&mut self) -> Result<()> {
        let _current = Current::push(&self.ctx)?;
        let after = Event::new(&self.ctx)?;
        after.record(self.consumer)?;
        let released = Released {
            ptr: self.ptr,
            bytes: self.bytes,
            after,
        };
        match self.home.upgrade() {
            Some(home) => home.give_back(released),
            None => released.free()?,
        }
        Ok(())
    }
}

impl DeviceOwner for DeviceBuffer {
    fn hand_over(&mut self, stream: Option<usize>) -> Result<()> {
        let Some(stream) = stream else {
            return Ok(());
        };
        let _current = Current::push(&self.ctx)?;
        self.ready.make_wait(stream)?;
        self.consumer = stream;
        Ok(())
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            // Freeing memory a kernel may still read would be worse than keeping it.
            tracing::warn!(
                "a CUDA batch buffer ({} bytes) could not be released and stays allocated: {e}",
                self.bytes
            );
        }
    }
}
