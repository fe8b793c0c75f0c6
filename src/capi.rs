//! The C ABI (feature `capi`): the loader for libtorch C++ programs, declared in the committed
//! header `include/annbatch.h` (cbindgen) and wrapped by the header-only `include/annbatch.hpp`.
//!
//! - Opaque handles (`AnnbatchLoader`, `AnnbatchEpoch`, `AnnbatchBatch`), created by `*_open` /
//!   `*_epoch` / `*_next` and released by `*_free`. Every handle is registered while alive: a
//!   handle that was freed (double free), never created, or of another kind gives
//!   `ANNBATCH_STATUS_INVALID_HANDLE`, never undefined behaviour. A handle must not be freed while
//!   another thread uses it.
//! - Every call returns an [`AnnbatchStatus`]; on failure `annbatch_last_error()` gives the
//!   message (per thread, valid until the next failing call on that thread). No panic crosses
//!   the boundary: it becomes `ANNBATCH_STATUS_PANIC`.
//! - Tensors: `annbatch_batch_x` (and `_index`, `_obs`) lend the `at::Tensor*` the loader built
//!   (tch's tensors are `at::Tensor*` underneath), valid until the batch is freed. Copying the
//!   `at::Tensor` (what `annbatch.hpp` does) takes a reference: the copy shares the batch's
//!   memory, zero-copy, and stays valid after `annbatch_batch_free`.
//!
//! ```c
//! AnnbatchLoaderOptions o = annbatch_loader_options_default();
//! o.batch_size = 64; o.chunk_size = 16; o.preload_nchunks = 4;
//! AnnbatchLoader *loader; AnnbatchEpoch *epoch; AnnbatchBatch *batch;
//! if (annbatch_loader_open("collection.zarr", &o, &loader)) puts(annbatch_last_error());
//! annbatch_loader_epoch(loader, 0, &epoch);
//! while (annbatch_epoch_next(epoch, &batch) == ANNBATCH_STATUS_OK) {
//!   void *x; annbatch_batch_x(batch, &x);  /* (at::Tensor *) x */
//!   annbatch_batch_free(batch);
//! }
//! annbatch_epoch_free(epoch); annbatch_loader_free(loader);
//! ```

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use crate::error::Error;
use crate::loader::{defaults, Batch, Batches, Loader, LoaderOptions};

/// What a call did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnbatchStatus {
    /// Success.
    Ok = 0,
    /// `annbatch_epoch_next`: the epoch has no more batches (again on every later call).
    End = 1,
    /// A parameter is impossible (zero sizes, unknown obs key, ...).
    InvalidArgument = 2,
    /// A required pointer argument was NULL.
    NullPointer = 3,
    /// A handle that is not alive: freed already, never created, or of another kind.
    InvalidHandle = 4,
    /// A file-system error (missing path, permissions).
    IoError = 5,
    /// The data is bad: corrupt chunks, invalid indptr, unknown encodings, ...
    DataError = 6,
    /// The requested device is unavailable (e.g. CUDA without a GPU).
    DeviceError = 7,
    /// A bug: a panic was caught at the boundary.
    Panic = 8,
}

use AnnbatchStatus as S;

/// Loader parameters: annbatch's, with its defaults from
/// [`annbatch_loader_options_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AnnbatchLoaderOptions {
    /// Rows per batch (default 1).
    pub batch_size: u64,
    /// Rows per contiguous read (default 512).
    pub chunk_size: u64,
    /// Chunks per fetch (default 32).
    pub preload_nchunks: u64,
    /// Shuffle chunks and rows (default false, as annbatch).
    pub shuffle: bool,
    /// Drop the last incomplete batch (default false).
    pub drop_last: bool,
    /// Yield the global row ids of each batch (default false).
    pub return_index: bool,
    /// Seed of the shuffle; with the epoch number it fixes the batches (default 0).
    pub seed: u64,
    /// -1: CPU (default); N >= 0: `cuda:N`.
    pub device: i32,
    /// This process's rank, with `world_size` > 1: a disjoint shard per rank.
    pub rank: u64,
    /// Number of ranks; 0 or 1: not distributed (default 0).
    pub world_size: u64,
    /// Decode threads; 0: one per core (default).
    pub num_threads: u64,
    /// Batches that may wait ready for the consumer (the memory bound); 0: one fetch's worth,
    /// at least 2 (default).
    pub prefetch: u64,
    /// obs columns to yield (categorical codes as int64, numbers as float32); may be NULL.
    pub obs_keys: *const *const c_char,
    /// Length of `obs_keys`.
    pub n_obs_keys: usize,
    /// `layers` entries to yield with `X` (e.g. "counts"); may be NULL.
    pub layer_keys: *const *const c_char,
    /// Length of `layer_keys`.
    pub n_layer_keys: usize,
    /// `obsm` entries to yield with `X` (e.g. "X_pca"); may be NULL.
    pub obsm_keys: *const *const c_char,
    /// Length of `obsm_keys`.
    pub n_obsm_keys: usize,
}

