//! The pyo3 module `annbatch_rs._native` (feature `python`), wrapped by the Python package in
//! `python/annbatch_rs/`. It links no framework: neither libtorch nor numpy.
//!
//! Batches reach Python as DLPack arrays ([`arrays`]): the Python package turns them into
//! torch tensors (`torch.from_dlpack`, `torch.sparse_csr_tensor`), numpy / scipy or jax
//! arrays, all sharing the loader's pooled memory, so one abi3 wheel serves any torch (or none).
//! The GIL is released while Rust opens, reads and decodes. Errors map to `ValueError` (parameters), `FileNotFoundError` / `OSError` (I/O)
//! and `AnnbatchError` (everything else), in [`errors`].

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{add_adatas, ConvertOptions, Size};
use crate::loader::{
    defaults, Batches, ClassSampling, DlBatch, DlMatrix, Loader, LoaderOptions, LoaderState,
};
use crate::sampler::ClassWeights;
use crate::store::write::Compressor;

mod arrays;
mod errors;
mod obs;
mod preview;
mod sampler;
mod sources;

use arrays::PyDlArray;
use errors::{to_py, AnnbatchError};
use sampler::{raised, Failure, PySampler};
use sources::Source;

/// Runs `f` without the GIL; its error, or a panic inside it, becomes a Python exception (a
/// panic would otherwise reach Python as `PanicException`, which `except Exception` misses).
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    py.detach(
        || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(payload) => Err(crate::Error::Internal(format!(
                "panic: {}",
                crate::error::panic_message(payload.as_ref())
            ))),
        },
    )
    .map_err(to_py)
}

/// The datasets a loader reads: collections, AnnData stores and in-memory AnnData (see
/// [`sources`]), opened once and shared by the loaders of every shard.
#[pyclass(name = "Collection", module = "annbatch_rs._native", frozen)]
struct PyCollection {
    inner: Arc<crate::collection::DatasetCollection>,
}

#[pymethods]
impl PyCollection {
    /// `join`: how datasets with different genes become one `var` space: `None` / `"same"`
    /// (they must agree), `"outer"` (the sorted union), or a list of names (the union cut to
    /// them, as the converter's `var_subset`).
    #[new]
    #[pyo3(signature = (sources, join=None))]
    fn new(
        py: Python<'_>,
        sources: Bound<'_, PyAny>,
        join: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let join = sources::var_join(join.as_ref())?;
        let sources = match sources.cast::<PyList>() {
            Ok(list) => list
                .iter()
                .map(|item| Source::extract(&item))
                .collect::<PyResult<Vec<_>>>()?,
            Err(_) => vec![Source::extract(&sources)?],
        };
        if sources.is_empty() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "no data sources given",
            ));
        }
        let collection = run(py, || sources::collection(sources, &join))?;
        Ok(Self {
            inner: Arc::new(collection),
        })
    }

    /// Rows over every dataset.
    #[getter]
    fn n_obs(&self) -> u64 {
        self.inner.n_obs()
    }

    /// Variables (columns of X).
    #[getter]
    fn n_var(&self) -> u64 {
        self.inner.n_var()
    }

    /// Every dataset's obs, as `obs_frames(path, columns)` gives it, read from this open
    /// collection (no second open).
    #[pyo3(signature = (columns=None))]
    fn obs_frames<'py>(
        &self,
        py: Python<'py>,
        columns: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        obs::obs_frames_of(py, &self.inner, columns)
    }

    /// Whether X is sparse (CSR) rather than dense.
    #[getter]
    fn is_sparse(&self) -> bool {
        self.inner
            .datasets()
            .first()
            .is_some_and(|d| d.x().is_sparse())
    }

    /// Each dataset's stored X dtype (`"float32"`, …), in order: batches are float32 whatever
    /// they are.
    fn x_dtypes(&self) -> Vec<String> {
        self.inner
            .datasets()
            .iter()
            .map(|d| d.x().dtype().to_string())
            .collect()
    }

    /// The shared var names.
    fn var_names(&self) -> Vec<String> {
        self.inner.var_names().to_vec()
    }

    /// The datasets' group names (`dataset_0`, …), in order.
    fn dataset_names(&self) -> Vec<String> {
        self.inner.dataset_names().to_vec()
    }

    /// Whether this is a collection annbatch wrote (`encoding-type: annbatch-preshuffled`).
    #[getter]
    fn is_preshuffled(&self) -> bool {
        self.inner.is_preshuffled()
    }
}

