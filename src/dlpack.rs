//! DLPack: batch memory handed to any framework (torch, numpy, jax, cupy, libtorch C++) without
//! a copy and without linking that framework.
//!
//! A [`DlArray`] owns one batch array (pooled host memory, see [`crate::Loader::dl_epoch`]);
//! exporting it gives a `DLManagedTensorVersioned*` (DLPack 1.x) or a legacy `DLManagedTensor*`
//! whose deleter hands the memory back to its pool. The consumer owns the memory until it calls the
//! deleter: nothing else writes to it, so it is exported writable (no read-only flag), and it is
//! reused for a later batch only after that call.
//!
//! ```
//! # fn main() -> annbatch::Result<()> {
//! use annbatch::dlpack::DlArray;
//!
//! let array = DlArray::new(vec![1.0f32, 2.0, 3.0, 4.0], vec![2, 2])?;
//! let managed = array.into_versioned();
//! // SAFETY: `managed` came from `into_versioned` and is released exactly once.
//! unsafe {
//!     let tensor = &(*managed).dl_tensor;
//!     assert_eq!((tensor.ndim, *tensor.shape.add(1)), (2, 2));
//!     ((*managed).deleter.expect("a deleter"))(managed);
//! }
//! # Ok(()) }
//! ```

mod export;
mod ffi;
mod import;

pub use export::{legacy_of, DeviceOwner, DlArray, DlElement};
pub use ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
    CUDA_LEGACY_STREAM, DL_BFLOAT, DL_BOOL, DL_CPU, DL_CUDA, DL_FLOAT, DL_INT, DL_UINT,
    FLAG_READ_ONLY,
};
pub use import::{copy_elements, Elements};
