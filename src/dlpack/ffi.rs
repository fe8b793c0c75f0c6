//! The DLPack structs (`dlpack.h`, version 1.1), laid out as C lays them out.

use std::ffi::c_void;

/// `DLPackVersion`: the ABI version of a [`DLManagedTensorVersioned`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLPackVersion {
    /// Major version (1 for DLPack 1.x).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// `DLDevice`: a device type (`kDLCPU` = 1, `kDLCUDA` = 2, …) and its index.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDevice {
    /// `DLDeviceType`.
    pub device_type: i32,
    /// Device index (0 for the CPU).
    pub device_id: i32,
}

/// `kDLCPU`.
pub const DL_CPU: i32 = 1;
/// `kDLCUDA`: CUDA device memory.
pub const DL_CUDA: i32 = 2;
/// The CUDA stream DLPack's Python protocol numbers 1: the legacy default stream (its handle,
/// `CU_STREAM_LEGACY`, is the same number). Torch's default stream, and the stream of a
/// consumer that names none.
pub const CUDA_LEGACY_STREAM: usize = 0x1;

/// `DLDataType`: a type code, its width in bits and its lanes (1 for scalars).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    /// `DLDataTypeCode`: [`DL_INT`], [`DL_UINT`], [`DL_FLOAT`], [`DL_BFLOAT`], [`DL_BOOL`], …
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (1 for scalars).
    pub lanes: u16,
}

/// `kDLInt`: signed integers.
pub const DL_INT: u8 = 0;
/// `kDLUInt`: unsigned integers.
pub const DL_UINT: u8 = 1;
/// `kDLFloat`: IEEE floats.
pub const DL_FLOAT: u8 = 2;
/// `kDLBfloat`: bfloat16.
pub const DL_BFLOAT: u8 = 4;
/// `kDLBool`: booleans (8 bits each).
pub const DL_BOOL: u8 = 6;

/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
pub const FLAG_READ_ONLY: u64 = 1;

/// `DLTensor`: where the elements are and how they are laid out.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLTensor {
    /// Address of the data (plus `byte_offset`).
    pub data: *mut c_void,
    /// Where the data lives.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` extents.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or NULL for a compact row-major tensor.
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// `DLManagedTensor`: the pre-1.0 hand-over (capsule name `dltensor`).
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    /// The tensor.
    pub dl_tensor: DLTensor,
    /// The producer's context.
    pub manager_ctx: *mut c_void,
    /// Frees the tensor; called once by the consumer.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `DLManagedTensorVersioned`: the DLPack 1.x hand-over (capsule name `dltensor_versioned`).
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    /// The DLPack version this struct follows.
    pub version: DLPackVersion,
    /// The producer's context.
    pub manager_ctx: *mut c_void,
    /// Frees the tensor; called once by the consumer.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    /// `DLPACK_FLAG_BITMASK_*` bits.
    pub flags: u64,
    /// The tensor.
    pub dl_tensor: DLTensor,
}
