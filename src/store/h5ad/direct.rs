//! An HDF5 dataset read by its file offsets, in parallel, without the HDF5 library.
//!
//! The HDF5 library serialises every call of a process behind one lock, so threaded reads of an
//! `.h5ad` run one at a time. But where a dataset's bytes lie is fixed once it is written: a
//! contiguous dataset is one run of bytes at [`hdf5::Dataset::offset`], a chunked one has an
//! address per chunk. The offset is taken when the file is opened, a chunk's address the first
//! time the chunk is read (`H5Dget_chunk_info_by_coord`, one short call under the library's
//! lock, then kept; listing all chunks by index is quadratic in their number: 1.4 s for the
//! 16k chunks of two 50,000-cell files). Rows are then `pread` from the file by any number of
//! threads, and chunks inflated here (deflate, shuffle, Fletcher32 — what h5py and anndata
//! write). A dataset this cannot read (other
//! filters, big-endian, compact layout, chunks that split a row) is read through the library
//! instead ([`DirectArray::open`] returns `None`).

use std::collections::HashMap;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use hdf5::filters::Filter;
use hdf5::Dataset;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::storage::FileId;
use crate::zarr::chunked::Decoded;
use crate::zarr::dtype::Dtype;

/// Bytes read at once from a contiguous dataset: adjacent rows are joined up to this.
const SPAN_BYTES: u64 = 32 << 20;
/// A chunk larger than this when inflated is read through the library (each thread inflates
/// one chunk at a time into a buffer of this size at most).
const MAX_CHUNK_BYTES: u64 = 256 << 20;

/// Copies decoded elements from an offset into a run: `copy(decoded, first, run)`.
pub(crate) type CopyRun<'f, T> = dyn Fn(Decoded<'_>, usize, &mut [T]) -> Result<()> + Sync + 'f;

/// Checks a run read straight from the file (column indices against `n_var`).
pub(crate) type CheckRun<'f, T> = dyn Fn(&[T]) -> Result<()> + Sync + 'f;

/// How elements reach their runs: converted from the stored type by `copy`, or — when
/// `native` is given, the stored elements being the runs' own type — read straight into the
/// runs (one `preadv` per span, no staging buffer) and checked by it.
pub(crate) struct Fill<'f, T> {
    pub copy: &'f CopyRun<'f, T>,
    pub native: Option<&'f CheckRun<'f, T>>,
}

/// The `.h5ad` file as it was opened, for reads by offset and the check that it is unchanged.
///
/// It reads through HDF5's own descriptor when HDF5 opened the file with its default (`sec2`)
/// driver — one descriptor per file, not two: thousands of files under a limit of 1024 — and
/// opens its own otherwise.
#[derive(Debug)]
pub(crate) struct FileHandle {
    /// Never dropped as a `File` unless `own`: HDF5 closes its descriptor itself.
    file: ManuallyDrop<File>,
    own: bool,
    /// Keeps HDF5's descriptor open while it is read here.
    _hdf5: Option<hdf5::File>,
    path: PathBuf,
    id: FileId,
    /// The read request in which the file was last found unchanged.
    checked: AtomicU64,
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        if self.own {
            // SAFETY: our own descriptor, dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.file) };
        }
    }
}

