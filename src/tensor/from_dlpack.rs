//! tch tensors made of [`DlArray`]s without a copy: tch has no constructor that takes memory
//! with a deleter, so a C++ shim (`from_dlpack.cpp`, built by `build.rs` against libtorch's
//! headers) hands the array to `at::fromDLPackVersioned`. The memory goes back to the loader's
//! pool when torch frees the tensor's storage.

use std::ffi::c_void;

use tch::Tensor;

use crate::dlpack::{DLManagedTensorVersioned, DlArray, CUDA_LEGACY_STREAM};
use crate::error::{Error, Result};

unsafe extern "C" {
    fn annbatch_tensor_from_dlpack(
        managed: *mut DLManagedTensorVersioned,
        out: *mut *mut c_void,
    ) -> i32;
}

/// `array` as a tensor of its shape and type on its device, viewing its memory.
///
/// # Errors
/// [`Error::Torch`] when libtorch refuses the array (the memory is then released); a driver
/// error when a device array cannot be made ready for torch's stream.
pub(crate) fn tensor_of(mut array: DlArray) -> Result<Tensor> {
    // tch has no stream API: its tensors are used on torch's default stream.
    array.hand_over(Some(CUDA_LEGACY_STREAM))?;
    let managed = array.into_versioned();
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: `managed` is a live export handed over here; the shim either gives it to a
    // tensor's storage or releases it, and catches every C++ exception.
    let status = unsafe { annbatch_tensor_from_dlpack(managed, &mut out) };
    if status != 0 || out.is_null() {
        return Err(Error::Torch(tch::TchError::Torch(
            "libtorch refused a batch array handed over as DLPack".into(),
        )));
    }
    // SAFETY: `out` is a new `at::Tensor*` (tch's `C_tensor`) that nothing else owns; tch's
    // `Drop` frees it with `at_free` (`delete`), as it was made with `new`.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::{Memory, PooledMemory};

    #[test]
    fn a_tensor_views_the_array_and_returns_it_when_freed() -> Result<()> {
        let pool = PooledMemory::new(4);
        let mut a = pool.array::<f32>(6)?;
        a.as_mut().copy_from_slice(&[0., 1., 2., 3., 4., 5.]);
        let array = DlArray::new(a, vec![2, 3])?;
        let address = array.address();
        let t = tensor_of(array)?;
        assert_eq!(t.size(), [2, 3]);
        assert_eq!(t.kind(), tch::Kind::Float);
        assert_eq!(t.data_ptr() as usize, address, "no copy");
        assert_eq!(t.f_double_value(&[1, 2])?, 5.0);
        // A view keeps the memory busy after the tensor is gone.
        let view = t.f_narrow(0, 1, 1)?;
        drop(t);
        assert_eq!(pool.free_buffers(), 0);
        assert_ne!(pool.array::<f32>(6)?.as_slice().as_ptr() as usize, address);
        drop(view);
        assert_eq!(pool.free_buffers(), 2);
        let reused = [pool.array::<f32>(6)?, pool.array::<f32>(6)?];
        assert!(reused
            .iter()
            .any(|r| r.as_slice().as_ptr() as usize == address));
        Ok(())
    }

    #[test]
    fn every_element_type_crosses() -> Result<()> {
        let ints = tensor_of(DlArray::new(vec![7i32, -1], vec![2])?)?;
        let longs = tensor_of(DlArray::new(vec![1i64 << 40], vec![1])?)?;
        let doubles = tensor_of(DlArray::new(vec![0.1f64], vec![1])?)?;
        let empty = tensor_of(DlArray::new(Vec::<f32>::new(), vec![0, 5])?)?;
        assert_eq!(
            (ints.kind(), ints.f_int64_value(&[1])?),
            (tch::Kind::Int, -1)
        );
        assert_eq!(longs.f_int64_value(&[0])?, 1 << 40);
        assert_eq!(
            (doubles.kind(), doubles.f_double_value(&[0])?),
            (tch::Kind::Double, 0.1)
        );
        assert_eq!(empty.size(), [0, 5]);
        Ok(())
    }
}
