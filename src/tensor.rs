//! Host batches as `tch::Tensor`s: sparse CSR (`int32` row pointers and column indices,
//! `float32` values) or dense `float32`, on the requested device.

use tch::{Device, Kind, Tensor};

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
