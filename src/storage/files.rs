//! The read side of a local zarr store, every read checked against the file it reads.
//!
//! zarrs' own `FilesystemStore` trusts what it is told: a byte range from a damaged shard index
//! becomes an allocation of that many bytes (10^15 aborts the process), a non-UTF-8 entry name
//! panics while listing, and a file that is missing or replaced reads as fill values. This store
//! is what zarrs reads through instead:
//!
//! - every byte range is checked against the file's size *before* a buffer is allocated;
//! - directory listings refuse names that are not UTF-8 with an error, not a panic;
//! - a missing chunk file is an error where the caller says the chunks must all be there
//!   ([`FileStore::strict`]), and a file that cannot be opened for another reason (a symlink
//!   loop, a permission) is always an error, never "absent";
//! - every file under the root is remembered as it is when the store is opened (device, inode,
//!   length, mtime; up to [`SNAPSHOT_FILES`] of them, a file past that when first read): if it
//!   is later found replaced or rewritten — before its first read or after — or the root
//!   directory itself was swapped (an append publishes a new collection by renaming), the read
//!   fails with [`Error::CollectionChanged`](crate::Error::CollectionChanged) instead of
//!   mixing versions.
//!
//! Faults are also kept, typed, in the store ([`FileStore::fault`]), so that the error zarrs
//! returns (a string by then) can be reported as the crate's own error variant.
//!
//! Files stay open between reads (up to [`MAX_OPEN_FILES`] in a process): opening, checking and
//! closing a shard file for each of the ~10k reads of an epoch took ~11 % of a loader's CPU.
//! The checks above still run once per read request: [`new_read_request`] (called as each
//! starts: a loader's fetch, a `read_rows`, a public `scatter_rows`) makes every store look
//! again, at a file's first read after it, whether its path still names the file first read
//! there, unchanged.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
};

use super::fault::{FirstFault, StoreFault};
use super::keys::is_metadata;

mod direct;
mod read_ahead;

pub(crate) use read_ahead::Ticket;

/// What a file was when this store first read it (also what an `.h5ad` reader remembers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Self {
                dev: 0,
                ino: 0,
                len: meta.len(),
                mtime_ns,
            }
        }
    }

    /// The same node (a directory's entries may change; its identity may not).
    pub(crate) fn same_node(&self, other: &Self) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Length in bytes.
    #[cfg(feature = "hdf5")]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Files a store remembers when it is opened (a directory walk: one `stat` per file).
/// A collection of 1 GB shards holds a few thousand per TB; past the bound a file is
/// remembered when first read.
const SNAPSHOT_FILES: usize = 200_000;

/// Files held open by all stores of the process together; past it, a file is opened per
/// read as before (well under the usual limit of 1024 descriptors a process).
const MAX_OPEN_FILES: usize = 256;

/// Files held open now, all stores together.
static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

/// Every regular file under `root` (keys as zarr names them, `/`-separated and relative), as
/// it is now; at most [`SNAPSHOT_FILES`]. Symlinks, names that are not UTF-8 and entries that
/// cannot be read are left out: they are looked at when first read, as before.
fn snapshot(root: &Path) -> HashMap<String, FileId> {
    let mut files = HashMap::new();
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let (Ok(meta), Some(name)) = (
                entry.metadata(),
                entry.file_name().to_str().map(String::from),
            ) else {
                continue;
            };
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if meta.is_dir() {
                dirs.push((entry.path(), key));
            } else if meta.is_file() {
                if files.len() >= SNAPSHOT_FILES {
                    return files;
                }
                files.insert(key, FileId::of(&meta));
            }
        }
    }
    files
}

/// The current read request (see [`new_read_request`]).
static REQUEST: AtomicU64 = AtomicU64::new(1);

/// Starts a read request: every store checks each file it holds open again (see the module
/// docs) at the file's next read. Cheap; calling it more often only means more checks.
pub(crate) fn new_read_request() {
    REQUEST.fetch_add(1, Ordering::SeqCst);
}

