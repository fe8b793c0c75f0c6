//! Host batches as `tch::Tensor`s: sparse CSR (`int32` row pointers and column indices,
//! `float32` values) or dense `float32`, on the requested device.

use tch::{Device, Kind, Tensor};

mod pool;
pub(crate) use pool::StoragePool;

use crate::batch::{CsrBatch, DenseBatch, XBatch};
use crate::error::Result;

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
            let unavailable = |reason: String| crate::Error::DeviceUnavailable {
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
        other => Err(crate::Error::DeviceUnavailable {
            device: format!("{other:?}"),
            reason: "only cpu and cuda:N are supported".into(),
        }),
    }
}

/// A CPU tensor of `n` elements of `T`, from `pool` (torch memory nobody else refers to),
/// filled in place by `fill`, which must write every element.
pub(crate) fn filled<T: tch::kind::Element>(
    pool: &StoragePool,
    n: usize,
    fill: impl FnOnce(&mut [T]),
) -> Result<Tensor> {
    let t = pool.take::<T>(n)?;
    if n > 0 {
        // SAFETY: `t` is a contiguous CPU tensor of `n` elements of `T` (non-null since n > 0)
        // whose storage no other tensor refers to (fresh, or a pooled storage found free), and
        // the slice does not outlive this call.
        let slice = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n) };
        fill(slice);
    }
    Ok(t)
}

/// CPU tensors of `lens[i]` elements of `T`, from `pool`, handed to `fill` as exclusive slices
/// (which cannot outlive it); the tensors are returned once `fill` succeeded. `fill` must
/// write every element: the memory starts uninitialised or holds an earlier batch.
pub(crate) fn with_uninit<T: tch::kind::Element, R>(
    pool: &StoragePool,
    lens: &[usize],
    fill: impl FnOnce(Vec<&mut [T]>) -> Result<R>,
) -> Result<(Vec<Tensor>, R)> {
    let tensors = lens
        .iter()
        .map(|&n| pool.take::<T>(n))
        .collect::<Result<Vec<_>>>()?;
    let slices = tensors
        .iter()
        .zip(lens)
        .map(|(t, &n)| {
            if n == 0 {
                return &mut [][..];
            }
            // SAFETY: each tensor is a contiguous CPU tensor of `n` elements of `T` (non-null
            // since n > 0) whose storage no other tensor refers to (fresh, or a pooled storage
            // found free, each handed out once); the tensors do not overlap, and the slices are
            // moved into `fill`, whose signature keeps them from outliving this call (the
            // tensors live longer).
            unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n) }
        })
        .collect();
    let r = fill(slices)?;
    Ok((tensors, r))
}

