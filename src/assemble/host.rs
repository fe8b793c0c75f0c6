//! Host batches: what `Loader::host_epoch` yields, for consumers without libtorch.

use super::memory::HostMemory;
use super::parts::{BatchParts, ObsPart, XParts};
use crate::batch::{CsrBatch, DenseBatch, XBatch};

/// An obs column's values for one batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostObs {
    /// Category codes.
    Codes(Vec<i64>),
    /// Numeric values.
    Values(Vec<f32>),
}

/// A batch in host memory (no libtorch needed).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// The rows of `X`.
    pub x: XBatch,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<HostObs>,
    /// Global row ids, when `return_index`.
    pub index: Option<Vec<i64>>,
}

impl From<BatchParts<HostMemory>> for HostBatch {
    fn from(parts: BatchParts<HostMemory>) -> Self {
        let x = match parts.x {
            XParts::Csr {
                indptr,
                indices,
                data,
                n_var,
                ..
            } => XBatch::Csr(CsrBatch {
                indptr,
                indices,
                data,
                n_var,
            }),
            XParts::Dense { data, width, .. } => XBatch::Dense(DenseBatch {
                data,
                row_width: width,
            }),
        };
        let obs = parts
            .obs
            .into_iter()
            .map(|o| match o {
                ObsPart::Codes(v) => HostObs::Codes(v),
                ObsPart::Values(v) => HostObs::Values(v),
            })
            .collect();
        Self {
            x,
            obs,
            index: parts.index,
        }
    }
}
