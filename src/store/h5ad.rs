//! `.h5ad` files (AnnData in HDF5) through `hdf5-metno`: the same elements as the zarr reader,
//! including anndata's legacy encodings (dataframe 0.1.0 with `__categories`, unencoded groups).
//!
//! HDF5 serialises access internally, so reads through it are sequential: the converter and
//! `obs` / `var` use them. The loader reads `X` and layers by file offset instead, in parallel
//! ([`H5adRows`], [`H5adFile::rows`]).

mod direct;
mod rows;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File};
use serde_json::{json, Map, Value};

use super::csr::validate_indptr;
use super::dataframe::{self, Column};
use super::source::ElementSource;
use crate::batch::{CsrBatch, DenseBatch, RowValue, XBatch};
use crate::error::{Error, Result};
use crate::zarr::dtype::Dtype;
use crate::zarr::node::{encoding as encoding_of, missing, NodeKind};
use crate::zarr::whole::{check_size, WholeArray, WholeValues};

use direct::FileHandle;
pub use rows::H5adRows;

fn h5err(path: &str, source: hdf5::Error) -> Error {
    Error::Hdf5 {
        path: path.to_string(),
        source,
    }
}

/// An open `.h5ad` file, as an [`ElementSource`].
struct H5 {
    file: File,
}

impl H5 {
    fn dataset(&self, path: &str) -> Result<Dataset> {
        match self.kind(path)? {
            Some(NodeKind::Array) => self.file.dataset(path).map_err(|e| h5err(path, e)),
            Some(NodeKind::Group) => Err(Error::UnknownEncoding {
                path: path.to_string(),
                encoding_type: "group".into(),
                encoding_version: String::new(),
                expected: "a dataset".into(),
            }),
            None => Err(missing(path)),
        }
    }
}

fn dtype_of(path: &str, ds: &Dataset) -> Result<Dtype> {
    let descriptor = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, e))?;
    Ok(match descriptor {
        TypeDescriptor::Boolean => Dtype::Bool,
        TypeDescriptor::Integer(IntSize::U1) => Dtype::I8,
        TypeDescriptor::Integer(IntSize::U2) => Dtype::I16,
        TypeDescriptor::Integer(IntSize::U4) => Dtype::I32,
        TypeDescriptor::Integer(IntSize::U8) => Dtype::I64,
        TypeDescriptor::Unsigned(IntSize::U1) => Dtype::U8,
        TypeDescriptor::Unsigned(IntSize::U2) => Dtype::U16,
        TypeDescriptor::Unsigned(IntSize::U4) => Dtype::U32,
        TypeDescriptor::Unsigned(IntSize::U8) => Dtype::U64,
        TypeDescriptor::Float(FloatSize::U2) => Dtype::F16,
        TypeDescriptor::Float(FloatSize::U4) => Dtype::F32,
        TypeDescriptor::Float(FloatSize::U8) => Dtype::F64,
        TypeDescriptor::VarLenUnicode
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => Dtype::String,
        other => {
            return Err(Error::UnsupportedDtype {
                path: path.to_string(),
                found: other.to_string(),
                expected: "bool, (u)int8-64, float32/64 or string".into(),
            })
        }
    })
}

/// One HDF5 attribute as JSON: strings, numbers, bools and arrays of them; other types
/// (object references) become `null`.
fn attr_json(attr: &hdf5::Attribute) -> Value {
    let Ok(descriptor) = attr.dtype().and_then(|t| t.to_descriptor()) else {
        return Value::Null;
    };
    let scalar = attr.is_scalar();
    macro_rules! read {
        ($t:ty, $f:expr) => {{
            if scalar {
                attr.read_scalar::<$t>()
                    .map(|v| $f(v))
                    .unwrap_or(Value::Null)
            } else {
                attr.read_raw::<$t>()
                    .map(|v| Value::Array(v.into_iter().map($f).collect()))
                    .unwrap_or(Value::Null)
            }
        }};
    }
    match descriptor {
        // Not UTF-8: `null`, as an attribute of a type it does not read.
        TypeDescriptor::VarLenUnicode => read!(VarLenUnicode, |v: VarLenUnicode| {
            std::str::from_utf8(v.as_bytes()).map_or(Value::Null, |s| json!(s))
        }),
        TypeDescriptor::VarLenAscii => read!(VarLenAscii, |v: VarLenAscii| {
            std::str::from_utf8(v.as_bytes()).map_or(Value::Null, |s| json!(s))
        }),
        TypeDescriptor::Boolean => read!(bool, |v: bool| json!(v)),
        TypeDescriptor::Integer(_) => read!(i64, |v: i64| json!(v)),
        TypeDescriptor::Unsigned(_) => read!(u64, |v: u64| json!(v)),
        TypeDescriptor::Float(_) => read!(f64, |v: f64| json!(v)),
        _ => Value::Null,
    }
}

