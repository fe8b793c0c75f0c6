//! [`ElementSource`]: what the dataframe reader needs of a container format, and its zarr
//! implementation (the `.h5ad` one lives in `h5ad`).

use serde_json::{Map, Value};

use crate::error::Result;
use crate::zarr::chunked::ChunkedArray;
use crate::zarr::dtype::Dtype;
use crate::zarr::node::{NodeKind, ZarrStore};
use crate::zarr::whole::WholeArray;

/// What the dataframe reader needs of a container format (zarr, HDF5): node kinds, attributes,
/// and whole small arrays converted to a few Rust types.
pub(crate) trait ElementSource {
    /// Whether `path` is a group, an array, or absent.
    fn kind(&self, path: &str) -> Result<Option<NodeKind>>;
    /// The attributes of the node at `path`, as JSON.
    fn attributes(&self, path: &str) -> Result<Map<String, Value>>;
    /// Element type and shape of the array at `path`.
    fn array_info(&self, path: &str) -> Result<(Dtype, Vec<u64>)>;
    /// An integer or bool array, converted to `i64`.
    fn read_i64(&self, path: &str) -> Result<Vec<i64>>;
    /// A `uint64` array, exactly.
    fn read_u64(&self, path: &str) -> Result<Vec<u64>>;
    /// A numeric or bool array, converted to `f64`.
    fn read_f64(&self, path: &str) -> Result<Vec<f64>>;
    /// A bool array.
    fn read_bool(&self, path: &str) -> Result<Vec<bool>>;
    /// A string array.
    fn read_strings(&self, path: &str) -> Result<Vec<String>>;
    /// The names of the group `path`'s children.
    fn children(&self, path: &str) -> Result<Vec<String>>;
    /// The array at `path` read whole, any number of dimensions (0-d scalars too).
    fn read_whole(&self, path: &str) -> Result<WholeArray>;
}

impl ElementSource for ZarrStore {
    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        ZarrStore::kind(self, path)
    }
    fn attributes(&self, path: &str) -> Result<Map<String, Value>> {
        ZarrStore::attributes(self, path)
    }
    fn array_info(&self, path: &str) -> Result<(Dtype, Vec<u64>)> {
        let array = ChunkedArray::open(self, path)?;
        Ok((array.dtype(), array.shape().to_vec()))
    }
    fn read_i64(&self, path: &str) -> Result<Vec<i64>> {
        ChunkedArray::open(self, path)?.read_all_i64()
    }
    fn read_u64(&self, path: &str) -> Result<Vec<u64>> {
        ChunkedArray::open(self, path)?.read_all::<u64>()
    }
    fn read_f64(&self, path: &str) -> Result<Vec<f64>> {
        ChunkedArray::open(self, path)?.read_all_f64()
    }
    fn read_bool(&self, path: &str) -> Result<Vec<bool>> {
        ChunkedArray::open(self, path)?.read_all::<bool>()
    }
    fn read_strings(&self, path: &str) -> Result<Vec<String>> {
        ChunkedArray::open(self, path)?.read_all_strings()
    }
    fn children(&self, path: &str) -> Result<Vec<String>> {
        ZarrStore::children(self, path)
    }
    fn read_whole(&self, path: &str) -> Result<WholeArray> {
        ZarrStore::read_whole(self, path)
    }
}
