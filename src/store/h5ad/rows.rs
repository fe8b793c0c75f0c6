//! A matrix of an `.h5ad` (`X`, a layer, an `obsm` entry) as the loader reads it: rows
//! scattered straight into a batch's places, read by file offset in parallel where the layout
//! allows ([`super::direct`]), else through the HDF5 library (serialised by its lock).

use std::ops::Range;
use std::sync::Arc;

use super::direct::{CheckRun, CopyRun, DirectArray, FileHandle, Fill};
use super::{h5err, H5adMatrix, H5X};
use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::error::{Error, Result};
use crate::store::csr::csc_error;
use crate::store::places::RowPlaces;
use crate::zarr::chunked::{Decoded, FromDecoded};
use crate::zarr::dtype::Dtype;

/// A row-aligned `.h5ad` matrix, read by rows from any number of threads.
///
/// ```no_run
/// # fn main() -> annbatch::Result<()> {
/// // An `.h5ad` opens as a one-dataset collection; its X is one of these.
/// let collection = annbatch::DatasetCollection::open("pbmc.h5ad")?;
/// let mut batch = collection.new_batch();
/// collection.read_rows(&[0..16, 100..132], &mut batch)?;
/// assert_eq!(batch.n_rows(), 48);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct H5adRows {
    matrix: H5adMatrix,
    file: Arc<FileHandle>,
    /// `data` (CSR) or the dense array, by offset; `None`: through the library.
    values: Option<DirectArray>,
    /// CSR `indices` by offset.
    indices: Option<DirectArray>,
}

/// Which array of the matrix a read is of.
#[derive(Debug, Clone, Copy)]
enum Part {
    Values,
    Indices,
}