impl ElementSource for H5 {
    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        // Walk the path so that a missing parent is "absent", not an HDF5 error.
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let parent = if prefix.is_empty() {
                "/".to_string()
            } else {
                prefix.clone()
            };
            let group = self.file.group(&parent).map_err(|e| h5err(path, e))?;
            if !group.link_exists(part) {
                return Ok(None);
            }
            prefix = format!("{prefix}/{part}");
        }
        let target = if prefix.is_empty() { "/" } else { &prefix };
        match self.file.loc_type_by_name(target) {
            Ok(hdf5::LocationType::Group) => Ok(Some(NodeKind::Group)),
            Ok(hdf5::LocationType::Dataset) => Ok(Some(NodeKind::Array)),
            Ok(_) => Ok(None),
            Err(e) => Err(h5err(path, e)),
        }
    }

    fn attributes(&self, path: &str) -> Result<Map<String, Value>> {
        let target = if path.is_empty() { "/" } else { path };
        let location: hdf5::Location = match self.kind(path)? {
            Some(NodeKind::Group) => {
                let group = self.file.group(target).map_err(|e| h5err(path, e))?;
                let location: &hdf5::Location = &group;
                location.clone()
            }
            Some(NodeKind::Array) => {
                let dataset = self.file.dataset(target).map_err(|e| h5err(path, e))?;
                let location: &hdf5::Location = &dataset;
                location.clone()
            }
            None => return Err(missing(path)),
        };
        let names = location.attr_names().map_err(|e| h5err(path, e))?;
        let mut out = Map::new();
        for name in names {
            if let Ok(attr) = location.attr(&name) {
                out.insert(name, attr_json(&attr));
            }
        }
        Ok(out)
    }

    fn array_info(&self, path: &str) -> Result<(Dtype, Vec<u64>)> {
        let ds = self.dataset(path)?;
        Ok((
            dtype_of(path, &ds)?,
            ds.shape().iter().map(|&d| d as u64).collect(),
        ))
    }

    fn read_i64(&self, path: &str) -> Result<Vec<i64>> {
        let ds = self.dataset(path)?;
        match dtype_of(path, &ds)? {
            Dtype::Bool => Ok(ds
                .read_raw::<bool>()
                .map_err(|e| h5err(path, e))?
                .into_iter()
                .map(i64::from)
                .collect()),
            d if d.is_integer() => ds.read_raw::<i64>().map_err(|e| h5err(path, e)),
            d => Err(Error::UnsupportedDtype {
                path: path.into(),
                found: d.to_string(),
                expected: "an integer type".into(),
            }),
        }
    }

    fn read_u64(&self, path: &str) -> Result<Vec<u64>> {
        let ds = self.dataset(path)?;
        ds.read_raw::<u64>().map_err(|e| h5err(path, e))
    }

    fn read_f64(&self, path: &str) -> Result<Vec<f64>> {
        let ds = self.dataset(path)?;
        ds.read_raw::<f64>().map_err(|e| h5err(path, e))
    }

    fn read_bool(&self, path: &str) -> Result<Vec<bool>> {
        self.dataset(path)?
            .read_raw::<bool>()
            .map_err(|e| h5err(path, e))
    }

    fn read_strings(&self, path: &str) -> Result<Vec<String>> {
        let ds = self.dataset(path)?;
        let descriptor = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| h5err(path, e))?;
        // hdf5-metno's `as_str` trusts the bytes; a file may hold any: checked here.
        match descriptor {
            TypeDescriptor::VarLenAscii => ds
                .read_raw::<VarLenAscii>()
                .map_err(|e| h5err(path, e))?
                .iter()
                .enumerate()
                .map(|(i, s)| Error::utf8(path, i, s.as_bytes()))
                .collect(),
            _ => ds
                .read_raw::<VarLenUnicode>()
                .map_err(|e| h5err(path, e))?
                .iter()
                .enumerate()
                .map(|(i, s)| Error::utf8(path, i, s.as_bytes()))
                .collect(),
        }
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        let target = if path.is_empty() { "/" } else { path };
        let group = self.file.group(target).map_err(|e| h5err(path, e))?;
        group.member_names().map_err(|e| h5err(path, e))
    }

    fn read_whole(&self, path: &str) -> Result<WholeArray> {
        let ds = self.dataset(path)?;
        let dtype = dtype_of(path, &ds)?;
        let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
        check_size(path, dtype, &shape)?;
        let read = |e| h5err(path, e);
        let values = match dtype {
            Dtype::Bool => WholeValues::Bool(ds.read_raw::<bool>().map_err(read)?),
            Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64 => {
                WholeValues::UInt(ds.read_raw::<u64>().map_err(read)?)
            }
            d if d.is_integer() => WholeValues::Int(ds.read_raw::<i64>().map_err(read)?),
            Dtype::F16 | Dtype::F32 | Dtype::F64 => {
                WholeValues::Float(ds.read_raw::<f64>().map_err(read)?)
            }
            _ => WholeValues::Str(self.read_strings(path)?),
        };
        // An HDF5 null dataspace (h5py.Empty) has the shape of a scalar but no value.
        let n = shape.iter().product::<u64>();
        let held = match &values {
            WholeValues::Bool(v) => v.len(),
            WholeValues::Int(v) => v.len(),
            WholeValues::UInt(v) => v.len(),
            WholeValues::Float(v) => v.len(),
            WholeValues::Str(v) => v.len(),
        };
        if held as u64 != n {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("{held} values (an empty HDF5 dataspace holds none)"),
                expected: format!("{n} (shape {shape:?})"),
            });
        }
        Ok(WholeArray {
            dtype,
            shape,
            values,
        })
    }
}

