//! One conversion input: an `.h5ad` file or a zarr AnnData store, read by rows.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::batch::XBatch;
use crate::error::{Error, Result};
use crate::store::{AnnDataStore, Column, Dtype};

/// An opened input.
#[derive(Debug)]
// A handful per conversion, never moved on a hot path: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
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
            return Ok(Self::Zarr(AnnDataStore::open(path)?, path.to_path_buf()));
        }
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
            Ok(Self::H5ad(crate::store::h5ad::H5adFile::open(path)?))
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

    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Zarr(_, p) => p,
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.path(),
        }
    }

    pub(crate) fn n_obs(&self) -> u64 {
        match self {
            Self::Zarr(a, _) => a.n_obs(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.n_obs(),
        }
    }

    pub(crate) fn var_names(&self) -> &[String] {
        match self {
            Self::Zarr(a, _) => a.var_names(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.var_names(),
        }
    }

    pub(crate) fn x_dtype(&self) -> Dtype {
        match self {
            Self::Zarr(a, _) => a.x().dtype(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.x_dtype(),
        }
    }

    /// Row pointers of a CSR `X`; `None` when `X` is dense.
    pub(crate) fn indptr(&self) -> Option<&[u64]> {
        match self {
            Self::Zarr(a, _) => match a.x() {
                crate::store::XElement::Csr(c) => Some(c.indptr()),
                crate::store::XElement::InMemory(crate::store::InMemoryX::Csr {
                    indptr, ..
                }) => Some(indptr),
                crate::store::XElement::Dense(_) | crate::store::XElement::InMemory(_) => None,
            },
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.indptr(),
        }
    }

    pub(crate) fn obs_names(&self) -> Result<Vec<String>> {
        match self {
            Self::Zarr(a, _) => a.obs_names(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.obs_names(),
        }
    }

    pub(crate) fn obs_columns(&self) -> Result<Vec<String>> {
        match self {
            Self::Zarr(a, _) => a.obs_columns(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.obs_columns(),
        }
    }

    pub(crate) fn obs_column(&self, name: &str) -> Result<Column> {
        match self {
            Self::Zarr(a, _) => a.obs_column(name),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.obs_column(name),
        }
    }

    pub(crate) fn var_columns(&self) -> Result<Vec<(String, Column)>> {
        match self {
            Self::Zarr(a, _) => a.var_columns(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.var_columns(),
        }
    }

    pub(crate) fn new_batch(&self) -> XBatch {
        match self {
            Self::Zarr(a, _) => a.x().new_batch(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.new_batch(),
        }
    }

    pub(crate) fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        match self {
            Self::Zarr(a, _) => a.x().read_rows(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.read_rows(ranges, out),
        }
    }
}

/// A row-aligned matrix of an input besides `X`: a layer or an `obsm` entry.
#[derive(Debug)]
// A handful per conversion, never moved on a hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Matrix {
    Zarr(crate::store::XElement, PathBuf),
    #[cfg(feature = "hdf5")]
    H5ad(crate::store::h5ad::H5adMatrix, PathBuf),
}

impl Source {
    /// The keys of the group `group` (`layers`, `obsm`); none when it is absent.
    pub(crate) fn keys(&self, group: &str) -> Result<Vec<String>> {
        let mut keys = match self {
            Self::Zarr(a, _) => a.children(group)?,
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.children(group)?,
        };
        keys.sort_unstable();
        Ok(keys)
    }

    /// The matrix at `path` (`layers/NAME`, `obsm/NAME`).
    pub(crate) fn matrix(&self, path: &str) -> Result<Matrix> {
        match self {
            Self::Zarr(a, p) => Ok(Matrix::Zarr(a.matrix(path)?, p.clone())),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => Ok(Matrix::H5ad(f.matrix(path)?, f.path().to_path_buf())),
        }
    }
}

impl Source {
    /// The input's elements and the path of its AnnData group in them (`None` for data in
    /// memory).
    pub(crate) fn elements(&self) -> Option<(&dyn crate::store::ElementSource, &str)> {
        match self {
            Self::Zarr(a, _) => a
                .zarr()
                .map(|(store, group)| (store as &dyn crate::store::ElementSource, group)),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => Some((f.elements(), "")),
        }
    }
}

impl Matrix {
    /// Columns, and whether each row holds exactly that many values (false for a dense
    /// array of more than 2 dimensions).
    pub(crate) fn n_cols(&self) -> (u64, bool) {
        match self {
            Self::Zarr(x, _) => (x.n_var(), x.row_width().is_none_or(|w| w == x.n_var())),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => (m.n_cols(), true),
        }
    }
}

/// What staging reads rows from: an input's `X` or one of its matrices, as float32 or (for
/// matrices kept in another dtype) as float64.
pub(crate) trait RowReader: Sync {
    fn path(&self) -> &Path;
    fn indptr(&self) -> Option<&[u64]>;
    /// The element type of the stored values.
    fn dtype(&self) -> Dtype;
    fn new_batch(&self) -> XBatch;
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()>;
    fn read_rows_wide(&self, ranges: &[Range<u64>], out: &mut XBatch<f64>) -> Result<()>;
    /// An empty float64 batch of the right kind.
    fn wide_batch(&self) -> XBatch<f64> {
        match self.new_batch() {
            XBatch::Csr(b) => XBatch::Csr(crate::batch::CsrBatch::new(b.n_var)),
            XBatch::Dense(b) => XBatch::Dense(crate::batch::DenseBatch::new(b.row_width)),
        }
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
    fn read_rows_wide(&self, ranges: &[Range<u64>], out: &mut XBatch<f64>) -> Result<()> {
        match self {
            Self::Zarr(a, _) => a.x().read_rows_as(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(f) => f.read_rows_as(ranges, out),
        }
    }
}

impl RowReader for Matrix {
    fn path(&self) -> &Path {
        match self {
            Self::Zarr(_, p) => p,
            #[cfg(feature = "hdf5")]
            Self::H5ad(_, p) => p,
        }
    }
    fn indptr(&self) -> Option<&[u64]> {
        match self {
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
            Self::Zarr(x, _) => x.new_batch(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.new_batch(),
        }
    }
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        match self {
            Self::Zarr(x, _) => x.read_rows(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.read_rows(ranges, out),
        }
    }
    fn dtype(&self) -> Dtype {
        match self {
            Self::Zarr(x, _) => x.dtype(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.dtype(),
        }
    }
    fn read_rows_wide(&self, ranges: &[Range<u64>], out: &mut XBatch<f64>) -> Result<()> {
        match self {
            Self::Zarr(x, _) => x.read_rows_as(ranges, out),
            #[cfg(feature = "hdf5")]
            Self::H5ad(m, _) => m.read_rows_as(ranges, out),
        }
    }
}
