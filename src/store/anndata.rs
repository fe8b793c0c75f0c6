//! An AnnData group in a zarr store: `X`, `obs`, `var`.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::csr::{CsrElement, CSR_OR_DENSE};
use super::dataframe::{self, Column};
use super::dense::DenseElement;
use super::joined::ColumnJoin;
use super::memory::InMemoryX;
use super::places::RowPlaces;
use super::var_space::ColumnMap;
use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::budget;
use crate::error::{Error, Result};
use crate::zarr::chunked::FromDecoded;
use crate::zarr::node::{encoding, join, NodeKind, ZarrStore};

/// The `X` of an AnnData: sparse CSR or dense.
#[derive(Debug)]
// One per dataset, opened once and never moved on the hot path: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum XElement {
    /// A `csr_matrix` group.
    Csr(CsrElement),
    /// A dense `array`.
    Dense(DenseElement),
    /// A matrix held in memory.
    InMemory(InMemoryX),
    /// A `csc_matrix` group, opened as the CSR of its transpose (rows are its columns). Its
    /// rows cannot be read directly: the converter transposes it (the loader refuses it).
    Csc(CsrElement),
    /// A matrix of an `.h5ad` file, read by file offset where its layout allows.
    #[cfg(feature = "hdf5")]
    H5ad(super::h5ad::H5adRows),
    /// A matrix read in a joined `var` space (inputs with different genes).
    Joined(Box<JoinedX>),
}

impl XElement {
    /// Opens the element at `path` inside the zarr store at `root` (e.g. `layers/counts` of
    /// `pbmc.zarr`): a `csr_matrix` group or a dense `array`.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zarr`] when the store cannot be read, [`Error::MissingElement`]
    /// for no element at `path`, [`Error::UnknownEncoding`] for one that is neither CSR nor
    /// dense, and the errors of a CSR `indptr` / dense array that cannot be read by rows.
    pub fn open_at(root: impl AsRef<Path>, path: &str) -> Result<Self> {
        let store = ZarrStore::open(root.as_ref())?;
        Self::open(&store, path.trim_matches('/'))
    }

    /// Opens the element at `path`, dispatching on its `encoding-type`.
    pub(crate) fn open(store: &ZarrStore, path: &str) -> Result<Self> {
        let kind = store
            .kind(path)?
            .ok_or_else(|| crate::zarr::node::missing(path))?;
        let attrs = store.attributes(path)?;
        let (encoding_type, encoding_version) = encoding(&attrs);
        match (kind, encoding_type.as_str()) {
            (NodeKind::Group, "csr_matrix") => {
                let shape = parse_shape(path, attrs.get("shape"))?;
                Ok(Self::Csr(CsrElement::open(store, path, shape)?))
            }
            (NodeKind::Group, "csc_matrix") => {
                let [n_obs, n_var] = parse_shape(path, attrs.get("shape"))?;
                Ok(Self::Csc(CsrElement::open(store, path, [n_var, n_obs])?))
            }
            (NodeKind::Array, "array" | "") => Ok(Self::Dense(DenseElement::open(store, path)?)),
            _ => Err(Error::UnknownEncoding {
                path: path.to_string(),
                encoding_type,
                encoding_version,
                expected: CSR_OR_DENSE.into(),
            }),
        }
    }

    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        match self {
            Self::Csr(x) => x.n_obs(),
            Self::Dense(x) => x.n_obs(),
            Self::InMemory(x) => x.n_obs(),
            Self::Csc(t) => t.n_var(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.n_obs(),
            Self::Joined(j) => j.inner().n_obs(),
        }
    }

    /// Number of columns.
    pub fn n_var(&self) -> u64 {
        match self {
            Self::Csr(x) => x.n_var(),
            Self::Dense(x) => x.n_var(),
            Self::InMemory(x) => x.n_var(),
            Self::Csc(t) => t.n_obs(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.n_var(),
            Self::Joined(j) => j.n_var(),
        }
    }

    /// The element's path inside its store.
    pub fn path(&self) -> &str {
        match self {
            Self::Csr(x) | Self::Csc(x) => x.path(),
            Self::Dense(x) => x.path(),
            Self::InMemory(_) => "<in-memory X>",
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.path(),
            Self::Joined(j) => j.inner().path(),
        }
    }

    /// The element type of the values as stored.
    pub fn dtype(&self) -> super::Dtype {
        match self {
            Self::Csr(x) | Self::Csc(x) => x.dtype(),
            Self::Dense(x) => x.dtype(),
            Self::InMemory(_) => super::Dtype::F32,
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.dtype(),
            Self::Joined(j) => j.inner().dtype(),
        }
    }

    /// An empty batch of the right kind for this element, to pass to [`Self::append_rows`].
    pub fn new_batch(&self) -> XBatch {
        match self {
            Self::Csr(x) => XBatch::Csr(CsrBatch::new(x.n_var())),
            Self::Csc(t) => XBatch::Csr(CsrBatch::new(t.n_obs())),
            Self::Dense(x) => XBatch::Dense(DenseBatch::new(x.row_width() as usize)),
            Self::InMemory(x) => x.new_batch(),
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.new_batch(),
            Self::Joined(j) => j.new_batch(),
        }
    }

    /// Appends the rows of `ranges`, in order, to `out` (which must be of the same kind).
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices;
    /// [`Error::ShapeMismatch`] for an `out` of the other kind.
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.append_rows_as(ranges, out)
    }

