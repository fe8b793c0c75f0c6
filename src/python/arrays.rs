//! Arrays across the Python boundary through DLPack, in both directions, with no framework
//! linked: batch arrays go out as [`PyDlArray`] (`__dlpack__` / `__dlpack_device__`, taken
//! by `torch.from_dlpack`, `np.from_dlpack`, `jax.dlpack.from_dlpack`, …), and in-memory data
//! comes in from any object with `__dlpack__` (numpy arrays) through [`elements`].

use std::ffi::CStr;
use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

use super::errors::to_py;
use crate::dlpack::{
    copy_elements, DLManagedTensor, DLManagedTensorVersioned, DlArray, Elements,
    CUDA_LEGACY_STREAM, DL_BOOL, DL_CPU, DL_FLOAT, DL_INT, DL_UINT,
};

const LEGACY: &CStr = c"dltensor";
const VERSIONED: &CStr = c"dltensor_versioned";

/// One batch array, handed over once through DLPack: the consumer's tensor owns the memory
/// from then on and gives it back to the loader's pool when it is freed.
#[pyclass(name = "Array", module = "annbatch_rs._native", frozen)]
pub(super) struct PyDlArray {
    array: Mutex<Option<DlArray>>,
    shape: Vec<i64>,
    dtype: &'static str,
    address: usize,
    /// `(device_type, device_id)`: `(1, 0)` host memory, `(2, n)` CUDA device `n`.
    device: (i32, i32),
}

impl PyDlArray {
    pub(super) fn new(array: DlArray) -> Self {
        let dtype = array.dtype();
        Self {
            shape: array.shape().to_vec(),
            dtype: match (dtype.code, dtype.bits) {
                (DL_INT, 32) => "int32",
                (DL_INT, 64) => "int64",
                (DL_FLOAT, 32) => "float32",
                (DL_FLOAT, 64) => "float64",
                (DL_UINT, 8) => "uint8",
                (DL_BOOL, 8) => "bool",
                _ => "unknown",
            },
            address: array.address(),
            device: (array.device().device_type, array.device().device_id),
            array: Mutex::new(Some(array)),
        }
    }
}

#[pymethods]
impl PyDlArray {
    /// The array as a DLPack capsule: `dltensor_versioned` (DLPack 1.x) when the consumer
    /// passes `max_version` ≥ (1, 0), else `dltensor`. The memory is the consumer's alone, so
    /// `copy` needs nothing; a second call is refused. For a CUDA array, `stream` is the
    /// consumer's stream (DLPack's encoding: None or 1 the legacy default stream, 2 the
    /// per-thread default stream, -1 no synchronisation, else a `cudaStream_t`): it waits until
    /// the batch's copy is done, and the memory is reused only after the work queued on it
    /// before the consumer frees the array.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<i64>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let _ = copy;
        if let Some(device) = dl_device {
            if device != self.device {
                return Err(PyBufferError::new_err(format!(
                    "this array is on DLPack device {:?}; cannot export it to device {device:?}",
                    self.device
                )));
            }
        }
        let stream = if self.device.0 == DL_CPU {
            None
        } else {
            consumer_stream(stream)?
        };
        let mut array = self
            .array
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                PyBufferError::new_err(
                    "this batch array was already handed over through DLPack; it can be \
                     consumed once (keep the tensor or array made from it)",
                )
            })?;
        array.hand_over(stream).map_err(to_py)?;
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        // SAFETY: each pointer is a managed tensor exported just now and owned by the capsule,
        // whose destructor releases it unless a consumer took it over (and renamed the capsule).
        let capsule = unsafe {
            if versioned {
                let managed = array.into_versioned();
                let capsule =
                    ffi::PyCapsule_New(managed.cast(), VERSIONED.as_ptr(), Some(drop_versioned));
                if capsule.is_null() {
                    release_versioned(managed);
                }
                capsule
            } else {
                let managed = array.into_legacy();
                let capsule =
                    ffi::PyCapsule_New(managed.cast(), LEGACY.as_ptr(), Some(drop_legacy));
                if capsule.is_null() {
                    release_legacy(managed);
                }
                capsule
            }
        };
        if capsule.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new, owned reference.
        Ok(unsafe { Bound::from_owned_ptr(py, capsule) }.unbind())
    }

    /// `(kDLCPU, 0)` for host memory, `(kDLCUDA, n)` for CUDA device `n`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        self.device
    }

    /// The extents.
    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.shape.clone()
    }

    /// The element type's numpy name (`int32`, `int64`, `float32`).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype
    }

    /// Address of the first element: a consumer's `data_ptr()` equals it (zero copy).
    #[getter]
    fn address(&self) -> usize {
        self.address
    }

    /// Whether the array was handed over already.
    #[getter]
    fn consumed(&self) -> bool {
        self.array
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}

/// The CUDA stream a consumer names in `__dlpack__(stream=…)`, as a handle: `None` for -1 (no
/// synchronisation asked), the legacy default stream for None.
///
/// # Errors
/// `ValueError` for 0 (ambiguous for CUDA, refused by the DLPack protocol) and other negative
/// numbers.
fn consumer_stream(stream: Option<i64>) -> PyResult<Option<usize>> {
    match stream {
        None => Ok(Some(CUDA_LEGACY_STREAM)),
        Some(-1) => Ok(None),
        Some(0) => Err(PyValueError::new_err(
            "stream=0 is ambiguous for CUDA arrays (DLPack): pass 1 for the legacy default \
             stream, 2 for the per-thread default stream, or the stream's handle",
        )),
        Some(s) => usize::try_from(s).map(Some).map_err(|_| {
            PyValueError::new_err(format!(
                "stream={s}: expected -1, 1, 2 or a CUDA stream handle"
            ))
        }),
    }
}

unsafe fn release_versioned(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: the caller passes a live managed tensor it owns.
    unsafe {
        if let Some(deleter) = (*managed).deleter {
            deleter(managed);
        }
    }
}

unsafe fn release_legacy(managed: *mut DLManagedTensor) {
    // SAFETY: as in `release_versioned`.
    unsafe {
        if let Some(deleter) = (*managed).deleter {
            deleter(managed);
        }
    }
}

/// Capsule destructor: a capsule still named `dltensor_versioned` was never consumed, so its
/// tensor is released here (DLPack's protocol; a consumer renames it `used_…`).
unsafe extern "C" fn drop_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: called by CPython with the capsule being destroyed; the name check comes first.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr());
            release_versioned(managed.cast());
        }
    }
}

/// As [`drop_versioned`], for `dltensor` capsules.
unsafe extern "C" fn drop_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `drop_versioned`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, LEGACY.as_ptr());
            release_legacy(managed.cast());
        }
    }
}

/// The elements of `value`, any host array with `__dlpack__` (numpy ≥ 1.22, torch, …),
/// copied out (its memory is not kept).
pub(super) fn elements(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Elements> {
    if !value.hasattr("__dlpack__")? {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected an array with __dlpack__ (numpy >= 1.22), got {}",
            value.get_type().name()?
        )));
    }
    let capsule = value.call_method0("__dlpack__")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let managed = capsule.pointer_checked(Some(LEGACY))?;
    let managed = managed.as_ptr().cast::<DLManagedTensor>().cast_const();
    // SAFETY: an unconsumed `dltensor` capsule holds a live DLManagedTensor whose tensor stays
    // valid while the capsule lives (it is released by the capsule's own destructor, as the
    // name is left unchanged).
    let copied = unsafe { copy_elements(&(*managed).dl_tensor, what) };
    copied.map_err(to_py)
}
