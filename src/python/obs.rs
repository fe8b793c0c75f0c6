//! `obs` tables of a collection, dataset by dataset, for pandas: `DatasetCollection.obs()` and
//! the obs frames a `Loader` yields by default (annbatch's `load_all_aligned`).
//!
//! Numbers travel as little-endian bytes (`numpy.frombuffer` on the Python side), strings as
//! lists: a column of a million rows crosses in one copy.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::run;
use crate::collection::DatasetCollection;
use crate::store::Column;

/// One dataset's `obs`: its index and its columns.
struct Table {
    names: Vec<String>,
    columns: Vec<(String, Column)>,
}

/// The `obs` of every dataset of the collection (or AnnData store) at `path`, in order:
/// `[(obs_names, [(name, kind, values, extra)])]`. `columns` picks columns: those of it a
/// dataset has, as annbatch (all, in `column-order`, when None). `kind` and its payload:
/// `"float64"` / `"float32"` / `"int64"` / `"bool"`: `values` bytes, `extra` None;
/// `"str"`: `values` a list, `extra` None;
/// `"Int64"` / `"boolean"` / `"string"` (pandas nullables): `values` as above, `extra` the
/// missing mask as bytes;
/// `"category"`: `values` int64 codes as bytes (-1 missing), `extra` `(categories, ordered)`.
#[pyfunction]
#[pyo3(signature = (path, columns=None))]
pub(super) fn obs_frames<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    columns: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyList>> {
    let tables = run(py, || {
        let collection = DatasetCollection::open_with(&path, &crate::OpenOptions::from_env()?)?;
        tables_of(&collection, columns.as_deref())
    })?;
    to_python(py, tables)
}

/// [`obs_frames`] of a collection already open (`Collection.obs_frames`): no second open.
pub(super) fn obs_frames_of<'py>(
    py: Python<'py>,
    collection: &DatasetCollection,
    columns: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyList>> {
    let tables = run(py, || tables_of(collection, columns.as_deref()))?;
    to_python(py, tables)
}

/// Each dataset's table, datasets read side by side on up to as many scoped threads as cores
/// (obs names are ~100k strings a dataset; scoped threads end before this returns, so nothing
/// outlives the call into a forked DataLoader worker).
fn tables_of(
    collection: &DatasetCollection,
    columns: Option<&[String]>,
) -> crate::Result<Vec<Table>> {
    let datasets = collection.datasets();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(datasets.len())
        .max(1);
    let per_thread = datasets.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = datasets
            .chunks(per_thread)
            .map(|group| {
                scope.spawn(move || {
                    group
                        .iter()
                        .map(|d| table_of(d, columns))
                        .collect::<crate::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut tables = Vec::with_capacity(datasets.len());
        for handle in handles {
            let group = handle
                .join()
                .map_err(|_| crate::Error::Internal("a thread reading obs panicked".into()))??;
            tables.extend(group);
        }
        Ok(tables)
    })
}

/// One dataset's obs names and the columns of `columns` it has (all when None).
fn table_of(d: &crate::AnnDataStore, columns: Option<&[String]>) -> crate::Result<Table> {
    let available = d.obs_columns()?;
    let wanted = match columns {
        Some(c) => c
            .iter()
            .filter(|n| available.contains(n))
            .cloned()
            .collect(),
        None => available,
    };
    let columns = wanted
        .into_iter()
        .map(|name| d.obs_column(&name).map(|c| (name, c)))
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(Table {
        names: d.obs_names()?,
        columns,
    })
}

fn to_python(py: Python<'_>, tables: Vec<Table>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for table in tables {
        let columns = PyList::empty(py);
        for (name, column) in table.columns {
            columns.append(column_of(py, name, column)?)?;
        }
        out.append((table.names, columns))?;
    }
    Ok(out)
}

fn bytes_of<T: Copy, const N: usize>(
    py: Python<'_>,
    values: &[T],
    to: fn(T) -> [u8; N],
) -> Py<PyAny> {
    let raw: Vec<u8> = values.iter().flat_map(|&v| to(v)).collect();
    PyBytes::new(py, &raw).into_any().unbind()
}

fn mask_of(py: Python<'_>, mask: &[bool]) -> Py<PyAny> {
    bytes_of(py, mask, |b| [u8::from(b)])
}

fn column_of(py: Python<'_>, name: String, column: Column) -> PyResult<Bound<'_, PyTuple>> {
    let none = py.None();
    let (kind, values, extra): (&str, Py<PyAny>, Py<PyAny>) = match column {
        Column::Float(v) => ("float64", bytes_of(py, &v, f64::to_le_bytes), none),
        Column::Float32(v) => ("float32", bytes_of(py, &v, f32::to_le_bytes), none),
        // The stored width by name; the values as int64 (uint64: their bits).
        Column::Int { values, dtype } => (
            "int",
            bytes_of(py, &values, i64::to_le_bytes),
            dtype.to_string().into_pyobject(py)?.into_any().unbind(),
        ),
        Column::Bool(v) => ("bool", mask_of(py, &v), none),
        Column::String(v) => ("str", v.into_pyobject(py)?.into_any().unbind(), none),
        Column::NullableInt {
            values,
            mask,
            dtype,
        } => (
            "nullable-int",
            bytes_of(py, &values, i64::to_le_bytes),
            (mask_of(py, &mask), dtype.to_string())
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
        Column::NullableBool { values, mask } => {
            ("boolean", mask_of(py, &values), mask_of(py, &mask))
        }
        Column::NullableString { values, mask } => (
            "string",
            values.into_pyobject(py)?.into_any().unbind(),
            mask_of(py, &mask),
        ),
        Column::Categorical {
            codes,
            categories,
            ordered,
            categories_dtype,
        } => (
            "category",
            bytes_of(py, &codes, i64::to_le_bytes),
            (categories, ordered, categories_dtype.to_string())
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
    };
    PyTuple::new(
        py,
        [
            name.into_pyobject(py)?.into_any().unbind(),
            kind.into_pyobject(py)?.into_any().unbind(),
            values,
            extra,
        ],
    )
}