/// HDF5's descriptor of `h5`, when its driver is `sec2` and the descriptor is the file at
/// `path` (same device and inode).
fn hdf5_descriptor(h5: &hdf5::File, path: &Path) -> Option<ManuallyDrop<File>> {
    use hdf5::plist::file_access::FileDriver;
    use std::os::fd::FromRawFd;
    let fapl = h5.access_plist().ok()?;
    if !matches!(fapl.get_driver(), Ok(FileDriver::Sec2)) {
        return None;
    }
    let mut handle: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: an open file and its access property list; `handle` is writable. Under the lock
    // that serialises every HDF5 call of the process.
    let status = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5f::H5Fget_vfd_handle(h5.id(), fapl.id(), &mut handle)
    });
    if status < 0 || handle.is_null() {
        return None;
    }
    // SAFETY: the sec2 driver's handle points to its `int` file descriptor (H5FDsec2.c), valid
    // while the file is open.
    let fd = unsafe { *handle.cast::<std::ffi::c_int>() };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is open and HDF5's: it stays open while a handle of the file lives (the
    // `FileHandle` keeps one), and it is never closed here (`ManuallyDrop`, `own` false).
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let (held, named) = (file.metadata().ok()?, std::fs::metadata(path).ok()?);
    FileId::of(&held)
        .same_node(&FileId::of(&named))
        .then_some(file)
}

impl FileHandle {
    /// The file at `path`, which HDF5 opened as `h5`, for reads by offset; remembers what it is
    /// now.
    pub(crate) fn open(path: &Path, h5: &hdf5::File) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let (file, own, keep) = match hdf5_descriptor(h5, path) {
            Some(file) => (file, false, Some(h5.clone())),
            None => (ManuallyDrop::new(File::open(path).map_err(io)?), true, None),
        };
        let id = FileId::of(&file.metadata().map_err(io)?);
        Ok(Self {
            file,
            own,
            _hdf5: keep,
            path: path.to_path_buf(),
            id,
            checked: AtomicU64::new(0),
        })
    }

    /// The file's length when opened.
    pub(crate) fn len(&self) -> u64 {
        self.id.len()
    }

    /// Fails with [`Error::CollectionChanged`] when the file was rewritten, replaced or removed
    /// since it was opened; looks once per read request.
    pub(crate) fn check(&self) -> Result<()> {
        let request = crate::storage::read_request();
        if self.checked.load(Ordering::Relaxed) == request {
            return Ok(());
        }
        let changed = |detail: String| Error::CollectionChanged {
            path: self.path.clone(),
            detail,
        };
        let held = self
            .file
            .metadata()
            .map_err(|e| changed(format!("the open file cannot be looked at: {e}")))?;
        if FileId::of(&held) != self.id {
            return Err(changed(
                "the file was written to since it was opened (its length or modification time \
                 changed); reopen it"
                    .into(),
            ));
        }
        match std::fs::metadata(&self.path) {
            Ok(now) if FileId::of(&now) == self.id => {}
            Ok(_) => {
                return Err(changed(
                    "the path names another file than the one opened (replaced); reopen it".into(),
                ))
            }
            Err(e) => return Err(changed(format!("the file is gone ({e})"))),
        }
        self.checked.store(request, Ordering::Relaxed);
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::CollectionChanged {
                path: self.path.clone(),
                detail: format!(
                    "{what}: {} bytes at {offset} cannot be read: {e}",
                    buf.len()
                ),
            })
    }
}

/// Where a chunk is: `(address, stored bytes, filter mask)`; `None`: never written (zeros).
type ChunkAt = Option<(u64, u64, u32)>;

/// Where a dataset's chunks are, filled as they are first read.
#[derive(Debug, Default)]
struct ChunkTable {
    /// Chunk number → `(address, stored bytes, filter mask)`, `None` for a chunk never written.
    known: RwLock<HashMap<u64, ChunkAt>>,
    /// Every written chunk is in `known` (listed in one pass: a chunk not there was never
    /// written).
    listed: AtomicBool,
}

/// How a dataset's elements lie in the file.
#[derive(Debug)]
enum Layout {
    /// One run of bytes.
    Contiguous { offset: u64 },
    /// Never written: every element is the fill value, zero.
    Unallocated,
    /// Chunks of `chunk` elements (whole rows of `rows` rows), each where the library says,
    /// filtered.
    Chunked {
        chunk: u64,
        rows: u64,
        /// The dataset, to ask where a chunk is.
        ds: Dataset,
        /// Chunk number → `(address, stored bytes, filter mask)`, `None` for a chunk never
        /// written (zeros); filled as chunks are first read.
        table: ChunkTable,
        /// The filters as written, in order (decoded in reverse).
        filters: Vec<Step>,
    },
}

