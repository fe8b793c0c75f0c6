//! [`HostPageLock`]: the loader's pooled host buffers page-locked for the copy engine
//! (`cuMemHostRegister`), so a batch's copy to the device reads them directly instead of being
//! staged by the driver through its own page-locked buffer.

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext};

use super::device_memory::Current;
use crate::assemble::PageLock;

/// Page-locks host buffers for one device's primary context (portable: any context may copy
/// from them).
#[derive(Debug)]
pub(super) struct HostPageLock {
    pub(super) ctx: Arc<CudaContext>,
}

impl PageLock for HostPageLock {
    fn lock(&self, address: usize, bytes: usize) -> bool {
        let Ok(_current) = Current::push(&self.ctx) else {
            return false;
        };
        // SAFETY: the caller's buffer of `bytes` bytes at `address` is alive and stays where it
        // is until `unlock` (it is unlocked before it is freed).
        let status = unsafe {
            sys::cuMemHostRegister_v2(
                address as *mut std::ffi::c_void,
                bytes,
                sys::CU_MEMHOSTREGISTER_PORTABLE,
            )
        };
        match status.result() {
            Ok(()) => true,
            Err(e) => {
                // Not fatal: the copy reads pageable memory, the driver stages it.
                tracing::debug!("page-locking a {bytes}-byte batch buffer failed: {e}");
                false
            }
        }
    }

    fn unlock(&self, address: usize) {
        if let Ok(_current) = Current::push(&self.ctx) {
            // SAFETY: `address` was locked by `lock` and is still allocated.
            let _ = unsafe { sys::cuMemHostUnregister(address as *mut std::ffi::c_void) };
        }
    }
}
