//! DLPack batches: what `Loader::dl_epoch` yields to the front ends that hand memory to other
//! frameworks (Python, C), each array in pooled host memory and exportable without a copy.

use std::sync::Arc;

use super::aligned::{AlignedGroup, AlignedMatrix};
use super::obs::Extras;
use super::parts::{BatchParts, ObsPart, XParts};
use super::pooled::{PooledArray, PooledMemory};
use crate::dlpack::DlArray;
use crate::error::{Error, Result};

/// The rows of a matrix (`X`, a layer, an obsm entry).
#[derive(Debug)]
pub enum DlMatrix {
    /// Sparse CSR of `shape` `[rows, n_var]`: int32 row pointers (`rows + 1`), int32 column
    /// indices and float32 values (`nnz` each).
    Csr {
        /// Row pointers, from 0.
        indptr: DlArray,
        /// Column index of each value.
        indices: DlArray,
        /// Stored values.
        data: DlArray,
        /// `[rows, n_var]`.
        shape: [u64; 2],
    },
    /// Dense float32 `[rows, width]` (an N-d obsm entry: `[rows, d1, d2, ...]`).
    Dense(DlArray),
}

impl DlMatrix {
    /// Rows in the batch.
    pub fn rows(&self) -> u64 {
        match self {
            Self::Csr { shape, .. } => shape[0],
            Self::Dense(data) => data.shape().first().map_or(0, |&r| r as u64),
        }
    }
}

/// One obs column of a [`DlBatch`].
#[derive(Debug)]
pub struct DlObs {
    /// The column's name.
    pub name: String,
    /// int64 category codes (`-1` = missing) or float32 values, one per row.
    pub values: DlArray,
    /// Category names (for categorical columns).
    pub categories: Option<Arc<Vec<String>>>,
}

/// A batch whose arrays are DLPack-exportable host memory, each from the loader's pool and
/// returned to it once released ([`crate::Loader::dl_epoch`]).
#[derive(Debug)]
pub struct DlBatch {
    /// The rows of `X`.
    pub x: DlMatrix,
    /// The same rows of each requested layer, `(name, rows)` in the loader's `layers` order.
    pub layers: Vec<(String, DlMatrix)>,
    /// The same rows of each requested obsm entry, `(name, rows)` in the loader's `obsm` order.
    pub obsm: Vec<(String, DlMatrix)>,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<DlObs>,
    /// Global row ids (int64), when `return_index`.
    pub index: Option<DlArray>,
}

impl DlBatch {
    /// The batch made of `parts`, naming its matrices and columns as `extras` does.
    pub(crate) fn new(parts: BatchParts<PooledMemory>, extras: &Extras) -> Result<Self> {
        let (mut layers, mut obsm) = (Vec::new(), Vec::new());
        for (matrix, part) in extras.aligned.iter().zip(parts.aligned) {
            let named = (matrix.name.clone(), dl_matrix(part, Some(matrix))?);
            match matrix.group {
                AlignedGroup::Layers => layers.push(named),
                AlignedGroup::Obsm => obsm.push(named),
            }
        }
        let mut obs = Vec::with_capacity(parts.obs.len());
        for ((name, source), part) in extras.obs.iter().zip(parts.obs) {
            let values = match part {
                ObsPart::Codes(a) => vector(a)?,
                ObsPart::Values(a) => vector(a)?,
                ObsPart::Float64(a) => vector(a)?,
                ObsPart::Int64(a) => vector(a)?,
            };
            obs.push(DlObs {
                name: name.clone(),
                values,
                categories: source.categories().cloned(),
            });
        }
        Ok(Self {
            x: dl_matrix(parts.x, None)?,
            layers,
            obsm,
            obs,
            index: parts.index.map(vector).transpose()?,
        })
    }
}

impl DlMatrix {
    /// The matrix with each array replaced by `f`'s (in order: row pointers, indices, values).
    fn try_map(self, f: &mut impl FnMut(DlArray) -> Result<DlArray>) -> Result<Self> {
        Ok(match self {
            Self::Csr {
                indptr,
                indices,
                data,
                shape,
            } => Self::Csr {
                indptr: f(indptr)?,
                indices: f(indices)?,
                data: f(data)?,
                shape,
            },
            Self::Dense(data) => Self::Dense(f(data)?),
        })
    }
}

impl DlBatch {
    /// The batch with each matrix array (X's, then each layer's and each obsm entry's) replaced
    /// by `f`'s, the same shapes and names: e.g. copied to a device. Obs columns and row ids are
    /// kept as they are.
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn try_map_matrices(self, mut f: impl FnMut(DlArray) -> Result<DlArray>) -> Result<Self> {
        let x = self.x.try_map(&mut f)?;
        let mut named = |(name, m): (String, DlMatrix)| Ok((name, m.try_map(&mut f)?));
        let layers = self
            .layers
            .into_iter()
            .map(&mut named)
            .collect::<Result<_>>()?;
        let obsm = self
            .obsm
            .into_iter()
            .map(&mut named)
            .collect::<Result<_>>()?;
        Ok(Self {
            x,
            layers,
            obsm,
            ..self
        })
    }
}

fn vector<T: super::memory::Element + crate::dlpack::DlElement>(
    array: PooledArray<T>,
) -> Result<DlArray> {
    let n = i64::try_from(array.as_slice().len()).map_err(|_| too_long())?;
    DlArray::new(array, vec![n])
}

fn too_long() -> Error {
    Error::Internal("a batch array longer than i64::MAX elements".into())
}

/// The matrix of `part`; a dense one keeps `aligned`'s trailing shape (an N-d obsm entry).
fn dl_matrix(part: XParts<PooledMemory>, aligned: Option<&AlignedMatrix>) -> Result<DlMatrix> {
    Ok(match part {
        XParts::Csr {
            indptr,
            indices,
            data,
            rows,
            n_var,
        } => DlMatrix::Csr {
            indptr: vector(indptr)?,
            indices: vector(indices)?,
            data: vector(data)?,
            shape: [rows as u64, n_var],
        },
        XParts::Dense { data, rows, width } => {
            i64::try_from(rows)
                .and(i64::try_from(width))
                .map_err(|_| too_long())?;
            let shape = match aligned {
                Some(m) => m.rows_shape(rows, width),
                None => vec![rows as i64, width as i64],
            };
            DlMatrix::Dense(DlArray::new(data, shape)?)
        }
    })
}