/// A filter decoded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Shuffle,
    Deflate,
    Fletcher32,
}

/// One numeric HDF5 dataset read by file offset, as a flat array of its elements (row-major:
/// row `r` of a 2-D dataset of width `w` is elements `r*w .. (r+1)*w`).
#[derive(Debug)]
pub(crate) struct DirectArray {
    path: String,
    dtype: Dtype,
    item: u64,
    len: u64,
    layout: Layout,
}

impl DirectArray {
    /// What to read `ds` (its path `path`, of element type `dtype`) with: `Ok(None)` when only
    /// the HDF5 library can (see the module docs).
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the layout cannot be asked, [`Error::CorruptChunk`] for a chunk or
    /// run of bytes past the end of the file.
    pub(crate) fn open(
        ds: &Dataset,
        path: &str,
        dtype: Dtype,
        file: &FileHandle,
    ) -> Result<Option<Self>> {
        if !dtype.is_numeric() || std::env::var_os("ANNBATCH_H5AD_LIBRARY_READS").is_some() {
            return Ok(None);
        }
        let item = dtype.item_bytes();
        let little = ds
            .dtype()
            .map(|t| t.byte_order() == hdf5::datatype::ByteOrder::LittleEndian)
            .unwrap_or(false);
        if !little && item > 1 {
            return Ok(None);
        }
        let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
        let Some(len) = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|n| n.checked_mul(item).is_some())
        else {
            return Ok(None);
        };
        // Elements per row; saturated, a chunk of it is refused below.
        let row: u64 = shape
            .iter()
            .skip(1)
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .unwrap_or(u64::MAX);
        let corrupt = |detail: String| corrupt(path, 0, detail);
        let layout = match ds.layout() {
            hdf5::dataset::Layout::Contiguous => match ds.offset() {
                Some(offset) => {
                    if offset
                        .checked_add(len * item)
                        .is_none_or(|end| end > file.len())
                    {
                        return Err(corrupt(format!(
                            "{} bytes at {offset}, past the end of the file ({} bytes)",
                            len * item,
                            file.len()
                        )));
                    }
                    Layout::Contiguous { offset }
                }
                None if ds.storage_size() == 0 => Layout::Unallocated,
                None => return Ok(None),
            },
            hdf5::dataset::Layout::Chunked => {
                let Some(dims) = ds.chunk() else {
                    return Ok(None);
                };
                let dims: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
                // Only chunks of whole rows are runs of the flat array.
                if dims.len() != shape.len() || dims.first().is_none_or(|&d| d == 0) {
                    return Ok(None);
                }
                if dims[1..] != shape[1..] {
                    return Ok(None);
                }
                // Chunk dimensions come from the file: a product past the limit (or u64) is
                // left to the library, not allocated.
                let Some(chunk) = dims[0]
                    .checked_mul(row)
                    .filter(|c| c.saturating_mul(item) <= MAX_CHUNK_BYTES)
                else {
                    return Ok(None);
                };
                let mut filters = Vec::new();
                for f in ds.filters() {
                    filters.push(match f {
                        Filter::Shuffle => Step::Shuffle,
                        Filter::Deflate(_) => Step::Deflate,
                        Filter::Fletcher32 => Step::Fletcher32,
                        _ => return Ok(None),
                    });
                }
                Layout::Chunked {
                    chunk,
                    rows: dims[0],
                    ds: ds.clone(),
                    table: ChunkTable::default(),
                    filters,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Self {
            path: path.to_string(),
            dtype,
            item,
            len,
            layout,
        }))
    }

