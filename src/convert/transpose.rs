//! CSC inputs (`csc_matrix`, stored by columns) transposed to rows in bounded memory.
//!
//! ```text
//! pass 1: every column once            → values per row → row pointers
//! pass 2: per band of rows whose values fit the budget, every column once
//!         → the band's rows, sorted by column → appended to a scratch file
//! rows are then read from the scratch file (positioned reads), like any CSR
//! ```
//!
//! Cost: the CSC's values are read `1 + bands` times, and written once to the scratch
//! directory (under `TMPDIR`, removed with the reader); the converter notes both. Values are
//! kept as float64 there (exact for every int32 and float64), column indices as uint32.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::row_reader::{exact_reads, Exact, RowReader};
use crate::batch::{CsrBatch, RowValue, XBatch};
use crate::budget;
use crate::error::{Error, Result};
use crate::zarr::Dtype;

/// Columns read per call while scanning: bounds the read buffer, not the band.
const SCAN_VALUES: u64 = 1 << 22;

/// A CSC matrix read by columns: each column as a row of `(row index, value)` entries.
pub(crate) trait Columns {
    /// Rows of the matrix.
    fn n_rows(&self) -> u64;
    /// Column pointers (`n_cols + 1`).
    fn col_ptr(&self) -> &[u64];
    /// The stored element type.
    fn dtype(&self) -> Dtype;
    /// Replaces `out` with columns `cols`, each as a CSR row of row indices and values.
    fn read_columns(&self, cols: Range<u64>, out: &mut XBatch<f64>) -> Result<()>;
}

/// A CSC matrix transposed into a scratch file, read by rows.
#[derive(Debug)]
pub(crate) struct Transposed {
    label: PathBuf,
    n_cols: u64,
    dtype: Dtype,
    indptr: Vec<u64>,
    values: File,
    indices: File,
    dir: PathBuf,
    /// Bands the transposition took (each one scan of the columns).
    pub bands: usize,
}

impl Drop for Transposed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

