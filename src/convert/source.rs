//! One conversion input: an `.h5ad` file or a zarr AnnData store, read by rows.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::row_reader::{exact_reads, Exact, RowReader};
use super::transpose::{Columns, Transposed};
use crate::batch::XBatch;
use crate::error::{Error, Result};
use crate::store::{AnnDataStore, Column, XElement};
use crate::zarr::Dtype;

/// An opened input; a CSC `X` is transposed when it is opened (see [`super::transpose`]).
pub(crate) struct Source {
    input: Input,
    x: Option<Transposed>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path())
            .finish()
    }
}

/// The file behind an input.
#[derive(Debug)]
// A handful per conversion, never moved on a hot path: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    /// A zarr AnnData store (format 2 or 3), also a dataset of an existing collection.
    Zarr(AnnDataStore, PathBuf),
    /// An `.h5ad` file.
    #[cfg(feature = "hdf5")]
    H5ad(crate::store::h5ad::H5adFile),
}

impl Source {
    /// Opens `path`: a directory is a zarr store, a file an `.h5ad`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Self::zarr(AnnDataStore::open(path)?, path.to_path_buf());
        }
        crate::storage::refuse_special(path)?;
        if !crate::store::is_hdf5_file(path) {
            return Err(Error::UnknownEncoding {
                path: path.display().to_string(),
                encoding_type: "a file that is not HDF5".into(),
                encoding_version: String::new(),
                expected: "an .h5ad (HDF5) file or a zarr AnnData directory".into(),
            });
        }
        #[cfg(feature = "hdf5")]
        {
            Self::new(Input::H5ad(crate::store::h5ad::H5adFile::open(path)?))
        }
        #[cfg(not(feature = "hdf5"))]
        {
            Err(Error::UnknownEncoding {
                path: path.display().to_string(),
                encoding_type: "h5ad".into(),
                encoding_version: String::new(),
                expected: "a zarr store (this build has no `hdf5` feature)".into(),
            })
        }
    }

    /// A zarr AnnData input (a store, or a dataset of a collection) at `path`.
    pub(crate) fn zarr(adata: AnnDataStore, path: PathBuf) -> Result<Self> {
        Self::new(Input::Zarr(adata, path))
    }

    fn new(input: Input) -> Result<Self> {
        let mut this = Self { input, x: None };
        this.x = match &this.input {
            Input::Zarr(a, p) => match a.x() {
                XElement::Csc(t) => Some(transpose(&ZarrColumns(t), p)?),
                _ => None,
            },
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => match f.csc_x() {
                Some(csc) => Some(transpose(&csc, f.path())?),
                None => None,
            },
        };
        Ok(this)
    }

    /// Bands the transposition of a CSC `X` took (`None`: `X` is not CSC).
    pub(crate) fn transposed_bands(&self) -> Option<usize> {
        self.x.as_ref().map(|t| t.bands)
    }

    pub(crate) fn path(&self) -> &Path {
        match &self.input {
            Input::Zarr(_, p) => p,
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.path(),
        }
    }

    pub(crate) fn n_obs(&self) -> u64 {
        match &self.input {
            Input::Zarr(a, _) => a.n_obs(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.n_obs(),
        }
    }

    /// The name of the index of the dataframe `frame` (`obs`, `var`, `raw/var`): its
    /// `_index` attribute unless that is anndata's `_index` for an unnamed one; `None` too for
    /// data in memory or no such frame.
    pub(crate) fn index_name(&self, frame: &str) -> Option<String> {
        let (elements, root) = self.elements()?;
        let path = if root.is_empty() {
            frame.to_string()
        } else {
            format!("{root}/{frame}")
        };
        let attrs = elements.attributes(&path).ok()?;
        let name = attrs.get("_index")?.as_str()?;
        (name != "_index").then(|| name.to_string())
    }

    pub(crate) fn var_names(&self) -> &[String] {
        match &self.input {
            Input::Zarr(a, _) => a.var_names(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.var_names(),
        }
    }

    pub(crate) fn x_dtype(&self) -> Dtype {
        match &self.input {
            Input::Zarr(a, _) => a.x().dtype(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.x_dtype(),
        }
    }

    /// Row pointers of a CSR `X`; `None` when `X` is dense.
    pub(crate) fn indptr(&self) -> Option<&[u64]> {
        if let Some(t) = &self.x {
            return t.indptr();
        }
        match &self.input {
            Input::Zarr(a, _) => match a.x() {
                crate::store::XElement::Csr(c) => Some(c.indptr()),
                crate::store::XElement::InMemory(crate::store::InMemoryX::Csr {
                    indptr, ..
                }) => Some(indptr),
                #[cfg(feature = "hdf5")]
                crate::store::XElement::H5ad(x) => x.indptr(),
                // A joined space is the loader's; inputs are opened as stored.
                crate::store::XElement::Dense(_)
                | crate::store::XElement::InMemory(_)
                | crate::store::XElement::Csc(_)
                | crate::store::XElement::Joined(_) => None,
            },
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.indptr(),
        }
    }

    pub(crate) fn obs_names(&self) -> Result<Vec<String>> {
        match &self.input {
            Input::Zarr(a, _) => a.obs_names(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.obs_names(),
        }
    }

    pub(crate) fn obs_columns(&self) -> Result<Vec<String>> {
        match &self.input {
            Input::Zarr(a, _) => a.obs_columns(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.obs_columns(),
        }
    }

    pub(crate) fn obs_column(&self, name: &str) -> Result<Column> {
        match &self.input {
            Input::Zarr(a, _) => a.obs_column(name),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.obs_column(name),
        }
    }

    pub(crate) fn var_columns(&self) -> Result<Vec<(String, Column)>> {
        match &self.input {
            Input::Zarr(a, _) => a.var_columns(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.var_columns(),
        }
    }

    pub(crate) fn new_batch(&self) -> XBatch {
        if let Some(t) = &self.x {
            return t.new_batch();
        }
        match &self.input {
            Input::Zarr(a, _) => a.x().new_batch(),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.new_batch(),
        }
    }

    pub(crate) fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        if let Some(t) = &self.x {
            return t.read_rows(ranges, out);
        }
        match &self.input {
            Input::Zarr(a, _) => a.x().read_rows(ranges, out),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.read_rows(ranges, out),
        }
    }
}

/// A row-aligned matrix of an input besides `X`: a layer or an `obsm` entry.
#[derive(Debug)]
// A handful per conversion, never moved on a hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Matrix {
    Zarr(crate::store::XElement, PathBuf),
    /// A CSC matrix, transposed when opened.
    Transposed(Box<Transposed>),
    #[cfg(feature = "hdf5")]
    H5ad(crate::store::h5ad::H5adMatrix, PathBuf),
}

impl Source {
    /// The keys of the group `group` (`layers`, `obsm`); none when it is absent.
    pub(crate) fn keys(&self, group: &str) -> Result<Vec<String>> {
        let mut keys = match &self.input {
            Input::Zarr(a, _) => a.children(group)?,
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.children(group)?,
        };
        keys.sort_unstable();
        Ok(keys)
    }

    /// The matrix at `path` (`layers/NAME`, `obsm/NAME`); a CSC one is transposed now.
    pub(crate) fn matrix(&self, path: &str) -> Result<Matrix> {
        let label = || self.path().join(path);
        match &self.input {
            Input::Zarr(a, p) => match a.matrix(path)? {
                XElement::Csc(t) => Ok(Matrix::Transposed(Box::new(transpose(
                    &ZarrColumns(&t),
                    &label(),
                )?))),
                m => Ok(Matrix::Zarr(m, p.clone())),
            },
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => {
                let m = f.matrix(path)?;
                if let Some(csc) = m.csc() {
                    return Ok(Matrix::Transposed(Box::new(transpose(&csc, &label())?)));
                }
                Ok(Matrix::H5ad(m, f.path().to_path_buf()))
            }
        }
    }
}

impl Source {
    /// The input's elements and the path of its AnnData group in them (`None` for data in
    /// memory).
    pub(crate) fn elements(&self) -> Option<(&dyn crate::store::ElementSource, &str)> {
        match &self.input {
            Input::Zarr(a, _) => a
                .zarr()
                .map(|(store, group)| (store as &dyn crate::store::ElementSource, group)),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => Some((f.elements(), "")),
        }
    }
}

impl Matrix {
    /// The dimensions of a row: `[n_cols]`, or more for an N-d dense array (whose rows hold
    /// their product of values).
    pub(crate) fn tail(&self) -> Vec<u64> {
        match self {
            Self::Transposed(t) => vec![t.n_cols()],
            Self::Zarr(XElement::Dense(d), _) => d.shape()[1..].to_vec(),
            Self::Zarr(x, _) => vec![x.n_var()],
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.tail(),
        }
    }

    /// Columns (the second dimension).
    pub(crate) fn n_cols(&self) -> u64 {
        self.tail().first().copied().unwrap_or(0)
    }
}

impl RowReader for Source {
    fn path(&self) -> &Path {
        Source::path(self)
    }
    fn indptr(&self) -> Option<&[u64]> {
        Source::indptr(self)
    }
    fn new_batch(&self) -> XBatch {
        Source::new_batch(self)
    }
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        Source::read_rows(self, ranges, out)
    }
    fn dtype(&self) -> Dtype {
        self.x_dtype()
    }
    exact_reads!();
}

impl Source {
    fn read_exact<V: Exact>(&self, ranges: &[Range<u64>], out: &mut XBatch<V>) -> Result<()> {
        if let Some(t) = &self.x {
            return t.read_exact(ranges, out);
        }
        match &self.input {
            Input::Zarr(a, _) => a.x().read_rows_as(ranges, out),
            #[cfg(feature = "hdf5")]
            Input::H5ad(f) => f.read_rows_as(ranges, out),
        }
    }
}

impl RowReader for Matrix {
    fn path(&self) -> &Path {
        match self {
            Self::Transposed(t) => t.path(),
            Self::Zarr(_, p) => p,
            #[cfg(feature = "hdf5")]
            Self::H5ad(_, p) => p,
        }
    }
    fn indptr(&self) -> Option<&[u64]> {
        match self {
            Self::Transposed(t) => t.indptr(),
            Self::Zarr(x, _) => match x {
                crate::store::XElement::Csr(c) => Some(c.indptr()),
                _ => None,
            },
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.indptr(),
        }
    }
    fn new_batch(&self) -> XBatch {
        match self {
            Self::Transposed(t) => t.new_batch(),
            Self::Zarr(x, _) => x.new_batch(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.new_batch(),
        }
    }
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        match self {
            Self::Transposed(t) => t.read_rows(ranges, out),
            Self::Zarr(x, _) => x.read_rows(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.read_rows(ranges, out),
        }
    }
    fn dtype(&self) -> Dtype {
        match self {
            Self::Transposed(t) => t.dtype(),
            Self::Zarr(x, _) => x.dtype(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.dtype(),
        }
    }
    exact_reads!();
}

impl Matrix {
    fn read_exact<V: Exact>(&self, ranges: &[Range<u64>], out: &mut XBatch<V>) -> Result<()> {
        match self {
            Self::Transposed(t) => t.read_exact(ranges, out),
            Self::Zarr(x, _) => x.read_rows_as(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.read_rows_as(ranges, out),
        }
    }
}

/// A zarr `csc_matrix` (opened as the CSR of its transpose) read by columns.
struct ZarrColumns<'a>(&'a crate::store::CsrElement);

impl Columns for ZarrColumns<'_> {
    fn n_rows(&self) -> u64 {
        self.0.n_var()
    }
    fn col_ptr(&self) -> &[u64] {
        self.0.indptr()
    }
    fn dtype(&self) -> Dtype {
        self.0.dtype()
    }
    fn read_columns(&self, cols: Range<u64>, out: &mut XBatch<f64>) -> Result<()> {
        match out {
            XBatch::Csr(b) => self.0.read_rows_as(&[cols], b),
            XBatch::Dense(_) => Err(Error::Internal("a dense batch for CSC columns".into())),
        }
    }
}

#[cfg(feature = "hdf5")]
impl Columns for crate::store::h5ad::H5adCsc<'_> {
    fn n_rows(&self) -> u64 {
        self.n_rows()
    }
    fn col_ptr(&self) -> &[u64] {
        self.col_ptr()
    }
    fn dtype(&self) -> Dtype {
        self.dtype()
    }
    fn read_columns(&self, cols: Range<u64>, out: &mut XBatch<f64>) -> Result<()> {
        self.read_columns(cols, out)
    }
}

/// Transposes the CSC matrix `csc` of input element `label` (see [`super::transpose`]).
fn transpose(csc: &dyn Columns, label: &Path) -> Result<Transposed> {
    let _span = tracing::debug_span!("transpose", path = %label.display()).entered();
    Transposed::build(csc, label, None)
}
