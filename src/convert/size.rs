//! `dataset_size` / `shard_size` values: a number of rows, or a size string like `"2GB"`.

use std::str::FromStr;

use crate::error::{Error, Result};

/// A number of rows, or a byte budget turned into rows by an estimate of bytes per row.
///
/// Size strings are binary, as annbatch parses them (`parse_size(..., binary=True)`):
/// `"1GB"` = `"1GiB"` = 2^30 bytes; `K`, `M`, `G`, `T` with an optional `B` / `iB`, any case,
/// decimals allowed (`"1.5GB"`). A bare integer is a number of rows.
///
/// ```
/// use annbatch::convert::Size;
/// assert_eq!("2GB".parse::<Size>().unwrap(), Size::Bytes(2 << 30));
/// assert_eq!("4096".parse::<Size>().unwrap(), Size::Rows(4096));
/// assert_eq!(Size::Bytes(1 << 20).rows(1024.0), 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A number of rows.
    Rows(u64),
    /// A number of bytes.
    Bytes(u64),
}

impl Size {
    /// The number of rows this size stands for, at `bytes_per_row` (at least 1).
    pub fn rows(self, bytes_per_row: f64) -> u64 {
        match self {
            Self::Rows(n) => n,
            Self::Bytes(b) if bytes_per_row > 0.0 => ((b as f64 / bytes_per_row) as u64).max(1),
            Self::Bytes(_) => 1,
        }
    }
}

impl FromStr for Size {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::parameter("size", text, "expected rows (\"4096\") or a size (\"2GB\")");
        let t = text.trim();
        if let Ok(rows) = t.parse::<u64>() {
            return Ok(Self::Rows(rows));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let power = match unit.trim().to_ascii_lowercase().as_str() {
            "b" => 0,
            "k" | "kb" | "kib" => 1,
            "m" | "mb" | "mib" => 2,
            "g" | "gb" | "gib" => 3,
            "t" | "tb" | "tib" => 4,
            _ => return Err(bad()),
        };
        let bytes = number * 1024f64.powi(power);
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(bad());
        }
        Ok(Self::Bytes(bytes as u64))
    }
}

/// The text [`Size::from_str`] reads back: rows as a bare number, bytes in the largest binary
/// unit that divides them (`"20GB"`, `"1536B"`).
impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Rows(n) => write!(f, "{n}"),
            Self::Bytes(b) => {
                for (power, unit) in [(4, "TB"), (3, "GB"), (2, "MB"), (1, "KB")] {
                    let scale = 1u64 << (10 * power);
                    if b >= scale && b.is_multiple_of(scale) {
                        return write!(f, "{}{unit}", b / scale);
                    }
                }
                write!(f, "{b}B")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_binary_sizes() {
        assert_eq!("1000".parse::<Size>().ok(), Some(Size::Rows(1000)));
        assert_eq!("1GB".parse::<Size>().ok(), Some(Size::Bytes(1 << 30)));
        assert_eq!("512mib".parse::<Size>().ok(), Some(Size::Bytes(512 << 20)));
        assert_eq!("1.5K".parse::<Size>().ok(), Some(Size::Bytes(1536)));
        for bad in ["", "GB", "2 parsecs", "-1GB", "0.0001B"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_reads_back() {
        for size in [
            Size::Rows(4096),
            Size::Bytes(20 << 30),
            Size::Bytes(1 << 30),
            Size::Bytes(1536),
            Size::Bytes(3 << 40),
        ] {
            assert_eq!(size.to_string().parse::<Size>().ok(), Some(size), "{size}");
        }
        assert_eq!(Size::Bytes(20 << 30).to_string(), "20GB");
    }
}
