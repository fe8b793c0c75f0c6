//! What `annbatch_rs.Loader` reads from, handed over from Python: paths of collections or AnnData
//! stores, and in-memory AnnData (scipy CSR / numpy `X` and obs columns as numpy arrays, read
//! through DLPack), made one [`DatasetCollection`].
//!
//! An in-memory dict is `{"format": "csr" | "dense", "shape": (n_obs, n_var), "data": array,
//! "indices": array, "indptr": array, "var_names": [str] | None, "obs_names": [str] | None,
//! "obs": {name: array | ("bool", array) | (codes, categories, ordered)}}`; with `"format": "zarr"`, `"store"`
//! (a path) and `"x"` (an element inside it, such as `layers/counts`) replace the arrays and
//! `X` stays on disk. Its arrays are copied once into Rust
//! memory (float32 values, int32 column indices), so the loader's threads read them without the
//! GIL and whatever Python does with the originals afterwards.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::arrays::elements;
use super::errors::to_py;
use crate::collection::{DatasetCollection, VarJoin};
use crate::dlpack::Elements;
use crate::store::{AnnDataStore, Column, InMemoryX, XElement};

/// One source as Python gave it.
pub(super) enum Source {
    /// A collection or AnnData store on disk.
    Path(std::path::PathBuf),
    /// An AnnData in memory, already copied out of its tensors.
    Memory(Box<AnnDataStore>),
}

impl Source {
    /// Reads a path (`str` / `os.PathLike`) or an in-memory dict; needs the GIL.
    pub(super) fn extract(item: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(dict) = item.cast::<PyDict>() {
            return from_dict(dict).map(|a| Self::Memory(Box::new(a)));
        }
        item.extract::<std::path::PathBuf>()
            .map(Self::Path)
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "a source must be a path or an in-memory AnnData dict, got {}",
                    item.get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            })
    }
}

/// The `join` argument: `None` / `"same"`, `"outer"`, or a sequence of var names.
pub(super) fn var_join(join: Option<&Bound<'_, PyAny>>) -> PyResult<VarJoin> {
    let Some(join) = join.filter(|j| !j.is_none()) else {
        return Ok(VarJoin::Same);
    };
    if let Ok(s) = join.extract::<String>() {
        return match s.as_str() {
            "same" => Ok(VarJoin::Same),
            "outer" => Ok(VarJoin::Outer),
            _ => Err(PyValueError::new_err(format!(
                "var_join={s:?}: expected \"same\", \"outer\" or a list of var names"
            ))),
        };
    }
    join.extract::<Vec<String>>()
        .map(VarJoin::Subset)
        .map_err(|_| {
            PyTypeError::new_err("var_join: expected \"same\", \"outer\" or a list of var names")
        })
}

/// The sources as one collection, in order, their `var` spaces joined by `join` (opening the
/// paths: call without the GIL).
pub(super) fn collection(
    sources: Vec<Source>,
    join: &VarJoin,
) -> crate::error::Result<DatasetCollection> {
    if let ([Source::Path(path)], VarJoin::Same) = (sources.as_slice(), join) {
        return DatasetCollection::open_with(path, &crate::OpenOptions::from_env()?);
    }
    let mut datasets = Vec::new();
    let mut labels = Vec::new();
    for (i, source) in sources.into_iter().enumerate() {
        match source {
            Source::Path(path) => {
                let c = DatasetCollection::open_with(&path, &crate::OpenOptions::from_env()?)?;
                labels.push(path.display().to_string());
                datasets.extend(c.into_datasets());
            }
            Source::Memory(adata) => {
                let label = format!("<in-memory AnnData {i}>");
                labels.push(label.clone());
                datasets.push((label, *adata));
            }
        }
    }
    DatasetCollection::from_datasets_joined(labels.join(" + "), datasets, join)
}

