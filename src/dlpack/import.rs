//! Reading a DLPack tensor someone else made (numpy arrays handed to the Python loader): its
//! elements copied out, converted to the widest type of their kind.

use super::ffi::{DLTensor, DL_BFLOAT, DL_BOOL, DL_CPU, DL_FLOAT, DL_INT, DL_UINT};
use crate::error::{Error, Result};

/// A tensor's elements, flattened in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// Signed integers of any width, and unsigned ones up to 32 bits.
    Int(Vec<i64>),
    /// 64-bit unsigned integers (kept apart: they may not fit `i64`).
    UInt64(Vec<u64>),
    /// float16, bfloat16 and float32 (all exact in float32).
    Float32(Vec<f32>),
    /// float64.
    Float64(Vec<f64>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Elements {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Int(v) => v.len(),
            Self::UInt64(v) => v.len(),
            Self::Float32(v) => v.len(),
            Self::Float64(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Int(_) => "an integer type",
            Self::UInt64(_) => "uint64",
            Self::Float32(_) => "a float type",
            Self::Float64(_) => "float64",
            Self::Bool(_) => "bool",
        }
    }
}

/// The elements of the host tensor `t`, copied (any strides; row-major order).
///
/// # Errors
/// [`Error::UnsupportedDtype`] for a device other than the CPU, vector lanes or a type outside
/// bool / int / uint / float16–64 / bfloat16; [`Error::ShapeMismatch`] for a negative extent or
/// more elements than an address space holds.
///
/// # Safety
/// `t` must describe a live tensor: `shape` (and `strides`, unless NULL) hold `ndim` entries,
/// and every element they address lies in readable memory.
pub unsafe fn copy_elements(t: &DLTensor, what: &str) -> Result<Elements> {
    let unsupported = |found: String| Error::UnsupportedDtype {
        path: what.to_string(),
        found,
        expected: "a host array of bool, int, uint or float".into(),
    };
    if t.device.device_type != DL_CPU {
        return Err(unsupported(format!(
            "an array on DLPack device type {}",
            t.device.device_type
        )));
    }
    let dtype = t.dtype;
    if dtype.lanes != 1 {
        return Err(unsupported(format!("{} lanes", dtype.lanes)));
    }
    let ndim = usize::try_from(t.ndim).map_err(|_| unsupported(format!("ndim {}", t.ndim)))?;
    let shape: &[i64] = if ndim == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract: `shape` holds `ndim` entries.
        unsafe { std::slice::from_raw_parts(t.shape, ndim) }
    };
    let bad_shape = || Error::ShapeMismatch {
        path: what.to_string(),
        found: format!("shape {shape:?}"),
        expected: "extents >= 0 whose product is addressable".into(),
    };
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
        .ok_or_else(bad_shape)?;
    let width = usize::from(dtype.bits / 8);
    if count
        .checked_mul(width.max(1))
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(bad_shape());
    }
    // The copy takes up to 8 bytes an element (widened): it must fit in memory before it is
    // allocated, whatever extents the producer claims.
    crate::budget::check(what, "a copy of the array", count as u128, 8, 1)?;
    let strides: Vec<i64> = if t.strides.is_null() || ndim == 0 {
        let mut s = vec![1i64; ndim];
        for i in (0..ndim.saturating_sub(1)).rev() {
            s[i] = s[i + 1].saturating_mul(shape[i + 1]);
        }
        s
    } else {
        // SAFETY: the caller's contract: non-NULL `strides` holds `ndim` entries.
        unsafe { std::slice::from_raw_parts(t.strides, ndim) }.to_vec()
    };
    // SAFETY: `data + byte_offset` is the first element (DLPack's definition).
    let base = unsafe { t.data.cast::<u8>().add(t.byte_offset as usize) };
    // The byte offset of each element, row-major.
    let offsets = ElementOffsets::new(shape, &strides, width as isize);
    // SAFETY (each `read`): the caller's contract puts every addressed element in readable
    // memory; unaligned reads, as DLPack does not promise alignment of `byte_offset`.
    macro_rules! read {
        ($t:ty) => {
            offsets
                .take(count)
                .map(|o| unsafe { base.offset(o).cast::<$t>().read_unaligned() })
                .collect::<Vec<$t>>()
        };
    }
    Ok(match (dtype.code, dtype.bits) {
        (DL_INT, 8) => Elements::Int(read!(i8).into_iter().map(i64::from).collect()),
        (DL_INT, 16) => Elements::Int(read!(i16).into_iter().map(i64::from).collect()),
        (DL_INT, 32) => Elements::Int(read!(i32).into_iter().map(i64::from).collect()),
        (DL_INT, 64) => Elements::Int(read!(i64)),
        (DL_UINT, 8) => Elements::Int(read!(u8).into_iter().map(i64::from).collect()),
        (DL_UINT, 16) => Elements::Int(read!(u16).into_iter().map(i64::from).collect()),
        (DL_UINT, 32) => Elements::Int(read!(u32).into_iter().map(i64::from).collect()),
        (DL_UINT, 64) => Elements::UInt64(read!(u64)),
        (DL_FLOAT, 16) => Elements::Float32(read!(u16).into_iter().map(f16_to_f32).collect()),
        (DL_BFLOAT, 16) => Elements::Float32(
            read!(u16)
                .into_iter()
                .map(|b| f32::from_bits(u32::from(b) << 16))
                .collect(),
        ),
        (DL_FLOAT, 32) => Elements::Float32(read!(f32)),
        (DL_FLOAT, 64) => Elements::Float64(read!(f64)),
        (DL_BOOL, 8) => Elements::Bool(read!(u8).into_iter().map(|b| b != 0).collect()),
        (code, bits) => return Err(unsupported(format!("type code {code} of {bits} bits"))),
    })
}

