//! `torch.Tensor` ⇄ `tch::Tensor`, both sharing memory, through `torch_glue.cpp` (no CPython
//! API beyond the limited one, so the module stays abi3).

use std::ffi::{c_char, c_void, CStr};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyCapsuleMethods};
use torch_sys::C_tensor;

use super::errors::AnnbatchError;

unsafe extern "C" {
    fn annbatch_tensor_to_python(t: *const C_tensor) -> *mut pyo3::ffi::PyObject;
    fn annbatch_tensor_from_dlpack(managed: *mut c_void) -> *mut C_tensor;
    fn annbatch_glue_error() -> *const c_char;
}

/// What the glue's last failed call on this thread threw.
fn glue_error() -> PyErr {
    // SAFETY: the glue returns a NUL-terminated string owned by a thread-local, valid until the
    // next glue call on this thread.
    let message = unsafe { CStr::from_ptr(annbatch_glue_error()) };
    AnnbatchError::new_err(format!("libtorch: {}", message.to_string_lossy()))
}

/// A `torch.Tensor` for `t`, sharing its memory (and its layout and device: sparse CSR stays
/// sparse CSR, CUDA stays on its device).
pub(super) fn to_torch(py: Python<'_>, t: &tch::Tensor) -> PyResult<Py<PyAny>> {
    // SAFETY: `t` is a live at::Tensor; the glue returns a new reference or NULL.
    let ptr = unsafe { annbatch_tensor_to_python(t.as_ptr()) };
    if ptr.is_null() {
        return Err(PyErr::take(py).unwrap_or_else(glue_error));
    }
    // SAFETY: `ptr` is a new, owned reference.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr) }.unbind())
}

/// The `tch::Tensor` behind a `torch.Tensor` (a new reference to the same memory), through a
/// DLPack capsule. Dense, strided tensors only (DLPack has no sparse layouts).
pub(super) fn unpack(t: &Bound<'_, PyAny>) -> PyResult<tch::Tensor> {
    let py = t.py();
    static TENSOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static TO_DLPACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let tensor_type = TENSOR.get_or_try_init(py, || {
        py.import("torch")
            .and_then(|m| m.getattr("Tensor"))
            .map(Bound::unbind)
    })?;
    if !t.is_instance(tensor_type.bind(py))? {
        return Err(PyTypeError::new_err(format!(
            "expected a torch.Tensor, got {}",
            t.get_type().name()?
        )));
    }
    if t.getattr("layout")?.str()?.to_cow()? != "torch.strided" {
        return Err(PyTypeError::new_err(
            "expected a dense torch.Tensor, got a sparse one",
        ));
    }
    let to_dlpack = TO_DLPACK.get_or_try_init(py, || {
        py.import("torch.utils.dlpack")
            .and_then(|m| m.getattr("to_dlpack"))
            .map(Bound::unbind)
    })?;
    // detach(): DLPack refuses tensors that require grad; the memory is the same.
    let capsule = to_dlpack.bind(py).call1((t.call_method0("detach")?,))?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let managed = capsule.pointer_checked(Some(c"dltensor"))?;
    // SAFETY: `managed` is the capsule's live DLManagedTensor; on success the tensor owns it
    // and the capsule is renamed so that its destructor leaves it alone (DLPack's protocol).
    let ptr = unsafe { annbatch_tensor_from_dlpack(managed.as_ptr()) };
    if ptr.is_null() {
        return Err(glue_error());
    }
    // SAFETY: the capsule is alive and the name a 'static C string.
    if unsafe { pyo3::ffi::PyCapsule_SetName(capsule.as_ptr(), c"used_dltensor".as_ptr()) } != 0 {
        // The tensor owns the memory now; leave the capsule pointing at it rather than free twice.
        std::mem::forget(capsule.clone());
    }
    // SAFETY: `ptr` is a new at::Tensor that tch takes over.
    Ok(unsafe { tch::Tensor::from_ptr(ptr) })
}
