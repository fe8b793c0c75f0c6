//! Which row-aligned matrices besides `X` a conversion carries over, in their own dtype: the
//! `layers` and `obsm` entries (dense or sparse) every input has (anndata's `concat` keeps the keys common to all its inputs), and a
//! note by name for everything it leaves out.

use super::dataset::{joined_dtype, stored_dtype, Element};
use super::row_reader::RowReader;
use super::source::{Matrix, Source};
use crate::error::{Error, Result};
use crate::zarr::Dtype;

/// One carried-over matrix, opened in every input (`None`: that input's own `X`, carried as
/// `layers/X` when a layer becomes `X`).
pub(crate) struct Opened {
    path: String,
    matrices: Vec<Option<Matrix>>,
    var_aligned: bool,
    sparse: bool,
    n_cols: usize,
    tail: Vec<u64>,
    dtype: Dtype,
}

/// The carried-over matrices and the notes on what is left out.
pub(crate) struct Carried {
    opened: Vec<Opened>,
    pub notes: Vec<String>,
}

impl Carried {
    /// What the dataset writer takes.
    pub(crate) fn elements<'a>(&'a self, sources: &'a [Source]) -> Vec<Element<'a>> {
        self.opened
            .iter()
            .map(|o| Element {
                path: o.path.clone(),
                matrices: o
                    .matrices
                    .iter()
                    .zip(sources)
                    .map(|(m, s)| match m {
                        Some(m) => m as &dyn RowReader,
                        None => s as &dyn RowReader,
                    })
                    .collect(),
                var_aligned: o.var_aligned,
                sparse: o.sparse,
                n_cols: o.n_cols,
                tail: o.tail.clone(),
                dtype: o.dtype,
                maps: None,
            })
            .collect()
    }
}

