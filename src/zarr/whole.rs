//! Arrays of any number of dimensions (0-d scalars included) read whole, in a few value types:
//! what the converter copies `uns` with. Their size is checked against memory before reading.

use super::dtype::Dtype;
use super::node::ZarrStore;
use crate::budget;
use crate::error::{Error, Result};

/// A whole array: its stored type, shape (`[]` for a scalar) and values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WholeArray {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub values: WholeValues,
}

/// The values of a [`WholeArray`], widened to one type per kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WholeValues {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    /// Unsigned integers past `i64::MAX` are kept exactly.
    UInt(Vec<u64>),
    Float(Vec<f64>),
    Str(Vec<String>),
}

/// Checks that `shape`'s elements of `dtype` can be read whole.
pub(crate) fn check_size(path: &str, dtype: Dtype, shape: &[u64]) -> Result<()> {
    let elements = shape
        .iter()
        .try_fold(1u128, |n, &d| n.checked_mul(u128::from(d)))
        .unwrap_or(u128::MAX);
    // Strings: at least a pointer and a length each, before their bytes.
    let item = if dtype == Dtype::String {
        24
    } else {
        dtype.item_bytes().max(8)
    };
    budget::check(path, "an uns element read whole", elements, item, 8)
}

impl ZarrStore {
    /// Reads the array at `path` whole, whatever its number of dimensions.
    pub(crate) fn read_whole(&self, path: &str) -> Result<WholeArray> {
        let (array, _) = self.array_in(path, false)?;
        let dtype = Dtype::of_array(path, array.data_type())?;
        let shape = array.shape().to_vec();
        check_size(path, dtype, &shape)?;
        let subset = array.subset_all();
        macro_rules! get {
            ($t:ty) => {
                super::guard::guarded(path, || {
                    array
                        .retrieve_array_subset::<Vec<$t>>(&subset)
                        .map_err(|e| Error::zarr(path, e))
                })?
            };
        }
        let values = match dtype {
            Dtype::Bool => WholeValues::Bool(get!(bool)),
            Dtype::I8 => WholeValues::Int(get!(i8).into_iter().map(i64::from).collect()),
            Dtype::I16 => WholeValues::Int(get!(i16).into_iter().map(i64::from).collect()),
            Dtype::I32 => WholeValues::Int(get!(i32).into_iter().map(i64::from).collect()),
            Dtype::I64 => WholeValues::Int(get!(i64)),
            Dtype::U8 => WholeValues::UInt(get!(u8).into_iter().map(u64::from).collect()),
            Dtype::U16 => WholeValues::UInt(get!(u16).into_iter().map(u64::from).collect()),
            Dtype::U32 => WholeValues::UInt(get!(u32).into_iter().map(u64::from).collect()),
            Dtype::U64 => WholeValues::UInt(get!(u64)),
            Dtype::F16 => WholeValues::Float(get!(half::f16).into_iter().map(f64::from).collect()),
            Dtype::F32 => WholeValues::Float(get!(f32).into_iter().map(f64::from).collect()),
            Dtype::F64 => WholeValues::Float(get!(f64)),
            Dtype::String => WholeValues::Str(super::dtype::strings_of(
                path,
                super::guard::guarded(path, || {
                    array
                        .retrieve_array_subset::<zarrs::array::ArrayBytes<'static>>(&subset)
                        .map_err(|e| Error::zarr(path, e))
                })?,
            )?),
        };
        Ok(WholeArray {
            dtype,
            shape,
            values,
        })
    }
}
