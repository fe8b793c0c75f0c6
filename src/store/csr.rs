//! `csr_matrix` elements: `data`, `indices`, `indptr` arrays under one group.

use std::ops::Range;

use super::places::CsrPlace;
use crate::batch::CsrBatch;
use crate::error::{Error, Result};
use crate::zarr::chunked::{chunk_runs, chunk_runs_of, ChunkedArray, FromDecoded};
use crate::zarr::node::{join, ZarrStore};

/// What an `X` must be, and what to do with a CSC one.
pub(crate) const CSR_OR_DENSE: &str =
    "\"csr_matrix\" or a dense \"array\"; a csc_matrix X (column-compressed) cannot be \
                 read by rows: write it as CSR first (in Python: `adata.X = adata.X.tocsr()`, \
                 then write the file again)";

/// The error for reading rows of the `csc_matrix` at `path` directly.
pub(crate) fn csc_error(path: &str) -> Error {
    Error::UnknownEncoding {
        path: path.to_string(),
        encoding_type: "csc_matrix".into(),
        encoding_version: "0.1.0".into(),
        expected: format!(
            "{CSR_OR_DENSE}; or convert it (`annbatch convert`), which transposes CSC"
        ),
    }
}

/// A CSR matrix on disk. `indptr` is read and validated once at open; rows are read on demand.
#[derive(Debug)]
pub struct CsrElement {
    path: String,
    n_obs: u64,
    n_var: u64,
    indptr: Vec<u64>,
    data: ChunkedArray,
    indices: ChunkedArray,
}

