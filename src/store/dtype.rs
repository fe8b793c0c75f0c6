//! The element types AnnData arrays use, as a closed enum over zarrs' open data-type set.

use zarrs::array::data_type::{
    BoolDataType, Float32DataType, Float64DataType, Int16DataType, Int32DataType, Int64DataType,
    Int8DataType, StringDataType, UInt16DataType, UInt32DataType, UInt64DataType, UInt8DataType,
};
use zarrs::array::DataType;

use crate::error::{Error, Result};

/// An AnnData array's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `bool`
    Bool,
    /// `int8`
    I8,
    /// `int16`
    I16,
    /// `int32`
    I32,
    /// `int64`
    I64,
    /// `uint8`
    U8,
    /// `uint16`
    U16,
    /// `uint32`
    U32,
    /// `uint64`
    U64,
    /// `float32`
    F32,
    /// `float64`
    F64,
    /// variable-length UTF-8 string
    String,
}

impl Dtype {
    /// The dtype of the zarr array at `path`, or [`crate::Error::UnsupportedDtype`] for a type
    /// AnnData does not write.
    pub(crate) fn of_array(path: &str, dt: &DataType) -> crate::Result<Self> {
        Self::from_zarrs(dt).ok_or_else(|| crate::Error::UnsupportedDtype {
            path: path.to_string(),
            found: dt.to_string(),
            expected: "bool, (u)int8-64, float32/64 or string".into(),
        })
    }

    /// Maps a zarrs data type; `None` for types AnnData does not write.
    pub(crate) fn from_zarrs(dt: &DataType) -> Option<Self> {
        Some(if dt.is::<BoolDataType>() {
            Self::Bool
        } else if dt.is::<Int8DataType>() {
            Self::I8
        } else if dt.is::<Int16DataType>() {
            Self::I16
        } else if dt.is::<Int32DataType>() {
            Self::I32
        } else if dt.is::<Int64DataType>() {
            Self::I64
        } else if dt.is::<UInt8DataType>() {
            Self::U8
        } else if dt.is::<UInt16DataType>() {
            Self::U16
        } else if dt.is::<UInt32DataType>() {
            Self::U32
        } else if dt.is::<UInt64DataType>() {
            Self::U64
        } else if dt.is::<Float32DataType>() {
            Self::F32
        } else if dt.is::<Float64DataType>() {
            Self::F64
        } else if dt.is::<StringDataType>() {
            Self::String
        } else {
            return None;
        })
    }

    /// Bytes one decoded element takes in memory (a `String`'s header for strings).
    pub(crate) fn item_bytes(self) -> u64 {
        match self {
            Self::Bool | Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
            Self::String => std::mem::size_of::<String>() as u64,
        }
    }

    /// Whether this is an integer type (signed or unsigned).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Self::I8
                | Self::I16
                | Self::I32
                | Self::I64
                | Self::U8
                | Self::U16
                | Self::U32
                | Self::U64
        )
    }

    /// Whether this is a numeric type (integer or float).
    pub fn is_numeric(self) -> bool {
        self.is_integer() || matches!(self, Self::F32 | Self::F64)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bool => "bool",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::String => "string",
        })
    }
}

/// The strings of a decoded `string` array, each checked to be UTF-8 (zarrs' own conversion
/// says only "Invalid element value").
pub(crate) fn strings_of(path: &str, bytes: zarrs::array::ArrayBytes<'_>) -> Result<Vec<String>> {
    let variable = bytes.into_variable().map_err(|e| Error::zarr(path, e))?;
    let (bytes, offsets) = variable.into_parts();
    offsets
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let entry = bytes.get(w[0]..w[1]).ok_or_else(|| {
                Error::zarr(
                    path,
                    std::io::Error::other("string offsets past the chunk's bytes"),
                )
            })?;
            Error::utf8(path, i, entry)
        })
        .collect()
}