    /// Fills each `(first element, run)` of `parts` (sorted by first element, each inside the
    /// array) with its elements, converted by `copy` (`copy(decoded, first, run)`), reading in
    /// parallel on the current rayon pool.
    ///
    /// # Errors
    /// [`Error::CorruptChunk`] for a chunk that does not inflate to its size, the errors of
    /// `copy`, [`Error::CollectionChanged`] when the file cannot be read where it could.
    pub(crate) fn read_parts<T: bytemuck::Pod + Default + Send>(
        &self,
        file: &FileHandle,
        parts: Vec<(u64, &mut [T])>,
        fill: &Fill<'_, T>,
    ) -> Result<()> {
        let copy = fill.copy;
        if let Some((start, run)) = parts
            .iter()
            .find(|(s, run)| s.checked_add(run.len() as u64).is_none_or(|e| e > self.len))
        {
            return Err(Error::Internal(format!(
                "{}: elements {start}+{} of {}",
                self.path,
                run.len(),
                self.len
            )));
        }
        match &self.layout {
            Layout::Unallocated => {
                for (_, run) in parts {
                    run.fill(T::default());
                }
                Ok(())
            }
            Layout::Contiguous { offset } => spans(parts, SPAN_BYTES / self.item)
                .into_par_iter()
                .try_for_each(|span| self.read_span(file, *offset, span, 0, fill)),
            Layout::Chunked {
                chunk,
                rows,
                ds,
                table,
                filters,
            } => {
                let mut pieces: Vec<(u64, usize, &mut [T])> = Vec::new();
                for (start, run) in parts {
                    let mut at = start;
                    let mut rest = run;
                    while !rest.is_empty() {
                        let c = at / chunk;
                        let within = at - c * chunk;
                        let n = ((chunk - within) as usize).min(rest.len());
                        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
                        pieces.push((c, within as usize, head));
                        rest = tail;
                        at += n as u64;
                    }
                }
                pieces.sort_by_key(|p| p.0);
                pieces
                    .par_chunk_by_mut(|a, b| a.0 == b.0)
                    .try_for_each(|group| {
                        let c = group[0].0;
                        let Some((addr, size, mask)) = self.chunk_at(file, ds, table, c, *rows)?
                        else {
                            for (_, _, run) in group.iter_mut() {
                                run.fill(T::default());
                            }
                            return Ok(());
                        };
                        if (0..filters.len()).all(|f| mask & (1 << f) != 0) {
                            // Stored as it is: only the bytes of the rows asked for.
                            if size != chunk * self.item {
                                return Err(self.corrupt(
                                    c,
                                    format!("{size} bytes for an unfiltered chunk of {chunk}"),
                                ));
                            }
                            let parts = group.iter_mut().map(|(_, w, run)| (*w as u64, &mut **run));
                            for span in spans(parts.collect(), SPAN_BYTES / self.item) {
                                self.read_span(file, addr, span, c, fill)?;
                            }
                            return Ok(());
                        }
                        let mut buf = self.inflate(file, c, addr, size, mask, *chunk, filters)?;
                        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)
                            [..(chunk * self.item) as usize];
                        let decoded = self.decoded(bytes, c)?;
                        for (_, within, run) in group.iter_mut() {
                            copy(decoded, *within, run)?;
                        }
                        Ok(())
                    })
            }
        }
    }

    /// Where chunk `c` (of `rows` rows) is: `(address, stored bytes, filter mask)`, `None`
    /// when it was never written; asked of the library once, then kept in `table`.
    fn chunk_at(
        &self,
        file: &FileHandle,
        ds: &Dataset,
        table: &ChunkTable,
        c: u64,
        rows: u64,
    ) -> Result<ChunkAt> {
        if let Some(&known) = table
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&c)
        {
            return Ok(known);
        }
        if table.listed.load(Ordering::Acquire) {
            return Ok(None);
        }
        // With HDF5 >= 1.14 (the wheel's static HDF5), every chunk in one pass of the index.
        #[cfg(h5_chunk_iter)]
        {
            let mut known = table.known.write().unwrap_or_else(PoisonError::into_inner);
            if !table.listed.load(Ordering::Acquire) {
                let mut bad = None;
                ds.chunks_visit(|info| {
                    let first = info.offset.first().copied().unwrap_or(0);
                    let end = info.addr.checked_add(info.size);
                    if end.is_none_or(|e| e > file.len()) || rows == 0 || first % rows != 0 {
                        bad = Some(format!(
                            "chunk at row {first}: {} bytes at {}, in a file of {} bytes",
                            info.size,
                            info.addr,
                            file.len()
                        ));
                        return -1;
                    }
                    known.insert(first / rows, Some((info.addr, info.size, info.filter_mask)));
                    0
                })
                .map_err(|_| {
                    self.corrupt(
                        c,
                        bad.take()
                            .unwrap_or_else(|| "HDF5 cannot list the chunks".into()),
                    )
                })?;
                table.listed.store(true, Ordering::Release);
            }
            return Ok(known.get(&c).copied().flatten());
        }
        #[cfg(not(h5_chunk_iter))]
        self.chunk_by_coordinate(file, ds, table, c, c * rows)
    }

    /// Where chunk `c` is, asked of the library by its first row's coordinate (one short call
    /// under the library's lock), then kept.
    #[cfg(not(h5_chunk_iter))]
    fn chunk_by_coordinate(
        &self,
        file: &FileHandle,
        ds: &Dataset,
        table: &ChunkTable,
        c: u64,
        row: u64,
    ) -> Result<ChunkAt> {
        let mut offset = vec![0 as hdf5_sys::h5::hsize_t; ds.ndim().max(1)];
        offset[0] = row;
        let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
        // SAFETY: `ds` is an open dataset of `ndim` dimensions, `offset` holds that many
        // coordinates, and the three outputs are writable; the call runs under the lock that
        // serialises every HDF5 call of the process.
        let status = hdf5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dget_chunk_info_by_coord(
                ds.id(),
                offset.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            )
        });
        let found = if status < 0 {
            return Err(self.corrupt(c, "HDF5 cannot say where this chunk is".into()));
        } else if addr == hdf5_sys::h5::HADDR_UNDEF {
            None
        } else if addr.checked_add(size).is_none_or(|end| end > file.len()) {
            return Err(self.corrupt(
                c,
                format!("{size} bytes at {addr}, in a file of {} bytes", file.len()),
            ));
        } else {
            Some((addr, size, mask))
        };
        table
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(c, found);
        Ok(found)
    }

    /// Reads one span of adjacent parts (element offsets from `base`, a byte address) at once.
    fn read_span<T: bytemuck::Pod>(
        &self,
        file: &FileHandle,
        base: u64,
        mut span: Vec<(u64, &mut [T])>,
        chunk: u64,
        fill: &Fill<'_, T>,
    ) -> Result<()> {
        let first = span[0].0;
        if let Some(check) = fill.native.filter(|_| cfg!(target_endian = "little")) {
            let mut bufs: Vec<&mut [u8]> = span
                .iter_mut()
                .map(|(_, run)| bytemuck::cast_slice_mut::<T, u8>(run))
                .collect();
            crate::storage::read_vectored_at(&file.file, base + first * self.item, &mut bufs)
                .map_err(|e| Error::CollectionChanged {
                    path: file.path.clone(),
                    detail: format!("{}: cannot be read at {base}: {e}", self.path),
                })?;
            return span.iter().try_for_each(|(_, run)| check(run));
        }
        let copy = fill.copy;
        let last = span.last().map_or(first, |(s, r)| s + r.len() as u64);
        let n = ((last - first) * self.item) as usize;
        let mut buf = aligned(n as u64)?;
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..n];
        file.read_at(bytes, base + first * self.item, &self.path)?;
        let decoded = self.decoded(bytes, chunk)?;
        for (s, run) in span {
            copy(decoded, (s - first) as usize, run)?;
        }
        Ok(())
    }

    /// The stored element type.
    pub(crate) fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn corrupt(&self, chunk: u64, detail: String) -> Error {
        corrupt(&self.path, chunk, detail)
    }

    fn decoded<'b>(&self, bytes: &'b [u8], chunk: u64) -> Result<Decoded<'b>> {
        Decoded::from_bytes(self.dtype, bytes).ok_or_else(|| {
            let detail = format!(
                "{} bytes are not whole {} elements",
                bytes.len(),
                self.dtype
            );
            self.corrupt(chunk, detail)
        })
    }

    /// Chunk `c` (stored as `size` bytes at `addr`) read and decoded: `chunk` elements, the
    /// last filter undone straight into the aligned buffer returned (no second copy).
    #[allow(clippy::too_many_arguments)]
    fn inflate(
        &self,
        file: &FileHandle,
        c: u64,
        addr: u64,
        size: u64,
        mask: u32,
        chunk: u64,
        filters: &[Step],
    ) -> Result<Vec<u64>> {
        let want = chunk * self.item;
        // Stored bytes are at most a little over the chunk (deflate's worst case).
        if size > want + want / 8 + 1024 {
            return Err(self.corrupt(c, format!("{size} stored bytes for a chunk of {want}")));
        }
        let mut stored = vec![0u8; size as usize];
        file.read_at(&mut stored, addr, &self.path)?;
        let mut buf = aligned(want)?;
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..want as usize];
        // The filters to undo, last written first.
        let steps: Vec<Step> = filters
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| mask & (1 << i) == 0)
            .map(|(_, step)| *step)
            .collect();
        let mut placed = false;
        for (k, step) in steps.iter().enumerate() {
            let last = k + 1 == steps.len();
            match step {
                Step::Fletcher32 => {
                    let Some(body) = stored.len().checked_sub(4) else {
                        return Err(self.corrupt(c, "a Fletcher32 chunk under 4 bytes".into()));
                    };
                    let sum = fletcher32(&stored[..body]);
                    let kept = &stored[body..];
                    if sum.to_le_bytes() != kept && sum.to_be_bytes() != kept {
                        return Err(
                            self.corrupt(c, "its Fletcher32 checksum does not match".into())
                        );
                    }
                    stored.truncate(body);
                }
                Step::Deflate if last => {
                    inflate_into(&stored, out).map_err(|e| self.corrupt(c, e))?;
                    placed = true;
                }
                Step::Deflate => {
                    let mut inflated = vec![0u8; want as usize];
                    inflate_into(&stored, &mut inflated).map_err(|e| self.corrupt(c, e))?;
                    stored = inflated;
                }
                Step::Shuffle if last && stored.len() == out.len() => {
                    unshuffle_into(&stored, out, self.item as usize);
                    placed = true;
                }
                Step::Shuffle => {
                    let mut unshuffled = vec![0u8; stored.len()];
                    unshuffle_into(&stored, &mut unshuffled, self.item as usize);
                    stored = unshuffled;
                }
            }
        }
        if !placed {
            if stored.len() as u64 != want {
                return Err(self.corrupt(
                    c,
                    format!("{} bytes decoded, the chunk has {want}", stored.len()),
                ));
            }
            out.copy_from_slice(&stored);
        }
        Ok(buf)
    }
}