    /// [`Self::append_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        // The values these rows hold are known before any is read: refuse a read that cannot
        // fit in memory (a fetch of huge rows) instead of growing `out` until the OOM killer.
        let (rows, bytes) = self.read_size::<V>(ranges);
        budget::check_rows(rows + out.n_rows() as u64, bytes + out.bytes() as u128, 2)?;
        match (self, out) {
            (Self::Csr(x), XBatch::Csr(b)) => x.append_rows_as(ranges, b),
            (Self::Dense(x), XBatch::Dense(b)) => x.append_rows_as(ranges, b),
            (Self::InMemory(x), out) => x.append_rows_as(ranges, out),
            #[cfg(feature = "hdf5")]
            (Self::H5ad(x), out) => x.append_rows_as(ranges, out),
            (Self::Joined(j), out) => j.append_rows_as(ranges, out),
            (Self::Csc(_), _) => Err(self.csc_error()),
            (x, out) => Err(Error::ShapeMismatch {
                path: x.path().to_string(),
                found: format!(
                    "an output batch of the other kind (sparse: {})",
                    out.is_sparse()
                ),
                expected: format!("a batch like X (sparse: {})", x.is_sparse()),
            }),
        }
    }

    /// Replaces the contents of `out` with the rows of `ranges`.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices;
    /// [`Error::ShapeMismatch`] for an `out` of the other kind.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.read_rows_as(ranges, out)
    }

    /// [`Self::read_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn read_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        match (self, &mut *out) {
            // In place: a reused buffer is overwritten, not zeroed first.
            (Self::Csr(x), XBatch::Csr(b)) => x.read_rows_as(ranges, b),
            (Self::Dense(x), XBatch::Dense(b)) => x.read_rows_as(ranges, b),
            _ => {
                out.clear();
                self.append_rows_as(ranges, out)
            }
        }
    }

    /// Stored values of local row `row`: its nnz (sparse) or its row width (dense).
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a row past `n_obs`.
    pub fn row_len(&self, row: u64) -> Result<u64> {
        let n_obs = self.n_obs();
        if row >= n_obs {
            return Err(Error::row_out_of_range(self.path().to_string(), row, n_obs));
        }
        let r = row as usize;
        Ok(match self {
            Self::Csc(_) => return Err(self.csc_error()),
            Self::Csr(x) => x.indptr()[r + 1] - x.indptr()[r],
            Self::InMemory(InMemoryX::Csr { indptr, .. }) => indptr[r + 1] - indptr[r],
            Self::Dense(x) => x.row_width(),
            Self::InMemory(InMemoryX::Dense { n_var, .. }) => *n_var,
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => match x.indptr() {
                Some(indptr) => indptr[r + 1] - indptr[r],
                None => x.row_width().unwrap_or(0),
            },
            Self::Joined(j) => match j.row_width() {
                Some(w) => w,
                None => j.inner().row_len(row)?,
            },
        })
    }

    /// Rows and bytes (values of type `V`, indices and row pointers when sparse) of the
    /// local rows of `ranges`; ranges out of bounds count nothing (their read fails).
    pub(crate) fn read_size<V>(&self, ranges: &[Range<u64>]) -> (u64, u128) {
        let item = std::mem::size_of::<V>() as u128 + if self.is_sparse() { 4 } else { 0 };
        let mut rows = 0u64;
        let mut bytes = 0u128;
        for r in ranges
            .iter()
            .filter(|r| r.start <= r.end && r.end <= self.n_obs())
        {
            rows += r.end - r.start;
            bytes += u128::from(self.values_in(r.clone())) * item + u128::from(r.end - r.start) * 4;
        }
        (rows, bytes)
    }

    /// Bytes a batch holds for local rows `rows`: float32 values, and int32 column indices
    /// and row pointers when sparse.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for rows past `n_obs`.
    pub(crate) fn bytes_of_rows(&self, rows: Range<u64>) -> Result<u64> {
        let n_obs = self.n_obs();
        if rows.start > rows.end || rows.end > n_obs {
            return Err(Error::row_out_of_range(
                self.path().to_string(),
                rows.end,
                n_obs,
            ));
        }
        let values = self.values_in(rows.clone());
        Ok(if self.row_width().is_some() {
            values.saturating_mul(4)
        } else {
            values
                .saturating_mul(8)
                .saturating_add((rows.end - rows.start).saturating_mul(4))
        })
    }

    /// Values of every row: stored entries (sparse, before any column join drops some), or
    /// rows times their width.
    pub(crate) fn stored_values(&self) -> u64 {
        self.values_in(0..self.n_obs())
    }

    /// Values stored in local rows `rows` (within `0..n_obs`): `indptr`'s difference, or the
    /// rows times their width.
    fn values_in(&self, rows: Range<u64>) -> u64 {
        let (a, b) = (rows.start as usize, rows.end as usize);
        match self {
            Self::Csr(x) => x.indptr()[b] - x.indptr()[a],
            Self::InMemory(InMemoryX::Csr { indptr, .. }) => indptr[b] - indptr[a],
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) if x.indptr().is_some() => {
                x.indptr().map_or(0, |indptr| indptr[b] - indptr[a])
            }
            Self::Joined(j) if j.row_width().is_none() => j.inner().values_in(rows),
            _ => self
                .row_width()
                .unwrap_or(0)
                .saturating_mul(rows.end - rows.start),
        }
    }

    /// Elements per dense row (`n_var` times any trailing dimensions); `None` for sparse X.
    pub fn row_width(&self) -> Option<u64> {
        match self {
            Self::Dense(x) => Some(x.row_width()),
            Self::InMemory(InMemoryX::Dense { n_var, .. }) => Some(*n_var),
            Self::Csr(_) | Self::Csc(_) | Self::InMemory(InMemoryX::Csr { .. }) => None,
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.row_width(),
            Self::Joined(j) => j.row_width(),
        }
    }

    /// Copies local row `rows[i]` straight into entry `i` of `places` (of this element's kind,
    /// each run exactly as long as its row), decoding each chunk the rows touch once, in
    /// parallel on the current rayon pool.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a row past `n_obs`, [`Error::ShapeMismatch`] for a run of
    /// the wrong length, [`Error::CorruptChunk`] / [`Error::Zarr`] when a chunk cannot be read,
    /// [`Error::IndexOutOfBounds`] for a stored column index outside `0..n_var`.
    pub fn scatter_rows(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        crate::storage::files::new_read_request();
        self.scatter_rows_within(rows, places)
    }

    /// [`Self::scatter_rows`] as part of a read request the caller started (with
    /// [`crate::storage::new_read_request`]): a loader's fetch checks its files once, not once
    /// per dataset and array.
    pub(crate) fn scatter_rows_within(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        if rows.len() != places.len() {
            return Err(Error::Internal(format!(
                "{} rows for {} places",
                rows.len(),
                places.len()
            )));
        }
        match (self, places) {
            (Self::Csr(x), RowPlaces::Csr(p)) => x.scatter_rows(rows, p),
            (Self::Dense(x), RowPlaces::Dense(p)) => x.scatter_rows(rows, p),
            (Self::InMemory(x), p) => x.scatter_rows(rows, p),
            #[cfg(feature = "hdf5")]
            (Self::H5ad(x), p) => x.scatter_rows(rows, p),
            (Self::Joined(j), p) => j.scatter_rows_within(rows, p),
            (Self::Csc(_), _) => Err(self.csc_error()),
            (x, _) => Err(Error::Internal(format!(
                "row places of another kind than {}",
                x.path()
            ))),
        }
    }

    /// Whether rows come as CSR (else dense).
    pub fn is_sparse(&self) -> bool {
        match self {
            Self::Csr(_) | Self::Csc(_) | Self::InMemory(InMemoryX::Csr { .. }) => true,
            Self::Dense(_) | Self::InMemory(InMemoryX::Dense { .. }) => false,
            #[cfg(feature = "hdf5")]
            Self::H5ad(x) => x.indptr().is_some(),
            Self::Joined(j) => j.inner().is_sparse(),
        }
    }

    /// Decodes every stored chunk of the matrix once, on the current rayon pool, keeping
    /// nothing: the decode-only ceiling of reading it ([`crate::throughput::decode_ceiling`]).
    /// Returns the decoded bytes (0 for a matrix held in memory).
    ///
    /// # Errors
    /// Any read error of its chunks.
    pub fn decode_pass(&self) -> Result<u64> {
        match self {
            Self::Csr(x) | Self::Csc(x) => x.decode_pass(),
            Self::Dense(x) => x.decode_pass(),
            Self::InMemory(_) => Ok(0),
            #[cfg(feature = "hdf5")]
            Self::H5ad(_) => Ok(0),
            Self::Joined(j) => j.inner().decode_pass(),
        }
    }

    /// The object store this matrix is in (`None`: local files or memory).
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&crate::storage::remote::RemoteStore> {
        match self {
            Self::Csr(x) | Self::Csc(x) => x.remote(),
            Self::Dense(x) => x.remote(),
            Self::InMemory(_) => None,
            #[cfg(feature = "hdf5")]
            Self::H5ad(_) => None,
            Self::Joined(j) => j.inner().remote(),
        }
    }

    /// Fetches whose bytes are requested before their turn (0: none).
    pub(crate) fn read_ahead_depth(&self) -> usize {
        match self {
            Self::Csr(x) => x.read_ahead_depth(),
            Self::Dense(x) => x.read_ahead_depth(),
            Self::InMemory(_) | Self::Csc(_) => 0,
            #[cfg(feature = "hdf5")]
            Self::H5ad(_) => 0,
            Self::Joined(j) => j.inner().read_ahead_depth(),
        }
    }

    /// Adds to `plan` what reading local rows `rows` will fetch from an object store, or from
    /// local files read with `O_DIRECT`.
    pub(crate) fn plan_reads(
        &self,
        rows: &[Range<u64>],
        plan: &mut crate::storage::read_plan::ReadPlan,
    ) -> Result<()> {
        match self {
            Self::Csr(x) => x.plan_reads(rows, plan),
            Self::Dense(x) => x.plan_reads(rows, plan),
            Self::InMemory(_) | Self::Csc(_) => Ok(()),
            #[cfg(feature = "hdf5")]
            Self::H5ad(_) => Ok(()),
            Self::Joined(j) => j.inner().plan_reads(rows, plan),
        }
    }

    /// Whether sparse rows lose entries when read (a joined `var` space that drops genes):
    /// their runs end in entries of column `-1` for the assembly to cut out.
    pub(crate) fn drops_columns(&self) -> bool {
        matches!(self, Self::Joined(j) if j.drops_columns())
    }

    /// Whether this is a `csc_matrix`, which cannot be read by rows (convert it first).
    pub fn is_csc(&self) -> bool {
        matches!(self, Self::Csc(_))
    }

    /// The error for reading rows of a `csc_matrix` directly.
    pub(crate) fn csc_error(&self) -> Error {
        super::csr::csc_error(self.path())
    }
}

