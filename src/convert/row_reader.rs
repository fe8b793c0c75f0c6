//! [`RowReader`]: what the converter's staging reads rows from (an input's `X`, a layer, an
//! `obsm` entry, `raw/X`, a transposed CSC matrix).

use std::ops::Range;
use std::path::Path;

use crate::batch::{CsrBatch, DenseBatch, RowValue, XBatch};
use crate::error::Result;
use crate::zarr::{Dtype, FromDecoded};

/// A value type that holds a matrix's stored values exactly while it is staged: `f64` (floats,
/// bool), `i64` (signed integers and the unsigned ones below 64 bits), `u64` (uint64).
#[cfg(feature = "hdf5")]
pub(crate) trait Exact: RowValue + FromDecoded + hdf5::H5Type {
    /// A value that passed through float64 (a CSC matrix's transposition), if it is exact.
    fn from_f64(v: f64) -> Option<Self>;
}
/// A value type that holds a matrix's stored values exactly while it is staged: `f64` (floats,
/// bool), `i64` (signed integers and the unsigned ones below 64 bits), `u64` (uint64).
#[cfg(not(feature = "hdf5"))]
pub(crate) trait Exact: RowValue + FromDecoded {
    /// A value that passed through float64 (a CSC matrix's transposition), if it is exact.
    fn from_f64(v: f64) -> Option<Self>;
}

/// Integers of magnitude below 2^53 are exact in float64; one at or past it may be rounded.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

impl Exact for f64 {
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}
impl Exact for i64 {
    fn from_f64(v: f64) -> Option<Self> {
        (v.abs() < EXACT_IN_F64).then_some(v as i64)
    }
}
impl Exact for u64 {
    fn from_f64(v: f64) -> Option<Self> {
        (v.abs() < EXACT_IN_F64).then_some(v as u64)
    }
}

/// What staging reads rows from: an input's `X` or one of its matrices, as float32 or (for
/// matrices kept in another dtype) in a type that holds their values exactly.
pub(crate) trait RowReader: Sync {
    fn path(&self) -> &Path;
    fn indptr(&self) -> Option<&[u64]>;
    /// The element type of the stored values.
    fn dtype(&self) -> Dtype;
    fn new_batch(&self) -> XBatch;
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()>;
    fn read_rows_wide(&self, ranges: &[Range<u64>], out: &mut XBatch<f64>) -> Result<()>;
    fn read_rows_i64(&self, ranges: &[Range<u64>], out: &mut XBatch<i64>) -> Result<()>;
    fn read_rows_u64(&self, ranges: &[Range<u64>], out: &mut XBatch<u64>) -> Result<()>;
}

/// An empty batch of `reader`'s kind (CSR or dense) for values of type `V`.
pub(crate) fn empty_batch<V: RowValue>(reader: &dyn RowReader) -> XBatch<V> {
    match reader.new_batch() {
        XBatch::Csr(b) => XBatch::Csr(CsrBatch::new(b.n_var)),
        XBatch::Dense(b) => XBatch::Dense(DenseBatch::new(b.row_width)),
    }
}

/// The `RowReader` methods that read values exactly, for a type with a generic
/// `read_exact::<V: Exact>(&self, ranges, out)`.
macro_rules! exact_reads {
    () => {
        fn read_rows_wide(
            &self,
            ranges: &[std::ops::Range<u64>],
            out: &mut crate::batch::XBatch<f64>,
        ) -> crate::error::Result<()> {
            self.read_exact(ranges, out)
        }
        fn read_rows_i64(
            &self,
            ranges: &[std::ops::Range<u64>],
            out: &mut crate::batch::XBatch<i64>,
        ) -> crate::error::Result<()> {
            self.read_exact(ranges, out)
        }
        fn read_rows_u64(
            &self,
            ranges: &[std::ops::Range<u64>],
            out: &mut crate::batch::XBatch<u64>,
        ) -> crate::error::Result<()> {
            self.read_exact(ranges, out)
        }
    };
}
pub(crate) use exact_reads;