impl Transposed {
    /// Transposes `csc` (labelled `label` in errors) with bands of at most `band_values`
    /// stored values (`None`: an eighth of the memory budget).
    ///
    /// # Errors
    /// Read errors of the input, [`Error::IndexOutOfBounds`] for a row index past `n_rows`,
    /// [`Error::TooLarge`] for row pointers that cannot fit in memory, [`Error::Io`] for the
    /// scratch files.
    pub(crate) fn build(csc: &dyn Columns, label: &Path, band_values: Option<u64>) -> Result<Self> {
        let n_rows = csc.n_rows();
        let col_ptr = csc.col_ptr();
        let n_cols = col_ptr.len().saturating_sub(1) as u64;
        let path = label.display().to_string();
        budget::check(
            &path,
            "row pointers of a CSC matrix",
            u128::from(n_rows) + 1,
            16,
            2,
        )?;
        // Pass 1: values per row.
        let mut counts = vec![0u64; n_rows as usize];
        scan(csc, &mut |rows, _| {
            for &r in rows {
                counts[r as usize] += 1;
            }
        })?;
        let mut indptr = Vec::with_capacity(n_rows as usize + 1);
        indptr.push(0u64);
        for c in &counts {
            indptr.push(indptr.last().copied().unwrap_or(0) + c);
        }
        drop(counts);
        let band_values = band_values
            .unwrap_or_else(|| budget::memory_limit() / 8 / 12)
            .max(1);
        let dir = std::env::temp_dir().join(format!(
            "annbatch-csc-{}-{}",
            std::process::id(),
            SCRATCH.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut this = Self {
            label: label.to_path_buf(),
            n_cols,
            dtype: csc.dtype(),
            indptr,
            values: scratch_file(&dir.join("values")).map_err(io)?,
            indices: scratch_file(&dir.join("indices")).map_err(io)?,
            dir: dir.clone(),
            bands: 0,
        };
        let (mut values_out, mut indices_out) = (
            BufWriter::new(this.values.try_clone().map_err(io)?),
            BufWriter::new(this.indices.try_clone().map_err(io)?),
        );
        // Pass 2: bands of rows, each filled by one scan of the columns.
        let mut start = 0u64;
        while start < n_rows {
            let base = this.indptr[start as usize];
            let mut end = start + 1;
            while end < n_rows && this.indptr[end as usize + 1] - base <= band_values {
                end += 1;
            }
            let len = (this.indptr[end as usize] - base) as usize;
            let mut band_values_buf = vec![0f64; len];
            let mut band_indices = vec![0u32; len];
            let mut next: Vec<u64> = this.indptr[start as usize..end as usize]
                .iter()
                .map(|p| p - base)
                .collect();
            fill_band(
                csc,
                start..end,
                &mut next,
                &mut band_values_buf,
                &mut band_indices,
            )?;
            for v in &band_values_buf {
                values_out.write_all(&v.to_le_bytes()).map_err(io)?;
            }
            for i in &band_indices {
                indices_out.write_all(&i.to_le_bytes()).map_err(io)?;
            }
            this.bands += 1;
            start = end;
        }
        values_out.flush().map_err(io)?;
        indices_out.flush().map_err(io)?;
        Ok(this)
    }

    /// Columns of the matrix.
    pub(crate) fn n_cols(&self) -> u64 {
        self.n_cols
    }

    /// Rows `ranges` in values of type `V` (`from_f64`: the staged float64 value as a `V`,
    /// `None` when it may have been rounded).
    fn read<V: RowValue>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
        from_f64: fn(f64) -> Option<V>,
    ) -> Result<()> {
        let XBatch::Csr(b) = out else {
            return Err(Error::Internal("a dense batch for CSR rows".into()));
        };
        b.clear();
        b.n_var = self.n_cols;
        let io = |source| Error::Io {
            path: self.dir.clone(),
            source,
        };
        for r in ranges {
            if r.start > r.end || r.end as usize >= self.indptr.len() {
                return Err(Error::RowsOutOfRange {
                    path: self.label.display().to_string(),
                    start: r.start,
                    end: r.end,
                    n_obs: self.indptr.len() as u64 - 1,
                });
            }
            let (a, z) = (self.indptr[r.start as usize], self.indptr[r.end as usize]);
            let total = b.data.len() as u64 + (z - a);
            if total > i32::MAX as u64 {
                return Err(Error::BatchTooLarge {
                    nnz: total,
                    max: i32::MAX as u64,
                });
            }
            let n = (z - a) as usize;
            let mut bytes = vec![0u8; n * 8];
            self.values.read_exact_at(&mut bytes, a * 8).map_err(io)?;
            for c in bytes.chunks_exact(8) {
                let v = f64::from_le_bytes(c.try_into().unwrap_or_default());
                b.data.push(from_f64(v).ok_or_else(|| {
                    Error::UnsupportedDtype {
                        path: self.label.display().to_string(),
                        found: format!("{} value {v} of a CSC matrix", self.dtype),
                        expected: "integers below 2^53 in a CSC matrix (its transposition stages \
                               float64): write it as CSR to keep larger ones exactly"
                            .into(),
                    }
                })?);
            }
            let mut bytes = vec![0u8; n * 4];
            self.indices.read_exact_at(&mut bytes, a * 4).map_err(io)?;
            b.indices.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as i32),
            );
            let base = b.indptr.last().copied().unwrap_or(0) as u64;
            b.indptr.extend(
                self.indptr[r.start as usize + 1..=r.end as usize]
                    .iter()
                    .map(|&p| (base + p - a) as i32),
            );
        }
        Ok(())
    }
}

impl RowReader for Transposed {
    fn path(&self) -> &Path {
        &self.label
    }
    fn indptr(&self) -> Option<&[u64]> {
        Some(&self.indptr)
    }
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn new_batch(&self) -> XBatch {
        XBatch::Csr(CsrBatch::new(self.n_cols))
    }
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.read(ranges, out, |v| Some(v as f32))
    }
    exact_reads!();
}

impl Transposed {
    pub(crate) fn read_exact<V: Exact>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        self.read(ranges, out, V::from_f64)
    }
}

/// A new scratch file, readable and writable.
fn scratch_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Calls `f(row indices, values)` for every block of columns, in column order.
fn scan(csc: &dyn Columns, f: &mut dyn FnMut(&[i32], &[f64])) -> Result<()> {
    scan_columns(csc, &mut |block| f(&block.indices, &block.data))
}

/// Calls `f(block)` per block of columns (a CSR batch whose rows are the block's columns, its
/// column indices the row indices), in column order.
fn scan_columns(csc: &dyn Columns, f: &mut dyn FnMut(&CsrBatch<f64>)) -> Result<()> {
    let col_ptr = csc.col_ptr();
    let n_cols = col_ptr.len().saturating_sub(1) as u64;
    let mut batch = XBatch::Csr(CsrBatch::<f64>::new(csc.n_rows()));
    let mut start = 0u64;
    while start < n_cols {
        let mut end = start + 1;
        while end < n_cols && col_ptr[end as usize + 1] - col_ptr[start as usize] <= SCAN_VALUES {
            end += 1;
        }
        csc.read_columns(start..end, &mut batch)?;
        if let XBatch::Csr(b) = &batch {
            f(b);
        }
        start = end;
    }
    Ok(())
}

