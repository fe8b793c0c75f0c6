//! `obs` of the output: the inputs' columns joined (outer), categories unified, and the index
//! made unique, as `anndata.concat(join="outer")` and `obs_names_make_unique` do.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::store::dataframe::concat_outer;
use crate::store::Column;

/// The whole output `obs`, in input row order.
#[derive(Debug, Default)]
pub(crate) struct ObsTable {
    pub names: Vec<String>,
    pub columns: Vec<(String, Column)>,
    /// What the join changed that a user should know (columns that became strings).
    pub notes: Vec<String>,
}

/// One input's `obs`: its row count, index and columns.
pub(crate) struct ObsPart {
    pub n_obs: usize,
    pub names: Vec<String>,
    pub columns: Vec<(String, Column)>,
}

impl ObsTable {
    /// Joins `parts` (outer): a column absent from a part is missing there (`NaN`, a `-1`
    /// code, or masked); columns keep the order of their first appearance.
    pub(crate) fn join(parts: Vec<ObsPart>) -> Self {
        let order = first_appearance(parts.iter().map(|p| p.columns.as_slice()));
        let mut names = Vec::with_capacity(parts.iter().map(|p| p.n_obs).sum());
        let mut by_name: Vec<HashMap<String, Column>> = Vec::with_capacity(parts.len());
        let mut lens = Vec::with_capacity(parts.len());
        for part in parts {
            names.extend(part.names);
            lens.push(part.n_obs);
            by_name.push(part.columns.into_iter().collect());
        }
        let mut notes = Vec::new();
        let columns = order
            .into_iter()
            .map(|name| {
                let mut pieces: Vec<(usize, Option<Column>)> = lens
                    .iter()
                    .zip(by_name.iter_mut())
                    .map(|(&n, cols)| (n, cols.remove(&name)))
                    .collect();
                // A 0-row input holds no values: its column's type must not decide the joined
                // type (nor raise a note about mixed types).
                if pieces.iter().any(|(n, c)| *n > 0 && c.is_some()) {
                    for (_, column) in pieces.iter_mut().filter(|(n, _)| *n == 0) {
                        *column = None;
                    }
                }
                let was_text = |c: &Column| {
                    matches!(
                        c,
                        Column::Categorical { .. }
                            | Column::String(_)
                            | Column::NullableString { .. }
                    )
                };
                let mixed = pieces.iter().filter_map(|(_, c)| c.as_ref()).any(was_text)
                    && pieces
                        .iter()
                        .filter_map(|(_, c)| c.as_ref())
                        .any(|c| !matches!(c, Column::String(_)));
                let column = concat_outer(pieces);
                if mixed && matches!(column, Column::String(_) | Column::NullableString { .. }) {
                    notes.push(format!(
                        "obs column {name:?} has different types across inputs (text in some): it \
                         is written as strings; as a loader obs key its arrays are codes of \
                         its sorted distinct values"
                    ));
                }
                (name, column)
            })
            .collect();
        Self {
            names: make_unique(names),
            columns,
            notes,
        }
    }
}

/// The column names of `tables`, each once, in the order they first appear.
pub(crate) fn first_appearance<'a>(
    tables: impl Iterator<Item = &'a [(String, Column)]>,
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for table in tables {
        for (name, _) in table {
            if seen.insert(name.clone()) {
                order.push(name.clone());
            }
        }
    }
    order
}

/// The rows `rows` of `column`, in that order.
pub(crate) fn take(column: &Column, rows: &[usize]) -> Column {
    fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
        rows.iter().map(|&r| v[r].clone()).collect()
    }
    match column {
        Column::Categorical {
            codes,
            categories,
            ordered,
            categories_dtype,
        } => Column::Categorical {
            codes: pick(codes, rows),
            categories: categories.clone(),
            ordered: *ordered,
            categories_dtype: *categories_dtype,
        },
        Column::Float(v) => Column::Float(pick(v, rows)),
        Column::Float32(v) => Column::Float32(pick(v, rows)),
        Column::Int { values, dtype } => Column::Int {
            values: pick(values, rows),
            dtype: *dtype,
        },
        Column::Bool(v) => Column::Bool(pick(v, rows)),
        Column::String(v) => Column::String(pick(v, rows)),
        Column::NullableInt {
            values,
            mask,
            dtype,
        } => Column::NullableInt {
            values: pick(values, rows),
            mask: pick(mask, rows),
            dtype: *dtype,
        },
        Column::NullableBool { values, mask } => Column::NullableBool {
            values: pick(values, rows),
            mask: pick(mask, rows),
        },
        Column::NullableString { values, mask } => Column::NullableString {
            values: pick(values, rows),
            mask: pick(mask, rows),
        },
        #[allow(unreachable_patterns)]
        other => other.clone(),
    }
}