/// The Rust loader over a [`PyCollection`].
#[pyclass(name = "Loader", module = "annbatch_rs._native", frozen)]
struct PyLoader {
    inner: Arc<Loader>,
    /// Where a Python batch sampler's exception waits to be raised again.
    failure: Option<Failure>,
}

#[pymethods]
impl PyLoader {
    #[new]
    #[pyo3(signature = (collection, *, batch_size=defaults::BATCH_SIZE,
        chunk_size=defaults::CHUNK_SIZE, preload_nchunks=defaults::PRELOAD_NCHUNKS, shuffle=false,
        drop_last=false, return_index=false, seed=None, obs_keys=None, layer_keys=None,
        obsm_keys=None,
        num_threads=None, prefetch=None, rank=None, world_size=None, equal_batches=true,
        class_codes=None, n_categories=0, class_weights=None, num_samples=None,
        batch_sampler=None, elastic=false, resume=None, cuda_device=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        collection: PyRef<'_, PyCollection>,
        batch_size: usize,
        chunk_size: u64,
        preload_nchunks: usize,
        shuffle: bool,
        drop_last: bool,
        return_index: bool,
        seed: Option<Bound<'_, PyAny>>,
        obs_keys: Option<Vec<String>>,
        layer_keys: Option<Vec<String>>,
        obsm_keys: Option<Vec<String>>,
        num_threads: Option<usize>,
        prefetch: Option<usize>,
        rank: Option<Bound<'_, PyAny>>,
        world_size: Option<Bound<'_, PyAny>>,
        equal_batches: bool,
        class_codes: Option<Vec<i64>>,
        n_categories: usize,
        class_weights: Option<Vec<f64>>,
        num_samples: Option<u64>,
        batch_sampler: Option<Bound<'_, PyAny>>,
        elastic: bool,
        resume: Option<(u64, Vec<(u64, u64)>)>,
        cuda_device: Option<usize>,
    ) -> PyResult<Self> {
        // `..default()`: fields of features this module leaves off (`device`, under `tch`).
        #[allow(clippy::needless_update)]
        let options = LoaderOptions {
            batch_size,
            chunk_size,
            preload_nchunks,
            shuffle,
            drop_last,
            return_index,
            seed: seed.map(|v| natural(&v, "seed")).transpose()?.unwrap_or(0),
            obs_keys: obs_keys.unwrap_or_default(),
            layers: layer_keys.unwrap_or_default(),
            obsm: obsm_keys.unwrap_or_default(),
            num_threads,
            prefetch,
            rank: rank.map(|v| natural(&v, "rank")).transpose()?.unwrap_or(0),
            world_size: world_size
                .map(|v| natural(&v, "world_size"))
                .transpose()?
                .unwrap_or(1),
            equal_batches,
            class_sampling: class_codes.map(|codes| ClassSampling {
                codes,
                n_categories,
                weights: match class_weights {
                    Some(w) => ClassWeights::Weights(w),
                    None => ClassWeights::Balanced,
                },
                num_samples,
            }),
            elastic,
            resume: resume.map(|(epoch, remaining)| crate::sampler::ElasticState {
                epoch,
                remaining: remaining.into_iter().map(|(a, b)| a..b).collect(),
            }),
            // The collection is already open (`DatasetCollection`): its files, its reads.
            direct_io: false,
            remote: crate::RemoteOptions::default(),
            cuda: cuda_device,
            ..LoaderOptions::default()
        };
        let mut builder = Loader::builder_for(collection.inner.clone()).options(options);
        let mut failure = None;
        if let Some(adapter) = batch_sampler {
            let (sampler, caught) = PySampler::new(&adapter)?;
            builder = builder.batch_sampler(sampler);
            failure = Some(caught);
        }
        let loader = run(py, || builder.build()).map_err(|e| raised(failure.as_ref(), e))?;
        Ok(Self {
            inner: Arc::new(loader),
            failure,
        })
    }

    /// Batches per epoch.
    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    /// Where the time went over every epoch so far: cells, batches, seconds, cells/s, and the
    /// producer's read/decode, assembly and consumer-wait seconds, the consumer's wait.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let s = self.inner.stats();
        let out = PyDict::new(py);
        out.set_item("batches", s.batches)?;
        out.set_item("cells", s.cells)?;
        out.set_item("seconds", s.seconds)?;
        out.set_item("cells_per_second", s.cells_per_second())?;
        out.set_item("read_seconds", s.read_seconds)?;
        out.set_item("assemble_seconds", s.assemble_seconds)?;
        out.set_item("consumer_seconds", s.consumer_seconds)?;
        out.set_item("starved_seconds", s.starved_seconds)?;
        out.set_item("split_fetches", s.split_fetches)?;
        Ok(out.unbind())
    }

    /// An elastic epoch's global batches left once every rank delivered `batches` of it, as
    /// `(start, end)` ranges (see `Loader::elastic_state`).
    fn elastic_state(&self, epoch: u64, batches: u64) -> PyResult<Vec<(u64, u64)>> {
        let state = self
            .inner
            .elastic_state(LoaderState { epoch, batches })
            .map_err(to_py)?;
        Ok(state.remaining.iter().map(|r| (r.start, r.end)).collect())
    }

    /// The batches of `epoch`, from batch `skip` on (a resumed epoch).
    #[pyo3(signature = (epoch, skip=0))]
    fn epoch(&self, py: Python<'_>, epoch: u64, skip: u64) -> PyResult<PyBatches> {
        let inner = self.inner.clone();
        let batches = run(py, move || {
            inner.dl_resume(LoaderState {
                epoch,
                batches: skip,
            })
        })
        .map_err(|e| raised(self.failure.as_ref(), e))?;
        Ok(PyBatches {
            batches: Some(batches),
            failure: self.failure.clone(),
        })
    }
}

