//! Caller-owned destinations for rows: what `XElement::scatter_rows` writes into.
//!
//! The loader sizes a fetch's batches up front (from `indptr`, or the row width), cuts their
//! arrays into one run per row, and hands the runs here: each decoded chunk is copied straight
//! to its rows' final places, with no buffer in between.

/// Where each requested row goes, one run per row, exactly as long as the row.
#[derive(Debug)]
pub enum RowPlaces<'a> {
    /// Sparse rows: column indices and values, `nnz(row)` each.
    Csr(Vec<CsrPlace<'a>>),
    /// Dense rows: `row_width` values each.
    Dense(Vec<&'a mut [f32]>),
}

/// One sparse row's place: its column indices and its values.
pub type CsrPlace<'a> = (&'a mut [i32], &'a mut [f32]);

impl RowPlaces<'_> {
    /// Number of rows placed.
    pub fn len(&self) -> usize {
        match self {
            Self::Csr(p) => p.len(),
            Self::Dense(p) => p.len(),
        }
    }

    /// Whether no row is placed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