/// `X` of an `.h5ad` (cloned to read it again: handles, and row pointers shared).
#[derive(Clone)]
enum H5X {
    Csr {
        data: Dataset,
        indices: Dataset,
        indptr: Arc<[u64]>,
        n_var: u64,
    },
    Dense {
        ds: Dataset,
        row_width: u64,
        n_var: u64,
    },
    /// A `csc_matrix`, as the CSR of its transpose: not readable by rows (see
    /// [`H5adCsc`]).
    Csc(Box<H5X>),
}

/// A `csc_matrix` of an `.h5ad` read by columns, for the converter to transpose.
pub(crate) struct H5adCsc<'a> {
    transposed: &'a H5X,
    file: &'a Path,
    path: &'a str,
}

impl H5adCsc<'_> {
    /// Rows of the matrix.
    pub(crate) fn n_rows(&self) -> u64 {
        match self.transposed {
            H5X::Csr { n_var, .. } => *n_var,
            _ => 0,
        }
    }
    /// The element type of the values.
    pub(crate) fn dtype(&self) -> Dtype {
        self.transposed
            .values_dtype(self.path)
            .unwrap_or(Dtype::F32)
    }
    /// Column pointers (`n_var + 1`).
    pub(crate) fn col_ptr(&self) -> &[u64] {
        match self.transposed {
            H5X::Csr { indptr, .. } => indptr,
            _ => &[],
        }
    }
    /// Replaces `out` with columns `cols` as rows (row indices as column indices).
    pub(crate) fn read_columns(&self, cols: Range<u64>, out: &mut XBatch<f64>) -> Result<()> {
        let n = self.col_ptr().len().saturating_sub(1) as u64;
        self.transposed
            .read_rows(self.file, self.path, n, &[cols], out)
    }
}