/// One epoch's batches, as dicts `{"X": matrix, "layers": {name: matrix}, "obsm": {name:
/// matrix}, "obs": {name: array}, "categories": {name: [str]}, "index": array | None}`, where
/// a matrix is `("csr", (rows, n_var), indptr, indices, data)` or `("dense", shape, data)` and
/// each array a [`PyDlArray`].
#[pyclass(name = "Batches", module = "annbatch_rs._native")]
struct PyBatches {
    batches: Option<Batches<DlBatch>>,
    failure: Option<Failure>,
}

/// A matrix as the Python package takes it (see [`PyBatches`]).
fn matrix(py: Python<'_>, m: DlMatrix) -> PyResult<Py<PyAny>> {
    let array = |a| Py::new(py, PyDlArray::new(a));
    Ok(match m {
        DlMatrix::Csr {
            indptr,
            indices,
            data,
            shape,
        } => (
            "csr",
            (shape[0], shape[1]),
            array(indptr)?,
            array(indices)?,
            array(data)?,
        )
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DlMatrix::Dense(data) => {
            let shape = data.shape().to_vec();
            ("dense", shape, array(data)?)
                .into_pyobject(py)?
                .into_any()
                .unbind()
        }
    })
}

#[pymethods]
impl PyBatches {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyDict>>> {
        let Some(batches) = self.batches.as_mut() else {
            return Ok(None);
        };
        // Waits in slices, the GIL released, so Ctrl-C (KeyboardInterrupt) reaches a loop
        // whose loader waits on a sampler that blocks or yields nothing.
        let next = loop {
            let got = run(py, || Ok(batches.next_within(SIGNAL_CHECK)));
            match got? {
                Ok(next) => break next.transpose().map_err(to_py),
                Err(()) => py.check_signals()?,
            }
        };
        match next {
            Ok(None) => {
                self.batches = None;
                Ok(None)
            }
            Err(e) => {
                self.batches = None;
                Err(raised(self.failure.as_ref(), e))
            }
            Ok(Some(batch)) => {
                let out = PyDict::new(py);
                out.set_item("X", matrix(py, batch.x)?)?;
                let obs = PyDict::new(py);
                let categories = PyDict::new(py);
                for o in batch.obs {
                    if let Some(c) = &o.categories {
                        categories.set_item(&o.name, PyList::new(py, c.iter())?)?;
                    }
                    obs.set_item(o.name, Py::new(py, PyDlArray::new(o.values))?)?;
                }
                out.set_item("obs", obs)?;
                out.set_item("categories", categories)?;
                for (key, matrices) in [("layers", batch.layers), ("obsm", batch.obsm)] {
                    let named = PyDict::new(py);
                    for (name, m) in matrices {
                        named.set_item(name, matrix(py, m)?)?;
                    }
                    out.set_item(key, named)?;
                }
                match batch.index {
                    Some(i) => out.set_item("index", Py::new(py, PyDlArray::new(i))?)?,
                    None => out.set_item("index", py.None())?,
                }
                Ok(Some(out.unbind()))
            }
        }
    }

