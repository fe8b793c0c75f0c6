//! Dense `array` elements: `X` stored as one array of shape `[n_obs, n_var, ...]`.

use std::ops::Range;

use crate::batch::DenseBatch;
use crate::error::{Error, Result};
use crate::zarr::chunked::{chunk_runs, chunk_runs_of, ChunkedArray, FromDecoded};
use crate::zarr::node::ZarrStore;

/// A dense matrix (or higher-dimensional array) on disk, read by rows.
#[derive(Debug)]
pub struct DenseElement {
    array: ChunkedArray,
}

impl DenseElement {
    /// Opens the dense array at `path`.
    ///
    /// A missing chunk of a sharded array is damage ([`crate::Error::MissingData`]): annbatch
    /// and this crate write every shard. Unsharded arrays are read as zarr-python writes them,
    /// which leaves chunks of fill values unwritten (`write_empty_chunks=False`): a missing
    /// chunk there reads as zeros.
    pub(crate) fn open(store: &ZarrStore, path: &str) -> Result<Self> {
        let array = ChunkedArray::open(store, path)?;
        let array = if array.is_sharded() {
            ChunkedArray::open_whole(store, path)?
        } else {
            array
        };
        if array.shape().len() < 2 {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("shape {:?}", array.shape()),
                expected: "at least 2 dimensions [n_obs, n_var, ...]".into(),
            });
        }
        if !array.dtype().is_numeric() && array.dtype() != super::Dtype::Bool {
            return Err(Error::UnsupportedDtype {
                path: path.to_string(),
                found: array.dtype().to_string(),
                expected: "a numeric type".into(),
            });
        }
        Ok(Self { array })
    }

    /// The object store this matrix is in (`None`: local files).
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&crate::storage::remote::RemoteStore> {
        self.array.remote()
    }

    /// Fetches whose bytes are requested before their turn (see
    /// [`ChunkedArray::read_ahead_depth`](crate::zarr::chunked::ChunkedArray::read_ahead_depth)).
    pub(crate) fn read_ahead_depth(&self) -> usize {
        self.array.read_ahead_depth()
    }

    /// Adds to `plan` what reading rows `rows` will fetch from an object store, or from local
    /// files read with `O_DIRECT`.
    pub(crate) fn plan_reads(
        &self,
        rows: &[std::ops::Range<u64>],
        plan: &mut crate::storage::read_plan::ReadPlan,
    ) -> crate::error::Result<()> {
        let width = self.row_width();
        let n_obs = self.n_obs();
        let mut elements = Vec::with_capacity(rows.len());
        for r in rows {
            if r.start > r.end || r.end > n_obs {
                return Err(crate::error::Error::row_out_of_range(
                    self.path(),
                    r.end,
                    n_obs,
                ));
            }
            elements.push(r.start * width..r.end * width);
        }
        self.array.plan_reads(elements, plan)
    }

    /// Decodes every chunk once and keeps nothing; returns the decoded bytes.
    pub(crate) fn decode_pass(&self) -> crate::error::Result<u64> {
        self.array.decode_every_chunk()
    }

    /// The element type as stored.
    pub fn dtype(&self) -> super::Dtype {
        self.array.dtype()
    }
    /// The element's path inside its store.
    pub fn path(&self) -> &str {
        self.array.path()
    }
    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        self.array.rows()
    }
    /// Number of columns (the second dimension).
    pub fn n_var(&self) -> u64 {
        self.array.shape()[1]
    }
    /// The array's shape, `[n_obs, n_var, ...]`.
    pub fn shape(&self) -> &[u64] {
        self.array.shape()
    }
    /// Elements per row (`n_var` times any trailing dimensions).
    pub fn row_width(&self) -> u64 {
        self.array.row_width()
    }
    /// Rows per (inner) chunk.
    pub fn chunk_rows(&self) -> u64 {
        self.array.chunk_rows()
    }

    /// Appends the rows of `ranges`, in order, to `out`; each chunk band is decoded once.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read.
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut DenseBatch) -> Result<()> {
        self.append_rows_as(ranges, out)
    }

    /// [`Self::append_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut DenseBatch<V>,
    ) -> Result<()> {
        let base = out.data.len();
        self.write_rows_as(ranges, out, base)
    }

    /// Writes the rows of `ranges` into `out` from value `base` on (values past it are stale
    /// and overwritten, never zeroed first).
    fn write_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut DenseBatch<V>,
        base: usize,
    ) -> Result<()> {
        Error::check_row_ranges(|| self.path().to_string(), ranges, self.n_obs())?;
        let rows: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let width = self.row_width();
        let added = rows
            .checked_mul(width)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::ShapeMismatch {
                path: self.path().to_string(),
                found: format!("a request of {rows} rows of {width} values"),
                expected: "a request that fits in memory".into(),
            })?;
        super::csr::fit(&mut out.data, base + added);
        // One run per range (a row of `scatter_rows` is a range of one), read the same way,
        // as a read request of its own.
        crate::storage::new_read_request();
        // Fits: the rows exist (checked above), and all rows × `width` was checked at open.
        let result = chunk_runs_of(
            self.path(),
            ranges.iter().map(|r| r.start * width..r.end * width),
            self.array.band_len(),
            &mut out.data[base..],
        )
        .and_then(|parts| self.array.gather_parts_as_stored(parts));
        if result.is_err() {
            out.data.truncate(base);
        }
        result
    }

    /// Copies local row `rows[i]` into `dest[i]` (`row_width` values each), decoding each chunk
    /// band the rows touch once, in parallel on the current rayon pool.
    pub(crate) fn scatter_rows(&self, rows: &[u64], dest: Vec<&mut [f32]>) -> Result<()> {
        let (n_obs, width) = (self.n_obs(), self.row_width());
        let band = self.array.band_len();
        let mut parts = Vec::with_capacity(rows.len() + rows.len() / 4);
        for (&row, out) in rows.iter().zip(dest) {
            if row >= n_obs {
                return Err(Error::row_out_of_range(self.path().to_string(), row, n_obs));
            }
            if out.len() as u64 != width {
                return Err(Error::ShapeMismatch {
                    path: self.path().to_string(),
                    found: format!("an output run of {} values for row {row}", out.len()),
                    expected: format!("{width} (the row width)"),
                });
            }
            chunk_runs(row * width..(row + 1) * width, band, out, &mut parts);
        }
        self.array.gather_parts_as_stored(parts)
    }

    /// Replaces the contents of `out` with the rows of `ranges`.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut DenseBatch) -> Result<()> {
        self.read_rows_as(ranges, out)
    }

    /// [`Self::read_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn read_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut DenseBatch<V>,
    ) -> Result<()> {
        out.row_width = self.row_width() as usize;
        self.write_rows_as(ranges, out, 0)
    }
}
