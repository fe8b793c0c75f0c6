//! `uns`, the unstructured metadata: read whole from each input (dicts, numeric and string
//! arrays, scalars), merged as annbatch merges it (one input: its own; several: none, or the
//! entries `merge` picks, as anndata's `uns_merge`), and written into every output dataset.
//! Entries it cannot copy (data frames, sparse matrices, record arrays) are named in the notes.
//! The same tree copies `varm` / `varp`, which are not row-aligned.

use serde_json::json;

use super::var_table::VarMerge;
use crate::error::Result;
use crate::store::write::{attrs, Writer};
use crate::store::ElementSource;
use crate::zarr::{encoding_of, WholeArray, WholeValues};

/// One node of an `uns` tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UnsNode {
    /// A `dict` group, children in stored order.
    Dict(Vec<(String, UnsNode)>),
    /// An array or scalar with its `encoding-type` (empty when the input had none).
    Array { encoding: String, array: WholeArray },
    /// A `csr_matrix` / `csc_matrix` group, its three arrays checked to form one.
    Sparse {
        encoding: String,
        shape: [u64; 2],
        data: WholeArray,
        indices: WholeArray,
        indptr: WholeArray,
    },
}

impl UnsNode {
    /// The shape of an array or sparse matrix (`None` for a dict).
    pub(crate) fn shape(&self) -> Option<Vec<u64>> {
        match self {
            UnsNode::Dict(_) => None,
            UnsNode::Array { array, .. } => Some(array.shape.clone()),
            UnsNode::Sparse { shape, .. } => Some(shape.to_vec()),
        }
    }
}

/// Deepest nesting of `uns` dicts followed: deeper ones are a note, not a stack overflow.
const MAX_DEPTH: usize = 32;

/// The tree of the dict `group` (`uns`, `varm`, `varp`) of the AnnData group `root` of
/// `source` (`None` when it has none or it is empty), with a note for every entry left out.
/// `label` names the input in the notes.
pub(crate) fn read(
    source: &dyn ElementSource,
    root: &str,
    group: &str,
    label: &str,
    notes: &mut Vec<String>,
) -> Option<UnsNode> {
    let path = join(root, group);
    match source.kind(&path) {
        Ok(Some(crate::zarr::NodeKind::Group)) => {}
        _ => return None,
    }
    let node = read_node(source, &path, group, label, 0, notes)?;
    match &node {
        UnsNode::Dict(children) if children.is_empty() => None,
        _ => Some(node),
    }
}

fn read_node(
    source: &dyn ElementSource,
    path: &str,
    name: &str,
    label: &str,
    depth: usize,
    notes: &mut Vec<String>,
) -> Option<UnsNode> {
    let mut left_out = |why: String| notes.push(format!("{name} left out ({label}): {why}"));
    let (kind, attrs) = match (source.kind(path), source.attributes(path)) {
        (Ok(Some(kind)), Ok(attrs)) => (kind, attrs),
        (Err(e), _) | (_, Err(e)) => {
            left_out(e.to_string());
            return None;
        }
        (Ok(None), _) => return None,
    };
    let (encoding, _) = encoding_of(&attrs);
    match kind {
        crate::zarr::NodeKind::Group => {
            if matches!(encoding.as_str(), "csr_matrix" | "csc_matrix") {
                return read_sparse(source, path, encoding, &attrs)
                    .map_err(|why| left_out(format!("a sparse matrix that {why}")))
                    .ok();
            }
            if !matches!(encoding.as_str(), "dict" | "") {
                left_out(format!("an element of encoding {encoding:?} (not copied)"));
                return None;
            }
            if depth >= MAX_DEPTH {
                left_out(format!("dicts nested deeper than {MAX_DEPTH}"));
                return None;
            }
            let mut names = match source.children(path) {
                Ok(names) => names,
                Err(e) => {
                    left_out(e.to_string());
                    return None;
                }
            };
            names.sort_unstable();
            let children = names
                .into_iter()
                .filter_map(|child| {
                    let node = read_node(
                        source,
                        &join(path, &child),
                        &format!("{name}/{child}"),
                        label,
                        depth + 1,
                        notes,
                    )?;
                    Some((child, node))
                })
                .collect();
            Some(UnsNode::Dict(children))
        }
        crate::zarr::NodeKind::Array => {
            if !matches!(
                encoding.as_str(),
                "" | "array" | "string-array" | "string" | "numeric-scalar"
            ) {
                left_out(format!("an element of encoding {encoding:?} (not copied)"));
                return None;
            }
            match source.read_whole(path) {
                Ok(array) => Some(UnsNode::Array { encoding, array }),
                Err(e) => {
                    left_out(e.to_string());
                    None
                }
            }
        }
    }
}

