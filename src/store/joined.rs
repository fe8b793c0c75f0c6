//! Reading in a joined `var` space: each stored column moved to its place in the space (the
//! outer join or a `var_subset` of several inputs' genes, as the converter joins them), columns
//! outside it dropped, columns the input lacks zeros. [`ColumnJoin`] does it to rows already
//! read; `anndata::JoinedX` reads a matrix through it.
//!
//! A sparse row keeps its stored length while it is read (its run is sized from `indptr`):
//! kept entries come first, sorted by their new column, and dropped ones are left at the end
//! marked with column [`DROPPED_COLUMN`], for the assembly to cut out ([`compact_runs`]).

use std::sync::Arc;

use super::var_space::{ColumnMap, DROPPED};
use crate::batch::{CsrBatch, RowValue};
use crate::error::{Error, Result};

/// A column index marking an entry of a dropped column (see the module docs).
pub(crate) const DROPPED_COLUMN: i32 = -1;

/// Where one input's columns go in a joined space of `n_var` columns.
#[derive(Debug, Clone)]
pub(crate) struct ColumnJoin {
    map: Arc<ColumnMap>,
    n_var: u64,
    drops: bool,
}

impl ColumnJoin {
    /// The join that sends the input's columns where `map` says, in a space of `n_var`.
    pub(crate) fn new(map: Arc<ColumnMap>, n_var: u64) -> Self {
        let drops = map.to.contains(&DROPPED);
        Self { map, n_var, drops }
    }
    /// Columns of the joined space.
    pub(crate) fn n_var(&self) -> u64 {
        self.n_var
    }
    /// Columns of the input.
    pub(crate) fn stored_columns(&self) -> usize {
        self.map.to.len()
    }
    /// Whether some input columns are not in the joined space.
    pub(crate) fn drops(&self) -> bool {
        self.drops
    }

    fn moved(&self, c: i32) -> i32 {
        match self.map.to.get(c as usize) {
            Some(&to) if to != DROPPED => to as i32,
            _ => DROPPED_COLUMN,
        }
    }

    /// One sparse row's columns moved in place; kept entries first, sorted, dropped ones after
    /// (column [`DROPPED_COLUMN`]). `scratch` is reused between rows.
    pub(crate) fn remap_row(
        &self,
        cols: &mut [i32],
        values: &mut [f32],
        scratch: &mut Vec<(i32, f32)>,
    ) {
        if self.map.monotone && !self.drops {
            for c in cols.iter_mut() {
                *c = self.moved(*c);
            }
            return;
        }
        scratch.clear();
        scratch.extend(
            cols.iter()
                .zip(values.iter())
                .map(|(&c, &v)| (self.moved(c), v)),
        );
        // Dropped entries (-1) sort last as u32::MAX.
        scratch.sort_unstable_by_key(|&(c, _)| c as u32);
        for ((c, v), (nc, nv)) in cols.iter_mut().zip(values.iter_mut()).zip(scratch.iter()) {
            *c = *nc;
            *v = *nv;
        }
    }

    /// A stored dense row written into its joined place (zeros where the input has no column).
    pub(crate) fn spread<V: Copy + Default>(&self, row: &[V], place: &mut [V]) {
        place.fill(V::default());
        for (&to, &v) in self.map.to.iter().zip(row) {
            if to != DROPPED {
                if let Some(p) = place.get_mut(to as usize) {
                    *p = v;
                }
            }
        }
    }

    /// Appends the rows of `stored` (the input's columns) to `out` (the joined space), each
    /// row's entries sorted by column, dropped ones left out.
    ///
    /// # Errors
    /// [`Error::BatchTooLarge`] past int32 CSR indices.
    pub(crate) fn append_csr<V: RowValue>(
        &self,
        stored: &CsrBatch<V>,
        out: &mut CsrBatch<V>,
    ) -> Result<()> {
        out.n_var = self.n_var;
        let mut row: Vec<(i32, V)> = Vec::new();
        for r in 0..stored.n_rows() {
            let (a, e) = (stored.indptr[r] as usize, stored.indptr[r + 1] as usize);
            row.clear();
            row.extend(
                stored.indices[a..e]
                    .iter()
                    .zip(&stored.data[a..e])
                    .map(|(&c, &v)| (self.moved(c), v))
                    .filter(|&(c, _)| c != DROPPED_COLUMN),
            );
            row.sort_unstable_by_key(|&(c, _)| c);
            out.indices.extend(row.iter().map(|&(c, _)| c));
            out.data.extend(row.iter().map(|&(_, v)| v));
            let end = out.data.len() as u64;
            if end > i32::MAX as u64 {
                return Err(Error::BatchTooLarge {
                    nnz: end,
                    max: i32::MAX as u64,
                });
            }
            out.indptr.push(end as i32);
        }
        Ok(())
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

    #[test]
    fn rows_move_sorted_with_dropped_entries_last() {
        let map = ColumnMap {
            to: vec![2, DROPPED, 0],
            monotone: false,
        };
        let join = ColumnJoin::new(Arc::new(map), 3);
        let (mut cols, mut values) = ([0, 1, 2], [1.0, 2.0, 3.0]);
        join.remap_row(&mut cols, &mut values, &mut Vec::new());
        assert_eq!((cols, values), ([0, 2, -1], [3.0, 1.0, 2.0]));
        let mut place = [9.0; 3];
        join.spread(&[1.0, 2.0, 3.0], &mut place);
        assert_eq!(place, [3.0, 0.0, 1.0]);
    }
}
