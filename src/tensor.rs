//! Batches as `tch::Tensor`s: sparse CSR (`int32` row pointers and column indices, `float32`
//! values) or dense `float32`, placed on the requested device.
//!
//! A [`Batch`] is made of the same core batch every front end gets ([`DlBatch`]: pooled host
//! memory): each array becomes a tensor viewing that memory (`tensor/from_dlpack.rs`), which
//! goes back to the loader's pool once torch frees every tensor of it; `Placement::batch` moves
//! them to the device (one upload per batch on CUDA) and builds the sparse tensors.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

mod from_dlpack;

use crate::assemble::{AlignedGroup, DlBatch, DlMatrix};
use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::error::{Error, Result};

/// A batch of `tch::Tensor`s: what `Loader::epoch` yields.
#[derive(Debug)]
pub struct Batch {
    /// `[rows, n_var]`: sparse CSR (int32 indices, float32 values) or dense float32.
    pub x: Tensor,
    /// The same rows of each requested layer, `(name, tensor)` in the loader's `layers`
    /// order: `[rows, n_var]`, sparse CSR or dense as stored.
    pub layers: Vec<(String, Tensor)>,
    /// The same rows of each requested obsm entry, `(name, tensor)` in the loader's `obsm`
    /// order: dense float32 `[rows, d]` (or sparse CSR, as stored).
    pub obsm: Vec<(String, Tensor)>,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<ObsTensor>,
    /// Global row ids (int64), when `return_index`.
    pub index: Option<Tensor>,
}

/// One obs column of a [`Batch`].
#[derive(Debug)]
pub struct ObsTensor {
    /// The column's name.
    pub name: String,
    /// int64 category codes, or float32 values.
    pub values: Tensor,
    /// Category names (for categorical columns).
    pub categories: Option<Arc<Vec<String>>>,
}

impl Batch {
    /// The obs column `name`, if it was requested.
    pub fn obs(&self, name: &str) -> Option<&ObsTensor> {
        self.obs.iter().find(|o| o.name == name)
    }

    /// The rows of layer `name`, if it was requested.
    pub fn layer(&self, name: &str) -> Option<&Tensor> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The rows of obsm entry `name`, if it was requested.
    pub fn obsm_entry(&self, name: &str) -> Option<&Tensor> {
        self.obsm.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// A sparse CSR tensor of shape `[n_rows, n_var]` holding a copy of `batch`, on `device`.
///
/// ```
/// # fn main() -> annbatch::Result<()> {
/// let batch = annbatch::CsrBatch { indptr: vec![0, 1, 3], indices: vec![2, 0, 1], data: vec![1.0, 2.0, 3.0], n_var: 4 };
/// let x = annbatch::tensor::csr_to_tensor(&batch, tch::Device::Cpu)?;
/// assert_eq!(x.size(), [2, 4]);
/// assert_eq!(x.f_to_dense(None, false)?.f_sum(tch::Kind::Float)?.f_double_value(&[])?, 6.0);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Torch`] when libtorch refuses the parts or the copy to `device` fails.
pub fn csr_to_tensor(batch: &CsrBatch, device: Device) -> Result<Tensor> {
    let crow = Tensor::f_from_slice(&batch.indptr)?;
    let col = Tensor::f_from_slice(&batch.indices)?;
    let values = Tensor::f_from_slice(&batch.data)?;
    let size = [batch.n_rows() as i64, batch.n_var as i64];
    let x = Tensor::f_sparse_csr_tensor_crow_col_value_size(
        &crow,
        &col,
        &values,
        size,
        (Kind::Float, Device::Cpu),
    )?;
    Ok(if device == Device::Cpu {
        x
    } else {
        x.f_to(device)?
    })
}

/// A dense `float32` tensor of shape `[n_rows, row_width]` holding a copy of `batch`.
///
/// # Errors
/// [`Error::Torch`] when libtorch fails to allocate or copy.
pub fn dense_to_tensor(batch: &DenseBatch, device: Device) -> Result<Tensor> {
    let x = Tensor::f_from_slice(&batch.data)?
        .f_view([batch.n_rows() as i64, batch.row_width as i64])?;
    Ok(if device == Device::Cpu {
        x
    } else {
        x.f_to(device)?
    })
}

/// [`csr_to_tensor`] or [`dense_to_tensor`], as the batch is.
///
/// # Errors
/// As [`csr_to_tensor`] / [`dense_to_tensor`].
pub fn to_tensor(batch: &XBatch, device: Device) -> Result<Tensor> {
    match batch {
        XBatch::Csr(b) => csr_to_tensor(b, device),
        XBatch::Dense(b) => dense_to_tensor(b, device),
    }
}

/// Checks that `device` can receive tensors.
pub(crate) fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(n) => {
            #[cfg(feature = "cuda")]
            crate::cuda::check(n)?;
            let unavailable = |reason: String| Error::DeviceUnavailable {
                device: format!("cuda:{n}"),
                reason,
            };
            if !tch::Cuda::is_available() {
                return Err(unavailable(
                    "CUDA is not available (no driver or no GPU)".into(),
                ));
            }
            let count = tch::Cuda::device_count();
            if n >= count as usize {
                return Err(unavailable(format!("only {count} CUDA device(s)")));
            }
            Ok(())
        }
        other => Err(Error::DeviceUnavailable {
            device: format!("{other:?}"),
            reason: "only cpu and cuda:N are supported".into(),
        }),
    }
}

