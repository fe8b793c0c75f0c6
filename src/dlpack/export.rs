//! [`DlArray`]: an owned array exported as a DLPack managed tensor.

use std::any::Any;
use std::ffi::c_void;
use std::ptr;

use super::ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
    DL_CPU, DL_FLOAT, DL_INT, DL_UINT,
};
use crate::error::{Error, Result};

/// An element type a [`DlArray`] can hold.
pub trait DlElement: Copy + Send + 'static {
    /// Its DLPack type.
    const DTYPE: DLDataType;
}

macro_rules! dl_element {
    ($($t:ty => $code:expr),* $(,)?) => {$(
        impl DlElement for $t {
            const DTYPE: DLDataType = DLDataType {
                code: $code,
                bits: (std::mem::size_of::<$t>() * 8) as u8,
                lanes: 1,
            };
        }
    )*};
}
dl_element!(i32 => DL_INT, i64 => DL_INT, u8 => DL_UINT, f32 => DL_FLOAT, f64 => DL_FLOAT);

/// Device memory behind a [`DlArray`] (a GPU buffer): its side of DLPack's stream protocol.
pub trait DeviceOwner: Send + 'static {
    /// Called once, before the memory is handed to a consumer that will use it on `stream` (a
    /// CUDA stream handle as DLPack's Python protocol encodes it: 1 the legacy default stream,
    /// 2 the per-thread default stream, else the `CUstream` itself; `None`: the consumer asked
    /// for no synchronisation). The consumer's stream must wait until the contents are ready,
    /// and the memory, once released, must not be reused before the work queued on that stream
    /// by then is done.
    ///
    /// # Errors
    /// When the driver refuses the wait.
    fn hand_over(&mut self, stream: Option<usize>) -> Result<()>;
}

