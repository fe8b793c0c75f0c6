//! A sampler written in Python (annbatch's `annbatch.abc.Sampler` interface) driving the Rust
//! pipeline: the producer thread draws each load request from the Python generator, holding
//! the GIL only while drawing, while decoding and assembly run without it.
//!
//! The Python side (`annbatch_rs._sampling.PythonRequests`) hands requests over as three byte
//! strings of little-endian int64s: `(start, stop)` pairs of row ranges, the size of each
//! split, and the splits' row positions end to end. Decoding checks every count against the
//! bytes actually received, and [`LoadRequest::validate`] checks the rows against `n_obs`.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{Error, Result};
use crate::sampler::{LoadRequest, Requests, Sampler};

/// The Python exception a sampler raised, kept so that Python gets it back unchanged.
pub(super) type Failure = Arc<Mutex<Option<PyErr>>>;

/// The exception behind `e` when it came from the Python sampler, else `fallback`.
pub(super) fn raised(failure: Option<&Failure>, fallback: PyErr) -> PyErr {
    failure
        .and_then(|f| f.lock().ok().and_then(|mut slot| slot.take()))
        .unwrap_or(fallback)
}

/// A [`Sampler`] over a `PythonRequests` adapter object.
pub(super) struct PySampler {
    adapter: Py<PyAny>,
    batch_size: usize,
    failure: Failure,
}

impl PySampler {
    /// Wraps `adapter` (methods `validate(n_obs)`, `n_batches(n_obs)`, `encoded(n_obs)`,
    /// attribute `batch_size`).
    pub(super) fn new(adapter: &Bound<'_, PyAny>) -> PyResult<(Self, Failure)> {
        let batch_size: Option<usize> = adapter.getattr("batch_size")?.extract()?;
        let failure = Failure::default();
        Ok((
            Self {
                adapter: adapter.clone().unbind(),
                batch_size: batch_size.unwrap_or(1).max(1),
                failure: failure.clone(),
            },
            failure,
        ))
    }

    /// Keeps `e` for Python and returns the crate's error for the pipeline.
    fn fail(&self, py: Python<'_>, e: PyErr) -> Error {
        let message = match e.get_type(py).name() {
            Ok(name) => format!("{name}: {e}"),
            Err(_) => e.to_string(),
        };
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(e);
        }
        Error::Sampler(message)
    }

    fn call(&self, method: &str, n_obs: u64) -> Result<Py<PyAny>> {
        Python::attach(|py| {
            self.adapter
                .call_method1(py, method, (n_obs,))
                .map_err(|e| self.fail(py, e))
        })
    }
}

impl Sampler for PySampler {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn validate(&self, n_obs: u64) -> Result<()> {
        self.call("validate", n_obs).map(drop)
    }

    fn n_batches(&self, n_obs: u64) -> u64 {
        // An error here is kept for Python; validate (always called first) reports it too.
        self.call("n_batches", n_obs)
            .and_then(|n| Python::attach(|py| n.extract(py).map_err(|e| self.fail(py, e))))
            .unwrap_or(0)
    }

    fn requests(&self, n_obs: u64, _epoch: u64) -> Result<Requests<'_>> {
        let generator = self.call("encoded", n_obs)?;
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = Python::attach(|py| match generator.call_method0(py, "__next__") {
                Err(e) if e.is_instance_of::<PyStopIteration>(py) => None,
                Err(e) => Some(Err(self.fail(py, e))),
                Ok(item) => Some(decode(item.bind(py)).map_err(|e| self.fail(py, e))),
            });
            done = !matches!(next, Some(Ok(_)));
            next
        })))
    }
}

/// A load request from its three byte strings.
fn decode(item: &Bound<'_, PyAny>) -> PyResult<LoadRequest> {
    let (ranges, sizes, rows): (Bound<'_, PyBytes>, Bound<'_, PyBytes>, Bound<'_, PyBytes>) =
        item.extract()?;
    let bad = |what: &str| pyo3::exceptions::PyValueError::new_err(format!("load request: {what}"));
    let (ranges, sizes, rows) = (ranges.as_bytes(), sizes.as_bytes(), rows.as_bytes());
    if !ranges.len().is_multiple_of(16) {
        return Err(bad("ranges are not int64 pairs"));
    }
    if !sizes.len().is_multiple_of(8) || !rows.len().is_multiple_of(8) {
        return Err(bad("splits are not int64s"));
    }
    let requests = ranges
        .chunks_exact(16)
        .map(|pair| {
            let (start, stop) = (int64(&pair[..8]), int64(&pair[8..]));
            match (u64::try_from(start), u64::try_from(stop)) {
                (Ok(a), Ok(b)) if a <= b => Ok(a..b),
                _ => Err(bad(&format!("range {start}..{stop} is not a row range"))),
            }
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut positions = rows.chunks_exact(8).map(int64);
    let splits = sizes
        .chunks_exact(8)
        .map(|size| {
            let size = usize::try_from(int64(size)).map_err(|_| bad("a split size is negative"))?;
            if size > positions.len() {
                return Err(bad("split sizes add up to more rows than given"));
            }
            positions
                .by_ref()
                .take(size)
                .map(|r| usize::try_from(r).map_err(|_| bad("a split position is negative")))
                .collect::<PyResult<Vec<_>>>()
        })
        .collect::<PyResult<Vec<_>>>()?;
    if positions.len() != 0 {
        return Err(bad("split sizes add up to fewer rows than given"));
    }
    Ok(LoadRequest { requests, splits })
}

/// A little-endian int64 from exactly 8 bytes.
fn int64(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    i64::from_le_bytes(b)
}
