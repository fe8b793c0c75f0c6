//! `X` held in memory (a scipy CSR matrix or a numpy array handed over from Python, or built in
//! Rust), read by rows like the on-disk elements.

use std::ops::Range;

use super::csr::check_indptr;
use super::places::RowPlaces;
use crate::batch::{CsrBatch, DenseBatch, RowValue, XBatch};
use crate::error::{Error, Result};

/// The label in-memory elements give in errors.
const LABEL: &str = "<in-memory X>";

/// A matrix in memory: float32 values, CSR with validated row pointers or dense row-major.
///
/// ```
/// # fn main() -> annbatch::Result<()> {
/// use annbatch::InMemoryX;
/// // [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
/// let x = InMemoryX::csr(3, vec![0, 2, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0])?;
/// assert_eq!(x.n_obs(), 3);
/// let mut batch = annbatch::XBatch::Csr(annbatch::CsrBatch::new(3));
/// x.append_rows(&[2..3, 0..1], &mut batch)?;
/// assert_eq!(batch.n_rows(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum InMemoryX {
    /// Compressed sparse rows.
    Csr {
        /// Row pointers (`n_obs + 1`, from 0, non-decreasing, ending at `data.len()`).
        indptr: Vec<u64>,
        /// Column of each value, below `n_var`.
        indices: Vec<i32>,
        /// Values.
        data: Vec<f32>,
        /// Number of columns.
        n_var: u64,
    },
    /// Row-major values, `n_var` per row.
    Dense {
        /// Values.
        data: Vec<f32>,
        /// Number of columns.
        n_var: u64,
    },
}

impl InMemoryX {
    /// A CSR matrix of `n_var` columns; checks the row pointers and the column indices.
    ///
    /// # Errors
    /// [`Error::InvalidIndptr`] for row pointers that are not `n_obs + 1` non-decreasing offsets
    /// from 0 to `data.len()`, [`Error::ShapeMismatch`] for indices outside `0..n_var` or lengths
    /// that differ.
    pub fn csr(n_var: u64, indptr: Vec<u64>, indices: Vec<i32>, data: Vec<f32>) -> Result<Self> {
        if indices.len() != data.len() {
            return Err(Error::ShapeMismatch {
                path: format!("{LABEL}/indices"),
                found: format!("{} indices", indices.len()),
                expected: format!("{} (the length of data)", data.len()),
            });
        }
        if i32::try_from(n_var).is_err() {
            return Err(Error::ShapeMismatch {
                path: LABEL.into(),
                found: format!("n_var {n_var}"),
                expected: format!("at most {} columns (int32 column indices)", i32::MAX),
            });
        }
        check_indptr(
            LABEL,
            &indptr,
            indptr.len().saturating_sub(1) as u64,
            data.len() as u64,
        )?;
        // scipy's nnz is indptr[-1]: values past it mean a broken matrix.
        if indptr.last() != Some(&(data.len() as u64)) {
            return Err(Error::InvalidIndptr {
                path: LABEL.into(),
                reason: format!("ends before the {} stored values", data.len()),
            });
        }
        if let Some(i) = indices.iter().position(|&c| c < 0 || c as u64 >= n_var) {
            return Err(Error::ShapeMismatch {
                path: format!("{LABEL}/indices"),
                found: format!("column index {} at position {i}", indices[i]),
                expected: format!("column indices in 0..{n_var}"),
            });
        }
        Ok(Self::Csr {
            indptr,
            indices,
            data,
            n_var,
        })
    }