/// A chunk of `path` (`chunk` along the first axis) that cannot be what it claims.
fn corrupt(path: &str, chunk: u64, detail: String) -> Error {
    Error::CorruptChunk {
        path: path.to_string(),
        chunk,
        source: Box::new(std::io::Error::new(std::io::ErrorKind::InvalidData, detail)),
    }
}

/// A zeroed buffer of at least `bytes` bytes, aligned for any element type.
fn aligned(bytes: u64) -> Result<Vec<u64>> {
    let words = usize::try_from(bytes.div_ceil(8))
        .map_err(|_| Error::Internal(format!("a read of {bytes} bytes")))?;
    Ok(vec![0u64; words])
}

/// `parts` (sorted) cut into runs of adjacent parts of at most `max` elements together (a
/// single longer part is a run of its own).
fn spans<T>(parts: Vec<(u64, &mut [T])>, max: u64) -> Vec<Vec<(u64, &mut [T])>> {
    let mut out: Vec<Vec<(u64, &mut [T])>> = Vec::new();
    let mut end = None;
    let mut first = 0;
    for (start, run) in parts {
        let n = run.len() as u64;
        match out.last_mut() {
            Some(span) if end == Some(start) && start + n - first <= max => span.push((start, run)),
            _ => {
                first = start;
                out.push(vec![(start, run)]);
            }
        }
        end = Some(start + n);
    }
    out
}

