//! `var` columns of the output: the inputs' columns aligned to the output var space and merged
//! as `anndata.concat(join="outer", merge=...)` merges them (annbatch's `merge`).

use std::str::FromStr;

use super::obs_table::{first_appearance, take};
use crate::error::{Error, Result};
use crate::store::dataframe::concat_outer;
use crate::store::var_space::{ColumnMap, DROPPED};
use crate::store::Column;

/// How var columns of several inputs are merged (anndata's `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarMerge {
    /// A column is kept when every input has it with equal values for every variable.
    Same,
    /// A column is kept when the inputs that have it agree on every variable (a variable an
    /// input lacks counts as missing there, as anndata reindexes).
    Unique,
    /// A column comes whole from the first input that has it (missing for the variables that
    /// input lacks).
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
        // anndata reindexes each input's column to the output variables (missing where an
        // input lacks a variable), then `first` / `only` take the first input's column whole
        // and `unique` / `same` keep a column only when those reindexed columns are equal.
        let used: Vec<usize> = match merge {
            VarMerge::First | VarMerge::Only => vec![having[0]],
            VarMerge::Same | VarMerge::Unique => having.clone(),
        };
        // The used inputs' columns end to end (types unified as in an obs join).
        let mut pieces = Vec::with_capacity(used.len() + 1);
        let mut offsets = vec![0; parts.len()];
        let mut total = 0;
        for &k in &used {
            let column = parts[k]
                .columns
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c);
            let len = column.map_or(0, Column::len);
            offsets[k] = total;
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
            // Each used input's row of variable j, and whether it holds a value there.
            let rows: Vec<Option<usize>> = used
                .iter()
                .map(|&k| sources[k][j].map(|i| offsets[k] + i))
                .collect();
            let values: Vec<Option<&String>> = rows
                .iter()
                .map(|r| r.and_then(|r| text[r].as_ref()))
                .collect();
            keep &= values.windows(2).all(|w| w[0] == w[1]);
            // A row that holds the value (all agree under same / unique), else missing.
            picks.push(
                rows.iter()
                    .zip(&values)
                    .find(|(_, v)| v.is_some())
                    .and_then(|(r, _)| *r),
            );
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
        // What anndata.concat(join="outer", merge=...) gives for these inputs.
        let maps = maps();
        assert!(join(parts(&maps), 4, None).is_empty());
        let first = join(parts(&maps), 4, Some(VarMerge::First));
        assert_eq!(first[0].0, "gene_symbol");
        let want = |v: &[Option<&str>]| v.iter().map(|s| s.map(String::from)).collect::<Vec<_>>();
        // The first input's column, reindexed: g4 is missing, not taken from the second.
        assert_eq!(
            texts(&first[0].1),
            want(&[Some("A"), Some("B"), Some("C"), None])
        );
        // An int column with a missing value becomes float64 with NaN, as in pandas.
        assert_eq!(
            texts(&first[1].1),
            want(&[Some("NaN"), Some("1"), Some("2"), Some("3")])
        );
        // gene_symbol: g1 and g4 are missing in one input each, so not the same everywhere.
        assert!(join(parts(&maps), 4, Some(VarMerge::Same)).is_empty());
        // ... nor unique: the reindexed columns differ where one input lacks a variable.
        let unique = join(parts(&maps), 4, Some(VarMerge::Unique));
        assert_eq!(
            unique.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["only_here"]
        );
        let only = join(parts(&maps), 4, Some(VarMerge::Only));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].0, "only_here");
        // Inputs that agree on every variable they share and lack none: unique keeps it.
        let same_genes = [maps[0].clone(), maps[0].clone()];
        let agreeing = vec![
            VarPart {
                columns: vec![("s".into(), strings(&["A", "B", "C"]))],
                map: Some(&same_genes[0]),
            },
            VarPart {
                columns: vec![("s".into(), strings(&["A", "B", "C"]))],
                map: Some(&same_genes[1]),
            },
        ];
        assert_eq!(join(agreeing, 3, Some(VarMerge::Unique)).len(), 1);
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