/// Opens the `layers` and `obsm` entries of `sources` that can be carried over. Where
/// `swapped[i]`, layer `layer` is input `i`'s `X`, and its own `X` takes the layer's place as
/// `layers/X`. The first `existing` sources are the datasets of a collection being appended
/// to: an element any of them holds is never left out (that would delete it from cells the
/// collection holds), the append is refused instead.
///
/// # Errors
/// [`crate::Error`] naming the input whose groups cannot be listed;
/// [`Error::AppendWouldDrop`] for an element of the collection the append cannot carry.
pub(crate) fn carry(
    sources: &[Source],
    layer: Option<&str>,
    swapped: &[bool],
    existing: usize,
) -> Result<Carried> {
    let mut carried = Carried {
        opened: Vec::new(),
        notes: Vec::new(),
    };
    let held = |group: &str, key: &str| -> Result<Option<&Source>> {
        for s in &sources[..existing.min(sources.len())] {
            if s.keys(group)
                .map_err(|e| e.in_input(s.path()))?
                .iter()
                .any(|k| k == key)
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    };
    let refuse = |dataset: &Source, path: &str, reason: String| Error::AppendWouldDrop {
        dataset: dataset.path().to_path_buf(),
        element: path.to_string(),
        reason,
    };
    for (group, var_aligned) in [("layers", true), ("obsm", false)] {
        let keys = sources
            .iter()
            .zip(swapped)
            .map(|(s, &swap)| {
                let mut keys = s.keys(group).map_err(|e| e.in_input(s.path()))?;
                if swap && var_aligned {
                    keys.retain(|k| Some(k.as_str()) != layer);
                    keys.push("X".into());
                }
                Ok(keys)
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = keys.first() else { continue };
        let mut partial: Vec<&String> = keys
            .iter()
            .flatten()
            .filter(|k| !keys.iter().all(|ks| ks.contains(k)))
            .collect();
        partial.sort_unstable();
        partial.dedup();
        for key in partial {
            if let Some(dataset) = held(group, key)? {
                return Err(refuse(
                    dataset,
                    &format!("{group}/{key}"),
                    "some of the new inputs lack it".into(),
                ));
            }
            carried.notes.push(format!(
                "{group}/{key} left out: not in every input (kept: what all inputs have)"
            ));
        }
        for key in first
            .iter()
            .filter(|k| keys.iter().all(|ks| ks.contains(k)))
        {
            let path = format!("{group}/{key}");
            let own_x = |i: usize| var_aligned && key == "X" && swapped[i];
            match open_everywhere(sources, &path, var_aligned, own_x, &mut carried.notes) {
                Ok(opened) => carried.opened.push(opened),
                Err(reason) => match held(group, key)? {
                    Some(dataset) => return Err(refuse(dataset, &path, reason)),
                    None => carried.notes.push(format!("{path} left out: {reason}")),
                },
            }
        }
    }
    for group in ["obsp"] {
        let mut has = false;
        for s in sources {
            has |= !s.keys(group).map_err(|e| e.in_input(s.path()))?.is_empty();
        }
        if has {
            carried.notes.push(format!(
                "{group} left out: pairwise obs matrices are not carried over (the shuffled \
                 collection splits the rows they pair across datasets)"
            ));
        }
    }
    Ok(carried)
}

/// `path` opened in every input and checked to be carried over; `Err` says why not.
fn open_everywhere(
    sources: &[Source],
    path: &str,
    var_aligned: bool,
    own_x: impl Fn(usize) -> bool,
    notes: &mut Vec<String>,
) -> std::result::Result<Opened, String> {
    let mut matrices = Vec::with_capacity(sources.len());
    // Of an obsm entry: the dimensions of a row (more than one for an N-d array).
    let mut shape: Option<Vec<u64>> = None;
    for (i, source) in sources.iter().enumerate() {
        if own_x(i) {
            matrices.push(None);
            continue;
        }
        let matrix = source
            .matrix(path)
            .map_err(|e| format!("{} ({e})", source.path().display()))?;
        if let Matrix::Transposed(t) = &matrix {
            notes.push(super::transposed_note(
                &format!("{}: {path}", source.path().display()),
                t.bands,
            ));
        }
        let tail = matrix.tail();
        let n_cols = matrix.n_cols();
        if var_aligned && tail.len() != 1 {
            return Err("a layer of more than 2 dimensions".into());
        }
        if var_aligned && n_cols != source.var_names().len() as u64 {
            return Err(format!(
                "{} columns in {}, not its {} variables",
                n_cols,
                source.path().display(),
                source.var_names().len()
            ));
        }
        if !var_aligned {
            if shape.as_ref().is_some_and(|s| *s != tail) {
                return Err("its shape differs between inputs".into());
            }
            shape = Some(tail);
        }
        matrices.push(Some(matrix));
    }
    let readers: Vec<&dyn RowReader> = matrices
        .iter()
        .zip(sources)
        .map(|(m, s)| match m {
            Some(m) => m as &dyn RowReader,
            None => s as &dyn RowReader,
        })
        .collect();
    let kinds: Vec<bool> = readers.iter().map(|r| r.indptr().is_some()).collect();
    // A layer is CSR when any input's is (as X); an obsm entry keeps its kind, so all inputs
    // must agree on it.
    let sparse = if var_aligned {
        kinds.iter().any(|&k| k)
    } else {
        if kinds.iter().any(|&k| k != kinds[0]) {
            return Err("sparse in some inputs, dense in others".into());
        }
        kinds.first().copied().unwrap_or(false)
    };
    let dtype = stored_dtype(joined_dtype(readers.iter().map(|r| r.dtype())), sparse);
    if !(dtype.is_numeric() || dtype == Dtype::Bool) {
        return Err(format!("values of type {dtype}"));
    }
    drop(readers);
    Ok(Opened {
        path: path.to_string(),
        var_aligned,
        sparse,
        // A layer has the output's variables: set by the writer from the var space.
        n_cols: shape
            .as_ref()
            .map_or(0, |s| s.iter().product::<u64>() as usize),
        tail: shape.unwrap_or_default(),
        dtype,
        matrices,
    })
}