/// A configured loader over a collection.
pub struct AnnbatchLoader {
    loader: Loader,
}

/// One epoch's batches, produced in the background.
pub struct AnnbatchEpoch {
    batches: Batches<Batch>,
    ended: bool,
}

/// One batch; its tensors are lent until [`annbatch_batch_free`].
pub struct AnnbatchBatch {
    batch: Batch,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Loader,
    Epoch,
    Batch,
}

/// Addresses of the live handles, by kind.
fn live() -> &'static Mutex<HashSet<(usize, Kind)>> {
    static LIVE: OnceLock<Mutex<HashSet<(usize, Kind)>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

fn with_live<R>(f: impl FnOnce(&mut HashSet<(usize, Kind)>) -> R) -> R {
    // A panic while holding the lock cannot corrupt a set of integers: keep going.
    let mut guard = live().lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

fn register<T>(value: T, kind: Kind) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    with_live(|l| l.insert((ptr as usize, kind)));
    ptr
}

fn is_live<T>(ptr: *const T, kind: Kind) -> bool {
    with_live(|l| l.contains(&(ptr as usize, kind)))
}

/// Takes a handle back (for freeing): `None` if it is not alive.
fn unregister<T>(ptr: *mut T, kind: Kind) -> Option<Box<T>> {
    if with_live(|l| l.remove(&(ptr as usize, kind))) {
        // SAFETY: `ptr` came from `Box::into_raw` in `register` with this kind and was still
        // registered, so it is a live, uniquely owned box; it is now unregistered, so no other
        // call can take it again.
        Some(unsafe { Box::from_raw(ptr) })
    } else {
        None
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn fail(status: AnnbatchStatus, message: impl Into<String>) -> AnnbatchStatus {
    let text = message.into().replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    status
}

fn from_error(e: &Error) -> AnnbatchStatus {
    let status = match e {
        Error::InvalidParameter { .. } | Error::BatchTooLarge { .. } => S::InvalidArgument,
        Error::Io { .. } | Error::Remote { .. } => S::IoError,
        Error::DeviceUnavailable { .. } | Error::Cuda { .. } => S::DeviceError,
        Error::WorkerPanic { .. } => S::Panic,
        _ => S::DataError,
    };
    fail(status, e.to_string())
}

/// Runs `f`, turning a panic into `ANNBATCH_STATUS_PANIC`.
fn guard(f: impl FnOnce() -> AnnbatchStatus) -> AnnbatchStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(status) => status,
        Err(payload) => fail(
            S::Panic,
            format!("panic: {}", crate::error::panic_message(payload.as_ref())),
        ),
    }
}

/// The message of the last failing call on this thread ("" if none). Valid until the next
/// failing call on this thread.
#[no_mangle]
pub extern "C" fn annbatch_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0" (static storage).
#[no_mangle]
pub extern "C" fn annbatch_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// annbatch's defaults: batch 1, chunk 512, preload 32, not shuffled, CPU, not distributed.
#[no_mangle]
pub extern "C" fn annbatch_loader_options_default() -> AnnbatchLoaderOptions {
    AnnbatchLoaderOptions {
        batch_size: defaults::BATCH_SIZE as u64,
        chunk_size: defaults::CHUNK_SIZE,
        preload_nchunks: defaults::PRELOAD_NCHUNKS as u64,
        shuffle: false,
        drop_last: false,
        return_index: false,
        seed: 0,
        device: -1,
        rank: 0,
        world_size: 0,
        num_threads: 0,
        prefetch: 0,
        obs_keys: std::ptr::null(),
        n_obs_keys: 0,
        layer_keys: std::ptr::null(),
        n_layer_keys: 0,
        obsm_keys: std::ptr::null(),
        n_obsm_keys: 0,
    }
}

/// Handles that are alive (created and not yet freed), of every kind: 0 once a program has
/// freed everything.
#[no_mangle]
pub extern "C" fn annbatch_live_handles() -> u64 {
    with_live(|l| l.len() as u64)
}