fn parse_shape(path: &str, shape: Option<&Value>) -> Result<[u64; 2]> {
    let dims: Option<Vec<u64>> = shape
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect());
    match dims.as_deref() {
        Some(&[n_obs, n_var]) => Ok([n_obs, n_var]),
        _ => Err(Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("shape attribute {shape:?}"),
            expected: "[n_obs, n_var]".into(),
        }),
    }
}

/// A matrix read in a joined `var` space (inputs with different genes): see `store::joined`.
#[derive(Debug)]
pub struct JoinedX {
    inner: XElement,
    join: ColumnJoin,
}

impl JoinedX {
    /// `inner` (CSR or 2-D dense) in the space of `n_var` columns that `map` sends its columns
    /// into.
    pub(crate) fn new(inner: XElement, map: Arc<ColumnMap>, n_var: u64) -> Result<Self> {
        if map.to.len() as u64 != inner.n_var() {
            return Err(Error::Internal(format!(
                "{}: a column map of {} columns for {}",
                inner.path(),
                map.to.len(),
                inner.n_var()
            )));
        }
        if !inner.is_sparse() && inner.row_width() != Some(inner.n_var()) {
            return Err(Error::ShapeMismatch {
                path: inner.path().to_string(),
                found: format!("rows of {:?} elements", inner.row_width()),
                expected: "a 2-D matrix, to join its columns with other inputs'".into(),
            });
        }
        Ok(Self {
            inner,
            join: ColumnJoin::new(map, n_var),
        })
    }