/// An AnnData `.h5ad` file, read by rows.
///
/// ```no_run
/// # fn main() -> annbatch::Result<()> {
/// let adata = annbatch::h5ad::H5adFile::open("pbmc.h5ad")?;
/// let mut batch = adata.new_batch();
/// adata.read_rows(&[0..100], &mut batch)?;
/// # Ok(()) }
/// ```
pub struct H5adFile {
    h5: H5,
    /// The same file, for reads by offset and the check that it is unchanged.
    handle: Arc<FileHandle>,
    path: PathBuf,
    x: H5X,
    x_dtype: Dtype,
    n_obs: u64,
    var_names: Vec<String>,
}

impl std::fmt::Debug for H5adFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5adFile")
            .field("path", &self.path)
            .field("n_obs", &self.n_obs)
            .finish()
    }
}

impl H5adFile {
    /// Opens `path` and validates `X` (encoding, dtypes, `indptr`) and `var`.
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the file cannot be opened, [`Error::MissingElement`] /
    /// [`Error::UnknownEncoding`] / [`Error::InvalidIndptr`] for an `X` that cannot be read by
    /// rows.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // HDF5 would open a FIFO and wait for a writer.
        crate::storage::refuse_special(path)?;
        let file = File::open(path).map_err(|e| match std::fs::metadata(path) {
            Err(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            Ok(_) => h5err(&path.display().to_string(), e),
        })?;
        let h5 = H5 { file };
        let handle = Arc::new(FileHandle::open(path, &h5.file)?);
        let root = h5.attributes("")?;
        let (encoding_type, encoding_version) = encoding_of(&root);
        if !matches!(encoding_type.as_str(), "anndata" | "") {
            return Err(Error::UnknownEncoding {
                path: "/".into(),
                encoding_type,
                encoding_version,
                expected: "\"anndata\"".into(),
            });
        }
        let (x, n_obs) = open_matrix(&h5, "X")?;
        let x_dtype = match &x {
            H5X::Csr { data, .. } => dtype_of("X/data", data)?,
            H5X::Dense { ds, .. } => dtype_of("X", ds)?,
            H5X::Csc(t) => t.values_dtype("X")?,
        };
        let var_names = dataframe::read_index(&h5, "var")?;
        let file = Self {
            h5,
            handle,
            path: path.to_path_buf(),
            x,
            x_dtype,
            n_obs,
            var_names,
        };
        if file.var_names.len() as u64 != file.n_var() {
            return Err(Error::ShapeMismatch {
                path: "var".into(),
                found: format!("{} var names", file.var_names.len()),
                expected: format!("{} (X's n_var)", file.n_var()),
            });
        }
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of observations.
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }
    /// Number of variables.
    pub fn n_var(&self) -> u64 {
        match &self.x {
            H5X::Csr { n_var, .. } | H5X::Dense { n_var, .. } => *n_var,
            H5X::Csc(t) => t.col_count(),
        }
    }
    /// Whether `X` is sparse (CSR).
    pub fn is_sparse(&self) -> bool {
        matches!(self.x, H5X::Csr { .. } | H5X::Csc(_))
    }
    /// The `var` index.
    pub fn var_names(&self) -> &[String] {
        &self.var_names
    }
    /// The element type of `X`'s values as stored.
    pub fn x_dtype(&self) -> Dtype {
        self.x_dtype
    }
    /// The validated row pointers of a CSR `X` (`n_obs + 1` entries); `None` for dense `X`.
    pub fn indptr(&self) -> Option<&[u64]> {
        match &self.x {
            H5X::Csr { indptr, .. } => Some(indptr),
            H5X::Dense { .. } | H5X::Csc(_) => None,
        }
    }
    /// The `obs` index.
    ///
    /// # Errors
    /// [`Error::Hdf5`] / [`Error::MissingElement`] when the obs index cannot be read.
    pub fn obs_names(&self) -> Result<Vec<String>> {
        dataframe::read_index(&self.h5, "obs")
    }
    /// `obs` column names.
    ///
    /// # Errors
    /// [`Error::Hdf5`] / [`Error::UnknownEncoding`] when `obs` is not a readable dataframe.
    pub fn obs_columns(&self) -> Result<Vec<String>> {
        dataframe::column_names(&self.h5, "obs")
    }
    /// Reads the `obs` column `name`.
    ///
    /// # Errors
    /// [`Error::MissingElement`] for a column that does not exist, [`Error::UnknownEncoding`] /
    /// [`Error::UnsupportedDtype`] for one this crate cannot read; [`Error::Hdf5`] when reading
    /// fails.
    pub fn obs_column(&self, name: &str) -> Result<Column> {
        let column = dataframe::read_column(&self.h5, "obs", name)?;
        if column.len() as u64 != self.n_obs {
            return Err(Error::ShapeMismatch {
                path: format!("obs/{name}"),
                found: format!("{} rows", column.len()),
                expected: format!("{} (X's n_obs)", self.n_obs),
            });
        }
        Ok(column)
    }

