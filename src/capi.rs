//! The C ABI (feature `capi`): the loader for C and libtorch C++ programs, declared in the
//! committed header `include/annbatch.h` (cbindgen) and wrapped by the header-only
//! `include/annbatch.hpp`. The library links no libtorch: batch arrays are handed over as DLPack
//! tensors, so one `libannbatch.so` serves every libtorch (and any other DLPack consumer).
//!
//! - Opaque handles (`AnnbatchLoader`, `AnnbatchEpoch`, `AnnbatchBatch`), created by `*_open` /
//!   `*_epoch` / `*_next` and released by `*_free`. A handle is an identity that is never
//!   reused (a counter, not an address): a handle that was freed (double free, even after the
//!   allocator reused its memory), never created, or of another kind gives
//!   `ANNBATCH_STATUS_INVALID_HANDLE`, never undefined behaviour; calls on one handle from two
//!   threads are serialised.
//! - Every call returns an [`AnnbatchStatus`]; on failure `annbatch_last_error()` gives the
//!   message (per thread, valid until the next failing call on that thread). No panic crosses
//!   the boundary: it becomes `ANNBATCH_STATUS_PANIC`.
//! - Arrays: `annbatch_batch_x` (and `_layer`, `_obsm`) hand over a matrix as an
//!   [`AnnbatchMatrix`] of `DLManagedTensorVersioned*` (DLPack 1.0, host memory), `_index` and
//!   `_obs` one such tensor. Each array is handed over once: the caller owns it and calls its
//!   `deleter` (or gives it to `at::fromDLPackVersioned`, `from_dlpack`, ...), which returns the
//!   memory to the loader's pool; it stays valid after the batch, the epoch and the loader are
//!   freed. `annbatch_dlpack_legacy` turns one into a pre-1.0 `DLManagedTensor*` for consumers
//!   that take only those (libtorch without `fromDLPackVersioned`).
//!
//! ```c
//! AnnbatchLoaderOptions o = annbatch_loader_options_default();
//! o.batch_size = 64; o.chunk_size = 16; o.preload_nchunks = 4;
//! AnnbatchLoader *loader; AnnbatchEpoch *epoch; AnnbatchBatch *batch;
//! if (annbatch_loader_open("collection.zarr", &o, &loader)) puts(annbatch_last_error());
//! annbatch_loader_epoch(loader, 0, &epoch);
//! while (annbatch_epoch_next(epoch, &batch) == ANNBATCH_STATUS_OK) {
//!   AnnbatchMatrix x; annbatch_batch_x(batch, &x);  /* CSR: x.indptr, x.indices, x.data */
//!   x.data->deleter(x.data); x.indices->deleter(x.indices); x.indptr->deleter(x.indptr);
//!   annbatch_batch_free(batch);
//! }
//! annbatch_epoch_free(epoch); annbatch_loader_free(loader);
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::dlpack::{legacy_of, DLManagedTensor, DLManagedTensorVersioned, DlArray};
use crate::error::Error;
use crate::loader::{defaults, Batches, DlBatch, DlMatrix, Loader, LoaderOptions};

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
    /// The requested device is unavailable (kept for ABI stability: the library hands out
    /// host memory, and `annbatch.hpp` moves it to the options' device).
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
    /// -1: CPU (default); N >= 0: `cuda:N`. The library hands out host memory either way;
    /// `annbatch.hpp` places each batch on this device (with the user's libtorch).
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

/// How a matrix's arrays are laid out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnbatchFormat {
    /// Sparse CSR: `indptr` (int32, rows + 1), `indices` (int32) and `data` (float32).
    Csr = 0,
    /// Dense, row-major: `data` (float32, `[rows, cols]`); `indptr` and `indices` are NULL.
    Dense = 1,
}

/// The rows of a matrix of a batch (`X`, a layer, an obsm entry), handed over as DLPack
/// tensors the caller owns (see the module docs).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AnnbatchMatrix {
    /// CSR or dense.
    pub format: AnnbatchFormat,
    /// The batch's rows.
    pub n_rows: u64,
    /// Columns (`n_var` for `X` and layers; an N-d obsm entry's second dimension, its full
    /// shape being `data`'s).
    pub n_cols: u64,
    /// CSR row pointers; NULL when dense.
    pub indptr: *mut DLManagedTensorVersioned,
    /// CSR column indices; NULL when dense.
    pub indices: *mut DLManagedTensorVersioned,
    /// The values.
    pub data: *mut DLManagedTensorVersioned,
}