impl CsrElement {
    /// Opens the `csr_matrix` group at `path` whose `shape` attribute is `shape`.
    pub(crate) fn open(store: &ZarrStore, path: &str, shape: [u64; 2]) -> Result<Self> {
        let [n_obs, n_var] = shape;
        if i32::try_from(n_var).is_err() {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("n_var {n_var}"),
                expected: format!("at most {} columns (int32 column indices)", i32::MAX),
            });
        }
        let data = ChunkedArray::open_whole(store, &join(path, "data"))?;
        let indices = ChunkedArray::open_whole(store, &join(path, "indices"))?;
        let indptr_array = ChunkedArray::open(store, &join(path, "indptr"))?;
        for a in [&data, &indices, &indptr_array] {
            if a.shape().len() != 1 {
                return Err(Error::ShapeMismatch {
                    path: a.path().to_string(),
                    found: format!("shape {:?}", a.shape()),
                    expected: "a 1-dimensional array".into(),
                });
            }
        }
        if !data.dtype().is_numeric() && data.dtype() != super::Dtype::Bool {
            return Err(Error::UnsupportedDtype {
                path: data.path().to_string(),
                found: data.dtype().to_string(),
                expected: "a numeric type".into(),
            });
        }
        for a in [&indices, &indptr_array] {
            if !a.dtype().is_integer() {
                return Err(Error::UnsupportedDtype {
                    path: a.path().to_string(),
                    found: a.dtype().to_string(),
                    expected: "an integer type".into(),
                });
            }
        }
        if data.rows() != indices.rows() {
            return Err(Error::ShapeMismatch {
                path: indices.path().to_string(),
                found: format!("{} indices", indices.rows()),
                expected: format!("{} (the length of data)", data.rows()),
            });
        }
        // Checked before reading: the metadata's length sizes the read.
        if indptr_array.rows() != n_obs.saturating_add(1) {
            return Err(Error::InvalidIndptr {
                path: indptr_array.path().to_string(),
                reason: format!(
                    "length {} does not match n_obs + 1 = {}",
                    indptr_array.rows(),
                    n_obs.saturating_add(1)
                ),
            });
        }
        let indptr = validate_indptr(
            indptr_array.path(),
            &indptr_array.read_all_i64()?,
            n_obs,
            data.rows(),
        )?;
        Ok(Self {
            path: path.to_string(),
            n_obs,
            n_var,
            indptr,
            data,
            indices,
        })
    }

    /// The element's path inside its store.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }
    /// Number of columns.
    pub fn n_var(&self) -> u64 {
        self.n_var
    }
    /// The element type of `data` as stored.
    pub fn dtype(&self) -> super::Dtype {
        self.data.dtype()
    }
    /// Number of stored values.
    pub fn nnz(&self) -> u64 {
        self.indptr.last().copied().unwrap_or(0)
    }
    /// The validated row pointers (`n_obs + 1` entries).
    pub fn indptr(&self) -> &[u64] {
        &self.indptr
    }
    /// Elements per (inner) chunk of `data` and of `indices`.
    pub fn chunk_lens(&self) -> (u64, u64) {
        (self.data.chunk_rows(), self.indices.chunk_rows())
    }

    /// Decodes every chunk of `data` and `indices` once and keeps nothing (see
    /// [`ChunkedArray::decode_every_chunk`]); returns the decoded bytes.
    pub(crate) fn decode_pass(&self) -> Result<u64> {
        let (d, i) = rayon::join(
            || self.data.decode_every_chunk(),
            || self.indices.decode_every_chunk(),
        );
        Ok(d? + i?)
    }

    /// The object store this matrix is in (`None`: local files).
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&crate::storage::remote::RemoteStore> {
        self.data.remote()
    }

    /// Fetches whose bytes are requested before their turn (see
    /// [`ChunkedArray::read_ahead_depth`](crate::zarr::chunked::ChunkedArray::read_ahead_depth)).
    pub(crate) fn read_ahead_depth(&self) -> usize {
        self.data.read_ahead_depth()
    }

    /// Adds to `plan` what reading rows `rows` will fetch from an object store, or from local
    /// files read with `O_DIRECT`.
    pub(crate) fn plan_reads(
        &self,
        rows: &[Range<u64>],
        plan: &mut crate::storage::read_plan::ReadPlan,
    ) -> Result<()> {
        let mut values = Vec::with_capacity(rows.len());
        for r in rows {
            if r.start > r.end || r.end > self.n_obs {
                return Err(Error::row_out_of_range(&self.path, r.end, self.n_obs));
            }
            values.push(self.indptr[r.start as usize]..self.indptr[r.end as usize]);
        }
        self.data.plan_reads(values.iter().cloned(), plan)?;
        self.indices.plan_reads(values, plan)
    }

    /// Appends the rows of `ranges`, in order, to `out`.
    ///
    /// Each inner chunk of `data` and `indices` that the request touches is decoded once, in
    /// parallel on the current rayon pool; only those chunks' bytes are read.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices.
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut CsrBatch) -> Result<()> {
        self.append_rows_as(ranges, out)
    }

    /// [`Self::append_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut CsrBatch<V>,
    ) -> Result<()> {
        let base = out.data.len();
        self.write_rows_as(ranges, out, base)
    }

    /// Writes the rows of `ranges` into `out` from value `base` on (its logical length before
    /// the call, which may be below its `data` / `indices` lengths: values past it are stale
    /// and overwritten, never zeroed first).
    fn write_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut CsrBatch<V>,
        base: usize,
    ) -> Result<()> {
        Error::check_row_ranges(|| self.path.clone(), ranges, self.n_obs)?;
        let mut elements = Vec::with_capacity(ranges.len());
        let mut added: u64 = 0;
        for r in ranges {
            let (a, b) = (self.indptr[r.start as usize], self.indptr[r.end as usize]);
            added += b - a;
            elements.push(a..b);
        }
        let total = base as u64 + added;
        let max = i32::MAX as u64;
        if total > max {
            return Err(Error::BatchTooLarge { nnz: total, max });
        }
        // Row pointers: offsets of each row relative to the batch.
        out.indptr
            .reserve(ranges.iter().map(|r| (r.end - r.start) as usize).sum());
        let mut offset = base as u64;
        for r in ranges {
            let start = self.indptr[r.start as usize];
            for row in r.start..r.end {
                // Fits: every offset is at most `total` <= i32::MAX.
                out.indptr
                    .push((offset + self.indptr[row as usize + 1] - start) as i32);
            }
            offset += self.indptr[r.end as usize] - start;
        }
        let new_len = total as usize;
        fit(&mut out.data, new_len);
        fit(&mut out.indices, new_len);
        // One run per range (a row of `scatter_rows` is a range of one), read the same way,
        // as a read request of its own.
        crate::storage::new_read_request();
        let d = chunk_runs_of(
            self.data.path(),
            elements.iter().cloned(),
            self.data.chunk_rows(),
            &mut out.data[base..],
        )
        .and_then(|data_parts| {
            let index_parts = chunk_runs_of(
                self.indices.path(),
                elements.iter().cloned(),
                self.indices.chunk_rows(),
                &mut out.indices[base..],
            )?;
            self.gather_runs(data_parts, index_parts)
        });
        if let Err(e) = d {
            // Leave `out` as it was before the call.
            out.data.truncate(base);
            out.indices.truncate(base);
            let rows = out.indptr.len()
                - ranges
                    .iter()
                    .map(|r| (r.end - r.start) as usize)
                    .sum::<usize>();
            out.indptr.truncate(rows);
            return Err(e);
        }
        Ok(())
    }

    /// Copies rows straight into caller-owned runs: local row `rows[i]` into `dest[i]` (column
    /// indices, values), each exactly as long as the row. Each inner chunk the rows touch is
    /// decoded once, in parallel on the current rayon pool; nothing is staged in between.
    pub(crate) fn scatter_rows(&self, rows: &[u64], dest: Vec<CsrPlace<'_>>) -> Result<()> {
        let (data_len, index_len) = (self.data.chunk_rows(), self.indices.chunk_rows());
        let mut data_parts = Vec::with_capacity(rows.len() + rows.len() / 4);
        let mut index_parts = Vec::with_capacity(rows.len() + rows.len() / 4);
        for (&row, (cols, values)) in rows.iter().zip(dest) {
            if row >= self.n_obs {
                return Err(Error::row_out_of_range(&self.path, row, self.n_obs));
            }
            let (a, b) = (self.indptr[row as usize], self.indptr[row as usize + 1]);
            if cols.len() as u64 != b - a || values.len() as u64 != b - a {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    found: format!("an output run of {} values for row {row}", values.len()),
                    expected: format!("{} (the row's stored values)", b - a),
                });
            }
            chunk_runs(a..b, data_len, values, &mut data_parts);
            chunk_runs(a..b, index_len, cols, &mut index_parts);
        }
        self.gather_runs(data_parts, index_parts)
    }

    /// Fills the value runs `data_parts` and column-index runs `index_parts` (as
    /// [`chunk_runs`] cuts them), `data` and `indices` in parallel, indices checked against
    /// `n_var`.
    fn gather_runs<V: FromDecoded>(
        &self,
        data_parts: Vec<(u64, u64, &mut [V])>,
        index_parts: Vec<(u64, u64, &mut [i32])>,
    ) -> Result<()> {
        let n_var = self.n_var;
        let (d, i) = rayon::join(
            || self.data.gather_parts_as_stored(data_parts),
            || {
                self.indices.gather_parts(index_parts, &|dec, src, dst| {
                    dec.copy_indices(src, dst, n_var, self.indices.path())
                })
            },
        );
        d.and(i)
    }

    /// Replaces the contents of `out` with the rows of `ranges`.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut CsrBatch) -> Result<()> {
        self.read_rows_as(ranges, out)
    }

    /// [`Self::read_rows`] into values of any [`FromDecoded`] type.
    pub(crate) fn read_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut CsrBatch<V>,
    ) -> Result<()> {
        // Only the row pointers restart: the values are overwritten in place, not zeroed.
        out.indptr.clear();
        out.indptr.push(0);
        out.n_var = self.n_var;
        self.write_rows_as(ranges, out, 0)
    }
}

