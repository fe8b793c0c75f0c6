//! A matrix read in another `var` space: each stored column moved to its place in the joined
//! space (the outer join or a `var_subset` of several inputs' genes, as the converter joins
//! them), columns outside it dropped, columns the input lacks zeros.
//!
//! A sparse row keeps its stored length while it is read (its run is sized from `indptr`):
//! kept entries come first, sorted by their new column, and dropped ones are left at the end
//! marked with column `-1`, for the assembly to cut out ([`JoinedX::drops_columns`]).

use std::ops::Range;
use std::sync::Arc;

use super::anndata::XElement;
use super::places::RowPlaces;
use super::var_space::{ColumnMap, DROPPED};
use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::error::{Error, Result};
use crate::zarr::chunked::FromDecoded;

/// A column index marking an entry of a dropped column (see the module docs).
pub(crate) const DROPPED_COLUMN: i32 = -1;

/// `inner` read with its columns moved by `map` into a space of `n_var` columns.
#[derive(Debug)]
pub struct JoinedX {
    inner: XElement,
    map: Arc<ColumnMap>,
    n_var: u64,
    drops: bool,
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
        let drops = map.to.contains(&DROPPED);
        Ok(Self {
            inner,
            map,
            n_var,
            drops,
        })
    }

    /// The matrix as stored.
    pub fn inner(&self) -> &XElement {
        &self.inner
    }
    /// Columns of the joined space.
    pub fn n_var(&self) -> u64 {
        self.n_var
    }
    /// Whether sparse rows lose entries (columns outside the joined space): their runs end
    /// in entries of column [`DROPPED_COLUMN`] that the assembly cuts out.
    pub(crate) fn drops_columns(&self) -> bool {
        self.drops && self.inner.is_sparse()
    }
    /// Elements per dense row in the joined space (`None` for sparse).
    pub fn row_width(&self) -> Option<u64> {
        self.inner.row_width().map(|_| self.n_var)
    }

    /// An empty batch of this matrix's kind, in the joined space.
    pub fn new_batch(&self) -> XBatch {
        if self.inner.is_sparse() {
            XBatch::Csr(CsrBatch::new(self.n_var))
        } else {
            XBatch::Dense(DenseBatch::new(self.n_var as usize))
        }
    }

    /// Writes local rows `rows` into `places`, in the joined space.
    pub(crate) fn scatter_rows_within(&self, rows: &[u64], places: RowPlaces<'_>) -> Result<()> {
        match places {
            RowPlaces::Csr(mut places) => {
                let inner = places
                    .iter_mut()
                    .map(|(c, v)| (&mut **c, &mut **v))
                    .collect();
                self.inner
                    .scatter_rows_within(rows, RowPlaces::Csr(inner))?;
                let mut row: Vec<(i32, f32)> = Vec::new();
                for (cols, values) in places {
                    self.remap_row(cols, values, &mut row);
                }
                Ok(())
            }
            RowPlaces::Dense(places) => {
                let w = self.inner.n_var() as usize;
                let mut stored = vec![0f32; w * rows.len()];
                self.inner.scatter_rows_within(
                    rows,
                    RowPlaces::Dense(stored.chunks_mut(w.max(1)).take(rows.len()).collect()),
                )?;
                for (place, row) in places.into_iter().zip(stored.chunks(w.max(1))) {
                    self.spread(row, place);
                }
                Ok(())
            }
        }
    }

    /// One sparse row's columns moved; kept entries first, sorted, dropped ones after.
    fn remap_row(&self, cols: &mut [i32], values: &mut [f32], row: &mut Vec<(i32, f32)>) {
        let moved = |c: i32| match self.map.to.get(c as usize) {
            Some(&to) if to != DROPPED => to as i32,
            _ => DROPPED_COLUMN,
        };
        if self.map.monotone && !self.drops {
            for c in cols.iter_mut() {
                *c = moved(*c);
            }
            return;
        }
        row.clear();
        row.extend(cols.iter().zip(values.iter()).map(|(&c, &v)| (moved(c), v)));
        // Dropped entries (-1) sort last as u32::MAX.
        row.sort_unstable_by_key(|&(c, _)| c as u32);
        for ((c, v), (nc, nv)) in cols.iter_mut().zip(values.iter_mut()).zip(row.iter()) {
            *c = *nc;
            *v = *nv;
        }
    }

    /// A stored dense row written into its joined place (zeros where the input has no column).
    fn spread<V: Copy + Default>(&self, row: &[V], place: &mut [V]) {
        place.fill(V::default());
        for (&to, &v) in self.map.to.iter().zip(row) {
            if to != DROPPED {
                if let Some(p) = place.get_mut(to as usize) {
                    *p = v;
                }
            }
        }
    }

    /// Appends the rows of `ranges` to `out`, in the joined space.
    pub(crate) fn append_rows_as<V: FromDecoded>(
        &self,
        ranges: &[Range<u64>],
        out: &mut XBatch<V>,
    ) -> Result<()> {
        match out {
            XBatch::Csr(b) => {
                let mut stored = XBatch::Csr(CsrBatch::<V>::new(self.inner.n_var()));
                self.inner.append_rows_as(ranges, &mut stored)?;
                let XBatch::Csr(stored) = stored else {
                    return Err(Error::Internal("a sparse read made a dense batch".into()));
                };
                b.n_var = self.n_var;
                let mut row: Vec<(u32, V)> = Vec::new();
                for r in 0..stored.n_rows() {
                    let (a, e) = (stored.indptr[r] as usize, stored.indptr[r + 1] as usize);
                    row.clear();
                    for (&c, &v) in stored.indices[a..e].iter().zip(&stored.data[a..e]) {
                        match self.map.to.get(c as usize) {
                            Some(&to) if to != DROPPED => row.push((to, v)),
                            _ => {}
                        }
                    }
                    row.sort_unstable_by_key(|&(c, _)| c);
                    b.indices.extend(row.iter().map(|&(c, _)| c as i32));
                    b.data.extend(row.iter().map(|&(_, v)| v));
                    let end = b.data.len() as u64;
                    if end > i32::MAX as u64 {
                        return Err(Error::BatchTooLarge {
                            nnz: end,
                            max: i32::MAX as u64,
                        });
                    }
                    b.indptr.push(end as i32);
                }
                Ok(())
            }
            XBatch::Dense(b) => {
                let w = self.inner.n_var() as usize;
                let mut stored = XBatch::Dense(DenseBatch::<V>::new(w));
                self.inner.append_rows_as(ranges, &mut stored)?;
                let XBatch::Dense(stored) = stored else {
                    return Err(Error::Internal("a dense read made a sparse batch".into()));
                };
                let n = self.n_var as usize;
                for row in stored.data.chunks(w.max(1)).take(stored.n_rows()) {
                    let start = b.data.len();
                    b.data.resize(start + n, V::default());
                    self.spread(row, &mut b.data[start..]);
                }
                Ok(())
            }
        }
    }
}