/// Who keeps an array's memory alive.
enum Owner {
    /// Host memory: a `Vec`, or a pooled buffer that goes home when dropped (only held).
    Host(#[allow(dead_code)] Box<dyn Any + Send>),
    /// Device memory.
    Device(Box<dyn DeviceOwner>),
}

/// One array of a batch, in host (or device) memory, with its shape and element type, ready to
/// be handed to a DLPack consumer. Dropping it (or the consumer releasing the export) frees the
/// memory, or returns it to the pool it came from.
pub struct DlArray {
    /// The first element; points into `owner`'s memory, which never moves.
    data: *mut c_void,
    len: usize,
    dtype: DLDataType,
    shape: Vec<i64>,
    device: DLDevice,
    /// Keeps the memory alive.
    owner: Owner,
}

// SAFETY: `data` points into memory that `owner` (itself `Send`) owns exclusively; nothing
// else holds the pointer while the array is not exported.
unsafe impl Send for DlArray {}

impl std::fmt::Debug for DlArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlArray")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl DlArray {
    /// The elements of `owner` (any owner of heap memory: `Vec<T>`, a pooled buffer) as an
    /// array of `shape`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `shape` does not hold exactly the owner's elements.
    pub fn new<T: DlElement, O: AsMut<[T]> + Send + 'static>(
        owner: O,
        shape: Vec<i64>,
    ) -> Result<Self> {
        let mut owner = Box::new(owner);
        let slice = (*owner).as_mut();
        let (data, len) = (slice.as_mut_ptr().cast::<c_void>(), slice.len());
        check_shape(len, &shape)?;
        Ok(Self {
            data,
            len,
            dtype: T::DTYPE,
            shape,
            device: HOST,
            owner: Owner::Host(owner),
        })
    }

    /// An array of `len` elements of `dtype` in device memory at `data`, owned by `owner`, of
    /// `shape` (which must hold `len` elements).
    ///
    /// # Safety
    /// `data` addresses `len` elements of `dtype` on `device` that stay valid and unchanged
    /// until `owner` is dropped.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `shape` does not hold `len` elements.
    pub unsafe fn on_device(
        owner: Box<dyn DeviceOwner>,
        data: *mut c_void,
        len: usize,
        dtype: DLDataType,
        shape: Vec<i64>,
        device: DLDevice,
    ) -> Result<Self> {
        check_shape(len, &shape)?;
        Ok(Self {
            data,
            len,
            dtype,
            shape,
            device,
            owner: Owner::Device(owner),
        })
    }

    /// The extents.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DLDataType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first element (what a consumer's `data_ptr()` shows: zero-copy checks).
    pub fn address(&self) -> usize {
        self.data as usize
    }

    /// Where the memory is: `(kDLCPU, 0)` or a device (`(kDLCUDA, n)`).
    pub fn device(&self) -> DLDevice {
        self.device
    }

    /// The elements, when they are of type `T` and in host memory.
    pub fn as_slice<T: DlElement>(&self) -> Option<&[T]> {
        if T::DTYPE != self.dtype || !matches!(self.owner, Owner::Host(_)) {
            return None;
        }
        // SAFETY: `data` points to `len` initialised host elements of `T` (checked: the dtype
        // is `T`'s, the owner host memory), owned by `owner` for as long as `self` lives.
        Some(unsafe { std::slice::from_raw_parts(self.data.cast::<T>(), self.len) })
    }

    /// The memory's bytes, when it is host memory.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        if !matches!(self.owner, Owner::Host(_)) {
            return None;
        }
        let bytes = self.len * usize::from(self.dtype.bits).div_ceil(8);
        // SAFETY: as in `as_slice`: `len` initialised elements of `dtype` in host memory.
        Some(unsafe { std::slice::from_raw_parts(self.data.cast::<u8>(), bytes) })
    }

    /// Prepares the array for a consumer that uses it on `stream` (see
    /// [`DeviceOwner::hand_over`]); nothing for host memory.
    ///
    /// # Errors
    /// When the device's driver refuses the wait.
    pub fn hand_over(&mut self, stream: Option<usize>) -> Result<()> {
        match &mut self.owner {
            Owner::Host(_) => Ok(()),
            Owner::Device(owner) => owner.hand_over(stream),
        }
    }

    /// The tensor header, pointing at the array's shape and at `strides` kept beside it.
    fn tensor(&mut self, strides: &mut [i64]) -> DLTensor {
        DLTensor {
            data: self.data,
            device: self.device,
            ndim: self.shape.len() as i32,
            dtype: self.dtype,
            shape: self.shape.as_mut_ptr(),
            strides: strides.as_mut_ptr(),
            byte_offset: 0,
        }
    }

    fn strides(&self) -> Vec<i64> {
        let mut strides = vec![1i64; self.shape.len()];
        for i in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.shape[i + 1].max(1);
        }
        strides
    }

    /// Hands the array over as a DLPack 1.x managed tensor (capsule name
    /// `dltensor_versioned`). The memory is the consumer's until it calls the deleter, which
    /// frees it (or returns it to its pool); it is never freed otherwise.
    pub fn into_versioned(self) -> *mut DLManagedTensorVersioned {
        let managed = DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 0 },
            manager_ctx: ptr::null_mut(),
            deleter: Some(delete::<DLManagedTensorVersioned>),
            flags: 0,
            dl_tensor: empty_tensor(),
        };
        let raw = Holder::boxed(managed, self);
        // SAFETY: `raw` is the live holder just leaked; the tensor header is its field.
        unsafe {
            (*raw).managed.dl_tensor = (*raw).header();
            (*raw).managed.manager_ctx = raw.cast();
            ptr::addr_of_mut!((*raw).managed)
        }
    }

    /// Hands the array over as a pre-1.0 DLPack managed tensor (capsule name `dltensor`), for
    /// consumers that do not ask for a version. Ownership as [`Self::into_versioned`].
    pub fn into_legacy(self) -> *mut DLManagedTensor {
        let managed = DLManagedTensor {
            dl_tensor: empty_tensor(),
            manager_ctx: ptr::null_mut(),
            deleter: Some(delete::<DLManagedTensor>),
        };
        let raw = Holder::boxed(managed, self);
        // SAFETY: as in `into_versioned`.
        unsafe {
            (*raw).managed.dl_tensor = (*raw).header();
            (*raw).managed.manager_ctx = raw.cast();
            ptr::addr_of_mut!((*raw).managed)
        }
    }
}

