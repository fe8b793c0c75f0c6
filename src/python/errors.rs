//! Rust errors as Python exceptions: configuration → `ValueError`, files → `OSError`
//! subclasses (`FileNotFoundError`, ...), objects in object storage alike (missing →
//! `FileNotFoundError`, refused → `PermissionError`, unreachable → `ConnectionError`),
//! a batch over the memory bound → `MemoryError`, datasets whose var differ → `annbatch_rs.VarMismatchError` (both `AnnbatchError` and
//! `ValueError`, as annbatch raises `ValueError` there), everything else →
//! `annbatch_rs.AnnbatchError`.

use pyo3::exceptions::{
    PyConnectionError, PyException, PyFileNotFoundError, PyKeyError, PyKeyboardInterrupt,
    PyMemoryError, PyPermissionError, PyValueError,
};
use pyo3::PyErr;

use crate::error::{Error, RemoteFailure};

pyo3::create_exception!(
    annbatch_rs,
    AnnbatchError,
    PyException,
    "Bad data or a failure inside annbatch-rs (corrupt chunks, invalid indptr, ...)."
);

/// The Python exception for `e`.
pub(crate) fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::InvalidParameter { .. } | Error::BatchTooLarge { .. } => {
            PyValueError::new_err(message)
        }
        // The memory bound, as Python reports an allocation that cannot be made.
        Error::BatchOverBudget { .. } => PyMemoryError::new_err(message),
        Error::VarMismatch { .. } => var_mismatch(format!(
            "All datasets must have identical var DataFrames: {message}"
        )),
        // A mistyped obs key, as a mapping lookup fails in Python.
        Error::UnknownObsColumn { .. } => PyKeyError::new_err(message),
        Error::Interrupted { .. } => PyKeyboardInterrupt::new_err(message),
        // From an io::Error pyo3 picks the OSError subclass (FileNotFoundError, ...).
        Error::Io { source, .. } => PyErr::from(std::io::Error::new(source.kind(), message)),
        Error::Remote { kind, .. } => match kind {
            RemoteFailure::NotFound => PyFileNotFoundError::new_err(message),
            RemoteFailure::Unauthenticated
            | RemoteFailure::PermissionDenied
            | RemoteFailure::NoCredentials => PyPermissionError::new_err(message),
            RemoteFailure::Unreachable | RemoteFailure::UntrustedCertificate => {
                PyConnectionError::new_err(message)
            }
            _ => AnnbatchError::new_err(message),
        },
        _ => AnnbatchError::new_err(message),
    }
}

/// `annbatch_rs.VarMismatchError(message)` (defined in Python, with two bases); an
/// `AnnbatchError` should the package not import.
fn var_mismatch(message: String) -> PyErr {
    use pyo3::prelude::*;
    Python::attach(|py| {
        let made = py
            .import("annbatch_rs._errors")
            .and_then(|m| m.getattr("VarMismatchError"))
            .and_then(|class| class.call1((message.clone(),)));
        match made {
            Ok(error) => PyErr::from_value(error),
            Err(_) => AnnbatchError::new_err(message),
        }
    })
}
