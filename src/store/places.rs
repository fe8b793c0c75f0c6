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

/// Cuts the elements `range` of a 1-D run chunked every `chunk_len` elements into per-chunk
/// `(chunk, first element in the chunk, output run)` parts, consuming `out` front to back.
pub(crate) fn chunk_runs<'a, T>(
    range: std::ops::Range<u64>,
    chunk_len: u64,
    mut out: &'a mut [T],
    parts: &mut Vec<(u64, u64, &'a mut [T])>,
) {
    let mut at = range.start;
    while at < range.end {
        let chunk = at / chunk_len;
        let end = ((chunk + 1) * chunk_len).min(range.end);
        let (head, tail) = std::mem::take(&mut out).split_at_mut((end - at) as usize);
        parts.push((chunk, at - chunk * chunk_len, head));
        out = tail;
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_chunk_edges() {
        let mut out = [0u8; 7];
        let mut parts = Vec::new();
        chunk_runs(5..12, 4, &mut out, &mut parts);
        let shape: Vec<(u64, u64, usize)> = parts.iter().map(|p| (p.0, p.1, p.2.len())).collect();
        assert_eq!(shape, [(1, 1, 3), (2, 0, 4)]);
    }
}