/// A configured loader over a collection.
pub struct AnnbatchLoader {
    loader: Loader,
}

/// One epoch's batches, produced in the background.
pub struct AnnbatchEpoch {
    batches: Batches<DlBatch>,
    ended: bool,
}

/// One batch; each of its arrays is handed over once, then belongs to the caller.
pub struct AnnbatchBatch {
    n_rows: u64,
    x: Option<DlMatrix>,
    layers: Vec<(String, Option<DlMatrix>)>,
    obsm: Vec<(String, Option<DlMatrix>)>,
    obs: Vec<(String, Option<DlArray>)>,
    /// `None` when the loader was opened without `return_index`.
    index: Option<Option<DlArray>>,
}

impl AnnbatchBatch {
    fn new(b: DlBatch) -> Self {
        Self {
            n_rows: b.x.rows(),
            x: Some(b.x),
            layers: b.layers.into_iter().map(|(k, m)| (k, Some(m))).collect(),
            obsm: b.obsm.into_iter().map(|(k, m)| (k, Some(m))).collect(),
            obs: b
                .obs
                .into_iter()
                .map(|o| (o.name, Some(o.values)))
                .collect(),
            index: b.index.map(Some),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Loader,
    Epoch,
    Batch,
}

/// A live handle: its kind and its value, locked while a call uses it.
type Entry = (Kind, Arc<dyn Any + Send + Sync>);

/// The live handles by identity. An identity comes from a counter and is never reused, so a
/// stale handle never reaches a live value, whatever the allocator does.
fn live() -> &'static Mutex<HashMap<usize, Entry>> {
    static LIVE: OnceLock<Mutex<HashMap<usize, Entry>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn with_live<R>(f: impl FnOnce(&mut HashMap<usize, Entry>) -> R) -> R {
    // A panic while holding the lock cannot leave the map half-changed: keep going.
    let mut guard = live().lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut guard)
}

/// A new handle for `value`: an identity (never 0, never reused, 8-aligned like the pointer C
/// expects), not an address: it is only ever looked up, never dereferenced.
fn register<T: Send + 'static>(value: T, kind: Kind) -> *mut T {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = (NEXT.fetch_add(1, Ordering::Relaxed) as usize).wrapping_mul(8);
    with_live(|l| l.insert(id, (kind, Arc::new(Mutex::new(value)))));
    std::ptr::without_provenance_mut(id)
}

/// The value behind a live handle of `kind`, or `None`.
fn lookup<T: Send + 'static>(ptr: *const T, kind: Kind) -> Option<Arc<Mutex<T>>> {
    let id = ptr as usize;
    let entry = with_live(|l| {
        l.get(&id)
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
    })?;
    entry.downcast::<Mutex<T>>().ok()
}

/// Forgets a handle (for freeing): its value, if it was live and of `kind`.
fn unregister<T: Send + 'static>(ptr: *mut T, kind: Kind) -> Option<Arc<Mutex<T>>> {
    let id = ptr as usize;
    let entry = with_live(|l| match l.get(&id) {
        Some((k, _)) if *k == kind => l.remove(&id).map(|(_, v)| v),
        _ => None,
    })?;
    entry.downcast::<Mutex<T>>().ok()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        Error::InvalidParameter { .. }
        | Error::BatchTooLarge { .. }
        | Error::BatchOverBudget { .. }
        | Error::UnknownObsColumn { .. }
        | Error::UnsupportedObs { .. } => S::InvalidArgument,
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

/// Opens the collection, AnnData store or `.h5ad` file at `path` and configures a loader;
/// `options` may be NULL for the defaults. On success `*out` is a new handle for
/// [`annbatch_loader_free`].
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
    let source = || -> Result<Build<'_>, AnnbatchStatus> {
        // SAFETY: the caller's contract on `path`.
        let path = unsafe { text(path, "path") }?;
        Ok(Box::new(move |options| {
            Loader::builder(path).options(options).build()
        }))
    };
    // SAFETY: the caller's contract on `options` and `out`, passed on.
    unsafe { open_loader(options, out, source) }
}