fn from_dict(dict: &Bound<'_, PyDict>) -> PyResult<AnnDataStore> {
    let get = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        dict.get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("in-memory AnnData without {key:?}")))
    };
    let format: String = get("format")?.extract()?;
    // `(n_obs, n_var)`, or more dimensions for a dense zarr X (its rows hold their product).
    let shape: Vec<u64> = get("shape")?.extract()?;
    let (n_obs, n_var) = match (format.as_str(), shape.as_slice()) {
        (_, [n_obs, n_var]) | ("zarr", [n_obs, n_var, ..]) => (*n_obs, *n_var),
        _ => {
            return Err(PyValueError::new_err(format!(
                "shape {shape:?}: expected (n_obs, n_var){}",
                if format == "zarr" {
                    ", or more dimensions for a dense X"
                } else {
                    ""
                }
            )))
        }
    };
    let x = match format.as_str() {
        "csr" => {
            let indptr = vec_of::<i64>(&get("indptr")?, "indptr", Kinds::Integer)?;
            let indices = vec_of::<i64>(&get("indices")?, "indices", Kinds::Integer)?;
            let data = vec_of::<f32>(&get("data")?, "data", Kinds::Numeric)?;
            if indptr.len() as u64 != n_obs + 1 {
                return Err(PyValueError::new_err(format!(
                    "indptr has {} entries, expected n_obs + 1 = {}",
                    indptr.len(),
                    n_obs + 1
                )));
            }
            let indptr = indptr
                .into_iter()
                .map(|v| u64::try_from(v).map_err(|_| v))
                .collect::<Result<Vec<u64>, i64>>()
                .map_err(|v| PyValueError::new_err(format!("indptr holds {v} (negative)")))?;
            let indices = indices
                .into_iter()
                .map(|v| i32::try_from(v).map_err(|_| v))
                .collect::<Result<Vec<i32>, i64>>()
                .map_err(|v| {
                    PyValueError::new_err(format!("column index {v} does not fit int32"))
                })?;
            InMemoryX::csr(n_var, indptr, indices, data).map_err(to_py)?
        }
        "dense" => {
            let data = vec_of::<f32>(&get("data")?, "data", Kinds::Numeric)?;
            if data.len() as u64 != n_obs * n_var {
                return Err(PyValueError::new_err(format!(
                    "dense X has {} values, expected {n_obs} x {n_var}",
                    data.len()
                )));
            }
            InMemoryX::dense(n_var, data).map_err(to_py)?
        }
        "zarr" => {
            let root: std::path::PathBuf = get("store")?.extract()?;
            let element: String = get("x")?.extract()?;
            let x = dict
                .py()
                .detach(|| XElement::open_at(&root, &element))
                .map_err(to_py)?;
            let found = match &x {
                XElement::Dense(d) => d.shape().to_vec(),
                _ => vec![x.n_obs(), x.n_var()],
            };
            if found != shape {
                return Err(PyValueError::new_err(format!(
                    "{}/{element} has shape {found:?}, the AnnData {shape:?}",
                    root.display(),
                )));
            }
            return with_columns(dict, x);
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "format {other:?}: expected \"csr\", \"dense\" or \"zarr\""
            )))
        }
    };
    with_columns(dict, XElement::InMemory(x))
}

/// The AnnData of `x` with the dict's names and obs columns.
fn with_columns(dict: &Bound<'_, PyDict>, x: XElement) -> PyResult<AnnDataStore> {
    let names = |key: &str| -> PyResult<Option<Vec<String>>> {
        match dict.get_item(key)? {
            Some(v) if !v.is_none() => v.extract().map(Some),
            _ => Ok(None),
        }
    };
    let mut obs = Vec::new();
    if let Some(columns) = dict.get_item("obs")? {
        for (name, value) in columns.cast::<PyDict>()?.iter() {
            let name: String = name.extract()?;
            let column = column_of(&value).map_err(|e| {
                PyValueError::new_err(format!("obs column {name:?}: {}", e.value(value.py())))
            })?;
            obs.push((name, column));
        }
    }
    let adata =
        AnnDataStore::with_x(x, names("var_names")?, names("obs_names")?, obs).map_err(to_py)?;
    // The AnnData group its layers / obsm are read from (a `load_adata` result).
    match (dict.get_item("store")?, dict.get_item("group")?) {
        (Some(root), Some(group)) if !group.is_none() => {
            let root: std::path::PathBuf = root.extract()?;
            let group: String = group.extract()?;
            adata.with_matrices_from(root, &group).map_err(to_py)
        }
        _ => Ok(adata),
    }
}