/// Cuts the entries of dropped columns ([`DROPPED_COLUMN`], at the end of each run) out of a
/// sparse batch's arrays in place: `lens` are the runs' stored lengths, in order, and become
/// the kept lengths. Returns the kept total.
pub(crate) fn compact_runs(indices: &mut [i32], values: &mut [f32], lens: &mut [usize]) -> usize {
    let (mut read, mut write) = (0usize, 0usize);
    for len in lens.iter_mut() {
        let run = &indices[read..read + *len];
        let kept = run
            .iter()
            .position(|&c| c == DROPPED_COLUMN)
            .unwrap_or(*len);
        if read != write {
            indices.copy_within(read..read + kept, write);
            values.copy_within(read..read + kept, write);
        }
        read += *len;
        write += kept;
        *len = kept;
    }
    write
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dropped_entries_are_cut_from_each_run() {
        let mut indices = [3, 1, -1, 0, -1, -1, 2];
        let mut values = [1.0, 2.0, 9.0, 3.0, 9.0, 9.0, 4.0];
        let mut lens = [3, 3, 1];
        let kept = compact_runs(&mut indices, &mut values, &mut lens);
        assert_eq!(kept, 4);
        assert_eq!(lens, [2, 1, 1]);
        assert_eq!(&indices[..4], [3, 1, 0, 2]);
        assert_eq!(&values[..4], [1.0, 2.0, 3.0, 4.0]);
    }
}