/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, AnnbatchStatus> {
    if s.is_null() {
        return Err(fail(S::NullPointer, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| fail(S::InvalidArgument, format!("{what} is not UTF-8")))
}

/// `n` strings from `list` (`what` names it in errors).
///
/// # Safety
/// When `n` > 0, `list` is NULL or points to `n` pointers, each NULL or a NUL-terminated string.
unsafe fn strings(
    list: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<String>, AnnbatchStatus> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(fail(
            S::NullPointer,
            format!("{what} is NULL but n_{what} > 0"),
        ));
    }
    (0..n)
        .map(|i| {
            // SAFETY: the caller promises `n` pointers at `list`.
            let item = unsafe { *list.add(i) };
            // SAFETY: each is NULL or a NUL-terminated string.
            unsafe { text(item, &format!("{what}[{i}]")) }.map(str::to_string)
        })
        .collect()
}

/// Opens the collection (or AnnData store) at `path` and configures a loader; `options` may be
/// NULL for the defaults. On success `*out` is a new handle for [`annbatch_loader_free`].
///
/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL or points to options whose key lists
/// (`obs_keys`, `layer_keys`, `obsm_keys`, each when its count > 0) hold that many
/// NUL-terminated strings; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_open(
    path: *const c_char,
    options: *const AnnbatchLoaderOptions,
    out: *mut *mut AnnbatchLoader,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's contract on `path`.
        let path = match unsafe { text(path, "path") } {
            Ok(p) => p,
            Err(s) => return s,
        };
        let o = if options.is_null() {
            annbatch_loader_options_default()
        } else {
            // SAFETY: non-NULL, and the caller promises it points to options.
            unsafe { *options }
        };
        // SAFETY (the three calls): the caller promises `n` string pointers at each list.
        let lists = unsafe {
            (
                strings(o.obs_keys, o.n_obs_keys, "obs_keys"),
                strings(o.layer_keys, o.n_layer_keys, "layer_keys"),
                strings(o.obsm_keys, o.n_obsm_keys, "obsm_keys"),
            )
        };
        let (keys, layers, obsm) = match lists {
            (Ok(k), Ok(l), Ok(m)) => (k, l, m),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        let device = match o.device {
            -1 => tch::Device::Cpu,
            n if n >= 0 => tch::Device::Cuda(n as usize),
            n => {
                return fail(
                    S::InvalidArgument,
                    format!("device {n}: use -1 (CPU) or N >= 0 (cuda:N)"),
                )
            }
        };
        // Every check of these values happens in `LoaderOptions` (one wording for every front
        // end); here they are only carried over (sizes past usize saturate, and are refused).
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        // Remote collections (`s3://`, `http(s)://`): knobs from ANNBATCH_REMOTE_* and AWS_*.
        let remote = match crate::RemoteOptions::from_env() {
            Ok(remote) => remote,
            Err(e) => return from_error(&e),
        };
        let options = LoaderOptions {
            batch_size: size(o.batch_size),
            chunk_size: o.chunk_size,
            preload_nchunks: size(o.preload_nchunks),
            shuffle: o.shuffle,
            drop_last: o.drop_last,
            return_index: o.return_index,
            seed: o.seed,
            obs_keys: keys,
            layers,
            obsm,
            device,
            num_threads: (o.num_threads > 0).then(|| size(o.num_threads)),
            prefetch: (o.prefetch > 0).then(|| size(o.prefetch)),
            // C's world_size 0 means "not distributed", as 1 does.
            rank: o.rank,
            world_size: o.world_size.max(1),
            remote,
            ..LoaderOptions::default()
        };
        let builder = Loader::builder(path).options(options);
        match builder.build() {
            Ok(loader) => {
                // SAFETY: checked non-NULL above.
                unsafe { *out = register(AnnbatchLoader { loader }, Kind::Loader) };
                S::Ok
            }
            Err(e) => from_error(&e),
        }
    })
}

/// # Safety
/// `ptr` is NULL or a pointer this library returned (alive or not).
unsafe fn loader<'a>(ptr: *const AnnbatchLoader) -> Result<&'a AnnbatchLoader, AnnbatchStatus> {
    if ptr.is_null() {
        return Err(fail(S::NullPointer, "loader is NULL"));
    }
    if !is_live(ptr, Kind::Loader) {
        return Err(fail(S::InvalidHandle, "not a live loader handle"));
    }
    // SAFETY: registered as a live loader, so it points to one; the caller does not free it
    // concurrently.
    Ok(unsafe { &*ptr })
}