/// An obs column: `(codes, categories, ordered)`, `("bool", array)` or a numeric array.
fn column_of(value: &Bound<'_, PyAny>) -> PyResult<Column> {
    if let Ok((codes, categories, ordered)) =
        value.extract::<(Bound<'_, PyAny>, Vec<String>, bool)>()
    {
        let codes = vec_of::<i64>(&codes, "codes", Kinds::Integer)?;
        let n = categories.len() as i64;
        if let Some(bad) = codes.iter().find(|&&c| c < -1 || c >= n) {
            return Err(PyValueError::new_err(format!(
                "category code {bad} outside -1..{n}"
            )));
        }
        return Ok(Column::categorical(codes, categories, ordered));
    }
    if let Ok((tag, values)) = value.extract::<(String, Bound<'_, PyAny>)>() {
        if tag == "bool" {
            let values = vec_of::<i64>(&values, "values", Kinds::Integer)?;
            return Ok(Column::Bool(values.into_iter().map(|v| v != 0).collect()));
        }
    }
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("expected an array, got a str"));
    }
    Ok(match elements(value, "values")? {
        Elements::Bool(v) => Column::Bool(v),
        Elements::Float64(v) => Column::Float(v),
        Elements::Float32(v) => Column::Float32(v),
        Elements::Int(v) => Column::int64(v),
        Elements::UInt64(v) => Column::Int {
            values: v.into_iter().map(|x| x as i64).collect(),
            dtype: crate::zarr::Dtype::U64,
        },
    })
}

/// Which array dtypes an array may have.
#[derive(Clone, Copy)]
enum Kinds {
    Integer,
    Numeric,
}

fn uint64_as_int64(values: Vec<u64>, what: &str) -> PyResult<Vec<i64>> {
    values
        .into_iter()
        .map(|v| {
            i64::try_from(v).map_err(|_| {
                PyValueError::new_err(format!("{what} holds the uint64 {v}, beyond int64"))
            })
        })
        .collect()
}

/// A value type in-memory arrays are read as.
trait FromElements: Sized {
    fn from_elements(e: Elements, what: &str, kinds: Kinds) -> PyResult<Vec<Self>>;
}

fn wrong_kind(what: &str, e: &Elements, kinds: Kinds) -> PyErr {
    PyTypeError::new_err(format!(
        "{what} has dtype {}, expected {}",
        e.kind(),
        match kinds {
            Kinds::Integer => "an integer type",
            Kinds::Numeric => "a real number type",
        }
    ))
}

impl FromElements for i64 {
    fn from_elements(e: Elements, what: &str, kinds: Kinds) -> PyResult<Vec<i64>> {
        match e {
            Elements::Int(v) => Ok(v),
            Elements::UInt64(v) => uint64_as_int64(v, what),
            other => Err(wrong_kind(what, &other, kinds)),
        }
    }
}

impl FromElements for f32 {
    fn from_elements(e: Elements, what: &str, kinds: Kinds) -> PyResult<Vec<f32>> {
        match e {
            Elements::Float32(v) => Ok(v),
            Elements::Float64(v) => Ok(v.into_iter().map(|x| x as f32).collect()),
            Elements::Int(v) if matches!(kinds, Kinds::Numeric) => {
                Ok(v.into_iter().map(|x| x as f32).collect())
            }
            Elements::UInt64(v) if matches!(kinds, Kinds::Numeric) => {
                Ok(v.into_iter().map(|x| x as f32).collect())
            }
            other => Err(wrong_kind(what, &other, kinds)),
        }
    }
}

/// The values of a host array as a flat `Vec<T>` (one copy, converted to `T`).
fn vec_of<T: FromElements>(value: &Bound<'_, PyAny>, what: &str, kinds: Kinds) -> PyResult<Vec<T>> {
    T::from_elements(elements(value, what)?, what, kinds)
}