/// The read request under way (see [`new_read_request`]): readers of other files (`.h5ad`)
/// check their file once per request too.
#[cfg(feature = "hdf5")]
pub(crate) fn read_request() -> u64 {
    REQUEST.load(Ordering::SeqCst)
}

/// Raises this process's soft limit on open files to its hard limit, once. A loader on
/// thousands of `.h5ad` files holds a descriptor per file: Linux's usual soft limit of 1024
/// stops it below a thousand files, while the hard limit is usually far higher (Go's runtime
/// raises it the same way). Failing to raise it is not an error: opening past the limit then
/// reports "Too many open files" for the file.
#[cfg(feature = "hdf5")]
pub(crate) fn raise_open_file_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        // `None` is unlimited: nothing to raise (or nothing to raise it to).
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
            if current >= maximum {
                return;
            }
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(error = %e, "the open-file limit stays where it is");
            }
        }
    });
}

/// A file held open between reads.
#[derive(Debug)]
struct OpenFile {
    file: File,
    size: u64,
    /// The request in which the file was last found unchanged.
    checked: AtomicU64,
}

/// State shared by the lenient and the strict view of one store.
#[derive(Debug)]
struct Shared {
    root: PathBuf,
    root_id: FileId,
    seen: Mutex<HashMap<String, FileId>>,
    /// Files held open, by key (all views of a store read with the same `direct` flag: it is
    /// set when the store is opened, before any read).
    open: Mutex<HashMap<String, Arc<OpenFile>>>,
    fault: FirstFault,
    /// Direct reads requested ahead of their turn ([`FileStore::read_ahead`]).
    ahead: Arc<read_ahead::ReadAhead>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let held = self.open.get_mut().map_or(0, |open| open.len());
        OPEN_FILES.fetch_sub(held, Ordering::SeqCst);
    }
}

/// A local zarr store read with every length and identity checked (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    shared: Arc<Shared>,
    /// Whether a missing file is an error (chunks of arrays that are stored whole).
    strict: bool,
    /// Whether files are read with `O_DIRECT`, past the page cache (see [`direct`]).
    direct: bool,
}

