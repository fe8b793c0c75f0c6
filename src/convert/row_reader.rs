//! [`RowReader`]: what the converter's staging reads rows from (an input's `X`, a layer, an
//! `obsm` entry, `raw/X`, a transposed CSC matrix).

use std::ops::Range;
use std::path::Path;

use crate::batch::XBatch;
use crate::error::Result;
use crate::store::Dtype;

/// What staging reads rows from: an input's `X` or one of its matrices, as float32 or (for
/// matrices kept in another dtype) as float64.
pub(crate) trait RowReader: Sync {
    fn path(&self) -> &Path;
    fn indptr(&self) -> Option<&[u64]>;
    /// The element type of the stored values.
    fn dtype(&self) -> Dtype;
    fn new_batch(&self) -> XBatch;
    fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()>;
    fn read_rows_wide(&self, ranges: &[Range<u64>], out: &mut XBatch<f64>) -> Result<()>;
    /// An empty float64 batch of the right kind.
    fn wide_batch(&self) -> XBatch<f64> {
        match self.new_batch() {
            XBatch::Csr(b) => XBatch::Csr(crate::batch::CsrBatch::new(b.n_var)),
            XBatch::Dense(b) => XBatch::Dense(crate::batch::DenseBatch::new(b.row_width)),
        }
    }
}