/// Places the entries of rows `band` (in column order, so each row ends sorted by column).
fn fill_band(
    csc: &dyn Columns,
    band: Range<u64>,
    next: &mut [u64],
    values: &mut [f64],
    indices: &mut [u32],
) -> Result<()> {
    let mut first_col = 0u32;
    scan_columns(csc, &mut |block| {
        for c in 0..block.n_rows() {
            let Some((rows, vals)) = block.row(c) else {
                continue;
            };
            let col = first_col + c as u32;
            for (&r, &v) in rows.iter().zip(vals) {
                let r = r as u64;
                if band.contains(&r) {
                    let at = &mut next[(r - band.start) as usize];
                    values[*at as usize] = v;
                    indices[*at as usize] = col;
                    *at += 1;
                }
            }
        }
        first_col += block.n_rows() as u32;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSC matrix in memory.
    struct Mem {
        n_rows: u64,
        col_ptr: Vec<u64>,
        rows: Vec<i32>,
        values: Vec<f64>,
    }

    impl Columns for Mem {
        fn n_rows(&self) -> u64 {
            self.n_rows
        }
        fn col_ptr(&self) -> &[u64] {
            &self.col_ptr
        }
        fn dtype(&self) -> Dtype {
            Dtype::F64
        }
        fn read_columns(&self, cols: Range<u64>, out: &mut XBatch<f64>) -> Result<()> {
            let XBatch::Csr(b) = out else {
                unreachable!("CSR batches only")
            };
            b.clear();
            let a = self.col_ptr[cols.start as usize];
            for c in cols {
                let (s, e) = (
                    self.col_ptr[c as usize] as usize,
                    self.col_ptr[c as usize + 1] as usize,
                );
                b.indices.extend_from_slice(&self.rows[s..e]);
                b.data.extend_from_slice(&self.values[s..e]);
                b.indptr.push((self.col_ptr[c as usize + 1] - a) as i32);
            }
            Ok(())
        }
    }

    #[test]
    fn bands_of_any_size_give_the_rows_sorted_by_column() {
        // 23 rows x 11 columns, rows within a column in a scrambled order.
        let (n_rows, n_cols) = (23u64, 11u64);
        let dense: Vec<Vec<f64>> = (0..n_rows)
            .map(|r| {
                (0..n_cols)
                    .map(|c| {
                        if (r * 7 + c * 3) % 4 == 0 {
                            (r * 100 + c) as f64 + 0.5
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let mut csc = Mem {
            n_rows,
            col_ptr: vec![0],
            rows: Vec::new(),
            values: Vec::new(),
        };
        #[allow(clippy::needless_range_loop)]
        for c in 0..n_cols as usize {
            let mut rows: Vec<usize> = (0..n_rows as usize)
                .filter(|&r| dense[r][c] != 0.0)
                .collect();
            rows.reverse();
            for r in rows {
                csc.rows.push(r as i32);
                csc.values.push(dense[r][c]);
            }
            csc.col_ptr.push(csc.rows.len() as u64);
        }
        for band in [1, 2, 5, 13, 1000] {
            let t = Transposed::build(&csc, Path::new("mem"), Some(band)).expect("transpose");
            assert!(band < 1000 || t.bands == 1);
            let mut batch = XBatch::Csr(CsrBatch::<f64>::new(0));
            t.read_rows_wide(&[3..9, 0..2, 20..23], &mut batch)
                .expect("read");
            let XBatch::Csr(b) = &batch else {
                unreachable!("CSR")
            };
            let want_rows: Vec<u64> = (3..9).chain(0..2).chain(20..23).collect();
            for (i, &r) in want_rows.iter().enumerate() {
                let (cols, vals) = b.row(i).expect("row");
                let want: Vec<(i32, f64)> = (0..n_cols as usize)
                    .filter(|&c| dense[r as usize][c] != 0.0)
                    .map(|c| (c as i32, dense[r as usize][c]))
                    .collect();
                let got: Vec<(i32, f64)> = cols.iter().copied().zip(vals.iter().copied()).collect();
                assert_eq!(got, want, "row {r}, band {band}");
            }
            assert!(t.read_rows_wide(&[20..24], &mut batch).is_err());
        }
    }
}
