//! Batches as `tch::Tensor`s: sparse CSR (`int32` row pointers and column indices, `float32`
//! values) or dense `float32`, placed on the requested device.
//!
//! The loader assembles each batch's arrays in pooled torch memory (`tensor/pool.rs`, reused
//! once the consumer dropped every tensor of a batch); `Placement::batch` moves them to the
//! device (one upload per batch on CUDA) and makes the [`Batch`].

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

mod paging;
mod pool;
pub(crate) use pool::StoragePool;

use crate::assemble::{AlignedGroup, BatchParts, Extras, ObsPart, XParts};
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

/// Where a loader's batches go: the device, the pooled host memory they are assembled in, and
/// (for CUDA) the uploader.
pub(crate) struct Placement {
    pub(crate) device: Device,
    /// Memory of the batches' arrays, reused once the consumer dropped them.
    pub(crate) storage: StoragePool,
    /// The CUDA uploader, when the device is `cuda:N`.
    #[cfg(feature = "cuda")]
    pub(crate) copier: Option<crate::cuda::CudaCopier>,
}

impl Placement {
    /// A placement on `device` whose pool keeps up to `slots` storages.
    pub(crate) fn new(device: Device, slots: usize) -> Result<Self> {
        check_device(device)?;
        Ok(Self {
            device,
            storage: match device {
                // Page-locked, so that the copy engine reads it directly (see `crate::cuda`).
                #[cfg(feature = "cuda")]
                Device::Cuda(_) => StoragePool::pinned(slots, device),
                _ => StoragePool::new(slots),
            },
            #[cfg(feature = "cuda")]
            copier: match device {
                Device::Cuda(n) => Some(crate::cuda::CudaCopier::new(n)?),
                _ => None,
            },
        })
    }

    /// The batch on the device, from its arrays: all of them placed together (one upload, one
    /// wait, on CUDA), then the sparse CSR tensors are built on the device.
    pub(crate) fn batch(&self, parts: BatchParts<StoragePool>, extras: &Extras) -> Result<Batch> {
        let device = self.device;
        let mut arrays = Vec::new();
        let mut shapes = vec![matrix_arrays(parts.x, &mut arrays)?];
        for (part, matrix) in parts.aligned.into_iter().zip(&extras.aligned) {
            shapes.push(matrix_arrays(part, &mut arrays)?);
            // A dense N-d obsm entry keeps its trailing shape.
            if let (None, Some(last)) = (shapes.last().and_then(|s| *s), arrays.last_mut()) {
                if let [rows, width] = last.size()[..] {
                    let shape = matrix.rows_shape(rows as usize, width as usize);
                    if shape.len() > 2 {
                        *last = last.f_view(shape.as_slice())?;
                    }
                }
            }
        }
        arrays.extend(parts.obs.into_iter().map(|o| match o {
            ObsPart::Codes(a) => a.into_tensor(),
            ObsPart::Values(a) => a.into_tensor(),
            ObsPart::Float64(a) => a.into_tensor(),
            ObsPart::Int64(a) => a.into_tensor(),
        }));
        let has_index = parts.index.is_some();
        arrays.extend(parts.index.map(|a| a.into_tensor()));
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
        for (matrix, tensor) in extras.aligned.iter().zip(matrices) {
            let named = (matrix.name.clone(), tensor);
            match matrix.group {
                AlignedGroup::Layers => layers.push(named),
                AlignedGroup::Obsm => obsm.push(named),
            }
        }
        let obs = extras
            .obs
            .iter()
            .map(|(name, source)| ObsTensor {
                name: name.clone(),
                values: next(),
                categories: source.categories().cloned(),
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

    /// Moves freshly assembled CPU tensors to the device. With the `cuda` feature, the
    /// [`crate::cuda::CudaCopier`] uploads them on its copy stream and returns once they are on
    /// the device. Otherwise each goes through pinned memory with a non-blocking copy on torch's
    /// current stream (torch's caching host allocator keeps the pinned source alive until the
    /// copy ran).
    fn place_all(&self, tensors: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let device = self.device;
        if device == Device::Cpu {
            return Ok(tensors);
        }
        #[cfg(feature = "cuda")]
        if let Some(copier) = &self.copier {
            let host = tensors
                .iter()
                .map(|t| t.f_contiguous())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            return copier.upload(&host);
        }
        tensors
            .into_iter()
            .map(|t| {
                let kind = t.kind();
                Ok(t.f_pin_memory(device)?
                    .f_to_device_(device, kind, true, false)?)
            })
            .collect()
    }
}

/// Pushes a matrix's arrays onto `arrays` (CSR: row pointers, column indices, values; dense:
/// the `[rows, width]` values) and returns the CSR size to build it with (`None`: dense).
fn matrix_arrays(part: XParts<StoragePool>, arrays: &mut Vec<Tensor>) -> Result<Option<[i64; 2]>> {
    Ok(match part {
        XParts::Csr {
            indptr,
            indices,
            data,
            rows,
            n_var,
        } => {
            arrays.extend([
                indptr.into_tensor(),
                indices.into_tensor(),
                data.into_tensor(),
            ]);
            Some([rows as i64, n_var as i64])
        }
        XParts::Dense { data, rows, width } => {
            arrays.push(data.into_tensor().f_view([rows as i64, width as i64])?);
            None
        }
    })
}
