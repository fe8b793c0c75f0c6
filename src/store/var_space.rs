//! The output `var` space and, per input, where each input column goes in it.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};

/// Marks an input column that is not in the output.
pub(crate) const DROPPED: u32 = u32::MAX;

/// Where one input's columns go: `to[i]` is the output column of input column `i`, or
/// [`DROPPED`].
#[derive(Debug, Clone)]
pub(crate) struct ColumnMap {
    pub to: Vec<u32>,
    /// Whether the kept columns stay in increasing order (no re-sort of a row's entries).
    pub monotone: bool,
}

/// The output variables, and one map per input (`None`: the input's columns are the output's).
#[derive(Debug)]
pub(crate) struct VarSpace {
    pub names: Vec<String>,
    pub maps: Vec<Option<ColumnMap>>,
}

/// Builds the var space of `inputs` (each input's var names, labelled for errors).
///
/// - `fixed`: the output var names are given (appending to a collection); input columns not in
///   it are dropped, output columns not in an input are structural zeros.
/// - otherwise the outer join: every input's names if all agree, else their sorted union, as
///   `anndata.concat(join="outer")` (pandas `Index.union`) orders it; then `var_subset` keeps
///   only the names it lists.
pub(crate) fn build(
    inputs: &[(&str, &[String])],
    fixed: Option<&[String]>,
    var_subset: Option<&[String]>,
) -> Result<VarSpace> {
    let names: Vec<String> = match fixed {
        Some(names) => names.to_vec(),
        None => {
            let first = inputs.first().map(|(_, n)| n.to_vec()).unwrap_or_default();
            let mut names = if inputs.iter().all(|(_, n)| *n == first.as_slice()) {
                first
            } else {
                for (label, n) in inputs {
                    unique(label, n)?;
                }
                let mut union: Vec<String> = inputs
                    .iter()
                    .flat_map(|(_, n)| n.iter().cloned())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                union.sort_unstable();
                union
            };
            if let Some(subset) = var_subset {
                let keep: HashSet<&str> = subset.iter().map(String::as_str).collect();
                names.retain(|n| keep.contains(n.as_str()));
                if names.is_empty() {
                    return Err(Error::parameter(
                        "var_subset",
                        format!("{} names", subset.len()),
                        "none of them is a var name of the inputs",
                    ));
                }
            }
            names
        }
    };
    if names.is_empty() {
        return Err(Error::parameter(
            "var",
            "[]",
            "the inputs have no variables",
        ));
    }
    if u32::try_from(names.len()).is_err() {
        return Err(Error::parameter(
            "var",
            names.len(),
            "more than 2^32 - 1 variables",
        ));
    }
    let position: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let maps = inputs
        .iter()
        .map(|(label, input)| {
            if *input == names.as_slice() {
                return Ok(None);
            }
            if fixed.is_some() || var_subset.is_some() {
                unique(label, input)?;
            }
            let to: Vec<u32> = input
                .iter()
                .map(|n| position.get(n.as_str()).copied().unwrap_or(DROPPED))
                .collect();
            let kept = to.iter().filter(|&&t| t != DROPPED);
            let monotone = kept.clone().zip(kept.skip(1)).all(|(a, b)| a < b);
            Ok(Some(ColumnMap { to, monotone }))
        })
        .collect::<Result<_>>()?;
    Ok(VarSpace { names, maps })
}

/// Joining on names needs each name once.
fn unique(label: &str, names: &[String]) -> Result<()> {
    let mut seen = HashSet::with_capacity(names.len());
    match names.iter().find(|n| !seen.insert(n.as_str())) {
        None => Ok(()),
        Some(dup) => Err(Error::VarMismatch {
            path: label.to_string(),
            dataset: "the input".into(),
            detail: format!(
                "var name {dup:?} appears more than once, so the var spaces cannot be joined by name"
            ),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn identical_inputs_keep_their_order() {
        let a = s(&["z", "a", "m"]);
        let space = build(&[("a", &a), ("b", &a)], None, None).unwrap();
        assert_eq!(space.names, a);
        assert!(space.maps.iter().all(Option::is_none));
    }

    #[test]
    fn outer_join_is_the_sorted_union() {
        let (a, b) = (s(&["g2", "g1"]), s(&["g3", "g1"]));
        let space = build(&[("a", &a), ("b", &b)], None, None).unwrap();
        assert_eq!(space.names, s(&["g1", "g2", "g3"]));
        let ma = space.maps[0].as_ref().unwrap();
        assert_eq!(ma.to, [1, 0]);
        assert!(!ma.monotone);
        let sub = build(&[("a", &a), ("b", &b)], None, Some(&s(&["g3", "g2"]))).unwrap();
        assert_eq!(sub.names, s(&["g2", "g3"]));
        assert_eq!(sub.maps[0].as_ref().unwrap().to, [0, DROPPED]);
        assert!(build(&[("a", &a)], None, Some(&s(&["nope"]))).is_err());
        let dup = s(&["g1", "g1"]);
        assert!(matches!(
            build(&[("a", &a), ("d", &dup)], None, None),
            Err(Error::VarMismatch { .. })
        ));
    }

    #[test]
    fn fixed_space_drops_and_zero_fills() {
        let fixed = s(&["a", "b", "c"]);
        let input = s(&["c", "x", "a"]);
        let space = build(&[("i", &input)], Some(&fixed), None).unwrap();
        assert_eq!(space.maps[0].as_ref().unwrap().to, [2, DROPPED, 0]);
    }
}
