//! [`Uploader`]: a batch's host arrays copied to the device on the loader's copy stream, handed
//! out as `kDLCUDA` arrays (see the [module docs](super)).

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaStream};

use super::device_memory::{Current, DevicePool, Event};
use super::page_lock::HostPageLock;
use super::{check, driver_error, unavailable};
use crate::assemble::{DlBatch, PageLock};
use crate::dlpack::{DLDevice, DlArray, DL_CUDA};
use crate::error::{Error, Result};

/// Copies batches to one CUDA device (see the [module docs](super)).
pub(crate) struct Uploader {
    ctx: Arc<CudaContext>,
    /// The copy stream (non-blocking: it does not wait for the default stream by itself).
    stream: Arc<CudaStream>,
    memory: DevicePool,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("device", &self.ctx.ordinal())
            .finish()
    }
}

impl Uploader {
    /// An uploader to device `ordinal` (its primary context: the one torch uses), with its own
    /// copy stream, keeping at most `max_free` released device buffers for reuse.
    ///
    /// # Errors
    /// [`Error::DeviceUnavailable`] without a driver or that device.
    pub(crate) fn new(ordinal: usize, max_free: usize) -> Result<Self> {
        check(ordinal)?;
        let failed = |what: &str, e: cudarc::driver::DriverError| {
            unavailable(ordinal, format!("{what} failed: {e}"))
        };
        // cudarc makes the context current on this thread (the caller's): put back whatever
        // was current (a trainer's own device), or nothing.
        let mut previous: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: writes the calling thread's current context (or null) into `previous`.
        let _ = unsafe { sys::cuCtxGetCurrent(&mut previous) };
        let made = CudaContext::new(ordinal)
            .map_err(|e| failed("opening the context", e))
            .and_then(|ctx| {
                let stream = ctx
                    .new_stream()
                    .map_err(|e| failed("creating the copy stream", e))?;
                Ok((ctx, stream))
            });
        // SAFETY: `previous` was current on this thread a moment ago (null: none); a primary
        // context stays alive while retained, which its owner still does.
        let _ = unsafe { sys::cuCtxSetCurrent(previous) };
        let (ctx, stream) = made?;
        Ok(Self {
            memory: DevicePool::new(ctx.clone(), max_free),
            ctx,
            stream,
        })
    }

    /// What page-locks the loader's host buffers for this device's copy engine.
    pub(crate) fn page_lock(&self) -> Arc<dyn PageLock> {
        Arc::new(HostPageLock {
            ctx: self.ctx.clone(),
        })
    }

    /// `batch` on the device: each matrix array (X, layers, obsm) copied into a device buffer on
    /// the copy stream; obs columns and row ids stay in host memory (a few bytes a row, read on
    /// the host by most consumers; front ends place them as they need). Returns once the copies
    /// are done (the host arrays go back to their pool as it returns).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the driver fails (out of device memory included).
    pub(crate) fn upload(&self, batch: DlBatch) -> Result<DlBatch> {
        let _current = Current::push(&self.ctx)?;
        let stream = self.stream.cu_stream() as usize;
        let ready = Arc::new(Event::new(&self.ctx)?);
        let device = DLDevice {
            device_type: DL_CUDA,
            device_id: i32::try_from(self.ctx.ordinal()).unwrap_or(i32::MAX),
        };
        // Read by the queued copies until the stream is synchronised below.
        let mut hosts = Vec::new();
        let copied = batch.try_map_matrices(|host| {
            let (len, dtype, shape) = (host.len(), host.dtype(), host.shape().to_vec());
            let bytes = host.host_bytes().ok_or_else(|| {
                Error::Internal("a batch array uploaded twice (it is not in host memory)".into())
            })?;
            let buffer = self.memory.take(bytes.len(), stream, &ready)?;
            if !bytes.is_empty() {
                // SAFETY: the buffer holds at least `bytes.len()` bytes and only this copy
                // writes it (the stream waited for its last consumer); `bytes` stays alive and
                // unmoved in `hosts` until the stream is synchronised.
                unsafe { result::memcpy_htod_async(buffer.address(), bytes, stream as _) }
                    .map_err(|e| driver_error(self.ctx.ordinal(), e))?;
            }
            // From here on a copy may read it: kept until the stream is synchronised.
            hosts.push(host);
            let data = buffer.data();
            // SAFETY: `data` addresses the buffer's memory on `device`, which holds the array's
            // `len` elements once `ready` is reached and lives as long as the buffer (the owner).
            unsafe { DlArray::on_device(Box::new(buffer), data, len, dtype, shape, device) }
        });
        // Whatever happened, the queued copies still read `hosts`: wait for them first.
        let recorded = ready.record(stream);
        // SAFETY: the copy stream is alive (`self.stream`).
        if let Err(e) = unsafe { result::stream::synchronize(stream as _) } {
            // The copies' state is unknown: the host memory is left to them, never reused.
            std::mem::forget(hosts);
            return Err(driver_error(self.ctx.ordinal(), e));
        }
        drop(hosts);
        let copied = copied?;
        recorded?;
        Ok(copied)
    }
}