/// Opens several collections, AnnData stores and `.h5ad` files as one concatenation, in order
/// — training on files as they are, no conversion — and configures a loader. `join`: 0, every
/// input has the same genes; 1, their sorted union (missing genes are zeros); 2, that union cut
/// to the `n_var_subset` names of `var_subset`. `options` may be NULL for the defaults. On
/// success `*out` is a new handle for [`annbatch_loader_free`].
///
/// # Safety
/// `paths` points to `n_paths` NUL-terminated strings; `var_subset` (when `n_var_subset` > 0)
/// to `n_var_subset`; `options` as for [`annbatch_loader_open`]; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_loader_open_files(
    paths: *const *const c_char,
    n_paths: usize,
    join: u32,
    var_subset: *const *const c_char,
    n_var_subset: usize,
    options: *const AnnbatchLoaderOptions,
    out: *mut *mut AnnbatchLoader,
) -> AnnbatchStatus {
    let source = || -> Result<Build<'static>, AnnbatchStatus> {
        // SAFETY (both): the caller promises that many string pointers at each list.
        let paths = unsafe { strings(paths, n_paths, "paths") }?;
        let subset = unsafe { strings(var_subset, n_var_subset, "var_subset") }?;
        if paths.is_empty() {
            return Err(fail(
                S::InvalidArgument,
                "n_paths is 0: give at least one file",
            ));
        }
        let join = match join {
            0 => crate::VarJoin::Same,
            1 => crate::VarJoin::Outer,
            2 => crate::VarJoin::Subset(subset),
            other => {
                return Err(fail(
                    S::InvalidArgument,
                    format!("join {other}: use 0 (same genes), 1 (outer) or 2 (var_subset)"),
                ))
            }
        };
        Ok(Box::new(move |options| {
            let open = crate::OpenOptions::from_env()?;
            let collection = crate::DatasetCollection::open_joined(&paths, &open, &join)?;
            Loader::builder_for(Arc::new(collection))
                .options(options)
                .build()
        }))
    };
    // SAFETY: the caller's contract on `options` and `out`, passed on.
    unsafe { open_loader(options, out, source) }
}

/// Builds a loader from `options` with what `source` returns, and registers it in `*out`.
type Build<'a> = Box<dyn FnOnce(LoaderOptions) -> crate::Result<Loader> + 'a>;

/// The common part of the `annbatch_loader_open*` functions.
///
/// # Safety
/// `options` is NULL or points to options whose key lists hold that many NUL-terminated
/// strings; `out` is NULL or writable.
unsafe fn open_loader<'a>(
    options: *const AnnbatchLoaderOptions,
    out: *mut *mut AnnbatchLoader,
    source: impl FnOnce() -> Result<Build<'a>, AnnbatchStatus>,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        let build = match source() {
            Ok(build) => build,
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
        if o.device < -1 {
            return fail(
                S::InvalidArgument,
                format!("device {}: use -1 (CPU) or N >= 0 (cuda:N)", o.device),
            );
        }
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
            num_threads: (o.num_threads > 0).then(|| size(o.num_threads)),
            prefetch: (o.prefetch > 0).then(|| size(o.prefetch)),
            // C's world_size 0 means "not distributed", as 1 does.
            rank: o.rank,
            world_size: o.world_size.max(1),
            remote,
            ..LoaderOptions::default()
        };
        match build(options) {
            Ok(loader) => {
                // SAFETY: checked non-NULL above.
                unsafe { *out = register(AnnbatchLoader { loader }, Kind::Loader) };
                S::Ok
            }
            Err(e) => from_error(&e),
        }
    })
}