    /// The matrix as stored.
    pub fn inner(&self) -> &XElement {
        &self.inner
    }
    /// Columns of the joined space.
    pub fn n_var(&self) -> u64 {
        self.join.n_var()
    }
    /// Whether sparse rows lose entries (genes outside the joined space).
    pub(crate) fn drops_columns(&self) -> bool {
        self.join.drops() && self.inner.is_sparse()
    }
    /// Elements per dense row in the joined space (`None` for sparse).
    pub fn row_width(&self) -> Option<u64> {
        self.inner.row_width().map(|_| self.n_var())
    }

    /// An empty batch of this matrix's kind, in the joined space.
    pub fn new_batch(&self) -> XBatch {
        if self.inner.is_sparse() {
            XBatch::Csr(CsrBatch::new(self.n_var()))
        } else {
            XBatch::Dense(DenseBatch::new(self.n_var() as usize))
        }
    }

    /// Writes local rows `rows` into `places`, in the joined space.
    fn scatter_rows_within(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        match places {
            RowPlaces::Csr(mut places) => {
                let inner = places
                    .iter_mut()
                    .map(|(c, v)| (&mut **c, &mut **v))
                    .collect();
                self.inner
                    .scatter_rows_within(rows, RowPlaces::Csr(inner))?;
                let mut scratch = Vec::new();
                for (cols, values) in places {
                    self.join.remap_row(cols, values, &mut scratch);
                }
                Ok(())
            }
            RowPlaces::Dense(places) => {
                let w = self.join.stored_columns().max(1);
                let mut stored = vec![0f32; w * rows.len()];
                self.inner
                    .scatter_rows_within(rows, RowPlaces::Dense(stored.chunks_mut(w).collect()))?;
                for (place, row) in places.into_iter().zip(stored.chunks(w)) {
                    self.join.spread(row, place);
                }
                Ok(())
            }
        }
    }