    /// `var` columns and their values, in `column-order` (one value per variable).
    ///
    /// # Errors
    /// As [`Self::obs_column`], for `var`.
    pub fn var_columns(&self) -> Result<Vec<(String, Column)>> {
        let n_var = self.var_names.len();
        dataframe::column_names(&self.h5, "var")?
            .into_iter()
            .map(|name| {
                let column = dataframe::read_column(&self.h5, "var", &name)?;
                if column.len() != n_var {
                    return Err(Error::ShapeMismatch {
                        path: format!("var/{name}"),
                        found: format!("{} rows", column.len()),
                        expected: format!("{n_var} (X's n_var)"),
                    });
                }
                Ok((name, column))
            })
            .collect()
    }

    /// An empty batch of the right kind for [`Self::read_rows`].
    pub fn new_batch(&self) -> XBatch {
        self.x.new_batch()
    }

    /// Replaces the contents of `out` with the rows of `ranges`, in order.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::Hdf5`] when reading fails,
    /// [`Error::IndexOutOfBounds`] for a stored column index outside `0..n_var`,
    /// [`Error::BatchTooLarge`] past int32 CSR indices.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.x.read_rows(&self.path, "X", self.n_obs, ranges, out)
    }

    /// [`Self::read_rows`] into values of another type (the converter reads matrices that
    /// are not float32 as float64).
    pub(crate) fn read_rows_as<V: RowValue + hdf5::H5Type>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        self.x.read_rows(&self.path, "X", self.n_obs, ranges, out)
    }

    /// `X` read by columns, when it is a `csc_matrix`.
    pub(crate) fn csc_x(&self) -> Option<H5adCsc<'_>> {
        match &self.x {
            H5X::Csc(t) => Some(H5adCsc {
                transposed: t,
                file: &self.path,
                path: "X",
            }),
            _ => None,
        }
    }

    /// The file's elements, for readers of whole elements (`uns`).
    pub(crate) fn elements(&self) -> &dyn ElementSource {
        &self.h5
    }

    /// The row-aligned matrix at `path` (`layers/NAME`, `obsm/NAME`): CSR or 2-D dense, with
    /// `X`'s rows.
    ///
    /// # Errors
    /// As [`Self::open`] for `X`; [`Error::ShapeMismatch`] when it has another number of rows.
    pub fn matrix(&self, path: &str) -> Result<H5adMatrix> {
        // X was opened and checked with the file: not read again.
        let (x, n_obs) = if path == "X" {
            (self.x.clone(), self.n_obs)
        } else {
            open_matrix(&self.h5, path)?
        };
        if n_obs != self.n_obs {
            return Err(Error::ShapeMismatch {
                path: path.into(),
                found: format!("{n_obs} rows"),
                expected: format!("{} (X's n_obs)", self.n_obs),
            });
        }
        let dtype = match &x {
            H5X::Csr { data, .. } => dtype_of(&format!("{path}/data"), data)?,
            H5X::Dense { ds, .. } => dtype_of(path, ds)?,
            H5X::Csc(t) => t.values_dtype(path)?,
        };
        Ok(H5adMatrix {
            x,
            dtype,
            n_obs,
            path: path.to_string(),
            file: self.path.clone(),
        })
    }

    /// The row-aligned matrix at `path` (`X`, `layers/NAME`, `obsm/NAME`) as the loader reads
    /// it: from any number of threads, by file offset where its layout allows.
    ///
    /// # Errors
    /// As [`Self::matrix`]; [`Error::UnknownEncoding`] for a `csc_matrix`,
    /// [`Error::CorruptChunk`] for data placed past the end of the file.
    pub fn rows(&self, path: &str) -> Result<H5adRows> {
        H5adRows::new(self.matrix(path)?, self.handle.clone())
    }

    /// The names of the children of the group `path` (e.g. the keys of `layers`); none when
    /// there is no such group.
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the group cannot be listed.
    pub fn children(&self, path: &str) -> Result<Vec<String>> {
        if self.h5.kind(path)? != Some(NodeKind::Group) {
            return Ok(Vec::new());
        }
        let group = self.h5.file.group(path).map_err(|e| h5err(path, e))?;
        group.member_names().map_err(|e| h5err(path, e))
    }
}

