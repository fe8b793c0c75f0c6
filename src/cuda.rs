//! Batches on CUDA (feature `cuda`): the prefetch thread copies each batch's host arrays to
//! device tensors on a copy stream of its own (cudarc), overlapped with the consumer's work on
//! torch's stream, and hands the batch over only once its copy completed.
//!
//! Safety of the memory involved:
//! - **Host side**: the large arrays are assembled in page-locked storages from the loader's
//!   pool (`crate::assemble::PooledMemory`); the pool hands a buffer out again only once
//!   no tensor refers to it, and the host tensors of a batch are dropped only after
//!   [`CudaCopier::upload`] synchronised the copy stream, so no copy ever reads reused memory.
//! - **Device side**: device tensors come from torch's caching allocator on torch's default
//!   stream, which may hand out a block freed while kernels queued on that stream still read
//!   it. The copy stream therefore first waits for an event recorded on the default stream
//!   after the allocation, then copies.
//! - **Consumer**: the copy stream is synchronised before the batch leaves the prefetch thread,
//!   so a batch is complete on the device whichever stream the consumer uses.
//!
//! libcuda is loaded at run time: this builds, and says clearly that CUDA is absent, on
//! machines without a driver.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use tch::{Device, Tensor};

use crate::error::{Error, Result};

/// Uploads batches to one CUDA device (see the [module docs](self)).
pub(crate) struct CudaCopier {
    ordinal: usize,
    /// The copy stream (non-blocking: it does not wait for the default stream by itself).
    stream: Arc<CudaStream>,
    /// The legacy default stream: torch's default stream, whose queued work the copies wait for.
    default: Arc<CudaStream>,
}

impl std::fmt::Debug for CudaCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaCopier")
            .field("device", &self.ordinal)
            .finish()
    }
}

/// A `DeviceUnavailable` error for `cuda:{ordinal}`.
fn unavailable(ordinal: usize, reason: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: format!("cuda:{ordinal}"),
        reason: reason.into(),
    }
}

/// Checks that the NVIDIA driver is present and has device `ordinal`.
pub(crate) fn check(ordinal: usize) -> Result<()> {
    // SAFETY: only tries to load libcuda (dlopen) and drops the handle; no CUDA call is made.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            ordinal,
            "no NVIDIA driver (libcuda.so could not be loaded)",
        ));
    }
    let count = CudaContext::device_count()
        .map_err(|e| unavailable(ordinal, format!("the CUDA driver failed: {e}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(unavailable(
            ordinal,
            format!("only {count} CUDA device(s) present"),
        ));
    }
    Ok(())
}

impl CudaCopier {
    /// A copier for device `ordinal`, with its own copy stream in the device's primary context
    /// (the one torch uses).
    pub(crate) fn new(ordinal: usize) -> Result<Self> {
        check(ordinal)?;
        let failed = |what: &str, e: cudarc::driver::DriverError| {
            unavailable(ordinal, format!("{what} failed: {e}"))
        };
        let ctx = CudaContext::new(ordinal).map_err(|e| failed("opening the context", e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| failed("creating the copy stream", e))?;
        let default = ctx.default_stream();
        Ok(Self {
            ordinal,
            stream,
            default,
        })
    }

    /// The torch device the copier uploads to.
    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// Copies contiguous CPU tensors to new tensors on the device; returns once every copy
    /// completed (the host tensors may be dropped and their memory reused right away).
    pub(crate) fn upload(&self, host: &[Tensor]) -> Result<Vec<Tensor>> {
        let device = self.device();
        let mut out = Vec::with_capacity(host.len());
        for t in host {
            if t.device() != Device::Cpu || !t.is_contiguous() {
                return Err(Error::Torch(tch::TchError::Kind(
                    "upload takes contiguous CPU tensors".into(),
                )));
            }
            out.push(Tensor::f_empty(t.size(), (t.kind(), device))?);
        }
        let failed = |e: cudarc::driver::DriverError| Error::Cuda {
            device: self.ordinal,
            message: e.to_string(),
        };
        // After the allocations: the copies wait for whatever the default stream still does
        // with the memory torch just handed out.
        let allocated = self.default.record_event(None).map_err(failed)?;
        self.stream.wait(&allocated).map_err(failed)?;
        for (src, dst) in host.iter().zip(&out) {
            let bytes = src.numel() * src.kind().elt_size_in_bytes();
            if bytes == 0 {
                continue;
            }
            // SAFETY: `src` is a contiguous CPU tensor of `bytes` bytes that outlives the copy
            // (the stream is synchronised below, before `host` can be dropped); `dst` was just
            // allocated on this device with the same size and kind, and nothing else writes it.
            let result = unsafe {
                let src = std::slice::from_raw_parts(src.data_ptr() as *const u8, bytes);
                cudarc::driver::result::memcpy_htod_async(
                    dst.data_ptr() as cudarc::driver::sys::CUdeviceptr,
                    src,
                    self.stream.cu_stream(),
                )
            };
            if let Err(e) = result {
                // Copies already queued still read `host`: wait for them before failing.
                let _ = self.stream.synchronize();
                return Err(failed(e));
            }
        }
        self.stream.synchronize().map_err(failed)?;
        Ok(out)
    }
}