/// The loader behind a handle.
fn loader(ptr: *const AnnbatchLoader) -> Result<Arc<Mutex<AnnbatchLoader>>, AnnbatchStatus> {
    if ptr.is_null() {
        return Err(fail(S::NullPointer, "loader is NULL"));
    }
    lookup(ptr, Kind::Loader).ok_or_else(|| fail(S::InvalidHandle, "not a live loader handle"))
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
        let l = match self::loader(loader) {
            Ok(l) => l,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        let v = value(&lock(&l).loader);
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = v };
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

fn free<T: Send + 'static>(ptr: *mut T, kind: Kind, what: &str) -> AnnbatchStatus {
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
        let l = match self::loader(loader) {
            Ok(l) => l,
            Err(s) => return s,
        };
        let started = lock(&l).loader.dl_epoch(epoch);
        match started {
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
        let Some(e) = lookup(epoch, Kind::Epoch) else {
            return fail(S::InvalidHandle, "not a live epoch handle");
        };
        let mut e = lock(&e);
        if e.ended {
            return S::End;
        }
        match e.batches.next() {
            Some(Ok(batch)) => {
                // SAFETY: checked non-NULL above.
                unsafe { *out = register(AnnbatchBatch::new(batch), Kind::Batch) };
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

/// The batch behind a handle.
fn batch(ptr: *const AnnbatchBatch) -> Result<Arc<Mutex<AnnbatchBatch>>, AnnbatchStatus> {
    if ptr.is_null() {
        return Err(fail(S::NullPointer, "batch is NULL"));
    }
    lookup(ptr, Kind::Batch).ok_or_else(|| fail(S::InvalidHandle, "not a live batch handle"))
}

fn taken(what: &str) -> AnnbatchStatus {
    fail(
        S::InvalidArgument,
        format!("{what} was handed over already: each array of a batch is handed over once"),
    )
}

/// Hands over the array `pick` takes out of the batch, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn hand_over_array(
    batch: *const AnnbatchBatch,
    out: *mut *mut DLManagedTensorVersioned,
    pick: impl FnOnce(&mut AnnbatchBatch) -> Result<DlArray, AnnbatchStatus>,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = std::ptr::null_mut() };
        let b = match self::batch(batch) {
            Ok(b) => b,
            Err(s) => return s,
        };
        let picked = pick(&mut lock(&b));
        match picked {
            Ok(array) => {
                // SAFETY: checked non-NULL above.
                unsafe { *out = array.into_versioned() };
                S::Ok
            }
            Err(s) => s,
        }
    })
}

/// Hands over the matrix `pick` takes out of the batch, into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn hand_over_matrix(
    batch: *const AnnbatchBatch,
    out: *mut AnnbatchMatrix,
    pick: impl FnOnce(&mut AnnbatchBatch) -> Result<DlMatrix, AnnbatchStatus>,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        let empty = AnnbatchMatrix {
            format: AnnbatchFormat::Dense,
            n_rows: 0,
            n_cols: 0,
            indptr: std::ptr::null_mut(),
            indices: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = empty };
        let b = match self::batch(batch) {
            Ok(b) => b,
            Err(s) => return s,
        };
        let picked = pick(&mut lock(&b));
        let matrix = match picked {
            Ok(DlMatrix::Csr {
                indptr,
                indices,
                data,
                shape,
            }) => AnnbatchMatrix {
                format: AnnbatchFormat::Csr,
                n_rows: shape[0],
                n_cols: shape[1],
                indptr: indptr.into_versioned(),
                indices: indices.into_versioned(),
                data: data.into_versioned(),
            },
            Ok(DlMatrix::Dense(data)) => AnnbatchMatrix {
                format: AnnbatchFormat::Dense,
                n_rows: data.shape().first().map_or(0, |&r| r as u64),
                n_cols: data.shape().get(1).map_or(0, |&c| c as u64),
                data: data.into_versioned(),
                ..empty
            },
            Err(s) => return s,
        };
        // SAFETY: checked non-NULL above.
        unsafe { *out = matrix };
        S::Ok
    })
}

/// Takes the entry of `list` named by the C string `key` out, or says why not.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string.
unsafe fn take_named<T>(
    list: &mut [(String, Option<T>)],
    key: *const c_char,
    what: &str,
) -> Result<T, AnnbatchStatus> {
    // SAFETY: the caller's contract.
    let key = unsafe { text(key, "key") }?;
    match list.iter_mut().find(|(k, _)| k == key) {
        Some((_, slot)) => slot.take().ok_or_else(|| taken(&format!("{what} {key:?}"))),
        None => Err(fail(
            S::InvalidArgument,
            format!("{what} {key:?} was not requested"),
        )),
    }
}