    /// Batches delivered so far in this epoch.
    fn delivered(&self) -> u64 {
        self.batches.as_ref().map_or(0, |b| b.state().batches)
    }

    /// Stops the background work now (also on garbage collection).
    fn close(&mut self, py: Python<'_>) {
        stop(py, self.batches.take());
    }
}

impl Drop for PyBatches {
    fn drop(&mut self) {
        if let Some(batches) = self.batches.take() {
            // Dropped by Python's garbage collection: the GIL is held.
            Python::attach(|py| stop(py, Some(batches)));
        }
    }
}

/// Runs a conversion on a thread of its own while this one, the GIL mostly released, looks
/// for Ctrl-C: on one, the conversion's cancel flag is set, it cleans up (its output, staging
/// copy, uploaded objects) and the `KeyboardInterrupt` it ends with is raised.
fn interruptible<T: Send>(
    py: Python<'_>,
    options: &ConvertOptions,
    work: impl FnOnce() -> crate::Result<T> + Send,
) -> PyResult<T> {
    let Some(cancel) = options.cancel.clone() else {
        return run(py, work);
    };
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|p| {
                Err(crate::Error::Internal(format!(
                    "panic: {}",
                    crate::error::panic_message(p.as_ref())
                )))
            })
        });
        while !handle.is_finished() {
            py.detach(|| std::thread::sleep(SIGNAL_CHECK));
            if py.check_signals().is_err() {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        handle
            .join()
            .unwrap_or_else(|_| {
                Err(crate::Error::Internal(
                    "a conversion thread panicked".into(),
                ))
            })
            .map_err(to_py)
    })
}

/// How often a wait for the next batch looks for a signal (Ctrl-C).
const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// How long stopping an epoch waits for a producer inside a Python sampler.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Stops an epoch's producer with the GIL released: the producer may be waiting for the GIL
/// to call a Python sampler, and joining it while holding the GIL would never end.
fn stop(py: Python<'_>, batches: Option<Batches<DlBatch>>) {
    if let Some(mut batches) = batches {
        py.detach(move || batches.stop_within(Some(STOP_LIMIT)));
    }
}

/// A count given from Python: an integer (Python or numpy; not a bool), negative ones refused
/// with the same wording as zero.
fn count(value: &Bound<'_, PyAny>, name: &'static str) -> PyResult<u64> {
    integer(value, name, "must be positive")
}

/// An integer ≥ 0 given from Python (a rank, a seed): a negative one is a `ValueError` naming
/// the parameter, not pyo3's bare `OverflowError`.
fn natural(value: &Bound<'_, PyAny>, name: &'static str) -> PyResult<u64> {
    integer(value, name, "must be 0 or more")
}