    /// Appends the rows of `ranges` to `out`, in the joined space.
    fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        match out {
            XBatch::Csr(b) => {
                let mut stored = XBatch::Csr(CsrBatch::<V>::new(self.inner.n_var()));
                self.inner.append_rows_as(ranges, &mut stored)?;
                match stored {
                    XBatch::Csr(stored) => self.join.append_csr(&stored, b),
                    XBatch::Dense(_) => {
                        Err(Error::Internal("a sparse read made a dense batch".into()))
                    }
                }
            }
            XBatch::Dense(b) => {
                let w = self.join.stored_columns().max(1);
                let mut stored = XBatch::Dense(DenseBatch::<V>::new(w));
                self.inner.append_rows_as(ranges, &mut stored)?;
                let XBatch::Dense(stored) = stored else {
                    return Err(Error::Internal("a dense read made a sparse batch".into()));
                };
                let n = self.n_var() as usize;
                for row in stored.data.chunks(w) {
                    let start = b.data.len();
                    b.data.resize(start + n, V::default());
                    self.join.spread(row, &mut b.data[start..]);
                }
                Ok(())
            }
        }
    }
}

/// One AnnData stored as a zarr group (format 2 or 3).
///
/// ```no_run
/// # fn main() -> annbatch::Result<()> {
/// let adata = annbatch::AnnDataStore::open("pbmc.zarr")?;
/// let mut batch = adata.x().new_batch();
/// adata.x().read_rows(&[0..16, 100..132], &mut batch)?;
/// assert_eq!(batch.n_rows(), 48);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AnnDataStore {
    backing: Backing,
    x: XElement,
    /// Shared by every dataset of a joined collection (one copy of the gene names).
    var_names: Arc<Vec<String>>,
    /// The joined `var` space's map of this dataset's columns, for its layers too.
    joined: Option<Arc<ColumnMap>>,
}

/// Where `obs` comes from.
#[derive(Debug)]
enum Backing {
    /// An AnnData group of a zarr store.
    Zarr { store: ZarrStore, group: String },
    /// Names and columns handed over by the caller, with an `X` in memory or on disk.
    Given {
        obs_names: Option<Vec<String>>,
        obs: Vec<(String, Column)>,
        var_named: bool,
        /// The AnnData group its other matrices (layers, obsm) are read from, if any.
        matrices: Option<(ZarrStore, String)>,
    },
    /// An `.h5ad` file.
    #[cfg(feature = "hdf5")]
    H5ad(Box<super::h5ad::H5adFile>),
}

