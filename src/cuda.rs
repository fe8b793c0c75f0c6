//! Batches on CUDA (feature `cuda`): the prefetch thread copies each batch's matrices (X, layers,
//! obsm: the loader's pooled host memory, page-locked once per buffer) into device buffers on a
//! copy stream of its own (cudarc), and they are handed out as `kDLCUDA` DLPack arrays — to tch
//! (`crate::tensor`) and Python alike. Obs columns and row ids stay on the host.
//!
//! DLPack's stream protocol, both ways:
//! - **Ready**: an event is recorded on the copy stream after a batch's copies; the stream a
//!   consumer names (`__dlpack__(stream=…)`; the legacy default stream for tch) waits on it
//!   before using the arrays ([`crate::dlpack::DeviceOwner::hand_over`]). The prefetch thread
//!   also waits for the copies before handing the batch over, so its host buffers go back to
//!   the pool at once.
//! - **Release**: when the consumer frees an array, an event is recorded on the stream it
//!   named, and the buffer goes back to the device pool with it; the copy stream waits on that
//!   event (on the device, no thread blocks) before writing the buffer again. Reuse is ordered
//!   after the kernels the consumer had queued on the memory, as torch's `record_stream` does.
//!
//! Driver calls made on a consumer's thread (a release, a hand-over) push the device's primary
//! context and pop it after, so the thread's own current device is left as it was. libcuda is
//! loaded at run time: this builds, and says clearly that CUDA is absent, on machines without a
//! driver.

mod device_memory;
mod page_lock;
mod upload;

pub(crate) use upload::Uploader;

use cudarc::driver::CudaContext;

use crate::error::{Error, Result};

/// A `DeviceUnavailable` error for `cuda:{ordinal}`.
fn unavailable(ordinal: usize, reason: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: format!("cuda:{ordinal}"),
        reason: reason.into(),
    }
}

/// An error of the driver on `cuda:{ordinal}`.
fn driver_error(ordinal: usize, e: cudarc::driver::DriverError) -> Error {
    Error::Cuda {
        device: ordinal,
        message: e.to_string(),
    }
}

/// Checks that the NVIDIA driver is present and has device `ordinal`.
///
/// # Errors
/// [`Error::DeviceUnavailable`] saying which of the two is missing.
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