/// Hands over `X` of the batch (`[rows, n_var]`, sparse CSR int32/float32 or dense float32):
/// the caller owns the tensors in `*out` and releases each through its deleter. Once per
/// batch; again: `ANNBATCH_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_x(
    batch: *const AnnbatchBatch,
    out: *mut AnnbatchMatrix,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { hand_over_matrix(batch, out, |b| b.x.take().ok_or_else(|| taken("X"))) }
}

/// Hands over the global row ids (int64, one per row) like [`annbatch_batch_x`];
/// `ANNBATCH_STATUS_INVALID_ARGUMENT` if the loader was opened without `return_index`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_index(
    batch: *const AnnbatchBatch,
    out: *mut *mut DLManagedTensorVersioned,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        hand_over_array(batch, out, |b| match &mut b.index {
            None => Err(fail(
                S::InvalidArgument,
                "the loader was opened without return_index",
            )),
            Some(slot) => slot.take().ok_or_else(|| taken("the index")),
        })
    }
}

/// Hands over the obs column `key` (int64 category codes, or the values: int64 for integer
/// columns, float64 for float64 and nullable integer ones, float32 otherwise) like
/// [`annbatch_batch_index`]; `ANNBATCH_STATUS_INVALID_ARGUMENT` if `key` was not in `obs_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_obs(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut *mut DLManagedTensorVersioned,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on (`key` read inside the panic guard).
    unsafe { hand_over_array(batch, out, |b| take_named(&mut b.obs, key, "obs key")) }
}

/// Hands over layer `key` (the same rows as `X`: `[rows, n_var]`, sparse CSR or dense as
/// stored, float32 values) like [`annbatch_batch_x`]; `ANNBATCH_STATUS_INVALID_ARGUMENT` if
/// `key` was not in `layer_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_layer(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut AnnbatchMatrix,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on (`key` read inside the panic guard).
    unsafe { hand_over_matrix(batch, out, |b| take_named(&mut b.layers, key, "layer")) }
}

/// Hands over obsm entry `key` (the same rows as `X`: dense float32 `[rows, d]`, or sparse
/// CSR as stored) like [`annbatch_batch_x`]; `ANNBATCH_STATUS_INVALID_ARGUMENT` if `key` was
/// not in `obsm_keys`.
///
/// # Safety
/// `batch` is NULL or a handle from this library; `key` is a NUL-terminated string; `out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_obsm(
    batch: *const AnnbatchBatch,
    key: *const c_char,
    out: *mut AnnbatchMatrix,
) -> AnnbatchStatus {
    // SAFETY: the caller's contract, passed on (`key` read inside the panic guard).
    unsafe { hand_over_matrix(batch, out, |b| take_named(&mut b.obsm, key, "obsm entry")) }
}

/// A pre-1.0 `DLManagedTensor*` holding `versioned` (same memory, same shape), for consumers
/// that take only those. On success the caller owns `*out` (its deleter releases `versioned`
/// too) and must not release `versioned` itself.
///
/// # Safety
/// `versioned` is NULL or a live tensor this library handed over, owned by the caller; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn annbatch_dlpack_legacy(
    versioned: *mut DLManagedTensorVersioned,
    out: *mut *mut DLManagedTensor,
) -> AnnbatchStatus {
    guard(|| {
        if out.is_null() || versioned.is_null() {
            return fail(S::NullPointer, "versioned or out is NULL");
        }
        // SAFETY: the caller hands over a live versioned tensor it owns.
        unsafe { *out = legacy_of(versioned) };
        S::Ok
    })
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
        let b = match self::batch(batch) {
            Ok(b) => b,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(S::NullPointer, "out is NULL");
        }
        let rows = lock(&b).n_rows;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { *out = rows };
        S::Ok
    })
}

/// Frees a batch. The arrays handed over from it stay valid (they are the caller's); those
/// never taken are released with it.
///
/// # Safety
/// `batch` is NULL or a pointer this library returned; no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn annbatch_batch_free(batch: *mut AnnbatchBatch) -> AnnbatchStatus {
    guard(|| free(batch, Kind::Batch, "batch"))
}