/// A row-aligned matrix of an `.h5ad` besides `X` (a layer, an `obsm` entry), read by rows.
pub struct H5adMatrix {
    x: H5X,
    dtype: Dtype,
    n_obs: u64,
    path: String,
    file: PathBuf,
}

impl std::fmt::Debug for H5adMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5adMatrix")
            .field("file", &self.file)
            .field("path", &self.path)
            .finish()
    }
}

impl H5adMatrix {
    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }
    /// Number of columns.
    pub fn n_cols(&self) -> u64 {
        match &self.x {
            H5X::Csr { n_var, .. } | H5X::Dense { n_var, .. } => *n_var,
            H5X::Csc(t) => t.col_count(),
        }
    }
    /// Row pointers when CSR.
    pub fn indptr(&self) -> Option<&[u64]> {
        match &self.x {
            H5X::Csr { indptr, .. } => Some(indptr),
            H5X::Dense { .. } | H5X::Csc(_) => None,
        }
    }
    /// An empty batch of the right kind for [`Self::read_rows`].
    pub fn new_batch(&self) -> XBatch {
        self.x.new_batch()
    }
    /// Replaces the contents of `out` with the rows of `ranges`, in order.
    ///
    /// # Errors
    /// As [`H5adFile::read_rows`].
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.read_rows_as(ranges, out)
    }

    /// [`Self::read_rows`] into values of another type.
    pub(crate) fn read_rows_as<V: RowValue + hdf5::H5Type>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        self.x
            .read_rows(&self.file, &self.path, self.n_obs, ranges, out)
    }

    /// The element type of the stored values.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The trailing dimensions of a row: `[n_cols]`, or more for an N-d dense `obsm` entry.
    pub(crate) fn tail(&self) -> Vec<u64> {
        match &self.x {
            H5X::Dense { ds, .. } => ds.shape()[1..].iter().map(|&d| d as u64).collect(),
            _ => vec![self.n_cols()],
        }
    }

    /// The matrix read by columns, when it is a `csc_matrix`.
    pub(crate) fn csc(&self) -> Option<H5adCsc<'_>> {
        match &self.x {
            H5X::Csc(t) => Some(H5adCsc {
                transposed: t,
                file: &self.file,
                path: &self.path,
            }),
            _ => None,
        }
    }
}

impl H5X {
    /// The element type of the values.
    fn values_dtype(&self, path: &str) -> Result<Dtype> {
        match self {
            H5X::Csr { data, .. } => dtype_of(&format!("{path}/data"), data),
            H5X::Dense { ds, .. } => dtype_of(path, ds),
            H5X::Csc(t) => t.values_dtype(path),
        }
    }

    /// Rows of the CSR of a transpose (a CSC's columns).
    fn col_count(&self) -> u64 {
        match self {
            H5X::Csr { indptr, .. } => indptr.len().saturating_sub(1) as u64,
            _ => 0,
        }
    }

