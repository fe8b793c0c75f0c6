//! Rust errors as Python exceptions: configuration → `ValueError`, files → `OSError`
//! subclasses (`FileNotFoundError`, ...), objects in object storage alike (missing →
//! `FileNotFoundError`, refused → `PermissionError`, unreachable → `ConnectionError`),
//! everything else → `annbatch_rs.AnnbatchError`.

use pyo3::exceptions::{
    PyConnectionError, PyException, PyFileNotFoundError, PyKeyError, PyPermissionError,
    PyValueError,
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
        // A mistyped obs key, as a mapping lookup fails in Python.
        Error::UnknownObsColumn { .. } => PyKeyError::new_err(message),
        // From an io::Error pyo3 picks the OSError subclass (FileNotFoundError, ...).
        Error::Io { source, .. } => PyErr::from(std::io::Error::new(source.kind(), message)),
        Error::Remote { kind, .. } => match kind {
            RemoteFailure::NotFound => PyFileNotFoundError::new_err(message),
            RemoteFailure::Unauthenticated | RemoteFailure::PermissionDenied => {
                PyPermissionError::new_err(message)
            }
            RemoteFailure::Unreachable => PyConnectionError::new_err(message),
            _ => AnnbatchError::new_err(message),
        },
        _ => AnnbatchError::new_err(message),
    }
}
