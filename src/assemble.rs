//! Batch assembly: a load request's rows, read from the store straight into the arrays of its
//! batches.
//!
//! ```text
//! LoadRequest ─▶ fetch_batches: size every batch (indptr / row width), cut its arrays into
//!                one run per row, decode each chunk once and copy it into its rows' runs
//!                (the same for each requested layer / obsm matrix)
//!             ─▶ BatchParts<M> (X, layers / obsm, obs columns, row ids) in a Memory M:
//!                HostMemory → HostBatch        (this module)
//!                PooledMemory → DlBatch        (this module: DLPack, for Python and C)
//!                             → tch Batch      (crate::tensor: tensors viewing the DlBatch)
//! ```

mod aligned;
mod dl_batch;
pub(crate) mod fetch_plan;
mod host;
mod memory;
mod obs;
mod parts;
mod pooled;
pub(crate) mod read_ahead;
mod scatter;

pub use aligned::{AlignedGroup, AlignedMatrix};
pub use dl_batch::{DlBatch, DlMatrix, DlObs};
pub use host::{HostBatch, HostObs};
pub use memory::HostMemory;
#[cfg(all(test, feature = "tch"))]
pub(crate) use memory::Memory;
pub use obs::{Extras, ObsSource};
#[cfg(feature = "cuda")]
pub use pooled::PageLock;
pub use pooled::PooledMemory;
pub(crate) use scatter::fetch_batches;