/// Sets `v`'s length to `len`, zero-filling only what it did not hold before.
pub(crate) fn fit<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() > len {
        v.truncate(len);
    } else {
        v.resize(len, T::default());
    }
}

/// Checks that `raw` is the row-pointer array of a stored element for `n_obs` rows over its
/// `nnz` stored values, ending exactly there (anndata writes no spare values): row pointers
/// that end early are a lost chunk (zarr reads it as zeros) or a damaged element, whose
/// values would silently vanish.
pub(crate) fn validate_indptr(path: &str, raw: &[i64], n_obs: u64, nnz: u64) -> Result<Vec<u64>> {
    check_indptr(path, raw, n_obs, nnz)?;
    let last = raw[raw.len() - 1];
    if i128::from(last) < i128::from(nnz) {
        return Err(Error::InvalidIndptr {
            path: path.to_string(),
            reason: format!(
                "ends at {last} but {nnz} values are stored: a chunk of indptr is missing \
                 (read as zeros) or the element is damaged"
            ),
        });
    }
    Ok(raw.iter().map(|&v| v as u64).collect())
}

/// Checks row pointers: `n_obs + 1` entries, from 0, non-decreasing, ending at most at `nnz`.
pub(crate) fn check_indptr<T>(path: &str, raw: &[T], n_obs: u64, nnz: u64) -> Result<()>
where
    T: Copy + Into<i128> + std::fmt::Display,
{
    let bad = |reason: String| Error::InvalidIndptr {
        path: path.to_string(),
        reason,
    };
    if raw.len() as u64 != n_obs + 1 {
        return Err(bad(format!(
            "length {} does not match n_obs + 1 = {}",
            raw.len(),
            n_obs + 1
        )));
    }
    if raw[0].into() != 0 {
        return Err(bad(format!("must start at 0, found {}", raw[0])));
    }
    if let Some(i) = raw.windows(2).position(|w| w[1].into() < w[0].into()) {
        return Err(bad(format!(
            "not monotone: indptr[{}] = {} > indptr[{}] = {}",
            i,
            raw[i],
            i + 1,
            raw[i + 1]
        )));
    }
    let last = raw[raw.len() - 1];
    if last.into() > i128::from(nnz) {
        return Err(bad(format!("ends at {last}, past the {nnz} stored values")));
    }
    Ok(())
}