    fn new_batch(&self) -> XBatch {
        match self {
            H5X::Csr { n_var, .. } => XBatch::Csr(CsrBatch::new(*n_var)),
            H5X::Csc(t) => XBatch::Csr(CsrBatch::new(t.col_count())),
            H5X::Dense { row_width, .. } => XBatch::Dense(DenseBatch::new(*row_width as usize)),
        }
    }

    fn read_rows<V: RowValue + hdf5::H5Type>(
        &self,
        file: &Path,
        path: &str,
        n_obs: u64,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        out.clear();
        Error::check_row_ranges(|| file.display().to_string(), ranges, n_obs)?;
        let result = self.append(path, ranges, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn append<V: RowValue + hdf5::H5Type>(
        &self,
        path: &str,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        match (self, out) {
            (
                H5X::Csr {
                    data,
                    indices,
                    indptr,
                    n_var,
                },
                XBatch::Csr(b),
            ) => {
                b.n_var = *n_var;
                let bound = *n_var as i64;
                for r in ranges {
                    let (a, e) = (
                        indptr[r.start as usize] as usize,
                        indptr[r.end as usize] as usize,
                    );
                    let total = (b.data.len() + (e - a)) as u64;
                    if total > i32::MAX as u64 {
                        return Err(Error::BatchTooLarge {
                            nnz: total,
                            max: i32::MAX as u64,
                        });
                    }
                    if e > a {
                        let values = data
                            .read_slice_1d::<V, _>(a..e)
                            .map_err(|err| h5err(&format!("{path}/data"), err))?;
                        let cols = indices
                            .read_slice_1d::<i64, _>(a..e)
                            .map_err(|err| h5err(&format!("{path}/indices"), err))?;
                        if let Some(&bad) = cols.iter().find(|&&c| !(0..bound).contains(&c)) {
                            return Err(Error::IndexOutOfBounds {
                                path: format!("{path}/indices"),
                                index: bad,
                                n_var: *n_var,
                            });
                        }
                        b.data.extend(values.iter());
                        // In 0..n_var, which fits i32 for any CSR we can batch.
                        b.indices.extend(cols.iter().map(|&c| c as i32));
                    }
                    let base = *b.indptr.last().unwrap_or(&0) as u64 - indptr[r.start as usize];
                    b.indptr.extend(
                        (r.start + 1..=r.end).map(|row| (base + indptr[row as usize]) as i32),
                    );
                }
                Ok(())
            }
            (H5X::Csc(_), _) => Err(super::csr::csc_error(path)),
            (H5X::Dense { ds, .. }, XBatch::Dense(b)) => {
                let ndim = ds.ndim();
                for r in ranges.iter().filter(|r| r.end > r.start) {
                    if ndim == 2 {
                        let rows = ds
                            .read_slice_2d::<V, _>(hyperslab(r.clone()))
                            .map_err(|e| h5err(path, e))?;
                        b.data.extend(rows.iter());
                    } else {
                        let mut slab =
                            vec![hdf5::SliceOrIndex::from(r.start as usize..r.end as usize)];
                        slab.extend((1..ndim).map(|_| hdf5::SliceOrIndex::from(..)));
                        let rows = ds
                            .read_slice::<V, _, ndarray::IxDyn>(hdf5::Hyperslab::from(slab))
                            .map_err(|e| h5err(path, e))?;
                        b.data.extend(rows.iter());
                    }
                }
                Ok(())
            }
            (_, out) => Err(Error::ShapeMismatch {
                path: path.into(),
                found: format!(
                    "an output batch of the other kind (sparse: {})",
                    out.is_sparse()
                ),
                expected: "a batch like X".into(),
            }),
        }
    }
}

/// Opens the row-aligned matrix at `path` (`X`, `layers/NAME`, `obsm/NAME`): a `csr_matrix`
/// group or a dense array of 2 dimensions. Returns it and its rows.
fn open_matrix(h5: &H5, path: &str) -> Result<(H5X, u64)> {
    let kind = h5.kind(path)?.ok_or_else(|| missing(path))?;
    let attrs = h5.attributes(path)?;
    let (encoding_type, encoding_version) = encoding_of(&attrs);
    Ok(match (kind, encoding_type.as_str()) {
        (NodeKind::Group, encoding @ ("csr_matrix" | "csc_matrix")) => {
            let csc = encoding == "csc_matrix";
            let shape: Vec<u64> = attrs
                .get("shape")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let &[rows, cols] = shape.as_slice() else {
                return Err(Error::ShapeMismatch {
                    path: path.into(),
                    found: format!("shape attribute {shape:?}"),
                    expected: "[n_obs, n_var]".into(),
                });
            };
            // A CSC matrix is read as the CSR of its transpose (its columns as rows).
            let (n_obs, n_var) = if csc { (cols, rows) } else { (rows, cols) };
            let data = h5.dataset(&format!("{path}/data"))?;
            let indices = h5.dataset(&format!("{path}/indices"))?;
            let data_dtype = dtype_of(&format!("{path}/data"), &data)?;
            if !data_dtype.is_numeric() && data_dtype != Dtype::Bool {
                return Err(Error::UnsupportedDtype {
                    path: format!("{path}/data"),
                    found: data_dtype.to_string(),
                    expected: "a numeric type".into(),
                });
            }
            for (p, ds) in [
                (format!("{path}/indices"), &indices),
                (
                    format!("{path}/indptr"),
                    &h5.dataset(&format!("{path}/indptr"))?,
                ),
            ] {
                let d = dtype_of(&p, ds)?;
                if !d.is_integer() {
                    return Err(Error::UnsupportedDtype {
                        path: p.clone(),
                        found: d.to_string(),
                        expected: "an integer type".into(),
                    });
                }
            }
            if data.size() != indices.size() {
                return Err(Error::ShapeMismatch {
                    path: format!("{path}/indices"),
                    found: format!("{} indices", indices.size()),
                    expected: format!("{} (the length of data)", data.size()),
                });
            }
            let indptr_path = format!("{path}/indptr");
            let indptr = validate_indptr(
                &indptr_path,
                &h5.read_i64(&indptr_path)?,
                n_obs,
                data.size() as u64,
            )?;
            let csr = H5X::Csr {
                data,
                indices,
                indptr: indptr.into(),
                n_var,
            };
            if csc {
                (H5X::Csc(Box::new(csr)), rows)
            } else {
                (csr, n_obs)
            }
        }
        (NodeKind::Array, "array" | "") => {
            let ds = h5.dataset(path)?;
            let shape = ds.shape();
            // `X` and layers are 2-D; an obsm entry may have more dimensions.
            if shape.len() < 2 || (shape.len() > 2 && !path.starts_with("obsm/")) {
                return Err(Error::ShapeMismatch {
                    path: path.into(),
                    found: format!("shape {shape:?}"),
                    expected: "2 dimensions [n_obs, n_var]".into(),
                });
            }
            let d = dtype_of(path, &ds)?;
            if !d.is_numeric() && d != Dtype::Bool {
                return Err(Error::UnsupportedDtype {
                    path: path.into(),
                    found: d.to_string(),
                    expected: "a numeric type".into(),
                });
            }
            let row_width = shape[1..].iter().product::<usize>() as u64;
            let (n_obs, n_var) = (shape[0] as u64, shape[1] as u64);
            (
                H5X::Dense {
                    ds,
                    row_width,
                    n_var,
                },
                n_obs,
            )
        }
        _ => Err(Error::UnknownEncoding {
            path: path.into(),
            encoding_type,
            encoding_version,
            expected: crate::store::csr::CSR_OR_DENSE.into(),
        })?,
    })
}

/// Rows `rows` and every column of a 2-D dataset.
fn hyperslab(rows: Range<u64>) -> hdf5::Hyperslab {
    hdf5::Hyperslab::from(vec![
        hdf5::SliceOrIndex::from(rows.start as usize..rows.end as usize),
        hdf5::SliceOrIndex::from(..),
    ])
}
