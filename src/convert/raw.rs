//! `raw`: the inputs' `raw/X` carried over with `X`'s rows, in its own variable space (the
//! union of the inputs' `raw/var`, as `anndata.concat` joins raw), with `raw/var`'s columns
//! merged like `var`'s. Kept only when every input has one, as annbatch does.

use super::dataset::Element;
use super::row_reader::RowReader;
use super::source::{Matrix, Source};
use super::var_table::{self, VarMerge, VarPart};
use crate::error::Result;
use crate::store::var_space::{self, VarSpace};
use crate::store::{dataframe, Column};
use crate::zarr::{Dtype, NodeKind};

/// The carried-over `raw`.
pub(crate) struct Raw {
    matrices: Vec<Matrix>,
    /// The output's raw variables and each input's map onto them.
    pub space: VarSpace,
    /// The output's `raw/var` columns.
    pub var_columns: Vec<(String, Column)>,
    sparse: bool,
    dtype: Dtype,
}

impl Raw {
    /// What the dataset writer takes: `raw/X`, remapped to the raw variable space.
    pub(crate) fn element(&self) -> Element<'_> {
        Element {
            path: "raw/X".into(),
            matrices: self.matrices.iter().map(|m| m as &dyn RowReader).collect(),
            var_aligned: true,
            sparse: self.sparse,
            n_cols: self.space.names.len(),
            tail: Vec::new(),
            dtype: self.dtype,
            maps: Some(&self.space.maps),
        }
    }
}

/// The `raw` of `sources`, when every one has it (`None` and a note when only some do). With
/// `fixed`, the raw variables are those (an append keeps the collection's).
///
/// # Errors
/// Errors reading an input's `raw/var`, or a `raw/X` that cannot be read by rows.
pub(crate) fn open(
    sources: &[Source],
    fixed: Option<&[String]>,
    merge: Option<VarMerge>,
    notes: &mut Vec<String>,
) -> Result<Option<Raw>> {
    let mut found = Vec::with_capacity(sources.len());
    for source in sources {
        let Some((elements, root)) = source.elements() else {
            found.push(None);
            continue;
        };
        let var = join(root, "raw/var");
        let has_x = elements.kind(&join(root, "raw/X"))?.is_some();
        let has_var = elements.kind(&var)?.is_some();
        if !(has_x && has_var) {
            // Part of a raw is no raw anndata can read: left out, and said so.
            let lacking = match (has_x, has_var) {
                (true, false) => Some("raw/var"),
                (false, true) => Some("raw/X"),
                // anndata writes `raw = None` as an array of encoding "null": no raw.
                _ if elements.kind(&join(root, "raw"))? == Some(NodeKind::Group) => {
                    Some("raw/X and raw/var")
                }
                _ => None,
            };
            if let Some(lacking) = lacking {
                notes.push(format!(
                    "raw left out: {} has a raw without {lacking}",
                    source.path().display()
                ));
            }
            found.push(None);
            continue;
        }
        let in_input = |e: crate::Error| e.in_input(source.path());
        let names = dataframe::read_index(elements, &var).map_err(in_input)?;
        let columns = dataframe::column_names(elements, &var)
            .map_err(in_input)?
            .into_iter()
            .map(|c| {
                let column = dataframe::read_column(elements, &var, &c).map_err(in_input)?;
                Ok((c, column))
            })
            .collect::<Result<Vec<_>>>()?;
        let matrix = source.matrix("raw/X").map_err(in_input)?;
        if matrix.n_cols() != names.len() as u64 {
            notes.push(format!(
                "raw left out: raw/X of {} has {} columns, raw/var {} rows",
                source.path().display(),
                matrix.n_cols(),
                names.len()
            ));
            return Ok(None);
        }
        found.push(Some((matrix, names, columns)));
    }
    let having = found.iter().filter(|f| f.is_some()).count();
    if having == 0 {
        return Ok(None);
    }
    if having < found.len() {
        notes.push("raw left out: not in every input (as annbatch)".into());
        return Ok(None);
    }
    let found: Vec<_> = found.into_iter().flatten().collect();
    let labels: Vec<String> = sources
        .iter()
        .map(|s| format!("{}/raw", s.path().display()))
        .collect();
    let inputs: Vec<(&str, &[String])> = labels
        .iter()
        .zip(&found)
        .map(|(l, (_, names, _))| (l.as_str(), names.as_slice()))
        .collect();
    let space = var_space::build(&inputs, fixed, None)?;
    let parts = found
        .iter()
        .zip(&space.maps)
        .map(|((_, _, columns), map)| VarPart {
            columns: columns.clone(),
            map: map.as_ref(),
        })
        .collect();
    let var_columns = var_table::join(parts, space.names.len(), merge);
    let matrices: Vec<Matrix> = found.into_iter().map(|(m, _, _)| m).collect();
    let sparse = matrices.iter().any(|m| m.indptr().is_some());
    let dtype = super::dataset::stored_dtype(
        super::dataset::joined_dtype(matrices.iter().map(|m| m.dtype())),
        sparse,
    );
    Ok(Some(Raw {
        matrices,
        space,
        var_columns,
        sparse,
        dtype,
    }))
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}
