//! `var` columns of the output: the inputs' columns aligned to the output var space and merged
//! as `anndata.concat(join="outer", merge=...)` merges them (annbatch's `merge`).

use std::str::FromStr;

use super::obs_table::{first_appearance, take};
use super::var_space::{ColumnMap, DROPPED};
use crate::error::{Error, Result};
use crate::store::dataframe::concat_outer;
use crate::store::Column;

/// How var columns of several inputs are merged (anndata's `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarMerge {
    /// A column is kept when every input has it with equal values for every variable.
    Same,
    /// A column is kept when the inputs that have a variable agree on its value.
    Unique,
    /// Each variable takes its value from the first input that has it.
    First,
    /// A column is kept when exactly one input has it.
    Only,
}

impl FromStr for VarMerge {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "same" => Ok(Self::Same),
            "unique" => Ok(Self::Unique),
            "first" => Ok(Self::First),
            "only" => Ok(Self::Only),
            other => Err(Error::parameter(
                "merge",
                other,
                "expected \"same\", \"unique\", \"first\" or \"only\"",
            )),
        }
    }
}

/// One input's var columns and where its variables go in the output.
pub(crate) struct VarPart<'a> {
    pub columns: Vec<(String, Column)>,
    /// `None`: the input's variables are the output's, in order.
    pub map: Option<&'a ColumnMap>,
}