/// IEEE half → single, exactly (every half is a single).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24, normalised.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Byte offsets of a strided tensor's elements in row-major order.
struct ElementOffsets<'a> {
    shape: &'a [i64],
    strides: Vec<isize>,
    index: Vec<i64>,
    offset: isize,
    started: bool,
}

impl<'a> ElementOffsets<'a> {
    fn new(shape: &'a [i64], strides: &[i64], width: isize) -> Self {
        Self {
            shape,
            strides: strides
                .iter()
                .map(|&s| (s as isize).wrapping_mul(width))
                .collect(),
            index: vec![0; shape.len()],
            offset: 0,
            started: false,
        }
    }
}

impl Iterator for ElementOffsets<'_> {
    type Item = isize;

    fn next(&mut self) -> Option<isize> {
        if !self.started {
            self.started = true;
            return Some(0);
        }
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            self.offset = self.offset.wrapping_add(self.strides[d]);
            if self.index[d] < self.shape[d] {
                return Some(self.offset);
            }
            self.offset = self
                .offset
                .wrapping_sub(self.strides[d].wrapping_mul(self.index[d] as isize));
            self.index[d] = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::ffi::{DLDataType, DLDevice};
    use super::*;

    /// A host tensor over `data` of scalar elements of DLPack type `code` / `bits`.
    fn tensor(data: *mut u8, shape: &mut [i64], strides: *mut i64, code: u8, bits: u8) -> DLTensor {
        let dtype = DLDataType {
            code,
            bits,
            lanes: 1,
        };
        DLTensor {
            data: data.cast(),
            device: DLDevice {
                device_type: DL_CPU,
                device_id: 0,
            },
            ndim: shape.len() as i32,
            dtype,
            shape: shape.as_mut_ptr(),
            strides,
            byte_offset: 0,
        }
    }

    #[test]
    fn strided_and_typed_tensors_are_read_in_row_major_order() {
        // A 2x3 int16 matrix read transposed (3x2, strides 1, 3).
        let mut values: Vec<i16> = vec![1, 2, 3, 4, 5, 6];
        let (mut shape, mut strides) = ([3i64, 2], [1i64, 3]);
        let t = tensor(
            values.as_mut_ptr().cast(),
            &mut shape,
            strides.as_mut_ptr(),
            DL_INT,
            16,
        );
        // SAFETY: `t` describes `values`.
        let read = unsafe { copy_elements(&t, "t") }.expect("read");
        assert_eq!(read, Elements::Int(vec![1, 4, 2, 5, 3, 6]));
        let mut big: Vec<u64> = vec![u64::MAX, 3];
        let mut shape = [2i64];
        let t = tensor(
            big.as_mut_ptr().cast(),
            &mut shape,
            std::ptr::null_mut(),
            DL_UINT,
            64,
        );
        // SAFETY: `t` describes `big`.
        let read = unsafe { copy_elements(&t, "t") }.expect("read");
        assert_eq!(read, Elements::UInt64(vec![u64::MAX, 3]));
    }

    #[test]
    fn half_floats_convert_exactly() {
        for (h, f) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x0400, 2f32.powi(-14)),
            (0x8000, -0.0),
        ] {
            assert_eq!(f16_to_f32(h).to_bits(), f.to_bits(), "{h:#x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn a_shape_claiming_more_than_memory_is_refused_before_reading() {
        let mut v = [0f32; 2];
        let mut shape = [1i64 << 50];
        let t = tensor(
            v.as_mut_ptr().cast(),
            &mut shape,
            std::ptr::null_mut(),
            DL_FLOAT,
            32,
        );
        // SAFETY: the shape is refused before any element is read.
        let err = unsafe { copy_elements(&t, "t") }.expect_err("refused");
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn other_devices_and_negative_extents_are_refused() {
        let mut v = [0f32; 2];
        let mut shape = [-2i64];
        let t = tensor(
            v.as_mut_ptr().cast(),
            &mut shape,
            std::ptr::null_mut(),
            DL_FLOAT,
            32,
        );
        // SAFETY: the shape is refused before any element is read.
        assert!(unsafe { copy_elements(&t, "t") }.is_err());
        let mut shape = [2i64];
        let mut t = tensor(
            v.as_mut_ptr().cast(),
            &mut shape,
            std::ptr::null_mut(),
            DL_FLOAT,
            32,
        );
        t.device.device_type = 2;
        // SAFETY: the device is refused before any element is read.
        assert!(unsafe { copy_elements(&t, "t") }.is_err());
    }
}
