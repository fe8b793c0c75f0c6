//! Zarr arrays over [`crate::storage`]: nodes and their metadata ([`node`]), chunked row reads
//! ([`chunked`]), the shard reader that decodes inner chunks in place ([`shard_reader`] with
//! [`inner_codec`]), streaming copies of raw chunks, dtypes, whole small arrays, and zarrs'
//! panics turned into errors ([`guard`]). Nothing here knows AnnData.

pub(crate) mod chunked;
pub(crate) mod dtype;
pub(crate) mod guard;
mod inner_codec;
pub(crate) mod node;
pub(crate) mod shard_reader;
mod streaming_copy;
pub(crate) mod whole;

pub(crate) use chunked::FromDecoded;
pub use dtype::Dtype;
pub(crate) use node::encoding as encoding_of;
pub(crate) use node::{NodeKind, ZarrStore};
pub(crate) use whole::{WholeArray, WholeValues};