impl AnnDataStore {
    /// Opens the AnnData at the root of the zarr store `path` (e.g. `pbmc.zarr`).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zarr`] when the store cannot be read, [`Error::MissingElement`] /
    /// [`Error::UnknownEncoding`] for a group that is not an AnnData, [`Error::InvalidIndptr`] /
    /// [`Error::ShapeMismatch`] / [`Error::UnsupportedDtype`] for an `X` that cannot be read by
    /// rows.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let store = ZarrStore::open(path.as_ref())?;
        Self::open_in(&store, "")
    }

    /// Opens the AnnData group `group` of an open store.
    pub(crate) fn open_in(store: &ZarrStore, group: &str) -> Result<Self> {
        let label = if group.is_empty() { "/" } else { group };
        let attrs = store.attributes(group).map_err(|e| match e {
            Error::MissingElement { .. } => Error::MissingElement {
                path: store.root().display().to_string(),
                element: format!("{label} (no zarr group metadata)"),
            },
            e => e,
        })?;
        let (encoding_type, encoding_version) = encoding(&attrs);
        if !matches!(encoding_type.as_str(), "anndata" | "") {
            return Err(Error::UnknownEncoding {
                path: label.to_string(),
                encoding_type,
                encoding_version,
                expected: "\"anndata\"".into(),
            });
        }
        let x = XElement::open(store, &join(group, "X"))?;
        let var_names = dataframe::read_index(store, &join(group, "var"))?;
        if var_names.len() as u64 != x.n_var() {
            return Err(Error::ShapeMismatch {
                path: join(group, "var"),
                found: format!("{} var names", var_names.len()),
                expected: format!("{} (X's n_var)", x.n_var()),
            });
        }
        Ok(Self {
            backing: Backing::Zarr {
                store: store.clone(),
                group: group.to_string(),
            },
            x,
            var_names: Arc::new(var_names),
            joined: None,
        })
    }

    /// The AnnData of an `.h5ad` file: `X` and layers read by file offset where their layout
    /// allows, from any number of threads; `obs` and `var` through the HDF5 library.
    ///
    /// # Errors
    /// As [`super::h5ad::H5adFile::open`] and [`super::h5ad::H5adFile::rows`] for `X`
    /// ([`Error::UnknownEncoding`] for a `csc_matrix` `X`, with the remedy).
    #[cfg(feature = "hdf5")]
    pub fn open_h5ad(path: impl AsRef<Path>) -> Result<Self> {
        // Thousands of files, a descriptor each.
        crate::storage::raise_open_file_limit();
        let file = super::h5ad::H5adFile::open(path)?;
        let x = XElement::H5ad(file.rows("X")?);
        let var_names = Arc::new(file.var_names().to_vec());
        Ok(Self {
            backing: Backing::H5ad(Box::new(file)),
            x,
            var_names,
            joined: None,
        })
    }

    /// This dataset read in the joined `var` space `names`, where `map` sends its columns.
    pub(crate) fn joined(self, names: Arc<Vec<String>>, map: Arc<ColumnMap>) -> Result<Self> {
        let n_var = names.len() as u64;
        Ok(Self {
            backing: self.backing,
            x: XElement::Joined(Box::new(JoinedX::new(self.x, map.clone(), n_var)?)),
            var_names: names,
            joined: Some(map),
        })
    }

    /// An AnnData held in memory: `X`, the `var` index (`None`: unnamed, matched by count
    /// only), the `obs` index (`None`: row numbers) and `obs` columns.
    ///
    /// ```
    /// # fn main() -> annbatch::Result<()> {
    /// use annbatch::{AnnDataStore, Column, InMemoryX};
    /// let x = InMemoryX::dense(2, vec![1.0, 2.0, 3.0, 4.0])?;
    /// let label = Column::int64(vec![7, 8]);
    /// let adata = AnnDataStore::in_memory(x, None, None, vec![("label".into(), label)])?;
    /// assert_eq!(adata.n_obs(), 2);
    /// assert_eq!(adata.obs_column("label")?, Column::int64(vec![7, 8]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the names or columns do not have one entry per row (or per
    /// variable).
    pub fn in_memory(
        x: InMemoryX,
        var_names: Option<Vec<String>>,
        obs_names: Option<Vec<String>>,
        obs: Vec<(String, Column)>,
    ) -> Result<Self> {
        Self::with_x(XElement::InMemory(x), var_names, obs_names, obs)
    }

    /// An AnnData whose `X` is the element `x` of a zarr store: any CSR group or dense array
    /// (`layers/counts`, an `obsm` matrix of another store...), with `var` / `obs` given as in
    /// [`Self::in_memory`]. This is how a caller trains on a layer.
    ///
    /// ```no_run
    /// # fn main() -> annbatch::Result<()> {
    /// use annbatch::{AnnDataStore, XElement};
    /// let counts = XElement::open_at("pbmc.zarr", "layers/counts")?;
    /// let adata = AnnDataStore::with_x(counts, None, None, vec![])?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Self::in_memory`].
    pub fn with_x(
        x: XElement,
        var_names: Option<Vec<String>>,
        obs_names: Option<Vec<String>>,
        obs: Vec<(String, Column)>,
    ) -> Result<Self> {
        if let Some(names) = &obs_names {
            rows_match("<in-memory obs>", names.len(), x.n_obs())?;
        }
        for (name, column) in &obs {
            rows_match(&format!("<in-memory obs>/{name}"), column.len(), x.n_obs())?;
        }
        let var_named = var_names.is_some();
        let var_names =
            var_names.unwrap_or_else(|| (0..x.n_var()).map(|i| i.to_string()).collect());
        if var_names.len() as u64 != x.n_var() {
            return Err(Error::ShapeMismatch {
                path: "<in-memory var>".into(),
                found: format!("{} var names", var_names.len()),
                expected: format!("{} (X's n_var)", x.n_var()),
            });
        }
        Ok(Self {
            backing: Backing::Given {
                obs_names,
                obs,
                var_named,
                matrices: None,
            },
            x,
            var_names: Arc::new(var_names),
            joined: None,
        })
    }

    /// `X`, to read rows from.
    pub fn x(&self) -> &XElement {
        &self.x
    }
    /// Number of observations (rows, cells).
    pub fn n_obs(&self) -> u64 {
        self.x.n_obs()
    }
    /// Number of variables (columns, genes).
    pub fn n_var(&self) -> u64 {
        self.x.n_var()
    }
    /// The `var` index (gene names).
    pub fn var_names(&self) -> &[String] {
        &self.var_names
    }
    /// Whether the `var` index is named (in-memory data may come without one).
    pub fn var_named(&self) -> bool {
        match &self.backing {
            Backing::Zarr { .. } => true,
            #[cfg(feature = "hdf5")]
            Backing::H5ad(_) => true,
            Backing::Given { var_named, .. } => *var_named,
        }
    }
    /// The group path inside the store (empty for the root and for in-memory data).
    pub fn group(&self) -> &str {
        match &self.backing {
            Backing::Zarr { group, .. } => group,
            Backing::Given { .. } => "",
            #[cfg(feature = "hdf5")]
            Backing::H5ad(_) => "",
        }
    }

    /// The `obs` index (cell names; row numbers for in-memory data given none).
    ///
    /// # Errors
    /// [`Error::MissingElement`] / [`Error::Zarr`] when the obs index cannot be read.
    pub fn obs_names(&self) -> Result<Vec<String>> {
        match &self.backing {
            Backing::Zarr { store, group } => {
                let names = dataframe::read_index(store, &join(group, "obs"))?;
                self.check_len(&join(group, "obs"), names.len())?;
                Ok(names)
            }
            Backing::Given { obs_names, .. } => Ok(obs_names
                .clone()
                .unwrap_or_else(|| (0..self.n_obs()).map(|i| i.to_string()).collect())),
            #[cfg(feature = "hdf5")]
            Backing::H5ad(file) => {
                let names = file.obs_names()?;
                self.check_len("obs", names.len())?;
                Ok(names)
            }
        }
    }

    /// `obs` column names, in `column-order`.
    ///
    /// # Errors
    /// [`Error::MissingElement`] / [`Error::UnknownEncoding`] when `obs` is not a readable
    /// dataframe.
    pub fn obs_columns(&self) -> Result<Vec<String>> {
        match &self.backing {
            Backing::Zarr { store, group } => dataframe::column_names(store, &join(group, "obs")),
            Backing::Given { obs, .. } => Ok(obs.iter().map(|(n, _)| n.clone()).collect()),
            #[cfg(feature = "hdf5")]
            Backing::H5ad(file) => file.obs_columns(),
        }
    }

    /// Reads the `obs` column `name`.
    ///
    /// # Errors
    /// [`Error::UnknownObsColumn`] (listing the columns that exist) for a column that does not
    /// exist, [`Error::UnknownEncoding`] / [`Error::UnsupportedDtype`] for one this crate cannot
    /// read.
    pub fn obs_column(&self, name: &str) -> Result<Column> {
        let available = self.obs_columns()?;
        if !available.iter().any(|c| c == name) {
            return Err(Error::UnknownObsColumn {
                path: match &self.backing {
                    Backing::Zarr { store, group } => {
                        format!("{}/{}", store.root().display(), join(group, "obs"))
                    }
                    Backing::Given { .. } => "<in-memory obs>".into(),
                    #[cfg(feature = "hdf5")]
                    Backing::H5ad(file) => format!("{}/obs", file.path().display()),
                },
                name: name.to_string(),
                available,
            });
        }
        match &self.backing {
            Backing::Zarr { store, group } => {
                let obs = join(group, "obs");
                let column = dataframe::read_column(store, &obs, name)?;
                self.check_len(&join(&obs, name), column.len())?;
                Ok(column)
            }
            Backing::Given { obs, .. } => obs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| Error::MissingElement {
                    path: "<in-memory obs>".into(),
                    element: name.to_string(),
                }),
            #[cfg(feature = "hdf5")]
            Backing::H5ad(file) => file.obs_column(name),
        }
    }

    /// The row-aligned matrix at `path` of this AnnData group (`layers/NAME`, `obsm/NAME`):
    /// CSR or dense, with `X`'s rows.
    ///
    /// # Errors
    /// As [`XElement::open_at`]; [`Error::ShapeMismatch`] for another number of rows;
    /// [`Error::MissingElement`] for data held in memory.
    pub fn matrix(&self, path: &str) -> Result<XElement> {
        let matrix = self.matrix_as_stored(path)?;
        match &self.joined {
            // Layers share X's columns; obsm entries have their own.
            Some(map) if path.trim_matches('/').starts_with("layers/") => Ok(XElement::Joined(
                Box::new(JoinedX::new(matrix, map.clone(), self.n_var())?),
            )),
            _ => Ok(matrix),
        }
    }

    fn matrix_as_stored(&self, path: &str) -> Result<XElement> {
        #[cfg(feature = "hdf5")]
        if let Backing::H5ad(file) = &self.backing {
            return Ok(XElement::H5ad(file.rows(path.trim_matches('/'))?));
        }
        let Some((store, group)) = self.matrix_group() else {
            return Err(Error::MissingElement {
                path: "<in-memory AnnData>".into(),
                element: path.to_string(),
            });
        };
        let full = join(group, path);
        let matrix = XElement::open(store, &full)?;
        if matrix.n_obs() != self.n_obs() {
            return Err(Error::ShapeMismatch {
                path: full,
                found: format!("{} rows", matrix.n_obs()),
                expected: format!("{} (X's n_obs)", self.n_obs()),
            });
        }
        Ok(matrix)
    }

    /// The names of the children of the group `path` of this AnnData (e.g. the keys of
    /// `layers`); none when there is no such group.
    ///
    /// # Errors
    /// [`Error::Zarr`] when the group cannot be listed.
    pub fn children(&self, path: &str) -> Result<Vec<String>> {
        #[cfg(feature = "hdf5")]
        if let Backing::H5ad(file) = &self.backing {
            return file.children(path.trim_matches('/'));
        }
        let Some((store, group)) = self.matrix_group() else {
            return Ok(Vec::new());
        };
        let full = join(group, path);
        match store.kind(&full)? {
            Some(NodeKind::Group) => store.children(&full),
            _ => Ok(Vec::new()),
        }
    }

    /// Reads layers and obsm entries ([`Self::matrix`]) from the AnnData group `group` of the
    /// zarr store at `root`: for an AnnData made of an element of that group (such as
    /// `layers/counts` as `X`, from annbatch's `load_adata`).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zarr`] when the store cannot be opened.
    pub fn with_matrices_from(mut self, root: impl AsRef<Path>, group: &str) -> Result<Self> {
        let opened = ZarrStore::open(root.as_ref())?;
        match &mut self.backing {
            Backing::Given { matrices, .. } => {
                *matrices = Some((opened, group.trim_matches('/').to_string()));
            }
            // Its own group already serves them.
            Backing::Zarr { .. } => {}
            #[cfg(feature = "hdf5")]
            Backing::H5ad(_) => {}
        }
        Ok(self)
    }

    /// Where [`Self::matrix`] reads from.
    fn matrix_group(&self) -> Option<(&ZarrStore, &str)> {
        match &self.backing {
            Backing::Zarr { store, group } => Some((store, group)),
            Backing::Given { matrices, .. } => matrices.as_ref().map(|(s, g)| (s, g.as_str())),
            #[cfg(feature = "hdf5")]
            Backing::H5ad(_) => None,
        }
    }

    /// The zarr store and group this AnnData is read from (`None` for data in memory).
    pub(crate) fn zarr(&self) -> Option<(&ZarrStore, &str)> {
        match &self.backing {
            Backing::Zarr { store, group } => Some((store, group)),
            Backing::Given { .. } => None,
            #[cfg(feature = "hdf5")]
            Backing::H5ad(_) => None,
        }
    }

    /// `var` columns and their values, in `column-order` (none for data in memory).
    ///
    /// # Errors
    /// [`Error::UnknownEncoding`] / [`Error::UnsupportedDtype`] for a column this crate cannot
    /// read, [`Error::ShapeMismatch`] for one without a value per variable.
    pub fn var_columns(&self) -> Result<Vec<(String, Column)>> {
        #[cfg(feature = "hdf5")]
        if let Backing::H5ad(file) = &self.backing {
            return file.var_columns();
        }
        let Backing::Zarr { store, group } = &self.backing else {
            return Ok(Vec::new());
        };
        let var = join(group, "var");
        dataframe::column_names(store, &var)?
            .into_iter()
            .map(|name| {
                let column = dataframe::read_column(store, &var, &name)?;
                if column.len() as u64 != self.n_var() {
                    return Err(Error::ShapeMismatch {
                        path: join(&var, &name),
                        found: format!("{} rows", column.len()),
                        expected: format!("{} (X's n_var)", self.n_var()),
                    });
                }
                Ok((name, column))
            })
            .collect()
    }

    fn check_len(&self, path: &str, len: usize) -> Result<()> {
        rows_match(path, len, self.n_obs())
    }
}

/// Checks that an obs element at `path` has X's `n_obs` rows.
fn rows_match(path: &str, len: usize, n_obs: u64) -> Result<()> {
    if len as u64 == n_obs {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("{len} rows"),
            expected: format!("{n_obs} (X's n_obs)"),
        })
    }
}