/// Orders rows `a` and `b` of `column` as pandas' `sort_values` does: categoricals by category
/// order, missing values last.
pub(crate) fn compare_rows(column: &Column, a: usize, b: usize) -> Ordering {
    fn missing_last(ma: bool, mb: bool, then: impl FnOnce() -> Ordering) -> Ordering {
        match (ma, mb) {
            (false, false) => then(),
            (ma, mb) => ma.cmp(&mb),
        }
    }
    match column {
        Column::Categorical { codes, .. } => {
            let (x, y) = (codes[a], codes[b]);
            missing_last(x < 0, y < 0, || x.cmp(&y))
        }
        Column::Float(v) => missing_last(v[a].is_nan(), v[b].is_nan(), || v[a].total_cmp(&v[b])),
        Column::Float32(v) => missing_last(v[a].is_nan(), v[b].is_nan(), || v[a].total_cmp(&v[b])),
        Column::Int { values, dtype } => {
            Column::int_value(values[a], *dtype).cmp(&Column::int_value(values[b], *dtype))
        }
        Column::Bool(v) => v[a].cmp(&v[b]),
        Column::String(v) => v[a].cmp(&v[b]),
        Column::NullableInt {
            values,
            mask,
            dtype,
        } => missing_last(mask[a], mask[b], || {
            Column::int_value(values[a], *dtype).cmp(&Column::int_value(values[b], *dtype))
        }),
        Column::NullableBool { values, mask } => {
            missing_last(mask[a], mask[b], || values[a].cmp(&values[b]))
        }
        Column::NullableString { values, mask } => {
            missing_last(mask[a], mask[b], || values[a].cmp(&values[b]))
        }
        #[allow(unreachable_patterns)]
        _ => Ordering::Equal,
    }
}

/// anndata's `make_index_unique(join="-")`: the first occurrence keeps its name, later ones
/// become `name-1`, `name-2`, ... skipping names already taken.
pub(crate) fn make_unique(mut names: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(names.len());
    let duplicates: Vec<usize> = (0..names.len())
        .filter(|&i| !seen.insert(names[i].clone()))
        .collect();
    if duplicates.is_empty() {
        return names;
    }
    let mut taken: HashSet<String> = seen;
    let mut counter: HashMap<String, u64> = HashMap::new();
    for i in duplicates {
        let base = names[i].clone();
        loop {
            let n = counter.entry(base.clone()).or_insert(0);
            *n += 1;
            let candidate = format!("{base}-{n}");
            if taken.insert(candidate.clone()) {
                names[i] = candidate;
                break;
            }
        }
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn outer_join_fills_missing_values() {
        let cat = |codes: Vec<i64>, cats: &[&str]| Column::categorical(codes, strings(cats), false);
        let a = ObsPart {
            n_obs: 2,
            names: strings(&["c1", "c2"]),
            columns: vec![
                ("t".into(), cat(vec![0, 1], &["B", "T"])),
                ("n".into(), Column::int64(vec![1, 2])),
            ],
        };
        let b = ObsPart {
            n_obs: 1,
            names: strings(&["c1"]),
            columns: vec![
                ("t".into(), cat(vec![0], &["NK"])),
                ("flag".into(), Column::Bool(vec![true])),
            ],
        };
        let table = ObsTable::join(vec![a, b]);
        assert_eq!(table.names, strings(&["c1", "c2", "c1-1"]));
        assert_eq!(table.columns[0].1, cat(vec![0, 1, 2], &["B", "T", "NK"]));
        let Column::Float(n) = &table.columns[1].1 else {
            panic!("int with missing values becomes float")
        };
        assert_eq!(&n[..2], &[1.0, 2.0]);
        assert!(n[2].is_nan());
        assert_eq!(
            table.columns[2].1,
            Column::NullableBool {
                values: vec![false, false, true],
                mask: vec![true, true, false]
            }
        );
    }

    #[test]
    fn an_empty_input_does_not_decide_a_columns_type() {
        let a = ObsPart {
            n_obs: 2,
            names: strings(&["c1", "c2"]),
            columns: vec![("t".into(), Column::int64(vec![1, 2]))],
        };
        // A 0-row input whose (empty) column was stored as text.
        let empty = ObsPart {
            n_obs: 0,
            names: Vec::new(),
            columns: vec![("t".into(), Column::String(Vec::new()))],
        };
        let table = ObsTable::join(vec![a, empty]);
        assert_eq!(table.columns[0].1, Column::int64(vec![1, 2]));
        assert!(table.notes.is_empty(), "{:?}", table.notes);
    }

    #[test]
    fn make_unique_skips_taken_names() {
        let names = strings(&["a", "a", "a-1", "b", "a"]);
        assert_eq!(
            make_unique(names),
            strings(&["a", "a-2", "a-1", "b", "a-3"])
        );
    }

    #[test]
    fn missing_sorts_last() {
        let c = Column::categorical(vec![-1, 1, 0], strings(&["x", "y"]), false);
        let mut rows = vec![0, 1, 2];
        rows.sort_by(|&a, &b| compare_rows(&c, a, b));
        assert_eq!(rows, [2, 1, 0]);
    }

    #[test]
    fn a_label_that_becomes_strings_is_noted() {
        let part = |column: Column| ObsPart {
            n_obs: 1,
            names: strings(&["c"]),
            columns: vec![("label".into(), column)],
        };
        let categorical = Column::categorical(vec![0], strings(&["T"]), false);
        let table = ObsTable::join(vec![
            part(categorical.clone()),
            part(Column::String(strings(&["B"]))),
        ]);
        assert_eq!(
            table.columns[0].1.to_strings(),
            [Some("T".into()), Some("B".into())]
        );
        assert!(table.notes[0].contains("\"label\"") && table.notes[0].contains("codes"));
        let same = ObsTable::join(vec![part(categorical.clone()), part(categorical)]);
        assert!(same.notes.is_empty());
    }
}