/// Writes `value(loader)` to `*out`.
///
/// # Safety
/// `loader` is NULL or a handle from this library; `out` is NULL or writable.
unsafe fn loader_value(
    loader: *const AnnbatchLoader,
    out: *mut u64,
    value: impl FnOnce(&Loader) -> u64,
) -> AnnbatchStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let l = match unsafe { self::loader(loader) } {
            Ok(l) => l,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = value(&l.loader) };
        S::Ok
    })
}

/// Rows in the collection.
///
/// # Safety
/// `loader` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_n_obs(
    loader: *const AnnbatchLoader,
    out: *mut u64,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { loader_value(loader, out, Loader::n_obs) }
}

/// Variables (columns of `X`).
///
/// # Safety
/// `loader` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_n_var(
    loader: *const AnnbatchLoader,
    out: *mut u64,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { loader_value(loader, out, Loader::n_var) }
}

/// Batches per epoch (for this rank).
///
/// # Safety
/// `loader` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_len(
    loader: *const AnnbatchLoader,
    out: *mut u64,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { loader_value(loader, out, Loader::len) }
}

/// Frees a loader. Epochs already started keep working.
///
/// # Safety
/// `loader` is NULL or a pointer this library returned; no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_free(loader: *mut AnnbatchLoader) -> AnnbatchStatus {
    guard(|| free(loader, Kind::Loader, "loader"))
}

fn free<T>(ptr: *mut T, kind: Kind, what: &str) -> AnnbatchStatus {
    if ptr.is_null() {
        return fail(S::NullPointer, format!("{what} is NULL"));
    }
    match unregister(ptr, kind) {
        Some(b) => {
            drop(b);
            S::Ok
        }
        None => fail(
            S::InvalidHandle,
            format!("not a live {what} handle (freed twice?)"),
        ),
    }
}

/// Starts epoch `epoch` (its number seeds the shuffle): batches are read and decoded in the
/// background from now on. `*out` is a new handle for [`annbatch_epoch_free`].
///
/// # Safety
/// `loader` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_epoch(
    loader: *const AnnbatchLoader,
    epoch: u64,
    out: *mut *mut AnnbatchEpoch,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let l = match unsafe { self::loader(loader) } {
            Ok(l) => l,
            Err(s) => return s,
        };
        match l.loader.epoch(epoch) {
            Ok(batches) => {
                let handle = register(
                    AnnbatchEpoch {
                        batches,
                        ended: false,
                    },
                    Kind::Epoch,
                );
                // SAFETY: checked non-NULL above.
                unsafe { *out = handle };
                S::Ok
            }
            Err(e) => from_error(&e),
        }
    })
}

/// The next batch: `ANNBATCH_STATUS_OK` with `*out` a new handle for [`annbatch_batch_free`];
/// `ANNBATCH_STATUS_END` with `*out` NULL when the epoch is over (and on every later call); an error
/// status if reading failed (the epoch is then over).
///
/// # Safety
/// `epoch` is NULL or a handle from this library, not used by another thread meanwhile; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_epoch_next(
    epoch: *mut AnnbatchEpoch,
    out: *mut *mut AnnbatchBatch,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        if epoch.is_null() {
            return fail(S::NullPointer, "epoch is NULL");
        }
        if !is_live(epoch, Kind::Epoch) {
            return fail(S::InvalidHandle, "not a live epoch handle");
        }
        // SAFETY: a live epoch handle, used by this thread alone (the caller's contract).
        let e = unsafe { &mut *epoch };
        if e.ended {
            return S::End;
        }
        match e.batches.next() {
            Some(Ok(batch)) => {
                // SAFETY: checked non-NULL above.
                unsafe { *out = register(AnnbatchBatch { batch }, Kind::Batch) };
                S::Ok
            }
            Some(Err(err)) => {
                e.ended = true;
                from_error(&err)
            }
            None => {
                e.ended = true;
                S::End
            }
        }
    })
}

/// Frees an epoch; a running one stops its background work first.
///
/// # Safety
/// `epoch` is NULL or a pointer this library returned; no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn annbatch_epoch_free(epoch: *mut AnnbatchEpoch) -> AnnbatchStatus {
    guard(|| free(epoch, Kind::Epoch, "epoch"))
}