fn integer(value: &Bound<'_, PyAny>, name: &'static str, negative: &str) -> PyResult<u64> {
    let not_int = || {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{name} must be an integer, got {}",
            value
                .repr()
                .map_or_else(|_| "?".to_string(), |r| r.to_string())
        ))
    };
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(not_int());
    }
    let v: i128 = value.extract().map_err(|_| not_int())?;
    u64::try_from(v).map_err(|_| to_py(crate::error::Error::parameter(name, v, negative)))
}

/// Checks loader settings as the native Loader will, before any data is opened: the one check
/// behind Python's `Loader(...)` and samplers (`ValueError` naming the parameter).
#[pyfunction]
#[pyo3(signature = (*, batch_size=None, chunk_size=None, preload_nchunks=None, num_threads=None,
    prefetch=None, num_samples=None))]
fn check_options(
    batch_size: Option<Bound<'_, PyAny>>,
    chunk_size: Option<Bound<'_, PyAny>>,
    preload_nchunks: Option<Bound<'_, PyAny>>,
    num_threads: Option<Bound<'_, PyAny>>,
    prefetch: Option<Bound<'_, PyAny>>,
    num_samples: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let mut o = LoaderOptions::default();
    if let Some(v) = batch_size {
        o.batch_size = size(count(&v, "batch_size")?);
    }
    if let Some(v) = chunk_size {
        o.chunk_size = count(&v, "chunk_size")?;
    }
    if let Some(v) = preload_nchunks {
        o.preload_nchunks = size(count(&v, "preload_nchunks")?);
    }
    if let Some(v) = num_threads {
        o.num_threads = Some(size(count(&v, "num_threads")?));
    }
    if let Some(v) = prefetch {
        o.prefetch = Some(size(count(&v, "prefetch")?));
    }
    if let Some(v) = num_samples {
        o.class_sampling = Some(ClassSampling {
            codes: Vec::new(),
            n_categories: 0,
            weights: ClassWeights::Balanced,
            num_samples: Some(count(&v, "num_samples")?),
        });
    }
    o.check().map_err(to_py)
}

fn size_of(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Size> {
    if let Ok(rows) = value.extract::<u64>() {
        return Ok(Size::Rows(rows));
    }
    let text: String = value.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{name} must be a number of rows or a size string like \"2GB\""
        ))
    })?;
    text.parse().map_err(to_py)
}

/// annbatch's `DatasetCollection.add_adatas`: converts (or appends) `adata_paths` into the
/// collection at `output`. Returns a summary dict.
#[pyfunction]
#[pyo3(signature = (output, adata_paths, *, n_obs_per_chunk=None, shard_size=None,
    dataset_size=None, shuffle_chunk_size=None, shuffle=None, seed=None, var_subset=None,
    groupby=None, quiet=true, allow_disjoint_var=false, compressor=None, merge=None, layer=None,
    progress=None, src_paths=None))]