impl H5adRows {
    /// The loader's reader of `matrix`, whose file is `file`.
    ///
    /// # Errors
    /// As [`DirectArray::open`]; [`Error::UnknownEncoding`] for a `csc_matrix` (which cannot be
    /// read by rows).
    pub(crate) fn new(matrix: H5adMatrix, file: Arc<FileHandle>) -> Result<Self> {
        let (values, indices) = match &matrix.x {
            H5X::Csr { data, indices, .. } => (
                DirectArray::open(data, &format!("{}/data", matrix.path), matrix.dtype, &file)?,
                {
                    let path = format!("{}/indices", matrix.path);
                    let dtype = super::dtype_of(&path, indices)?;
                    DirectArray::open(indices, &path, dtype, &file)?
                },
            ),
            H5X::Dense { ds, .. } => (
                DirectArray::open(ds, &matrix.path, matrix.dtype, &file)?,
                None,
            ),
            H5X::Csc(_) => return Err(csc_error(&matrix.path)),
        };
        Ok(Self {
            matrix,
            file,
            values,
            indices,
        })
    }

    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        self.matrix.n_obs()
    }
    /// Number of columns.
    pub fn n_var(&self) -> u64 {
        self.matrix.n_cols()
    }
    /// The element's path inside the file (`X`, `layers/counts`).
    pub fn path(&self) -> &str {
        &self.matrix.path
    }
    /// The element type of the stored values.
    pub fn dtype(&self) -> Dtype {
        self.matrix.dtype
    }
    /// Row pointers when CSR.
    pub fn indptr(&self) -> Option<&[u64]> {
        self.matrix.indptr()
    }
    /// Elements per dense row (`None` for CSR).
    pub fn row_width(&self) -> Option<u64> {
        match &self.matrix.x {
            H5X::Dense { row_width, .. } => Some(*row_width),
            _ => None,
        }
    }
    /// Whether both arrays are read by file offset (else some go through the library).
    pub fn is_direct(&self) -> bool {
        self.values.is_some() && (self.indices.is_some() || self.row_width().is_some())
    }
    /// An empty batch of this matrix's kind.
    pub fn new_batch(&self) -> XBatch {
        match self.row_width() {
            Some(w) => XBatch::Dense(DenseBatch::new(w as usize)),
            None => XBatch::Csr(CsrBatch::new(self.n_var())),
        }
    }

    /// Copies local row `rows[i]` into `places` entry `i` (each run as long as its row).
    pub(crate) fn scatter_rows(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        self.file.check()?;
        let n_obs = self.n_obs();
        if let Some(&row) = rows.iter().find(|&&r| r >= n_obs) {
            return Err(Error::row_out_of_range(self.path(), row, n_obs));
        }
        match (self.indptr(), places) {
            (Some(indptr), RowPlaces::Csr(places)) => {
                let mut values = Vec::with_capacity(rows.len());
                let mut cols = Vec::with_capacity(rows.len());
                for (&row, (c, v)) in rows.iter().zip(places) {
                    let (a, b) = (indptr[row as usize], indptr[row as usize + 1]);
                    check_run(self.path(), row, b - a, v.len(), c.len())?;
                    values.push((a, v));
                    cols.push((a, c));
                }
                self.csr_parts(values, cols)
            }
            (None, RowPlaces::Dense(places)) => {
                let w = self.row_width().unwrap_or(0);
                let mut values = Vec::with_capacity(rows.len());
                for (&row, v) in rows.iter().zip(places) {
                    check_run(self.path(), row, w, v.len(), v.len())?;
                    values.push((row * w, v));
                }
                self.dense_parts(values)
            }
            _ => Err(Error::Internal(format!(
                "row places of another kind than {}",
                self.path()
            ))),
        }
    }

    /// Fills CSR value and index runs, the two arrays in parallel.
    fn csr_parts<V: FromDecoded>(
        &self,
        mut values: Vec<(u64, &mut [V])>,
        mut cols: Vec<(u64, &mut [i32])>,
    ) -> Result<()> {
        values.sort_by_key(|p| p.0);
        cols.sort_by_key(|p| p.0);
        let n_var = self.n_var();
        let data_path = format!("{}/data", self.path());
        let index_path = format!("{}/indices", self.path());
        let (v, c) = rayon::join(
            || {
                self.gather(
                    Part::Values,
                    values,
                    &|d, s, out: &mut [V]| V::copy_from(&d, s, out, &data_path),
                    V::STORED,
                    &|_| Ok(()),
                )
            },
            || {
                self.gather(
                    Part::Indices,
                    cols,
                    &|d, s, out: &mut [i32]| d.copy_indices(s, out, n_var, &index_path),
                    Dtype::I32,
                    &|run: &[i32]| {
                        // Branch-free (vectorised) over the run; the culprit looked for after.
                        // Negative indices are huge as u32.
                        let bound = u32::try_from(n_var).unwrap_or(u32::MAX);
                        if run.iter().fold(true, |ok, &c| ok & ((c as u32) < bound)) {
                            return Ok(());
                        }
                        let bad = run.iter().find(|&&c| (c as u32) >= bound).copied();
                        Err(Error::IndexOutOfBounds {
                            path: index_path.clone(),
                            index: i64::from(bad.unwrap_or(-1)),
                            n_var,
                        })
                    },
                )
            },
        );
        v.and(c)
    }

    /// Fills dense rows' runs (`(first element, run)`, in any order) from the values.
    fn dense_parts<V: FromDecoded>(&self, mut values: Vec<(u64, &mut [V])>) -> Result<()> {
        values.sort_by_key(|p| p.0);
        self.gather(
            Part::Values,
            values,
            &|d, s, out: &mut [V]| V::copy_from(&d, s, out, self.path()),
            V::STORED,
            &|_| Ok(()),
        )
    }

    /// Appends the rows of `ranges` to `out` (of this matrix's kind).
    pub(crate) fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        // A read of its own (the loader's fetches are requests of theirs).
        crate::storage::new_read_request();
        self.file.check()?;
        Error::check_row_ranges(|| self.path().to_string(), ranges, self.n_obs())?;
        match (self.indptr(), out) {
            (Some(indptr), XBatch::Csr(b)) => {
                b.n_var = self.n_var();
                let first = b.data.len();
                let mut total = first as u64;
                for r in ranges {
                    total += indptr[r.end as usize] - indptr[r.start as usize];
                }
                if total > i32::MAX as u64 {
                    return Err(Error::BatchTooLarge {
                        nnz: total,
                        max: i32::MAX as u64,
                    });
                }
                b.data.resize(total as usize, V::default());
                b.indices.resize(total as usize, 0);
                if b.indptr.is_empty() {
                    b.indptr.push(0);
                }
                let mut values = Vec::with_capacity(ranges.len());
                let mut cols = Vec::with_capacity(ranges.len());
                let (mut data_rest, mut index_rest) =
                    (&mut b.data[first..], &mut b.indices[first..]);
                for r in ranges {
                    let (a, e) = (indptr[r.start as usize], indptr[r.end as usize]);
                    let (v, rest) = std::mem::take(&mut data_rest).split_at_mut((e - a) as usize);
                    data_rest = rest;
                    let (c, rest) = std::mem::take(&mut index_rest).split_at_mut((e - a) as usize);
                    index_rest = rest;
                    values.push((a, v));
                    cols.push((a, c));
                }
                let mut at = first as u64;
                for r in ranges {
                    for row in r.start..r.end {
                        at += indptr[row as usize + 1] - indptr[row as usize];
                        // Fits: checked against i32::MAX above.
                        b.indptr.push(at as i32);
                    }
                }
                self.csr_parts(values, cols)
            }
            (None, XBatch::Dense(b)) => {
                let w = self.row_width().unwrap_or(0);
                let first = b.data.len();
                let n: u64 = ranges.iter().map(|r| (r.end - r.start) * w).sum();
                b.data.resize(first + n as usize, V::default());
                let mut values = Vec::with_capacity(ranges.len());
                let mut rest = &mut b.data[first..];
                for r in ranges {
                    let (v, tail) =
                        std::mem::take(&mut rest).split_at_mut(((r.end - r.start) * w) as usize);
                    rest = tail;
                    values.push((r.start * w, v));
                }
                self.dense_parts(values)
            }
            (_, out) => Err(Error::ShapeMismatch {
                path: self.path().to_string(),
                found: format!(
                    "an output batch of the other kind (sparse: {})",
                    out.is_sparse()
                ),
                expected: format!("a batch like X (sparse: {})", self.indptr().is_some()),
            }),
        }
    }

    /// Fills `parts` (sorted `(first element, run)` of the flat array `part`) by file offset,
    /// or through the library. `copy` converts stored elements; where they are stored as `T`
    /// (`own`) they are read straight into the runs and checked by `check`.
    fn gather<T: bytemuck::Pod + Default + Send>(
        &self,
        part: Part,
        parts: Vec<(u64, &mut [T])>,
        copy: &CopyRun<'_, T>,
        own: Dtype,
        check: &CheckRun<'_, T>,
    ) -> Result<()> {
        let direct = match part {
            Part::Values => &self.values,
            Part::Indices => &self.indices,
        };
        if let Some(direct) = direct {
            let fill = Fill {
                copy,
                native: (direct.dtype() == own).then_some(check),
            };
            return direct.read_parts(&self.file, parts, &fill);
        }
        let (ds, path) = match (&self.matrix.x, part) {
            (H5X::Csr { data, .. }, Part::Values) => (data, format!("{}/data", self.path())),
            (H5X::Csr { indices, .. }, Part::Indices) => {
                (indices, format!("{}/indices", self.path()))
            }
            (H5X::Dense { ds, .. }, _) => (ds, self.path().to_string()),
            (H5X::Csc(_), _) => return Err(csc_error(self.path())),
        };
        let w = self.row_width().unwrap_or(1).max(1);
        for (start, run) in parts {
            if run.is_empty() {
                continue;
            }
            let (a, b) = (start, start + run.len() as u64);
            match part {
                Part::Indices => {
                    let v = ds
                        .read_slice_1d::<i64, _>(a as usize..b as usize)
                        .map_err(|e| h5err(&path, e))?;
                    let v = v.as_slice().ok_or_else(|| Error::Internal(path.clone()))?;
                    copy(Decoded::I64(v), 0, run)?;
                }
                Part::Values if ds.ndim() == 1 => {
                    let v = ds
                        .read_slice_1d::<f64, _>(a as usize..b as usize)
                        .map_err(|e| h5err(&path, e))?;
                    let v = v.as_slice().ok_or_else(|| Error::Internal(path.clone()))?;
                    copy(Decoded::F64(v), 0, run)?;
                }
                Part::Values => {
                    // Whole rows of an N-d dense array.
                    let mut slab =
                        vec![hdf5::SliceOrIndex::from((a / w) as usize..(b / w) as usize)];
                    slab.extend((1..ds.ndim()).map(|_| hdf5::SliceOrIndex::from(..)));
                    let v = ds
                        .read_slice::<f64, _, ndarray::IxDyn>(hdf5::Hyperslab::from(slab))
                        .map_err(|e| h5err(&path, e))?;
                    let v: Vec<f64> = v.iter().copied().collect();
                    copy(Decoded::F64(&v), 0, run)?;
                }
            }
        }
        Ok(())
    }
}

/// A row's run must be as long as the row.
fn check_run(path: &str, row: u64, len: u64, values: usize, cols: usize) -> Result<()> {
    if values as u64 != len || cols as u64 != len {
        return Err(Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("an output run of {values} values for row {row}"),
            expected: format!("{len} (the row's stored values)"),
        });
    }
    Ok(())
}