/// Where a loader's tensor batches go.
pub(crate) struct Placement {
    pub(crate) device: Device,
}

impl Placement {
    /// A placement on `device`.
    pub(crate) fn new(device: Device) -> Result<Self> {
        check_device(device)?;
        Ok(Self { device })
    }

    /// The batch on the device, made of `batch`'s arrays without a copy: host arrays on the
    /// CPU, or the device buffers the loader's `cuda::Uploader` filled (feature `cuda`); host
    /// arrays for a CUDA device are copied here. Then the sparse CSR tensors are built on the
    /// device.
    pub(crate) fn batch(&self, batch: DlBatch) -> Result<Batch> {
        let device = self.device;
        let mut arrays = Vec::new();
        let mut shapes = vec![matrix_arrays(batch.x, &mut arrays)?];
        // Layers, then obsm entries, each in the loader's order.
        let mut named = Vec::new();
        for (group, matrices) in [
            (AlignedGroup::Layers, batch.layers),
            (AlignedGroup::Obsm, batch.obsm),
        ] {
            for (name, matrix) in matrices {
                shapes.push(matrix_arrays(matrix, &mut arrays)?);
                named.push((group, name));
            }
        }
        let mut obs_names = Vec::with_capacity(batch.obs.len());
        for obs in batch.obs {
            arrays.push(from_dlpack::tensor_of(obs.values)?);
            obs_names.push((obs.name, obs.categories));
        }
        let has_index = batch.index.is_some();
        if let Some(index) = batch.index {
            arrays.push(from_dlpack::tensor_of(index)?);
        }
        let expected = arrays.len();
        let placed = self.place_all(arrays)?;
        if placed.len() != expected {
            return Err(Error::Internal(format!(
                "{} of {expected} batch arrays placed on {device:?}",
                placed.len()
            )));
        }
        let mut placed = placed.into_iter();
        // Cannot run dry: the count was checked above.
        let mut next = || placed.next().unwrap_or_else(Tensor::new);
        let mut matrices = Vec::with_capacity(shapes.len());
        for shape in shapes {
            matrices.push(match shape {
                Some(size) => Tensor::f_sparse_csr_tensor_crow_col_value_size(
                    &next(),
                    &next(),
                    &next(),
                    size,
                    (Kind::Float, device),
                )?,
                None => next(),
            });
        }
        let mut matrices = matrices.into_iter();
        let x = matrices.next().unwrap_or_else(Tensor::new);
        let (mut layers, mut obsm) = (Vec::new(), Vec::new());
        for ((group, name), tensor) in named.into_iter().zip(matrices) {
            match group {
                AlignedGroup::Layers => layers.push((name, tensor)),
                AlignedGroup::Obsm => obsm.push((name, tensor)),
            }
        }
        let obs = obs_names
            .into_iter()
            .map(|(name, categories)| ObsTensor {
                name,
                values: next(),
                categories,
            })
            .collect();
        let index = has_index.then(next);
        Ok(Batch {
            x,
            layers,
            obsm,
            obs,
            index,
        })
    }

    /// Moves the tensors not on the device yet to it (only without the `cuda` feature, whose
    /// uploader placed them already): each through pinned memory with a non-blocking copy on
    /// torch's current stream (torch's caching host allocator keeps the pinned source alive
    /// until the copy ran).
    fn place_all(&self, tensors: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let device = self.device;
        tensors
            .into_iter()
            .map(|t| {
                if t.device() == device {
                    return Ok(t);
                }
                let kind = t.kind();
                Ok(t.f_pin_memory(device)?
                    .f_to_device_(device, kind, true, false)?)
            })
            .collect()
    }
}

/// Pushes a matrix's arrays onto `arrays` as tensors (CSR: row pointers, column indices,
/// values; dense: the values in their shape, `[rows, width]` or an N-d obsm entry's) and returns
/// the CSR size to build it with (`None`: dense).
fn matrix_arrays(matrix: DlMatrix, arrays: &mut Vec<Tensor>) -> Result<Option<[i64; 2]>> {
    Ok(match matrix {
        DlMatrix::Csr {
            indptr,
            indices,
            data,
            shape,
        } => {
            for array in [indptr, indices, data] {
                arrays.push(from_dlpack::tensor_of(array)?);
            }
            let size = |n: u64| {
                i64::try_from(n).map_err(|_| Error::Internal("a CSR batch wider than i64".into()))
            };
            Some([size(shape[0])?, size(shape[1])?])
        }
        DlMatrix::Dense(data) => {
            arrays.push(from_dlpack::tensor_of(data)?);
            None
        }
    })
}