/// Host memory's device.
const HOST: DLDevice = DLDevice {
    device_type: DL_CPU,
    device_id: 0,
};

/// Checks that `shape` holds exactly `len` elements.
fn check_shape(len: usize, shape: &[i64]) -> Result<()> {
    let elements = shape
        .iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
    if elements.and_then(|n| usize::try_from(n).ok()) != Some(len) {
        return Err(Error::ShapeMismatch {
            path: "DLPack array".into(),
            found: format!("{len} elements"),
            expected: format!("shape {shape:?}"),
        });
    }
    Ok(())
}

fn empty_tensor() -> DLTensor {
    DLTensor {
        data: ptr::null_mut(),
        device: HOST,
        ndim: 0,
        dtype: DLDataType {
            code: 0,
            bits: 0,
            lanes: 0,
        },
        shape: ptr::null_mut(),
        strides: ptr::null_mut(),
        byte_offset: 0,
    }
}

/// What an export leaks: the managed struct the consumer sees, the strides its tensor points
/// at, and the array (the memory and the shape). Freed by the deleter, all at once.
struct Holder<M> {
    managed: M,
    strides: Vec<i64>,
    array: DlArray,
}

impl<M> Holder<M> {
    fn boxed(managed: M, array: DlArray) -> *mut Self {
        let strides = array.strides();
        Box::into_raw(Box::new(Self {
            managed,
            strides,
            array,
        }))
    }

    fn header(&mut self) -> DLTensor {
        self.array.tensor(&mut self.strides)
    }
}

/// The managed structs' `manager_ctx` field.
trait Managed {
    fn context(&self) -> *mut c_void;
}
impl Managed for DLManagedTensor {
    fn context(&self) -> *mut c_void {
        self.manager_ctx
    }
}
impl Managed for DLManagedTensorVersioned {
    fn context(&self) -> *mut c_void {
        self.manager_ctx
    }
}

/// The deleter of both managed structs: frees the holder (and so returns the memory).
unsafe extern "C" fn delete<M: Managed>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    // SAFETY: DLPack's contract: `managed` is a struct this module exported, released once;
    // its context is the holder leaked with it.
    unsafe {
        let holder = (*managed).context().cast::<Holder<M>>();
        if !holder.is_null() {
            drop(Box::from_raw(holder));
        }
    }
}

/// A pre-1.0 managed tensor owning a versioned one (see [`legacy_of`]).
struct LegacyOf {
    managed: DLManagedTensor,
    inner: *mut DLManagedTensorVersioned,
}

/// A pre-1.0 `DLManagedTensor` for a consumer that takes only those, holding `versioned`: the
/// same memory, shape and strides (the header is copied; its pointers stay `versioned`'s,
/// alive until the new deleter releases `versioned`).
///
/// # Safety
/// `versioned` is a live managed tensor that the caller owns and hands over: from now on only
/// the returned tensor's deleter releases it.
pub unsafe fn legacy_of(versioned: *mut DLManagedTensorVersioned) -> *mut DLManagedTensor {
    // SAFETY: the caller's contract: a live tensor.
    let dl_tensor = unsafe { (*versioned).dl_tensor };
    let raw = Box::into_raw(Box::new(LegacyOf {
        managed: DLManagedTensor {
            dl_tensor,
            manager_ctx: ptr::null_mut(),
            deleter: Some(delete_legacy_of),
        },
        inner: versioned,
    }));
    // SAFETY: `raw` is the live box just leaked.
    unsafe {
        (*raw).managed.manager_ctx = raw.cast();
        ptr::addr_of_mut!((*raw).managed)
    }
}

