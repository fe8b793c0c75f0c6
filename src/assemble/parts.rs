//! One assembled batch, as arrays in some [`Memory`]: what [`super::fetch_batches`] returns and
//! the front ends turn into their batch types (host vectors, tensors).

use super::memory::Memory;

/// A batch's arrays: `X`, the requested layers / obsm (in the order of `Extras::aligned`), the
/// requested obs columns (in the loader's `obs_keys` order) and the global row ids (when asked
/// for).
pub struct BatchParts<M: Memory> {
    /// The rows of `X`.
    pub x: XParts<M>,
    /// The same rows of each requested layer / obsm matrix.
    pub aligned: Vec<XParts<M>>,
    /// One array per requested obs column.
    pub obs: Vec<ObsPart<M>>,
    /// Global row ids, when `return_index`.
    pub index: Option<M::Array<i64>>,
}

/// The rows of a matrix (`X`, a layer, an obsm entry) of a batch.
pub enum XParts<M: Memory> {
    /// Sparse CSR: `rows + 1` row pointers, then column indices and values.
    Csr {
        /// Row pointers, from 0.
        indptr: M::Array<i32>,
        /// Column index of each value.
        indices: M::Array<i32>,
        /// Stored values.
        data: M::Array<f32>,
        /// Rows in the batch.
        rows: usize,
        /// Columns.
        n_var: u64,
    },
    /// Dense, row-major.
    Dense {
        /// `rows * width` values.
        data: M::Array<f32>,
        /// Rows in the batch.
        rows: usize,
        /// Elements per row.
        width: usize,
    },
}

impl<M: Memory> XParts<M> {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        match self {
            Self::Csr { rows, .. } | Self::Dense { rows, .. } => *rows,
        }
    }
}

/// One obs column's values for a batch.
pub enum ObsPart<M: Memory> {
    /// Category codes (`-1` = missing).
    Codes(M::Array<i64>),
    /// float32 values (NaN = missing).
    Values(M::Array<f32>),
    /// float64 values (NaN = missing).
    Float64(M::Array<f64>),
    /// Integers.
    Int64(M::Array<i64>),
}