/// # Safety
/// `ptr` is NULL or a pointer this library returned.
unsafe fn batch<'a>(ptr: *const AnnbatchBatch) -> Result<&'a AnnbatchBatch, AnnbatchStatus> {
    if ptr.is_null() {
        return Err(fail(S::NullPointer, "batch is NULL"));
    }
    if !is_live(ptr, Kind::Batch) {
        return Err(fail(S::InvalidHandle, "not a live batch handle"));
    }
    // SAFETY: registered as a live batch; not freed concurrently (the caller's contract).
    Ok(unsafe { &*ptr })
}

/// Lends the tensor `pick` chooses from `batch` as an `at::Tensor*` in `*out`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
unsafe fn lend(
    batch: *const AnnbatchBatch,
    out: *mut *mut c_void,
    pick: impl FnOnce(&Batch) -> Result<&tch::Tensor, AnnbatchStatus>,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let b = match unsafe { self::batch(batch) } {
            Ok(b) => b,
            Err(s) => return s,
        };
        match pick(&b.batch) {
            Ok(t) => {
                // tch's C_tensor is libtorch's `at::Tensor*`: lent, not given.
                // SAFETY: checked non-NULL above.
                unsafe { *out = t.as_ptr() as *mut c_void };
                S::Ok
            }
            Err(s) => s,
        }
    })
}

/// `X` of the batch: an `at::Tensor*` (`[rows, n_var]`, sparse CSR int32/float32, or dense
/// float32), lent until the batch is freed. Copy the `at::Tensor` to keep it longer.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_x(
    batch: *const AnnbatchBatch,
    out: *mut *mut c_void,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend(batch, out, |b| Ok(&b.x)) }
}

/// The global row ids (int64 `at::Tensor*`), lent like [`annbatch_batch_x`];
/// `ANNBATCH_STATUS_INVALID_ARGUMENT` if the loader was not opened with `return_index`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_index(
    batch: *const AnnbatchBatch,
    out: *mut *mut c_void,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend(batch, out, |b| {
            b.index.as_ref().ok_or_else(|| {
                fail(
                    S::InvalidArgument,
                    "the loader was opened without return_index",
                )
            })
        })
    }
}

/// The obs column `key` (int64 codes or float32 values, an `at::Tensor*`), lent like
/// [`annbatch_batch_x`]; `ANNBATCH_STATUS_INVALID_ARGUMENT` if `key` was not in `obs_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_obs(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut *mut c_void,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_named(batch, key, out, "obs key", |b, k| {
            b.obs(k).map(|o| &o.values)
        })
    }
}

/// Layer `key` of the batch (the same rows as `X`: `[rows, n_var]`, sparse CSR or dense as
/// stored, float32 values), lent like [`annbatch_batch_x`]; `ANNBATCH_STATUS_INVALID_ARGUMENT`
/// if `key` was not in `layer_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_layer(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut *mut c_void,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_named(batch, key, out, "layer", Batch::layer) }
}

/// obsm entry `key` of the batch (the same rows as `X`: dense float32 `[rows, d]`, or sparse
/// CSR as stored), lent like [`annbatch_batch_x`]; `ANNBATCH_STATUS_INVALID_ARGUMENT` if `key`
/// was not in `obsm_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_obsm(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut *mut c_void,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_named(batch, key, out, "obsm entry", Batch::obsm_entry) }
}

/// Lends the tensor `pick(batch, key)`; `what` names the kind of key in the error.
///
/// # Safety
/// As [`annbatch_batch_obs`].
unsafe fn lend_named(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut *mut c_void,
    what: &str,
    pick: for<'b> fn(&'b Batch, &str) -> Option<&'b tch::Tensor>,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract on `key`.
    let key = match unsafe { text(key, "key") } {
        Ok(k) => k.to_string(),
        Err(s) => return s,
    };
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend(batch, out, |b| {
            pick(b, &key).ok_or_else(|| {
                fail(
                    S::InvalidArgument,
                    format!("{what} {key:?} was not requested"),
                )
            })
        })
    }
}

/// Rows in the batch.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_n_rows(
    batch: *const AnnbatchBatch,
    out: *mut u64,
) -> AnnbatchStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let b = match unsafe { self::batch(batch) } {
            Ok(b) => b,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        let rows = b.batch.x.size().first().copied().unwrap_or(0);
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = rows as u64 };
        S::Ok
    })
}

/// Frees a batch. Tensors copied from it (an `at::Tensor` copy holds a reference) stay valid;
/// the lent pointers do not.
///
/// # Safety
/// `batch` is NULL or a pointer this library returned; no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_free(batch: *mut AnnbatchBatch) -> AnnbatchStatus {
    guard(|| free(batch, Kind::Batch, "batch"))
}