/// Moves freshly assembled CPU tensors to `device`. With the `cuda` feature, the loader's
/// [`crate::cuda::CudaCopier`] uploads them on its copy stream and returns once they are on the
/// device. Otherwise each goes through pinned memory with a non-blocking copy on torch's current
/// stream (torch's caching host allocator keeps the pinned source alive until the copy ran).
pub(crate) fn place_all(
    tensors: Vec<Tensor>,
    device: Device,
    shared: &crate::loader::Shared,
) -> Result<Vec<Tensor>> {
    if device == Device::Cpu {
        return Ok(tensors);
    }
    #[cfg(feature = "cuda")]
    if let Some(copier) = &shared.copier {
        let host = tensors
            .iter()
            .map(|t| t.f_contiguous())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return copier.upload(&host);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = shared;
    tensors
        .into_iter()
        .map(|t| {
            let kind = t.kind();
            Ok(t.f_pin_memory(device)?
                .f_to_device_(device, kind, true, false)?)
        })
        .collect()
}

/// A batch's `X` as CPU arrays, before placement.
pub(crate) enum HostX {
    /// Sparse CSR parts and the `[rows, n_var]` shape.
    Csr {
        crow: Tensor,
        col: Tensor,
        values: Tensor,
        size: [i64; 2],
    },
    /// A dense `[rows, width]` tensor.
    Dense(Tensor),
}

/// The batch on `device`, from its CPU arrays: all of them placed together (one upload, one
/// wait, on CUDA), then the sparse CSR tensor is built on the device.
pub(crate) fn finish(
    x: HostX,
    obs: Vec<crate::loader::ObsTensor>,
    index: Option<Tensor>,
    device: Device,
    shared: &crate::loader::Shared,
) -> Result<crate::loader::Batch> {
    use crate::loader::{Batch, ObsTensor};
    let (mut arrays, size) = match x {
        HostX::Csr {
            crow,
            col,
            values,
            size,
        } => (vec![crow, col, values], Some(size)),
        HostX::Dense(t) => (vec![t], None),
    };
    let mut labels = Vec::with_capacity(obs.len());
    for o in obs {
        arrays.push(o.values);
        labels.push((o.name, o.categories));
    }
    let has_index = index.is_some();
    arrays.extend(index);
    let mut placed = place_all(arrays, device, shared)?.into_iter();
    let mut next = || {
        placed.next().ok_or_else(|| {
            crate::Error::Torch(tch::TchError::Kind("placed too few tensors".into()))
        })
    };
    let x = match size {
        Some(size) => Tensor::f_sparse_csr_tensor_crow_col_value_size(
            &next()?,
            &next()?,
            &next()?,
            size,
            (Kind::Float, device),
        )?,
        None => next()?,
    };
    let obs = labels
        .into_iter()
        .map(|(name, categories)| {
            Ok(ObsTensor {
                name,
                values: next()?,
                categories,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let index = if has_index { Some(next()?) } else { None };
    Ok(Batch { x, obs, index })
}

/// Builds one batch's tensors from a fetch: rows `split` (positions in request order),
/// gathered straight into torch-allocated memory.
pub(crate) fn assemble(
    fetch: &crate::fetch::Fetch,
    split: &[usize],
    shared: &crate::loader::Shared,
    device: Device,
) -> Result<crate::loader::Batch> {
    let rows: Vec<usize> = split.iter().map(|&i| fetch.order[i]).collect();
    let b = rows.len();
    let x = match &fetch.x {
        XBatch::Csr(src) => {
            let lens: Vec<usize> = rows
                .iter()
                .map(|&r| (src.indptr[r + 1] - src.indptr[r]) as usize)
                .collect();
            let nnz: usize = lens.iter().sum();
            let crow = filled::<i32>(&shared.storage, b + 1, |out| {
                out[0] = 0;
                for (i, len) in lens.iter().enumerate() {
                    // Fits: nnz <= the fetch's values, whose count fits i32.
                    out[i + 1] = out[i] + *len as i32;
                }
            })?;
            let col = filled::<i32>(&shared.storage, nnz, |out| {
                gather_runs(&rows, &src.indptr, &src.indices, out)
            })?;
            let values = filled::<f32>(&shared.storage, nnz, |out| {
                gather_runs(&rows, &src.indptr, &src.data, out)
            })?;
            HostX::Csr {
                crow,
                col,
                values,
                size: [b as i64, src.n_var as i64],
            }
        }
        XBatch::Dense(src) => {
            let w = src.row_width;
            let t = filled::<f32>(&shared.storage, b * w, |out| {
                for (i, &r) in rows.iter().enumerate() {
                    out[i * w..(i + 1) * w].copy_from_slice(&src.data[r * w..(r + 1) * w]);
                }
            })?;
            HostX::Dense(t.f_view([b as i64, w as i64])?)
        }
    };
    let (obs, index) = extras(&fetch.rows, split, shared)?;
    finish(x, obs, index, device, shared)
}

/// The obs tensors and the index tensor of a batch, on the CPU: rows `split` of a fetch whose
/// global row ids, in request order, are `rows`.
pub(crate) fn extras(
    rows: &[u64],
    split: &[usize],
    shared: &crate::loader::Shared,
) -> Result<(Vec<crate::loader::ObsTensor>, Option<Tensor>)> {
    use crate::loader::{ObsSource, ObsTensor};
    let b = split.len();
    let mut obs = Vec::with_capacity(shared.obs.len());
    for (name, source) in shared.obs.iter() {
        let (values, categories) = match source {
            ObsSource::Categorical { codes, categories } => (
                filled::<i64>(&shared.storage, b, |out| {
                    for (o, &i) in out.iter_mut().zip(split) {
                        *o = i64::from(codes[rows[i] as usize]);
                    }
                })?,
                Some(categories.clone()),
            ),
            ObsSource::Numeric(v) => (
                filled::<f32>(&shared.storage, b, |out| {
                    for (o, &i) in out.iter_mut().zip(split) {
                        *o = v[rows[i] as usize];
                    }
                })?,
                None,
            ),
        };
        obs.push(ObsTensor {
            name: name.clone(),
            values,
            categories,
        });
    }
    let index = if shared.return_index {
        let t = filled::<i64>(&shared.storage, b, |out| {
            for (o, &i) in out.iter_mut().zip(split) {
                *o = rows[i] as i64;
            }
        })?;
        Some(t)
    } else {
        None
    };
    Ok((obs, index))
}

/// Copies the CSR runs of `rows` (per `indptr`) of `src` back to back into `out`.
fn gather_runs<T: Copy>(rows: &[usize], indptr: &[i32], src: &[T], out: &mut [T]) {
    let mut at = 0;
    for &r in rows {
        let (a, e) = (indptr[r] as usize, indptr[r + 1] as usize);
        out[at..at + e - a].copy_from_slice(&src[a..e]);
        at += e - a;
    }
}