impl FileStore {
    /// Opens the directory `root`.
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a directory (expected a zarr store)",
            ));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                root_id: FileId::of(&meta),
                seen: Mutex::new(snapshot(root)),
                open: Mutex::new(HashMap::new()),
                fault: FirstFault::default(),
                ahead: Arc::default(),
            }),
            strict: false,
            direct: false,
        })
    }

    /// The same store, reading with `O_DIRECT` (Linux): no page cache, so an epoch over a
    /// collection many times the memory neither fills it nor stalls on its eviction.
    pub(crate) fn direct_io(mut self, on: bool) -> Self {
        self.direct = on;
        self
    }

    /// Fetches whose bytes a loader requests before their turn when files are read with
    /// `O_DIRECT` (the page cache reads ahead for the others).
    pub(crate) const FETCHES_AHEAD: usize = 2;

    /// Whether files are read with `O_DIRECT`.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether `other` is a view of the same store.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Requests `ranges` (`(key, byte range)`) with `O_DIRECT` before they are read (see
    /// [`read_ahead`]); the bytes are kept until the ticket is dropped. Ranges of files that
    /// are absent, cannot be opened or are shorter than the range are left out: their own
    /// read reports them. Nothing is requested when the store does not read directly.
    pub(crate) fn read_ahead(&self, ranges: Vec<(StoreKey, std::ops::Range<u64>)>) -> Ticket {
        let mut wanted = Vec::with_capacity(if self.direct { ranges.len() } else { 0 });
        let mut files: HashMap<String, Option<Arc<OpenFile>>> = HashMap::new();
        for (key, range) in ranges.into_iter().filter(|_| self.direct) {
            let file = files
                .entry(key.as_str().to_string())
                .or_insert_with(|| self.open_file(&key).ok().flatten().map(|(open, _)| open));
            if let Some(file) = file.as_ref().filter(|f| range.end <= f.size) {
                wanted.push((key.as_str().to_string(), file.clone(), range));
            }
        }
        self.shared.ahead.submit(wanted)
    }

    /// The same store, with a missing file read as an error rather than as fill values.
    pub(crate) fn strict(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            strict: true,
            direct: self.direct,
        }
    }

    /// Fills `buf` from byte `offset` of `file` (through an aligned buffer with `O_DIRECT`).
    fn read_file_at(&self, file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if self.direct {
            direct::read_at(file, offset, buf)
        } else {
            read_at(file, offset, buf)
        }
    }

    /// The first fault this store (or a view of it) met, if any ([`FirstFault`]).
    pub(crate) fn fault(&self) -> Option<StoreFault> {
        self.shared.fault.get()
    }

    fn fail(&self, fault: StoreFault) -> StorageError {
        self.shared.fault.record(fault)
    }

    fn path_of(&self, key: &str) -> PathBuf {
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            self.shared.root.clone()
        } else {
            self.shared.root.join(key)
        }
    }

    /// Fails when the file at `key` is not the one first read there, or, for a file not read
    /// before, when the root directory is no longer the one opened.
    fn check_identity(&self, key: &str, path: &Path, id: FileId) -> Result<(), StorageError> {
        let mut seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match seen.get(key) {
            Some(first) if *first == id => Ok(()),
            Some(_) => {
                drop(seen);
                Err(self.fail(StoreFault::Changed {
                    file: path.to_path_buf(),
                    detail: "the file was replaced or rewritten after this reader first read it \
                             (an append publishes a new version); reopen the collection"
                        .into(),
                }))
            }
            None => {
                let root = std::fs::metadata(&self.shared.root).map(|m| FileId::of(&m));
                if !root.is_ok_and(|r| r.same_node(&self.shared.root_id)) {
                    drop(seen);
                    return Err(self.fail(StoreFault::Changed {
                        file: self.shared.root.clone(),
                        detail: "the collection directory was replaced or removed after this \
                                 reader opened it (an append publishes a new one); reopen it"
                            .into(),
                    }));
                }
                seen.insert(key.to_string(), id);
                Ok(())
            }
        }
    }

    /// The file at `key`, held open or opened now: `None` when absent (an error when strict).
    fn open_file(&self, key: &StoreKey) -> Result<Option<(Arc<OpenFile>, PathBuf)>, StorageError> {
        let path = self.path_of(key.as_str());
        let request = REQUEST.load(Ordering::SeqCst);
        let held = self.lock_open().get(key.as_str()).cloned();
        if let Some(open) = held {
            if open.checked.load(Ordering::SeqCst) >= request {
                return Ok(Some((open, path)));
            }
            // First read in this request: the path must still name the file, unchanged.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    self.check_identity(key.as_str(), &path, FileId::of(&meta))?;
                    open.checked.fetch_max(request, Ordering::SeqCst);
                    return Ok(Some((open, path)));
                }
                // Gone or no longer a file: let it go, and read the path as a new file would.
                _ => self.forget(key.as_str()),
            }
        }
        let file = match direct::open(&path, self.direct) {
            Ok(file) => file,
            Err(e) if is_absent(&e) => {
                if self.strict && !is_metadata(key.as_str()) {
                    return Err(self.fail(StoreFault::Missing { file: path }));
                }
                return Ok(None);
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let meta = file.metadata().map_err(|e| io_error(&path, e))?;
        if !meta.is_file() {
            // A directory where a group's metadata might be looked up is simply no file; in
            // place of a chunk, or a FIFO, socket or device anywhere, it is damage.
            if meta.is_dir() && is_metadata(key.as_str()) {
                return Ok(None);
            }
            return Err(self.fail(StoreFault::NotAFile {
                file: path,
                kind: kind_of(&meta),
            }));
        }
        let id = FileId::of(&meta);
        self.check_identity(key.as_str(), &path, id)?;
        let open = Arc::new(OpenFile {
            file,
            size: meta.len(),
            checked: AtomicU64::new(request),
        });
        Ok(Some((self.hold(key.as_str(), open), path)))
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OpenFile>>> {
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `open` for later reads of `key` while the process holds fewer than
    /// [`MAX_OPEN_FILES`]; the file held for `key` (this one, or one another thread opened
    /// first).
    fn hold(&self, key: &str, open: Arc<OpenFile>) -> Arc<OpenFile> {
        let mut held = self.lock_open();
        if let Some(first) = held.get(key) {
            return first.clone();
        }
        if OPEN_FILES.fetch_add(1, Ordering::SeqCst) >= MAX_OPEN_FILES {
            OPEN_FILES.fetch_sub(1, Ordering::SeqCst);
            return open;
        }
        held.insert(key.to_string(), open.clone());
        open
    }

    /// Closes the file held for `key`, if any.
    fn forget(&self, key: &str) {
        if self.lock_open().remove(key).is_some() {
            OPEN_FILES.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Reads `range` of the file at `key` into `buf[..n]` and returns `n`, or `None` when the
    /// file is absent (an error when strict). `buf` grows when too short and never shrinks, so
    /// a buffer reused from read to read is allocated and zeroed once, not per read.
    pub(crate) fn read_into(
        &self,
        key: &StoreKey,
        range: ByteRange,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StorageError> {
        let Some((open, path)) = self.open_file(key)? else {
            return Ok(None);
        };
        let (offset, len) = self.inside(range, open.size, &path)?;
        // `len` is at most the file's size: the buffer holds bytes that exist.
        let len = usize::try_from(len).map_err(|e| StorageError::Other(e.to_string()))?;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        self.read_file_at(&open.file, offset, &mut buf[..len])
            .map_err(|e| io_error(&path, e))?;
        Ok(Some(len))
    }

    /// Reads `range` of the file at `key` and hands the bytes to `f`: with `O_DIRECT` where
    /// they landed in the thread's aligned read buffer (no copy out), else read into `scratch`
    /// (grown when too short, never shrunk). `None` when the file is absent (an error when
    /// strict).
    pub(crate) fn read_with<R>(
        &self,
        key: &StoreKey,
        range: ByteRange,
        scratch: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StorageError> {
        if !self.direct {
            return Ok(self
                .read_into(key, range, scratch)?
                .map(|n| f(&scratch[..n])));
        }
        let Some((open, path)) = self.open_file(key)? else {
            return Ok(None);
        };
        let (offset, len) = self.inside(range, open.size, &path)?;
        // `len` is at most the file's size: the aligned buffer holds bytes that exist.
        let len = usize::try_from(len).map_err(|e| StorageError::Other(e.to_string()))?;
        if let Some((buf, at)) = self.ahead(key, &open, offset, len) {
            return Ok(Some(f(&buf.bytes()[at])));
        }
        direct::read_with(&open.file, offset, len, f)
            .map(Some)
            .map_err(|e| io_error(&path, e))
    }

    /// Fills `buf` from byte `offset` of the file at `key`; `None` when the file is absent (an
    /// error when strict).
    pub(crate) fn read_exact_into(
        &self,
        key: &StoreKey,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<()>, StorageError> {
        let Some((open, path)) = self.open_file(key)? else {
            return Ok(None);
        };
        let range = ByteRange::FromStart(offset, Some(buf.len() as u64));
        let (offset, _) = self.inside(range, open.size, &path)?;
        if let Some((read, at)) = self.ahead(key, &open, offset, buf.len()) {
            buf.copy_from_slice(&read.bytes()[at]);
            return Ok(Some(()));
        }
        self.read_file_at(&open.file, offset, buf)
            .map_err(|e| io_error(&path, e))?;
        Ok(Some(()))
    }

    /// Fills `bufs`, back to back, from byte `offset` of the file at `key` (one `preadv` for
    /// up to [`MAX_IOVECS`] of them); `None` when the file is absent (an error when strict).
    pub(crate) fn read_exact_vectored(
        &self,
        key: &StoreKey,
        offset: u64,
        bufs: &mut [&mut [u8]],
    ) -> Result<Option<()>, StorageError> {
        let Some((open, path)) = self.open_file(key)? else {
            return Ok(None);
        };
        let total = bufs.iter().map(|b| b.len() as u64).sum();
        let range = ByteRange::FromStart(offset, Some(total));
        let (offset, _) = self.inside(range, open.size, &path)?;
        let ahead = usize::try_from(total)
            .ok()
            .and_then(|len| self.ahead(key, &open, offset, len));
        if let Some((read, at)) = ahead {
            let mut from = at.start;
            for buf in bufs.iter_mut() {
                buf.copy_from_slice(&read.bytes()[from..from + buf.len()]);
                from += buf.len();
            }
            return Ok(Some(()));
        }
        let read = if self.direct {
            // Aligned reads go through a bounce buffer anyway: one buffer at a time.
            bufs.iter_mut()
                .try_fold(offset, |at, buf| {
                    direct::read_at(&open.file, at, buf).map(|()| at + buf.len() as u64)
                })
                .map(drop)
        } else {
            read_vectored_at(&open.file, offset, bufs)
        };
        read.map_err(|e| io_error(&path, e))?;
        Ok(Some(()))
    }

    /// The read-ahead bytes of `len` bytes at `offset` of `key`, when a direct store requested
    /// them: the buffer and where they are in it.
    fn ahead(
        &self,
        key: &StoreKey,
        open: &OpenFile,
        offset: u64,
        len: usize,
    ) -> Option<(Arc<read_ahead::Pooled>, std::ops::Range<usize>)> {
        if !self.direct {
            return None;
        }
        self.shared
            .ahead
            .find(key.as_str(), &open.file, offset, len as u64)
    }

    /// `range` as `(offset, len)` inside a file of `size` bytes, or a [`StoreFault::PastEnd`].
    fn inside(&self, range: ByteRange, size: u64, path: &Path) -> Result<(u64, u64), StorageError> {
        resolve(range, size).ok_or_else(|| {
            self.fail(StoreFault::PastEnd {
                file: path.to_path_buf(),
                detail: format!(
                    "byte range {} reaches past the end of the file ({size} bytes): the shard \
                     index or the file is damaged",
                    describe(range)
                ),
            })
        })
    }

    /// Lists the directory `prefix`: `(files, subdirectories)`, names checked to be UTF-8.
    fn read_dir(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let dir = self.path_of(prefix);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_absent(&e) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let name = match entry.file_name().into_string() {
                Ok(name) => name,
                Err(raw) => {
                    return Err(self.fail(StoreFault::NotUtf8 {
                        dir: dir.clone(),
                        name: format!("{raw:?}"),
                    }))
                }
            };
            // Follows symlinks, as a reader would; a dangling link or a loop is a file here, and
            // reading it fails with its own error.
            if entry.path().is_dir() {
                dirs.push(name);
            } else {
                files.push(name);
            }
        }
        files.sort();
        dirs.sort();
        Ok((files, dirs))
    }

    /// Every file key under `prefix` (a directory key ending in `/`, or empty for the root).
    fn walk(&self, prefix: &str, out: &mut StoreKeys) -> Result<(), StorageError> {
        let (files, dirs) = self.read_dir(prefix)?;
        for name in files {
            out.push(StoreKey::new(format!("{prefix}{name}"))?);
        }
        for name in dirs {
            self.walk(&format!("{prefix}{name}/"), out)?;
        }
        Ok(())
    }
}

/// Whether an open error means "nothing there" rather than "something unreadable there".
/// What a path that is not a regular file is, for messages.
pub(crate) fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if meta.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Refuses a path that exists and is neither a regular file nor a directory (a FIFO, socket or
/// device), without opening it: opening a FIFO for reading waits for a writer.
///
/// # Errors
/// [`crate::Error::Io`] naming the path and what it is.
pub(crate) fn refuse_special(path: &Path) -> crate::error::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => Err(crate::error::Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("is a {}, not a regular file", kind_of(&meta)),
            ),
        }),
        _ => Ok(()),
    }
}

fn is_absent(e: &std::io::Error) -> bool {
    // ENOTDIR: a path component is a file, so the key cannot exist.
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn io_error(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::from(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// The offset and length of `range` in a file of `size` bytes, if it lies inside it.
fn resolve(range: ByteRange, size: u64) -> Option<(u64, u64)> {
    let (offset, len) = match range {
        ByteRange::FromStart(offset, None) => (offset, size.checked_sub(offset)?),
        ByteRange::FromStart(offset, Some(len)) => (offset, len),
        ByteRange::Suffix(len) => (size.checked_sub(len)?, len),
    };
    (offset.checked_add(len)? <= size).then_some((offset, len))
}

/// `range` for a message (zarrs' own `Display` adds offset and length unchecked).
fn describe(range: ByteRange) -> String {
    match range {
        ByteRange::FromStart(offset, None) => format!("from {offset} to the end"),
        ByteRange::FromStart(offset, Some(len)) => format!("of {len} bytes at {offset}"),
        ByteRange::Suffix(len) => format!("of the last {len} bytes"),
    }
}

fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Buffers per `preadv` call (Linux's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// Fills `bufs`, back to back, from byte `offset` of `file` (`preadv`, up to [`MAX_IOVECS`]
/// buffers a call).
pub(crate) fn read_vectored_at(
    file: &File,
    mut offset: u64,
    bufs: &mut [&mut [u8]],
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        // The first buffer not yet full, and how much of it is.
        let (mut first, mut filled) = (0, 0);
        while first < bufs.len() {
            let n = {
                let (head, rest) = bufs[first..].split_at_mut(1);
                let mut iov = Vec::with_capacity(rest.len().min(MAX_IOVECS - 1) + 1);
                iov.push(std::io::IoSliceMut::new(&mut head[0][filled..]));
                iov.extend(
                    rest.iter_mut()
                        .take(MAX_IOVECS - 1)
                        .map(|b| std::io::IoSliceMut::new(b)),
                );
                match rustix::io::preadv(file, &mut iov, offset) {
                    Ok(0) if iov.iter().any(|b| !b.is_empty()) => {
                        return Err(std::io::ErrorKind::UnexpectedEof.into())
                    }
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            offset += n as u64;
            let mut left = n;
            while first < bufs.len() && left >= bufs[first].len() - filled {
                left -= bufs[first].len() - filled;
                (first, filled) = (first + 1, 0);
            }
            filled += left;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        for buf in bufs {
            read_at(file, offset, buf)?;
            offset += buf.len() as u64;
        }
        Ok(())
    }
}

impl ReadableStorageTraits for FileStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let Some((open, path)) = self.open_file(key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for range in byte_ranges {
            let (offset, len) = self.inside(range, open.size, &path)?;
            // `len` is at most the file's size, so this allocation is of bytes that exist.
            let len = usize::try_from(len).map_err(|e| StorageError::Other(e.to_string()))?;
            let mut buf = vec![0u8; len];
            self.read_file_at(&open.file, offset, &mut buf)
                .map_err(|e| io_error(&path, e))?;
            out.push(Ok(Bytes::from(buf)));
        }
        Ok(Some(Box::new(out.into_iter())))
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.get_partial(key, ByteRange::FromStart(0, None))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        let path = self.path_of(key.as_str());
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl ListableStorageTraits for FileStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        let mut keys = Vec::new();
        self.walk("", &mut keys)?;
        Ok(keys)
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        let mut keys = Vec::new();
        self.walk(prefix.as_str(), &mut keys)?;
        Ok(keys)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        let (files, dirs) = self.read_dir(prefix.as_str())?;
        let keys = files
            .into_iter()
            .map(|name| StoreKey::new(format!("{}{name}", prefix.as_str())))
            .collect::<Result<Vec<_>, _>>()?;
        let prefixes = dirs
            .into_iter()
            .map(|name| StorePrefix::new(format!("{}{name}/", prefix.as_str())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreKeysPrefixes::new(keys, prefixes))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        let mut total = 0u64;
        for key in self.list_prefix(prefix)? {
            total = total.saturating_add(self.size_key(&key)?.unwrap_or(0));
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_files_than_are_held_open_all_read_and_changes_are_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = MAX_OPEN_FILES + 44;
        for i in 0..n {
            std::fs::write(dir.path().join(format!("f{i}")), (i as u32).to_le_bytes())
                .expect("write");
        }
        let store = FileStore::open(dir.path()).expect("open");
        for _ in 0..2 {
            new_read_request();
            for i in 0..n {
                let key = StoreKey::new(format!("f{i}")).expect("key");
                let mut buf = [0u8; 4];
                store.read_exact_into(&key, 0, &mut buf).expect("read");
                assert_eq!(u32::from_le_bytes(buf), i as u32);
            }
        }
        assert!(OPEN_FILES.load(Ordering::SeqCst) <= MAX_OPEN_FILES);
        // A file held open and rewritten in place is found changed in the next request.
        let key = StoreKey::new("f0").expect("key");
        std::fs::write(dir.path().join("f0"), [9u8; 8]).expect("rewrite");
        new_read_request();
        let mut buf = [0u8; 4];
        assert!(store.read_exact_into(&key, 0, &mut buf).is_err());
        assert!(matches!(store.fault(), Some(StoreFault::Changed { .. })));
    }

    #[test]
    fn a_file_rewritten_before_its_first_read_is_found_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("dirs");
        std::fs::write(dir.path().join("a/b/shard"), [1u8; 16]).expect("write");
        std::fs::write(dir.path().join("other"), [2u8; 16]).expect("write");
        let store = FileStore::open(dir.path()).expect("open");
        // In place, same length (what rsync --inplace or a writer's second pass does), after
        // the store was opened and before anything read it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("a/b/shard"), [3u8; 16]).expect("rewrite");
        new_read_request();
        let mut buf = [0u8; 16];
        let untouched = StoreKey::new("other").expect("key");
        store
            .read_exact_into(&untouched, 0, &mut buf)
            .expect("unchanged file");
        let key = StoreKey::new("a/b/shard").expect("key");
        assert!(store.read_exact_into(&key, 0, &mut buf).is_err());
        assert!(matches!(store.fault(), Some(StoreFault::Changed { .. })));
        assert_ne!(buf, [3u8; 16], "no byte of the new version was handed out");
    }

    #[test]
    fn ranges_are_resolved_inside_the_file_or_not_at_all() {
        assert_eq!(resolve(ByteRange::FromStart(2, Some(3)), 5), Some((2, 3)));
        assert_eq!(resolve(ByteRange::FromStart(2, None), 5), Some((2, 3)));
        assert_eq!(resolve(ByteRange::Suffix(5), 5), Some((0, 5)));
        assert_eq!(resolve(ByteRange::FromStart(2, Some(4)), 5), None);
        assert_eq!(resolve(ByteRange::FromStart(6, None), 5), None);
        assert_eq!(resolve(ByteRange::Suffix(6), 5), None);
        assert_eq!(
            resolve(ByteRange::FromStart(u64::MAX, Some(u64::MAX)), 5),
            None
        );
    }
}
