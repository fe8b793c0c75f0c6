//! AnnData elements: reading AnnData from zarr stores (format 2 and 3, sharded or not, through
//! the crate's zarr layer) and from `.h5ad` files ([`h5ad`], feature `hdf5`); writing them
//! ([`mod@write`]).
//!
//! [`AnnDataStore`] opens one AnnData group; its `X` is a [`XElement`] (CSR or dense) that reads
//! arbitrary sets of row ranges into reusable buffers, decoding each (inner) chunk at most once per
//! request. `obs` columns come as [`Column`]s, the `var` index as strings.

mod anndata;
pub(crate) mod csr;
pub(crate) mod dataframe;
mod dense;
#[cfg(feature = "hdf5")]
pub mod h5ad;
mod joined;
mod memory;
mod places;
mod source;
pub(crate) mod var_space;
pub mod write;

pub use anndata::{AnnDataStore, JoinedX, XElement};
pub use csr::CsrElement;
pub use dataframe::Column;
pub use dense::DenseElement;
pub(crate) use joined::compact_runs;
pub use memory::InMemoryX;
pub use places::{CsrPlace, RowPlaces};
// Reached as `annbatch::store::…` before the layers were split.
pub use crate::storage::{OpenOptions, RemoteOptions, RemoteTraffic};
pub use crate::zarr::Dtype;
pub(crate) use source::ElementSource;

/// The first bytes of every HDF5 file.
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

/// Whether `path` is a file that starts like HDF5 (an `.h5ad`), whatever its name.
pub(crate) fn is_hdf5_file(path: &std::path::Path) -> bool {
    let mut head = [0u8; 8];
    // Not a FIFO (whose open would wait for a writer), socket or device.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head == HDF5_SIGNATURE)
}
