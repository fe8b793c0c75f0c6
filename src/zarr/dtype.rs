//! The element types AnnData arrays use, as a closed enum over zarrs' open data-type set.

use zarrs::array::data_type::{
    BoolDataType, Float16DataType, Float32DataType, Float64DataType, Int16DataType, Int32DataType,
    Int64DataType, Int8DataType, StringDataType, UInt16DataType, UInt32DataType, UInt64DataType,
    UInt8DataType,
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
    /// `float16` (read as float32 in batches, kept as float16 by the converter)
    F16,
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
            expected: "bool, (u)int8-64, float16/32/64 or string".into(),
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
        } else if dt.is::<Float16DataType>() {
            Self::F16
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
            Self::I16 | Self::U16 | Self::F16 => 2,
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

    /// The dtype numpy gives an array concatenated from arrays of `self` and `other`
    /// (`numpy.promote_types`): bool joins anything; integers of one sign the wider; signed
    /// and unsigned a signed type wider than the unsigned (float64 past int64); integers with
    /// floats the float that holds both ((u)int8 → float16, (u)int16 → float32, wider → float64).
    /// Strings with anything else stay strings (refused where numbers are needed).
    pub(crate) fn promote(self, other: Self) -> Self {
        use Dtype::*;
        // (is float, is signed, bytes) of a number.
        let class = |d: Self| match d {
            I8 => Some((false, true, 1)),
            I16 => Some((false, true, 2)),
            I32 => Some((false, true, 4)),
            I64 => Some((false, true, 8)),
            U8 => Some((false, false, 1)),
            U16 => Some((false, false, 2)),
            U32 => Some((false, false, 4)),
            U64 => Some((false, false, 8)),
            F16 => Some((true, true, 2)),
            F32 => Some((true, true, 4)),
            F64 => Some((true, true, 8)),
            Bool | String => None,
        };
        let int = |signed: bool, bytes: u8| match (signed, bytes) {
            (true, 1) => I8,
            (true, 2) => I16,
            (true, 4) => I32,
            (true, 8) => I64,
            (false, 1) => U8,
            (false, 2) => U16,
            (false, 4) => U32,
            (false, 8) => U64,
            _ => F64,
        };
        let float = |bytes: u8| match bytes {
            2 => F16,
            4 => F32,
            _ => F64,
        };
        if self == other {
            return self;
        }
        match (self, other) {
            (String, _) | (_, String) => String,
            (Bool, d) | (d, Bool) => d,
            _ => match (class(self), class(other)) {
                (Some((false, sa, a)), Some((false, sb, b))) if sa == sb => int(sa, a.max(b)),
                (Some((false, sa, a)), Some((false, _, b))) => {
                    // Signed with unsigned: a signed type wider than the unsigned one.
                    let (signed, unsigned) = if sa { (a, b) } else { (b, a) };
                    int(true, signed.max(unsigned * 2))
                }
                (Some((true, _, a)), Some((true, _, b))) => float(a.max(b)),
                (Some((true, _, f)), Some((false, _, i)))
                | (Some((false, _, i)), Some((true, _, f))) => {
                    // The float an integer of `i` bytes fits in.
                    float(f.max(match i {
                        1 => 2,
                        2 => 4,
                        _ => 8,
                    }))
                }
                _ => F64,
            },
        }
    }

    /// Whether this is a numeric type (integer or float).
    pub fn is_numeric(self) -> bool {
        self.is_integer() || matches!(self, Self::F16 | Self::F32 | Self::F64)
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
            Self::F16 => "float16",
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

#[cfg(test)]
mod tests {
    use super::Dtype;

    const ALL: [Dtype; 12] = [
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F16,
        Dtype::F32,
        Dtype::F64,
    ];

    /// `numpy.promote_types` over every pair (numpy 2.x, written out from it).
    #[test]
    #[rustfmt::skip]
    fn promotion_is_numpys() {
        let numpy = [
            ("bool", ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]),
            ("int8", ["int8", "int8", "int16", "int32", "int64", "int16", "int32", "int64", "float64", "float16", "float32", "float64"]),
            ("int16", ["int16", "int16", "int16", "int32", "int64", "int16", "int32", "int64", "float64", "float32", "float32", "float64"]),
            ("int32", ["int32", "int32", "int32", "int32", "int64", "int32", "int32", "int64", "float64", "float64", "float64", "float64"]),
            ("int64", ["int64", "int64", "int64", "int64", "int64", "int64", "int64", "int64", "float64", "float64", "float64", "float64"]),
            ("uint8", ["uint8", "int16", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]),
            ("uint16", ["uint16", "int32", "int32", "int32", "int64", "uint16", "uint16", "uint32", "uint64", "float32", "float32", "float64"]),
            ("uint32", ["uint32", "int64", "int64", "int64", "int64", "uint32", "uint32", "uint32", "uint64", "float64", "float64", "float64"]),
            ("uint64", ["uint64", "float64", "float64", "float64", "float64", "uint64", "uint64", "uint64", "uint64", "float64", "float64", "float64"]),
            ("float16", ["float16", "float16", "float32", "float64", "float64", "float16", "float32", "float64", "float64", "float16", "float32", "float64"]),
            ("float32", ["float32", "float32", "float32", "float64", "float64", "float32", "float32", "float64", "float64", "float32", "float32", "float64"]),
            ("float64", ["float64", "float64", "float64", "float64", "float64", "float64", "float64", "float64", "float64", "float64", "float64", "float64"]),
        ];
        let parse = |name: &str| {
            ALL.into_iter()
                .find(|d| d.to_string() == name)
                .expect("a dtype name")
        };
        for (a, row) in numpy {
            for (b, want) in ALL.iter().zip(row) {
                let got = parse(a).promote(*b);
                assert_eq!(got.to_string(), want, "{a} + {b}");
            }
        }
    }
}
