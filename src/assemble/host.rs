//! Host batches: what `Loader::host_epoch` yields, for consumers without libtorch.

use super::aligned::AlignedGroup;
use super::memory::HostMemory;
use super::obs::Extras;
use super::parts::{BatchParts, ObsPart, XParts};
use crate::batch::{CsrBatch, DenseBatch, XBatch};

/// An obs column's values for one batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostObs {
    /// Category codes.
    Codes(Vec<i64>),
    /// float32 values (float32 / float16 columns, booleans as 0 / 1).
    Values(Vec<f32>),
    /// float64 values (float64 columns, nullable integers with NaN where missing).
    Float64(Vec<f64>),
    /// Integers of any width.
    Int64(Vec<i64>),
}

/// A batch in host memory (no libtorch needed).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// The rows of `X`.
    pub x: XBatch,
    /// The same rows of each requested layer, `(name, rows)` in the loader's `layers` order.
    pub layers: Vec<(String, XBatch)>,
    /// The same rows of each requested obsm entry, `(name, rows)` in the loader's `obsm` order.
    pub obsm: Vec<(String, XBatch)>,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<HostObs>,
    /// Global row ids, when `return_index`.
    pub index: Option<Vec<i64>>,
}

impl HostBatch {
    /// The batch made of `parts`, naming its matrices as `extras` does.
    pub(crate) fn new(parts: BatchParts<HostMemory>, extras: &Extras) -> Self {
        let (mut layers, mut obsm) = (Vec::new(), Vec::new());
        for (matrix, part) in extras.aligned.iter().zip(parts.aligned) {
            let named = (matrix.name.clone(), host_matrix(part));
            match matrix.group {
                AlignedGroup::Layers => layers.push(named),
                AlignedGroup::Obsm => obsm.push(named),
            }
        }
        let obs = parts
            .obs
            .into_iter()
            .map(|o| match o {
                ObsPart::Codes(v) => HostObs::Codes(v),
                ObsPart::Values(v) => HostObs::Values(v),
                ObsPart::Float64(v) => HostObs::Float64(v),
                ObsPart::Int64(v) => HostObs::Int64(v),
            })
            .collect();
        Self {
            x: host_matrix(parts.x),
            layers,
            obsm,
            obs,
            index: parts.index,
        }
    }

    /// The rows of layer `name`, if it was requested.
    pub fn layer(&self, name: &str) -> Option<&XBatch> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// The rows of obsm entry `name`, if it was requested.
    pub fn obsm_entry(&self, name: &str) -> Option<&XBatch> {
        self.obsm.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }
}

fn host_matrix(part: XParts<HostMemory>) -> XBatch {
    match part {
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
    }
}