/// Inflates the zlib stream `stored` into exactly `out`.
fn inflate_into(stored: &[u8], out: &mut [u8]) -> std::result::Result<(), String> {
    let mut z = flate2::Decompress::new(true);
    let status = z
        .decompress(stored, out, flate2::FlushDecompress::Finish)
        .map_err(|e| format!("deflate: {e}"))?;
    if status != flate2::Status::StreamEnd || z.total_out() != out.len() as u64 {
        return Err(format!(
            "inflates to {} bytes or more, not the chunk's {}",
            z.total_out(),
            out.len()
        ));
    }
    Ok(())
}

/// HDF5's shuffle filter undone into `out` (as long as `stored`): byte `j` of element `i` was
/// stored at `j * n + i`.
fn unshuffle_into(stored: &[u8], out: &mut [u8], item: usize) {
    if item <= 1 {
        out.copy_from_slice(stored);
        return;
    }
    let n = stored.len() / item;
    for j in 0..item {
        let plane = &stored[j * n..(j + 1) * n];
        for (i, &b) in plane.iter().enumerate() {
            out[i * item + j] = b;
        }
    }
    // Bytes past whole elements are stored as they are.
    out[n * item..].copy_from_slice(&stored[n * item..]);
}

/// HDF5's Fletcher32 checksum (`H5_checksum_fletcher32`): over 16-bit big-endian words, an odd
/// last byte as the high byte of a word.
fn fletcher32(data: &[u8]) -> u32 {
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let fold = |s: u32| (s & 0xffff) + (s >> 16);
    // 360 words (720 bytes) at a time keep the sums from overflowing.
    for block in data.chunks(720) {
        let mut words = block.chunks_exact(2);
        for w in words.by_ref() {
            sum1 += (u32::from(w[0]) << 8) | u32::from(w[1]);
            sum2 += sum1;
        }
        if let [last] = words.remainder() {
            sum1 += u32::from(*last) << 8;
            sum2 += sum1;
        }
        sum1 = fold(sum1);
        sum2 = fold(sum2);
    }
    sum1 = fold(sum1);
    sum2 = fold(sum2);
    (sum2 << 16) | sum1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_inverts_the_byte_planes() {
        // Elements 0x0201 and 0x0403 (little-endian), shuffled: low bytes, then high bytes.
        let mut out = [0u8; 5];
        unshuffle_into(&[1, 3, 2, 4, 9], &mut out, 2);
        assert_eq!(out, [1, 2, 3, 4, 9]);
    }

    #[test]
    fn adjacent_parts_join_into_spans() {
        let mut a = [0u8; 2];
        let mut b = [0u8; 3];
        let mut c = [0u8; 1];
        let out = spans(vec![(0, &mut a[..]), (2, &mut b[..]), (9, &mut c[..])], 100);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), 2);
        let mut a = [0u8; 2];
        let mut b = [0u8; 3];
        assert_eq!(spans(vec![(0, &mut a[..]), (2, &mut b[..])], 4).len(), 2);
    }
}