#[allow(clippy::too_many_arguments)]
fn convert(
    py: Python<'_>,
    output: std::path::PathBuf,
    adata_paths: Vec<std::path::PathBuf>,
    n_obs_per_chunk: Option<Bound<'_, PyAny>>,
    shard_size: Option<Bound<'_, PyAny>>,
    dataset_size: Option<Bound<'_, PyAny>>,
    shuffle_chunk_size: Option<Bound<'_, PyAny>>,
    shuffle: Option<bool>,
    seed: Option<Bound<'_, PyAny>>,
    var_subset: Option<Vec<String>>,
    groupby: Option<Vec<String>>,
    quiet: bool,
    allow_disjoint_var: bool,
    compressor: Option<String>,
    merge: Option<String>,
    layer: Option<String>,
    progress: Option<Py<PyAny>>,
    src_paths: Option<Vec<String>>,
) -> PyResult<Py<PyDict>> {
    let defaults = ConvertOptions::default();
    // `progress(done, total, dataset)`, called from the converting thread with the GIL taken;
    // what it raises is logged, not fatal (a display must not stop a conversion).
    let on_progress = progress.map(|callback| {
        crate::convert::ProgressHook(std::sync::Arc::new(
            move |done: u64, total: u64, dataset: &str| {
                Python::attach(|py| {
                    if let Err(e) = callback.call1(py, (done, total, dataset)) {
                        tracing::warn!(error = %e, "the progress callback failed");
                    }
                });
            },
        ))
    });
    let options = ConvertOptions {
        n_obs_per_chunk: match n_obs_per_chunk {
            Some(v) => count(&v, "n_obs_per_chunk")?,
            None => defaults.n_obs_per_chunk,
        },
        shard_size: match shard_size {
            Some(v) => size_of(&v, "shard_size")?,
            None => defaults.shard_size,
        },
        dataset_size: match dataset_size {
            Some(v) => size_of(&v, "dataset_size")?,
            None => defaults.dataset_size,
        },
        shuffle_chunk_size: match shuffle_chunk_size {
            Some(v) => count(&v, "shuffle_chunk_size")?,
            None => defaults.shuffle_chunk_size,
        },
        shuffle: shuffle.unwrap_or(defaults.shuffle),
        seed: seed.map(|v| natural(&v, "seed")).transpose()?,
        var_subset,
        groupby: groupby.unwrap_or_default(),
        quiet,
        allow_disjoint_var,
        compressor: match compressor.as_deref() {
            None => defaults.compressor,
            Some(name) => Compressor::parse(name)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?,
        },
        merge: merge
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(to_py)?,
        layer,
        remote: crate::RemoteOptions::from_env().map_err(to_py)?,
        staging_dir: None,
        on_progress,
        src_paths,
        cancel: Some(Arc::default()),
    };
    let report = interruptible(py, &options, || add_adatas(&output, &adata_paths, &options))?;
    let out = PyDict::new(py);
    out.set_item("n_obs", report.n_obs)?;
    out.set_item("n_var", report.n_var)?;
    out.set_item("datasets", report.datasets)?;
    out.set_item("added", report.added)?;
    out.set_item("appended", report.appended)?;
    out.set_item("seed", report.seed)?;
    out.set_item("notes", report.notes)?;
    Ok(out.unbind())
}

/// Test hook: panics inside native code, to show it reaches Python as `AnnbatchError`.
#[pyfunction]
fn _panic(py: Python<'_>, message: String) -> PyResult<()> {
    run(py, || -> crate::Result<()> { panic!("{message}") })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Our `tracing` events reach Python's `logging` (logger "annbatch"), through `log`.
    let _ = pyo3_log::try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let default = PyDict::new(m.py());
    default.set_item("batch_size", defaults::BATCH_SIZE)?;
    default.set_item("chunk_size", defaults::CHUNK_SIZE)?;
    default.set_item("preload_nchunks", defaults::PRELOAD_NCHUNKS)?;
    m.add("DEFAULTS", default)?;
    let convert_defaults = PyDict::new(m.py());
    let c = ConvertOptions::default();
    convert_defaults.set_item("n_obs_per_chunk", c.n_obs_per_chunk)?;
    convert_defaults.set_item("shard_size", c.shard_size.to_string())?;
    convert_defaults.set_item("dataset_size", c.dataset_size.to_string())?;
    convert_defaults.set_item("shuffle_chunk_size", c.shuffle_chunk_size)?;
    convert_defaults.set_item("shuffle", c.shuffle)?;
    m.add("CONVERT_DEFAULTS", convert_defaults)?;
    m.add("AnnbatchError", m.py().get_type::<AnnbatchError>())?;
    m.add_class::<PyCollection>()?;
    m.add_class::<PyLoader>()?;
    m.add_class::<PyBatches>()?;
    m.add_class::<PyDlArray>()?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(check_options, m)?)?;
    m.add_function(wrap_pyfunction!(obs::obs_frames, m)?)?;
    m.add_function(wrap_pyfunction!(preview::class_requests, m)?)?;
    m.add_function(wrap_pyfunction!(_panic, m)?)?;
    Ok(())
}