    /// A dense matrix of `n_var` columns, row-major.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `data` is not whole rows of `n_var` values.
    pub fn dense(n_var: u64, data: Vec<f32>) -> Result<Self> {
        let whole = match n_var {
            0 => data.is_empty(),
            n => (data.len() as u64).is_multiple_of(n),
        };
        if !whole {
            return Err(Error::ShapeMismatch {
                path: LABEL.into(),
                found: format!("{} values", data.len()),
                expected: format!("a multiple of n_var = {n_var}"),
            });
        }
        Ok(Self::Dense { data, n_var })
    }

    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        match self {
            Self::Csr { indptr, .. } => indptr.len() as u64 - 1,
            Self::Dense { data, n_var } => (data.len() as u64).checked_div(*n_var).unwrap_or(0),
        }
    }

    /// Number of columns.
    pub fn n_var(&self) -> u64 {
        match self {
            Self::Csr { n_var, .. } | Self::Dense { n_var, .. } => *n_var,
        }
    }

    /// An empty batch of the right kind.
    pub fn new_batch(&self) -> XBatch {
        match self {
            Self::Csr { n_var, .. } => XBatch::Csr(CsrBatch::new(*n_var)),
            Self::Dense { n_var, .. } => XBatch::Dense(DenseBatch::new(*n_var as usize)),
        }
    }

    /// Appends the rows of `ranges`, in order, to `out` (of the same kind).
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::BatchTooLarge`] past int32 CSR
    /// indices, [`Error::ShapeMismatch`] for an `out` of the other kind.
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        self.append_rows_as(ranges, out)
    }

    /// [`Self::append_rows`] into values of any [`RowValue`] type.
    pub(crate) fn append_rows_as<V: RowValue>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        Error::check_row_ranges(|| LABEL.into(), ranges, self.n_obs())?;
        match (self, out) {
            (
                Self::Csr {
                    indptr,
                    indices,
                    data,
                    ..
                },
                XBatch::Csr(b),
            ) => {
                let added: u64 = ranges
                    .iter()
                    .map(|r| indptr[r.end as usize] - indptr[r.start as usize])
                    .sum();
                let total = b.data.len() as u64 + added;
                let max = i32::MAX as u64;
                if total > max {
                    return Err(Error::BatchTooLarge { nnz: total, max });
                }
                for r in ranges {
                    let (a, z) = (indptr[r.start as usize], indptr[r.end as usize]);
                    let base = b.data.len() as u64;
                    b.indices
                        .extend_from_slice(&indices[a as usize..z as usize]);
                    b.data
                        .extend(data[a as usize..z as usize].iter().map(|&v| V::from_f32(v)));
                    // Fits: every pointer is at most `total` <= i32::MAX.
                    b.indptr.extend(
                        indptr[r.start as usize + 1..=r.end as usize]
                            .iter()
                            .map(|&p| (p - a + base) as i32),
                    );
                }
                Ok(())
            }
            (Self::Dense { data, n_var }, XBatch::Dense(b)) => {
                let w = *n_var as usize;
                for r in ranges {
                    b.data.extend(
                        data[r.start as usize * w..r.end as usize * w]
                            .iter()
                            .map(|&v| V::from_f32(v)),
                    );
                }
                Ok(())
            }
            (x, out) => Err(Error::ShapeMismatch {
                path: LABEL.into(),
                found: format!(
                    "an output batch of the other kind (sparse: {})",
                    out.is_sparse()
                ),
                expected: format!("a batch like X (sparse: {})", matches!(x, Self::Csr { .. })),
            }),
        }
    }
}

impl InMemoryX {
    /// Copies row `rows[i]` into `places` entry `i` (each exactly as long as the row).
    pub(crate) fn scatter_rows(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        let n_obs = self.n_obs();
        if let Some(&row) = rows.iter().find(|&&r| r >= n_obs) {
            return Err(Error::row_out_of_range(LABEL, row, n_obs));
        }
        let short = |row: u64, have: usize, want: u64| Error::ShapeMismatch {
            path: LABEL.into(),
            found: format!("an output run of {have} values for row {row}"),
            expected: format!("{want} (the row's stored values)"),
        };
        match (self, places) {
            (
                Self::Csr {
                    indptr,
                    indices,
                    data,
                    ..
                },
                RowPlaces::Csr(places),
            ) => {
                for (&row, (cols, values)) in rows.iter().zip(places) {
                    let (a, z) = (indptr[row as usize], indptr[row as usize + 1]);
                    if cols.len() as u64 != z - a || values.len() as u64 != z - a {
                        return Err(short(row, values.len(), z - a));
                    }
                    cols.copy_from_slice(&indices[a as usize..z as usize]);
                    values.copy_from_slice(&data[a as usize..z as usize]);
                }
                Ok(())
            }
            (Self::Dense { data, n_var }, RowPlaces::Dense(places)) => {
                let w = *n_var as usize;
                for (&row, out) in rows.iter().zip(places) {
                    if out.len() != w {
                        return Err(short(row, out.len(), *n_var));
                    }
                    let at = row as usize * w;
                    out.copy_from_slice(&data[at..at + w]);
                }
                Ok(())
            }
            _ => Err(Error::Internal(format!(
                "row places of another kind than {LABEL}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_rows_in_request_order() {
        let x =
            InMemoryX::csr(3, vec![0, 2, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0]).expect("valid");
        let mut out = x.new_batch();
        x.append_rows(&[2..3, 0..2], &mut out).expect("rows");
        let XBatch::Csr(b) = out else { panic!("csr") };
        assert_eq!(b.indptr, vec![0, 1, 3, 3]);
        assert_eq!(b.indices, vec![1, 0, 2]);
        assert_eq!(b.data, vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn dense_rows_in_request_order() {
        let x = InMemoryX::dense(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("valid");
        assert_eq!(x.n_obs(), 3);
        let mut out = x.new_batch();
        x.append_rows(&[2..3, 0..1], &mut out).expect("rows");
        let XBatch::Dense(b) = out else {
            panic!("dense")
        };
        assert_eq!(b.data, vec![5.0, 6.0, 1.0, 2.0]);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let csr = |indptr: Vec<u64>, indices: Vec<i32>| {
            let n = indices.len();
            InMemoryX::csr(3, indptr, indices, vec![1.0; n])
        };
        assert!(matches!(
            csr(vec![1, 2], vec![0]),
            Err(Error::InvalidIndptr { .. })
        ));
        assert!(matches!(
            csr(vec![0, 2, 1], vec![0, 1]),
            Err(Error::InvalidIndptr { .. })
        ));
        assert!(matches!(
            csr(vec![0, 1], vec![0, 1]),
            Err(Error::InvalidIndptr { .. })
        ));
        assert!(matches!(
            csr(vec![0, 1], vec![3]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            csr(vec![], vec![]),
            Err(Error::InvalidIndptr { .. })
        ));
        assert!(matches!(
            InMemoryX::dense(4, vec![0.0; 6]),
            Err(Error::ShapeMismatch { .. })
        ));
        let x = InMemoryX::dense(2, vec![0.0; 4]).expect("valid");
        assert!(matches!(
            x.append_rows(&[1..3], &mut x.new_batch()),
            Err(Error::RowsOutOfRange { .. })
        ));
    }
}
