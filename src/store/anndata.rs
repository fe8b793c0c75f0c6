//! An AnnData group in a zarr store: `X`, `obs`, `var`.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::csr::CsrElement;
use super::dataframe::{self, Column};
use super::dense::DenseElement;
use super::node::{encoding, join, NodeKind, ZarrStore};
use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::error::{Error, Result};

/// The `X` of an AnnData: sparse CSR or dense.
#[derive(Debug)]
// One per dataset, opened once and never moved on the hot path: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum XElement {
    /// A `csr_matrix` group.
    Csr(CsrElement),
    /// A dense `array`.
    Dense(DenseElement),
}

impl XElement {
    /// Opens the element at `path`, dispatching on its `encoding-type`.
    pub(crate) fn open(store: &ZarrStore, path: &str) -> Result<Self> {
        let kind = store
            .kind(path)?
            .ok_or_else(|| super::node::missing(path))?;
        let attrs = store.attributes(path)?;
        let (encoding_type, encoding_version) = encoding(&attrs);
        match (kind, encoding_type.as_str()) {
            (NodeKind::Group, "csr_matrix") => {
                let shape = parse_shape(path, attrs.get("shape"))?;
                Ok(Self::Csr(CsrElement::open(store, path, shape)?))
            }
            (NodeKind::Array, "array" | "") => Ok(Self::Dense(DenseElement::open(store, path)?)),
            _ => Err(Error::UnknownEncoding {
                path: path.to_string(),
                encoding_type,
                encoding_version,
                expected: "\"csr_matrix\" or a dense \"array\" (csc_matrix cannot be read by rows)"
                    .into(),
            }),
        }
    }

    /// Number of rows.
    pub fn n_obs(&self) -> u64 {
        match self {
            Self::Csr(x) => x.n_obs(),
            Self::Dense(x) => x.n_obs(),
        }
    }

    /// Number of columns.
    pub fn n_var(&self) -> u64 {
        match self {
            Self::Csr(x) => x.n_var(),
            Self::Dense(x) => x.n_var(),
        }
    }

    /// The element's path inside its store.
    pub fn path(&self) -> &str {
        match self {
            Self::Csr(x) => x.path(),
            Self::Dense(x) => x.path(),
        }
    }

    /// The element type of the values as stored.
    pub fn dtype(&self) -> super::Dtype {
        match self {
            Self::Csr(x) => x.dtype(),
            Self::Dense(x) => x.dtype(),
        }
    }

    /// An empty batch of the right kind for this element, to pass to [`Self::append_rows`].
    pub fn new_batch(&self) -> XBatch {
        match self {
            Self::Csr(x) => XBatch::Csr(CsrBatch::new(x.n_var())),
            Self::Dense(x) => XBatch::Dense(DenseBatch::new(x.row_width() as usize)),
        }
    }

    /// Appends the rows of `ranges`, in order, to `out` (which must be of the same kind).
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        match (self, out) {
            (Self::Csr(x), XBatch::Csr(b)) => x.append_rows(ranges, b),
            (Self::Dense(x), XBatch::Dense(b)) => x.append_rows(ranges, b),
            (x, _) => Err(Error::parameter(
                "out",
                "XBatch",
                format!("batch kind does not match {}", x.path()),
            )),
        }
    }

    /// Replaces the contents of `out` with the rows of `ranges`.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        out.clear();
        self.append_rows(ranges, out)
    }
}

fn parse_shape(path: &str, shape: Option<&Value>) -> Result<[u64; 2]> {
    let dims: Option<Vec<u64>> = shape
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect());
    match dims.as_deref() {
        Some(&[n_obs, n_var]) => Ok([n_obs, n_var]),
        _ => Err(Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("shape attribute {shape:?}"),
            expected: "[n_obs, n_var]".into(),
        }),
    }
}

/// One AnnData stored as a zarr group (format 2 or 3).
///
/// ```no_run
/// # fn main() -> annbatch::Result<()> {
/// let adata = annbatch::AnnDataStore::open("pbmc.zarr")?;
/// let mut batch = adata.x().new_batch();
/// adata.x().read_rows(&[0..16, 100..132], &mut batch)?;
/// assert_eq!(batch.n_rows(), 48);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AnnDataStore {
    store: ZarrStore,
    group: String,
    x: XElement,
    var_names: Vec<String>,
}

impl AnnDataStore {
    /// Opens the AnnData at the root of the zarr store `path` (e.g. `pbmc.zarr`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let store = ZarrStore::open(path.as_ref())?;
        Self::open_in(&store, "")
    }

    /// Opens the AnnData group `group` of an open store.
    pub(crate) fn open_in(store: &ZarrStore, group: &str) -> Result<Self> {
        let label = if group.is_empty() { "/" } else { group };
        let attrs = store.attributes(group).map_err(|e| match e {
            Error::MissingElement { .. } => Error::MissingElement {
                path: store.root().display().to_string(),
                element: format!("{label} (no zarr group metadata)"),
            },
            e => e,
        })?;
        let (encoding_type, encoding_version) = encoding(&attrs);
        if !matches!(encoding_type.as_str(), "anndata" | "") {
            return Err(Error::UnknownEncoding {
                path: label.to_string(),
                encoding_type,
                encoding_version,
                expected: "\"anndata\"".into(),
            });
        }
        let x = XElement::open(store, &join(group, "X"))?;
        let var_names = dataframe::read_index(store, &join(group, "var"))?;
        if var_names.len() as u64 != x.n_var() {
            return Err(Error::ShapeMismatch {
                path: join(group, "var"),
                found: format!("{} var names", var_names.len()),
                expected: format!("{} (X's n_var)", x.n_var()),
            });
        }
        Ok(Self {
            store: store.clone(),
            group: group.to_string(),
            x,
            var_names,
        })
    }

    /// `X`, to read rows from.
    pub fn x(&self) -> &XElement {
        &self.x
    }
    /// Number of observations (rows, cells).
    pub fn n_obs(&self) -> u64 {
        self.x.n_obs()
    }
    /// Number of variables (columns, genes).
    pub fn n_var(&self) -> u64 {
        self.x.n_var()
    }
    /// The `var` index (gene names).
    pub fn var_names(&self) -> &[String] {
        &self.var_names
    }
    /// The group path inside the store (empty for the root).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The `obs` index (cell names).
    pub fn obs_names(&self) -> Result<Vec<String>> {
        let names = dataframe::read_index(&self.store, &join(&self.group, "obs"))?;
        self.check_len(&join(&self.group, "obs"), names.len())?;
        Ok(names)
    }

    /// `obs` column names, in `column-order`.
    pub fn obs_columns(&self) -> Result<Vec<String>> {
        dataframe::column_names(&self.store, &join(&self.group, "obs"))
    }

    /// Reads the `obs` column `name`.
    pub fn obs_column(&self, name: &str) -> Result<Column> {
        let obs = join(&self.group, "obs");
        let column = dataframe::read_column(&self.store, &obs, name)?;
        self.check_len(&join(&obs, name), column.len())?;
        Ok(column)
    }

    fn check_len(&self, path: &str, len: usize) -> Result<()> {
        if len as u64 == self.n_obs() {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("{len} rows"),
                expected: format!("{} (X's n_obs)", self.n_obs()),
            })
        }
    }
}