/// The sparse matrix group at `path`, read whole and checked to be one anndata can read: the
/// `shape` attribute, `indptr` of one more entry than the major axis running from 0 up to the
/// number of stored values, and `indices` below the minor axis. `Err` says what is wrong.
fn read_sparse(
    source: &dyn ElementSource,
    path: &str,
    encoding: String,
    attrs: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<UnsNode, String> {
    let shape = match attrs
        .get("shape")
        .and_then(|v| v.as_array())
        .map(Vec::as_slice)
    {
        Some([r, c]) => match (r.as_u64(), c.as_u64()) {
            (Some(r), Some(c)) => [r, c],
            _ => return Err("has no valid shape attribute".into()),
        },
        _ => return Err("has no valid shape attribute".into()),
    };
    let read = |name: &str| {
        source
            .read_whole(&join(path, name))
            .map_err(|e| format!("cannot be read ({e})"))
    };
    let (data, indices, indptr) = (read("data")?, read("indices")?, read("indptr")?);
    let (major, minor) = if encoding == "csr_matrix" {
        (shape[0], shape[1])
    } else {
        (shape[1], shape[0])
    };
    let integers = |a: &WholeArray| -> Option<Vec<u64>> {
        match &a.values {
            WholeValues::Int(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            WholeValues::UInt(v) => Some(v.clone()),
            _ => None,
        }
    };
    let one_d = |a: &WholeArray| a.shape.len() == 1;
    if !(one_d(&data) && one_d(&indices) && one_d(&indptr)) {
        return Err("has arrays of more than one dimension".into());
    }
    if matches!(data.values, WholeValues::Str(_)) {
        return Err("holds strings".into());
    }
    let nnz = data.shape[0];
    let (Some(pointers), Some(columns)) = (integers(&indptr), integers(&indices)) else {
        return Err("has indices or indptr that are not non-negative integers".into());
    };
    if pointers.len() as u64 != major.saturating_add(1)
        || pointers.first() != Some(&0)
        || pointers.windows(2).any(|w| w[0] > w[1])
        || pointers.last() != Some(&nnz)
        || columns.len() as u64 != nnz
    {
        return Err(format!(
            "has an indptr of {} entries not running from 0 to its {nnz} values over {major} \
             rows, or {} indices",
            pointers.len(),
            columns.len()
        ));
    }
    if let Some(bad) = columns.iter().find(|&&c| c >= minor) {
        return Err(format!("has index {bad}, not below {minor}"));
    }
    Ok(UnsNode::Sparse {
        encoding,
        shape,
        data,
        indices,
        indptr,
    })
}

/// The `uns` of the output from the inputs' trees: one input keeps its own; several keep
/// nothing unless `merge` says which entries (anndata's `uns_merge` strategies, applied key by
/// key down nested dicts).
pub(crate) fn merge(trees: &[Option<UnsNode>], merge: Option<VarMerge>) -> Option<UnsNode> {
    match (trees, merge) {
        ([one], _) => one.clone(),
        (_, None) => None,
        (_, Some(strategy)) => {
            let present: Vec<Option<&UnsNode>> = trees.iter().map(Option::as_ref).collect();
            merge_nodes(&present, strategy)
        }
    }
}

/// Merges the nodes at one key (`None`: that input lacks it).
fn merge_nodes(nodes: &[Option<&UnsNode>], strategy: VarMerge) -> Option<UnsNode> {
    let having: Vec<&UnsNode> = nodes.iter().flatten().copied().collect();
    let first = *having.first()?;
    if having.iter().all(|n| matches!(n, UnsNode::Dict(_))) && strategy != VarMerge::Only {
        let mut keys: Vec<&String> = Vec::new();
        for node in &having {
            if let UnsNode::Dict(children) = node {
                for (k, _) in children {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
        }
        let children = keys
            .into_iter()
            .filter_map(|key| {
                let at: Vec<Option<&UnsNode>> = nodes
                    .iter()
                    .map(|n| match n {
                        Some(UnsNode::Dict(c)) => c.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                        _ => None,
                    })
                    .collect();
                Some((key.clone(), merge_nodes(&at, strategy)?))
            })
            .collect();
        return Some(UnsNode::Dict(children));
    }
    let keep = match strategy {
        VarMerge::Same => having.len() == nodes.len() && having.iter().all(|n| *n == first),
        VarMerge::Unique => having.iter().all(|n| *n == first),
        VarMerge::First => true,
        VarMerge::Only => having.len() == 1,
    };
    keep.then(|| first.clone())
}

/// Writes `node` at `path` of `writer`.
///
/// # Errors
/// The writer's errors.
pub(crate) fn write(writer: &Writer, path: &str, node: &UnsNode) -> Result<()> {
    match node {
        UnsNode::Dict(children) => {
            writer.group(
                path,
                attrs(&[
                    ("encoding-type", json!("dict")),
                    ("encoding-version", json!("0.1.0")),
                ]),
            )?;
            for (name, child) in children {
                write(writer, &format!("{path}/{name}"), child)?;
            }
            Ok(())
        }
        UnsNode::Array { encoding, array } => write_array(writer, path, encoding, array),
        UnsNode::Sparse {
            encoding,
            shape,
            data,
            indices,
            indptr,
        } => {
            writer.group(
                path,
                attrs(&[
                    ("encoding-type", json!(encoding)),
                    ("encoding-version", json!("0.1.0")),
                    ("shape", json!(shape)),
                ]),
            )?;
            for (name, array) in [("data", data), ("indices", indices), ("indptr", indptr)] {
                write_values(writer, &format!("{path}/{name}"), array, attrs(&[]))?;
            }
            Ok(())
        }
    }
}

fn write_array(writer: &Writer, path: &str, encoding: &str, array: &WholeArray) -> Result<()> {
    let scalar = array.shape.is_empty();
    let encoding = match (encoding, &array.values, scalar) {
        ("", WholeValues::Str(_), true) => "string",
        ("", WholeValues::Str(_), false) => "string-array",
        ("", _, true) => "numeric-scalar",
        ("", _, false) => "array",
        (e, _, _) => e,
    };
    let meta = attrs(&[
        ("encoding-type", json!(encoding)),
        ("encoding-version", json!("0.2.0")),
    ]);
    write_values(writer, path, array, meta)
}

/// Writes `array`'s values in its stored dtype, with the attributes `meta`.
fn write_values(
    writer: &Writer,
    path: &str,
    array: &WholeArray,
    meta: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    use crate::zarr::Dtype as D;
    let shape = &array.shape;
    macro_rules! cast {
        ($v:expr, $t:ty) => {
            writer.whole_array::<$t>(
                path,
                &$v.iter().map(|&x| x as $t).collect::<Vec<_>>(),
                shape,
                meta,
            )
        };
    }
    match (&array.values, array.dtype) {
        (WholeValues::Bool(v), _) => writer.whole_array(path, v, shape, meta),
        (WholeValues::Str(v), _) => writer.whole_array(path, v, shape, meta),
        (WholeValues::Int(v), D::I8) => cast!(v, i8),
        (WholeValues::Int(v), D::I16) => cast!(v, i16),
        (WholeValues::Int(v), D::I32) => cast!(v, i32),
        (WholeValues::Int(v), _) => writer.whole_array(path, v, shape, meta),
        (WholeValues::UInt(v), D::U8) => cast!(v, u8),
        (WholeValues::UInt(v), D::U16) => cast!(v, u16),
        (WholeValues::UInt(v), D::U32) => cast!(v, u32),
        (WholeValues::UInt(v), _) => writer.whole_array(path, v, shape, meta),
        (WholeValues::Float(v), D::F32) => cast!(v, f32),
        (WholeValues::Float(v), D::F16) => writer.whole_array(
            path,
            &v.iter()
                .map(|&x| half::f16::from_f64(x))
                .collect::<Vec<_>>(),
            shape,
            meta,
        ),
        (WholeValues::Float(v), _) => writer.whole_array(path, v, shape, meta),
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}