/// The output var columns over `n_var` output variables. Without `merge`, one input keeps its
/// columns and several keep none (anndata's default); a column no input can give whole under
/// `merge` is left out.
pub(crate) fn join(
    parts: Vec<VarPart<'_>>,
    n_var: usize,
    merge: Option<VarMerge>,
) -> Vec<(String, Column)> {
    let merge = match (merge, parts.len()) {
        (_, 0) => return Vec::new(),
        (None, 1) => VarMerge::First,
        (None, _) => return Vec::new(),
        (Some(m), _) => m,
    };
    let order = first_appearance(parts.iter().map(|p| p.columns.as_slice()));
    // Per input: output variable -> input variable.
    let sources: Vec<Vec<Option<usize>>> = parts
        .iter()
        .map(|p| {
            let mut at = vec![None; n_var];
            match p.map {
                None => (0..n_var).for_each(|j| at[j] = Some(j)),
                Some(map) => {
                    for (i, &to) in map.to.iter().enumerate() {
                        if to != DROPPED && (to as usize) < n_var {
                            at[to as usize] = Some(i);
                        }
                    }
                }
            }
            at
        })
        .collect();
    let mut out = Vec::new();
    for name in order {
        let having: Vec<usize> = (0..parts.len())
            .filter(|&k| parts[k].columns.iter().any(|(n, _)| *n == name))
            .collect();
        if (merge == VarMerge::Same && having.len() != parts.len())
            || (merge == VarMerge::Only && having.len() != 1)
        {
            continue;
        }
        // The inputs' columns end to end (types unified as in an obs join), then a missing row.
        let mut pieces = Vec::with_capacity(parts.len() + 1);
        let mut offsets = Vec::with_capacity(parts.len());
        let mut total = 0;
        for part in &parts {
            // An input without the column is never picked from: it takes no rows.
            let column = part
                .columns
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c);
            let len = column.map_or(0, Column::len);
            offsets.push(total);
            total += len;
            pieces.push((len, column.cloned()));
        }
        let joined = concat_outer(pieces.clone());
        // Missing values, including a float column's NaN.
        let text: Vec<Option<String>> = joined
            .to_strings()
            .into_iter()
            .map(|t| t.filter(|v| v != "NaN"))
            .collect();
        let mut picks: Vec<Option<usize>> = Vec::with_capacity(n_var);
        let mut keep = true;
        // `j` indexes every input's row of `sources`, not one slice.
        #[allow(clippy::needless_range_loop)]
        for j in 0..n_var {
            let rows: Vec<usize> = having
                .iter()
                .filter_map(|&k| sources[k][j].map(|i| offsets[k] + i))
                .collect();
            let present: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&r| text[r].is_some())
                .collect();
            let agree = |rows: &[usize]| rows.windows(2).all(|w| text[w[0]] == text[w[1]]);
            keep &= match merge {
                VarMerge::Same => rows.len() == parts.len() && agree(&rows),
                VarMerge::Unique => agree(&present),
                VarMerge::First | VarMerge::Only => true,
            };
            picks.push(present.first().or(rows.first()).copied());
        }
        if !keep {
            continue;
        }
        let (joined, missing) = if picks.iter().any(Option::is_none) {
            pieces.push((1, None)); // a missing row for the variables no input gives
            (concat_outer(pieces), total)
        } else {
            (joined, 0)
        };
        let picks: Vec<usize> = picks.into_iter().map(|p| p.unwrap_or(missing)).collect();
        out.push((name, take(&joined, &picks)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Column {
        Column::String(v.iter().map(|s| s.to_string()).collect())
    }

    fn texts(c: &Column) -> Vec<Option<String>> {
        c.to_strings()
    }

    /// Inputs with var g1 g2 g3 and g2 g3 g4, output g1..g4 (the probe annbatch 0.3.1 ran).
    fn parts(maps: &[ColumnMap; 2]) -> Vec<VarPart<'_>> {
        vec![
            VarPart {
                columns: vec![("gene_symbol".into(), strings(&["A", "B", "C"]))],
                map: Some(&maps[0]),
            },
            VarPart {
                columns: vec![
                    ("gene_symbol".into(), strings(&["B", "C", "D"])),
                    ("only_here".into(), Column::int64(vec![1, 2, 3])),
                ],
                map: Some(&maps[1]),
            },
        ]
    }

    fn maps() -> [ColumnMap; 2] {
        [
            ColumnMap {
                to: vec![0, 1, 2],
                monotone: true,
            },
            ColumnMap {
                to: vec![1, 2, 3],
                monotone: true,
            },
        ]
    }

    #[test]
    fn merges_as_anndata_concat() {
        let maps = maps();
        assert!(join(parts(&maps), 4, None).is_empty());
        let first = join(parts(&maps), 4, Some(VarMerge::First));
        assert_eq!(first[0].0, "gene_symbol");
        let want = |v: &[Option<&str>]| v.iter().map(|s| s.map(String::from)).collect::<Vec<_>>();
        assert_eq!(
            texts(&first[0].1),
            want(&[Some("A"), Some("B"), Some("C"), Some("D")])
        );
        // An int column with a missing value becomes float64 with NaN, as in pandas.
        assert_eq!(
            texts(&first[1].1),
            want(&[Some("NaN"), Some("1"), Some("2"), Some("3")])
        );
        // gene_symbol: g1 and g4 are missing in one input each, so not the same everywhere.
        assert!(join(parts(&maps), 4, Some(VarMerge::Same)).is_empty());
        let unique = join(parts(&maps), 4, Some(VarMerge::Unique));
        assert_eq!(unique.len(), 2);
        let only = join(parts(&maps), 4, Some(VarMerge::Only));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].0, "only_here");
    }

    #[test]
    fn disagreeing_values_are_not_unique() {
        let maps = maps();
        let mut p = parts(&maps);
        p[1].columns[0].1 = strings(&["X", "C", "D"]);
        let unique = join(p, 4, Some(VarMerge::Unique));
        assert!(unique.iter().all(|(n, _)| n != "gene_symbol"));
    }

    #[test]
    fn one_input_keeps_its_columns() {
        let kept = join(
            vec![VarPart {
                columns: vec![("hv".into(), Column::Bool(vec![true, false]))],
                map: None,
            }],
            2,
            None,
        );
        assert_eq!(kept, vec![("hv".into(), Column::Bool(vec![true, false]))]);
    }
}
