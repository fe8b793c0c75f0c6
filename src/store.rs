//! Reading AnnData from zarr stores (format 2 and 3, sharded or not) with `zarrs`, and from
//! `.h5ad` files ([`h5ad`], feature `hdf5`); writing zarr arrays ([`mod@write`]).
//!
//! [`AnnDataStore`] opens one AnnData group; its `X` is a [`XElement`] (CSR or dense) that reads
//! arbitrary sets of row ranges into reusable buffers, decoding each (inner) chunk at most once per
//! request. `obs` columns come as [`Column`]s, the `var` index as strings.

mod anndata;
pub(crate) mod budget;
mod chunked;
pub(crate) mod csr;
pub(crate) mod dataframe;
mod dense;
mod dtype;
mod fault;
mod files;
mod guard;
#[cfg(feature = "hdf5")]
pub mod h5ad;
mod inner_codec;
mod keys;
mod memory;
mod node;
mod open_options;
mod places;
pub(crate) mod read_plan;
#[cfg(feature = "remote")]
pub(crate) mod remote;
mod shard_reader;
mod source;
mod storage;
mod streaming_copy;
mod traffic;
mod whole;
pub mod write;

pub use anndata::{AnnDataStore, XElement};
pub(crate) use chunked::FromDecoded;
pub use csr::CsrElement;
pub use dataframe::Column;
pub use dense::DenseElement;
pub use dtype::Dtype;
pub(crate) use files::new_read_request;
pub(crate) use files::{kind_of, refuse_special};
pub use memory::InMemoryX;
pub(crate) use node::encoding as encoding_of;
pub(crate) use node::{NodeKind, ZarrStore};
pub(crate) use open_options::url_of;
pub use open_options::{OpenOptions, RemoteOptions};
pub use places::{CsrPlace, RowPlaces};
pub(crate) use source::ElementSource;
pub use traffic::RemoteTraffic;
pub(crate) use whole::{WholeArray, WholeValues};

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