unsafe extern "C" fn delete_legacy_of(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: DLPack's contract: a tensor `legacy_of` made, released once; its context is the
    // box leaked with it, which owns `inner`.
    unsafe {
        let wrap = Box::from_raw((*managed).manager_ctx.cast::<LegacyOf>());
        if let Some(deleter) = (*wrap.inner).deleter {
            deleter(wrap.inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_must_hold_the_elements() {
        assert!(DlArray::new(vec![1i32, 2, 3], vec![2, 2]).is_err());
        assert!(DlArray::new(vec![1i32, 2, 3], vec![-1, -3]).is_err());
        assert!(DlArray::new(Vec::<f32>::new(), vec![0, 7]).is_ok());
    }

    #[test]
    fn exports_describe_the_memory_and_free_it_once() {
        let values: Vec<i64> = (0..6).collect();
        let array = DlArray::new(values, vec![2, 3]).expect("shape");
        let address = array.address();
        let managed = array.into_versioned();
        // SAFETY: exported above; released once below.
        unsafe {
            let t = &(*managed).dl_tensor;
            assert_eq!(t.data as usize, address);
            assert_eq!(
                (t.ndim, t.dtype, t.device.device_type),
                (2, i64::DTYPE, DL_CPU)
            );
            assert_eq!(std::slice::from_raw_parts(t.shape, 2), [2, 3]);
            assert_eq!(std::slice::from_raw_parts(t.strides, 2), [3, 1]);
            assert_eq!(std::slice::from_raw_parts(t.data.cast::<i64>(), 6)[5], 5);
            assert_eq!((*managed).version.major, 1);
            ((*managed).deleter.expect("deleter"))(managed);
        }
        let legacy = DlArray::new(vec![1.5f32], vec![1])
            .expect("shape")
            .into_legacy();
        // SAFETY: as above.
        unsafe {
            assert_eq!(*(*legacy).dl_tensor.data.cast::<f32>(), 1.5);
            ((*legacy).deleter.expect("deleter"))(legacy);
        }
    }

    /// A stand-in for device memory: records what the protocol asks of it.
    struct FakeDevice {
        streams: std::sync::Arc<std::sync::Mutex<Vec<Option<usize>>>>,
        dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl DeviceOwner for FakeDevice {
        fn hand_over(&mut self, stream: Option<usize>) -> Result<()> {
            self.streams.lock().expect("lock").push(stream);
            Ok(())
        }
    }

    impl Drop for FakeDevice {
        fn drop(&mut self) {
            self.dropped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn device_arrays_describe_their_device_and_follow_the_stream_protocol() {
        let streams = std::sync::Arc::default();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let owner = FakeDevice {
            streams: std::sync::Arc::clone(&streams),
            dropped: dropped.clone(),
        };
        let cuda = DLDevice {
            device_type: super::super::ffi::DL_CUDA,
            device_id: 3,
        };
        // An address no host code may read: the array must never be read on the host.
        let data = 0x7000_0000usize as *mut c_void;
        // SAFETY: the fake owner "owns" the address; nothing dereferences it here.
        let mut array =
            unsafe { DlArray::on_device(Box::new(owner), data, 6, f32::DTYPE, vec![2, 3], cuda) }
                .expect("shape");
        assert_eq!(array.device(), cuda);
        assert!(array.as_slice::<f32>().is_none(), "not host memory");
        assert!(array.host_bytes().is_none(), "not host memory");
        array
            .hand_over(Some(0x1))
            .expect("ready on the legacy stream");
        array.hand_over(None).expect("no synchronisation");
        assert_eq!(*streams.lock().expect("lock"), [Some(0x1), None]);
        let managed = array.into_versioned();
        // SAFETY: exported above; released once below.
        unsafe {
            let t = &(*managed).dl_tensor;
            assert_eq!((t.device, t.data), (cuda, data));
            assert_eq!(std::slice::from_raw_parts(t.shape, 2), [2, 3]);
            assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
            ((*managed).deleter.expect("deleter"))(managed);
        }
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "released by the deleter"
        );
        // SAFETY: as above (a shape that does not hold the elements is refused first).
        let wrong = unsafe {
            DlArray::on_device(
                Box::new(FakeDevice {
                    streams: std::sync::Arc::default(),
                    dropped: std::sync::Arc::default(),
                }),
                data,
                6,
                f32::DTYPE,
                vec![4],
                cuda,
            )
        };
        assert!(wrong.is_err());
    }
}
