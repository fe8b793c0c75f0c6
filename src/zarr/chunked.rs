//! A zarr array read along its first axis, one (inner) chunk band at a time.
//!
//! This is the hot path. A read is a list of parts (a run of elements inside one chunk band,
//! and the caller's slice it lands in: [`chunk_runs`]); [`ChunkedArray::gather_parts`] decodes
//! each band that the parts touch exactly once, in parallel, and copies (casting) every run
//! into place. Whole row ranges and single rows are both read this way. For sharded arrays only
//! the inner chunks' byte ranges are read, through a shard-index cache that lives as long as
//! the array.

use std::ops::Range;

use rayon::prelude::*;
use zarrs::array::CodecOptions;
use zarrs::array::{
    Array, ArrayError, ArrayShardedExt, ArrayShardedReadableExt, ArrayShardedReadableExtCache,
    ArraySubset, ElementOwned,
};

use super::dtype::Dtype;
use super::guard;
use super::node::ZarrStore;
use super::shard_reader::ShardReader;
use super::streaming_copy;
use crate::budget;
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Cuts the elements `range` of a 1-D run chunked every `chunk_len` elements into per-chunk
/// `(chunk, first element in the chunk, output run)` parts, consuming `out` front to back.
pub(crate) fn chunk_runs<'a, T>(
    range: Range<u64>,
    chunk_len: u64,
    mut out: &'a mut [T],
    parts: &mut Vec<(u64, u64, &'a mut [T])>,
) {
    let mut at = range.start;
    while at < range.end {
        let chunk = at / chunk_len;
        let end = ((chunk + 1) * chunk_len).min(range.end);
        let (head, tail) = std::mem::take(&mut out).split_at_mut((end - at) as usize);
        parts.push((chunk, at - chunk * chunk_len, head));
        out = tail;
        at = end;
    }
}

/// [`chunk_runs`] of several element ranges written back to back into `out`, which must hold
/// exactly their elements (else a [`Error::ShapeMismatch`] naming `path`).
pub(crate) fn chunk_runs_of<'a, T>(
    path: &str,
    ranges: impl IntoIterator<Item = Range<u64>> + Clone,
    chunk_len: u64,
    mut out: &'a mut [T],
) -> Result<Vec<(u64, u64, &'a mut [T])>> {
    let total: u128 = ranges
        .clone()
        .into_iter()
        .map(|r| u128::from(r.end - r.start))
        .sum();
    if total != out.len() as u128 {
        return Err(Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("an output buffer of {} elements", out.len()),
            expected: format!("{total} (the elements read)"),
        });
    }
    let mut parts = Vec::new();
    for range in ranges {
        let (head, tail) =
            std::mem::take(&mut out).split_at_mut((range.end - range.start) as usize);
        chunk_runs(range, chunk_len, head, &mut parts);
        out = tail;
    }
    Ok(parts)
}

/// Fills an output run from a decoded band: `(decoded, first element, output)`.
pub(crate) type CopyFn<'a, T> = dyn Fn(&Decoded<'_>, usize, &mut [T]) -> Result<()> + Sync + 'a;

/// One chunk band and the `(first element, output run)` pairs it fills.
type ChunkGroup<'a, T> = (u64, Vec<(u64, &'a mut [T])>);

/// `parts` (`(chunk, first element, run)`) cut where a run does not continue the one before
/// it in the same chunk: each series is one contiguous span of one chunk. Parts are taken in
/// the order given, not sorted: a loader's rows come chunk by chunk already (8,192 parts a
/// fetch were sorted for nothing).
fn series_in_order<T>(parts: Vec<(u64, u64, &mut [T])>) -> Vec<ChunkGroup<'_, T>> {
    let mut series: Vec<ChunkGroup<'_, T>> = Vec::new();
    for (chunk, src, run) in parts {
        match series.last_mut() {
            Some((c, s))
                if *c == chunk && s.last().is_some_and(|(a, r)| a + r.len() as u64 == src) =>
            {
                s.push((src, run));
            }
            _ => series.push((chunk, vec![(src, run)])),
        }
    }
    series
}

/// An array of shape `[rows, ...]` with a regular (inner) chunk grid along axis 0.
pub(crate) struct ChunkedArray {
    array: Array<Storage>,
    /// The store the array reads through, for its typed faults.
    store: Storage,
    cache: ArrayShardedReadableExtCache,
    path: String,
    dtype: Dtype,
    rows: u64,
    /// Elements per row: the product of the trailing dimensions.
    row_width: u64,
    /// Rows per (inner) chunk.
    chunk_rows: u64,
    options: CodecOptions,
    /// Reads inner chunks itself where the layout allows (see [`ShardReader`]).
    shards: Option<ShardReader>,
}

impl std::fmt::Debug for ChunkedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedArray")
            .field("path", &self.path)
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("row_width", &self.row_width)
            .field("chunk_rows", &self.chunk_rows)
            .finish()
    }
}

impl ChunkedArray {
    /// Opens the array at `path`, whose missing chunks read as fill values.
    pub(crate) fn open(store: &ZarrStore, path: &str) -> Result<Self> {
        Self::open_with(store, path, false)
    }

    /// Opens the array at `path`, whose chunks must all be stored (`X/data`, `X/indices`, a
    /// dense `X`): a missing one is [`Error::MissingData`], not zeros.
    pub(crate) fn open_whole(store: &ZarrStore, path: &str) -> Result<Self> {
        Self::open_with(store, path, true)
    }

    fn open_with(store: &ZarrStore, path: &str, whole: bool) -> Result<Self> {
        guard::guarded(path, || Self::open_unguarded(store, path, whole))
    }

    fn open_unguarded(store: &ZarrStore, path: &str, whole: bool) -> Result<Self> {
        let (array, files) = store.array_in(path, whole)?;
        let dtype = Dtype::of_array(path, array.data_type())?;
        let shape = array.shape().to_vec();
        let Some((&rows, rest)) = shape.split_first() else {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: "a 0-dimensional array".into(),
                expected: "at least one dimension".into(),
            });
        };
        // Elements per row, in all rows and per chunk band (`chunk_rows` rows): counts every read
        // cuts by, so they must exist as numbers before anything is sized by them.
        let too_wide = || Error::ShapeMismatch {
            path: path.to_string(),
            found: format!("shape {shape:?}"),
            expected: "an array (and chunk band) within 2^64 elements".into(),
        };
        let row_width = rest
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|w| rows.checked_mul(*w).is_some())
            .ok_or_else(too_wide)?;
        let inner = match array.subchunk_shape() {
            Some(shape) => shape.first().map(|n| n.get()),
            None => array
                .chunk_shape(&vec![0; shape.len()])
                .map_err(|e| Error::zarr(path, e))?
                .first()
                .map(|n| n.get()),
        };
        let chunk_rows = inner.unwrap_or(1).max(1);
        chunk_rows.checked_mul(row_width).ok_or_else(too_wide)?;
        // One decoded (inner) chunk must fit well within memory: several decode at once.
        let chunk_elements = match array.subchunk_shape() {
            Some(shape) => shape.iter().map(|n| u128::from(n.get())).product::<u128>(),
            None => array
                .chunk_shape(&vec![0; shape.len()])
                .map_err(|e| Error::zarr(path, e))?
                .iter()
                .map(|n| u128::from(n.get()))
                .product(),
        };
        budget::check(
            path,
            "one decoded chunk",
            chunk_elements,
            dtype.item_bytes(),
            8,
        )?;
        let cache = ArrayShardedReadableExtCache::new(&array);
        let shards = match dtype {
            Dtype::Bool | Dtype::String => None,
            _ => ShardReader::for_array(&array, dtype.item_bytes() as usize)
                .filter(|r| r.inner_rows() == chunk_rows),
        };
        Ok(Self {
            array,
            store: files,
            cache,
            path: path.to_string(),
            dtype,
            rows,
            row_width,
            chunk_rows,
            options: CodecOptions::default(),
            shards,
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
    /// Whether the array is sharded (its chunks are shards of inner chunks).
    pub(crate) fn is_sharded(&self) -> bool {
        self.array.subchunk_shape().is_some()
    }
    pub(crate) fn dtype(&self) -> Dtype {
        self.dtype
    }
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }
    pub(crate) fn row_width(&self) -> u64 {
        self.row_width
    }
    pub(crate) fn shape(&self) -> &[u64] {
        self.array.shape()
    }
    pub(crate) fn chunk_rows(&self) -> u64 {
        self.chunk_rows
    }

    /// Elements per chunk band (`chunk_rows` rows of `row_width`; checked to fit at open, as
    /// are all rows' elements).
    pub(crate) fn band_len(&self) -> u64 {
        self.chunk_rows * self.row_width
    }

    fn map_err(&self, chunk: Option<u64>, e: ArrayError) -> Error {
        if let Some(fault) = self.store.fault() {
            return fault.to_error();
        }
        match (chunk, e) {
            (Some(chunk), ArrayError::CodecError(source)) => Error::CorruptChunk {
                path: self.path.clone(),
                chunk,
                source: Box::new(source),
            },
            (_, e) => Error::zarr(self.path.clone(), e),
        }
    }

    /// The subset covering rows `rows` and every trailing index.
    fn subset(&self, rows: Range<u64>) -> ArraySubset {
        let mut ranges = vec![rows];
        ranges.extend(self.array.shape()[1..].iter().map(|&n| 0..n));
        ArraySubset::new_with_ranges(&ranges)
    }

    fn retrieve<T: ElementOwned>(&self, rows: Range<u64>, chunk: Option<u64>) -> Result<Vec<T>> {
        let subset = self.subset(rows);
        guard::guarded(&self.path, || {
            self.array
                .retrieve_array_subset_sharded_opt::<Vec<T>>(&self.cache, &subset, &self.options)
                .map_err(|e| self.map_err(chunk, e))
        })
    }

    /// Decodes rows `rows` (inside chunk band `chunk`, if given) in the array's own element
    /// type. A part of a band is partially decoded where the codecs allow it (blosc blocks).
    fn decode(&self, rows: Range<u64>, chunk: Option<u64>) -> Result<DecodedVec> {
        Ok(match self.dtype {
            Dtype::Bool => DecodedVec::Bool(self.retrieve(rows, chunk)?),
            Dtype::I8 => DecodedVec::I8(self.retrieve(rows, chunk)?),
            Dtype::I16 => DecodedVec::I16(self.retrieve(rows, chunk)?),
            Dtype::I32 => DecodedVec::I32(self.retrieve(rows, chunk)?),
            Dtype::I64 => DecodedVec::I64(self.retrieve(rows, chunk)?),
            Dtype::U8 => DecodedVec::U8(self.retrieve(rows, chunk)?),
            Dtype::U16 => DecodedVec::U16(self.retrieve(rows, chunk)?),
            Dtype::U32 => DecodedVec::U32(self.retrieve(rows, chunk)?),
            Dtype::U64 => DecodedVec::U64(self.retrieve(rows, chunk)?),
            Dtype::F16 => DecodedVec::F16(self.retrieve(rows, chunk)?),
            Dtype::F32 => DecodedVec::F32(self.retrieve(rows, chunk)?),
            Dtype::F64 => DecodedVec::F64(self.retrieve(rows, chunk)?),
            Dtype::String => {
                return Err(Error::UnsupportedDtype {
                    path: self.path.clone(),
                    found: "string".into(),
                    expected: "a numeric or bool type".into(),
                })
            }
        })
    }

    /// Decodes all of a (small) array in one call, e.g. `indptr` or an obs column.
    pub(crate) fn read_all<T: ElementOwned>(&self) -> Result<Vec<T>> {
        self.check_whole(std::mem::size_of::<T>() as u64)?;
        self.retrieve(0..self.rows, None)
    }

    /// Decodes all of a (small) string array, each entry checked to be UTF-8.
    pub(crate) fn read_all_strings(&self) -> Result<Vec<String>> {
        self.check_whole(std::mem::size_of::<String>() as u64)?;
        let subset = self.subset(0..self.rows);
        let bytes = guard::guarded(&self.path, || {
            self.array
                .retrieve_array_subset_sharded_opt::<zarrs::array::ArrayBytes<'static>>(
                    &self.cache,
                    &subset,
                    &self.options,
                )
                .map_err(|e| self.map_err(None, e))
        })?;
        super::dtype::strings_of(&self.path, bytes)
    }

    /// Fails unless the whole array, decoded and then converted to items of `item_bytes`,
    /// fits in memory.
    fn check_whole(&self, item_bytes: u64) -> Result<()> {
        let elements = u128::from(self.rows) * u128::from(self.row_width);
        let bytes = self.dtype.item_bytes() + item_bytes;
        budget::check(&self.path, "reading the whole array", elements, bytes, 2)
    }

    /// Reads every element, converted to `i64` (integer and bool arrays only).
    pub(crate) fn read_all_i64(&self) -> Result<Vec<i64>> {
        let decoded = self.decode_all()?;
        let mut out = vec![0i64; decoded.view().len()];
        decoded.view().copy_into(0, &mut out, &self.path)?;
        streaming_copy::fence();
        Ok(out)
    }

    /// Reads every element, converted to `f64` (numeric and bool arrays).
    pub(crate) fn read_all_f64(&self) -> Result<Vec<f64>> {
        let decoded = self.decode_all()?;
        let mut out = vec![0f64; decoded.view().len()];
        decoded.view().copy_into(0, &mut out, &self.path)?;
        streaming_copy::fence();
        Ok(out)
    }

    fn decode_all(&self) -> Result<DecodedVec> {
        self.check_whole(8)?;
        self.decode(0..self.rows, None)
    }

    /// Decodes every (inner) chunk once, in parallel, into per-thread buffers, and keeps
    /// nothing: the cost of reading and decoding the array, which no loader can beat. Returns
    /// the decoded bytes.
    pub(crate) fn decode_every_chunk(&self) -> Result<u64> {
        let chunks = self.rows.div_ceil(self.chunk_rows);
        let item = self.dtype.item_bytes();
        (0..chunks)
            .into_par_iter()
            .map(|chunk| {
                let rows = self.chunk_rows.min(self.rows - chunk * self.chunk_rows);
                let bytes = rows * self.row_width * item;
                if let Some(shards) = &self.shards {
                    let read = shards.with_rows(
                        &self.array,
                        &self.store,
                        &self.path,
                        chunk,
                        0..rows,
                        |_| Ok(()),
                    )?;
                    if read.is_some() {
                        return Ok(bytes);
                    }
                }
                let band = chunk * self.chunk_rows;
                self.decode(band..band + rows, Some(chunk))?;
                Ok(bytes)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))
    }

    /// The object store this array is in (`None`: local files).
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&crate::storage::remote::RemoteStore> {
        self.store.remote()
    }

    /// Fetches whose bytes are requested before their turn: the object store's read-ahead, or
    /// [`FileStore::FETCHES_AHEAD`](crate::storage::files::FileStore::FETCHES_AHEAD) for local files
    /// read with `O_DIRECT`; 0 for files read through the page cache (it reads ahead itself).
    pub(crate) fn read_ahead_depth(&self) -> usize {
        if self.shards.is_none() {
            return 0;
        }
        #[cfg(feature = "remote")]
        if let Some(remote) = self.store.remote() {
            return remote.read_ahead_depth();
        }
        match self.store.local() {
            Some(files) if files.is_direct() => crate::storage::files::FileStore::FETCHES_AHEAD,
            _ => 0,
        }
    }

    /// Adds to `plan` the byte ranges that reading elements `elements` (ranges, in elements of
    /// the flattened array) will read from an object store, or from local files read with
    /// `O_DIRECT`; nothing for files read through the page cache or for layouts the shard
    /// reader does not read. Loads the shard indexes it needs (from an object store all at
    /// once).
    pub(crate) fn plan_reads(
        &self,
        elements: impl IntoIterator<Item = Range<u64>>,
        plan: &mut crate::storage::read_plan::ReadPlan,
    ) -> Result<()> {
        if self.read_ahead_depth() == 0 {
            return Ok(());
        }
        let Some(shards) = &self.shards else {
            return Ok(());
        };
        let width = self.row_width.max(1);
        let Some(band) = self.chunk_rows.checked_mul(width) else {
            return Ok(());
        };
        let mut reads: Vec<(u64, Range<u64>)> = Vec::new();
        for range in elements {
            let mut at = range.start;
            while at < range.end {
                let chunk = at / band;
                let base = chunk * band;
                let end = range.end.min(base + band);
                reads.push((chunk, (at - base) / width..(end - base).div_ceil(width)));
                at = end;
            }
        }
        let per_shard = shards.per_shard().max(1);
        let mut needed: Vec<u64> = reads.iter().map(|(c, _)| c / per_shard).collect();
        needed.sort_unstable();
        needed.dedup();
        #[cfg(feature = "remote")]
        if let Some(remote) = self.store.remote() {
            shards.load_indexes(&self.array, remote, &self.path, needed)?;
            for (chunk, rows) in reads {
                if let Some((key, range)) = shards.byte_range(chunk, rows) {
                    plan.add(remote, key, range);
                }
            }
            return Ok(());
        }
        let Some(files) = self.store.local() else {
            return Ok(());
        };
        shards.load_local_indexes(&self.array, &self.store, &self.path, needed)?;
        for (chunk, rows) in reads {
            if let Some((key, range)) = shards.byte_range(chunk, rows) {
                plan.add_file(files, key, range);
            }
        }
        Ok(())
    }

    /// [`Self::gather_parts`] for values taken as stored, converted by `as` where the array's
    /// element type is not `T`. Where it is, and the chunks are uncompressed in local files,
    /// each back-to-back series of runs is read straight into place with one `preadv`: the
    /// kernel's copy out of the page cache is the only one.
    pub(crate) fn gather_parts_as_stored<T: FromDecoded>(
        &self,
        parts: Vec<(u64, u64, &mut [T])>,
    ) -> Result<()> {
        let path = self.path.as_str();
        let copy: &CopyFn<'_, T> = &|dec, src, dst| T::copy_from(dec, src, dst, path);
        let in_place = cfg!(target_endian = "little")
            && self.dtype == T::STORED
            && !self.store.is_remote()
            && self.row_width > 0;
        let Some(shards) = self
            .shards
            .as_ref()
            .filter(|s| in_place && s.reads_exact_bytes())
        else {
            return self.gather_parts(parts, copy);
        };
        let item = std::mem::size_of::<T>();
        let series = series_in_order(parts);
        series.into_par_iter().try_for_each(|(chunk, mut runs)| {
            let first = runs.first().map_or(0, |(src, _)| *src);
            // Past the chunk, `read_raw_into` refuses it.
            let start = usize::try_from(first)
                .ok()
                .and_then(|e| e.checked_mul(item))
                .ok_or_else(|| Error::zarr(path, std::io::Error::other("offset overflow")))?;
            let read = {
                let mut bufs: Vec<&mut [u8]> = runs
                    .iter_mut()
                    .map(|(_, run)| bytemuck::cast_slice_mut::<T, u8>(run))
                    .collect();
                shards.read_raw_into(&self.array, &self.store, path, chunk, start, &mut bufs)?
            };
            match read {
                Some(()) => Ok(()),
                // Not stored: fill values, as the decoding path reads them.
                None => self.fill_group(chunk, runs, copy),
            }
        })
    }

    /// Decodes each chunk band named by `parts` (`(chunk, first element in the band, output
    /// run)`, any order, runs disjoint) once, in parallel, and fills every run with `copy`.
    /// Part of the caller's read request: files held open are not checked again here (see
    /// [`crate::storage::files::new_read_request`]).
    pub(crate) fn gather_parts<T: Send>(
        &self,
        mut parts: Vec<(u64, u64, &mut [T])>,
        copy: &CopyFn<'_, T>,
    ) -> Result<()> {
        if self.row_width == 0 {
            return Ok(());
        }
        let exact = self
            .shards
            .as_ref()
            .is_some_and(ShardReader::reads_exact_bytes);
        // An uncompressed chunk is read byte-exact: each series of back-to-back runs on its
        // own, in the order given (no sort; the gaps between the runs of a large chunk would
        // be read for nothing). A compressed chunk is decoded once for all its runs.
        let groups = if exact {
            series_in_order(parts)
        } else {
            parts.sort_by_key(|p| p.0);
            let mut groups: Vec<ChunkGroup<'_, T>> = Vec::new();
            for (chunk, src, slice) in parts {
                match groups.last_mut() {
                    Some((c, g)) if *c == chunk => g.push((src, slice)),
                    _ => groups.push((chunk, vec![(src, slice)])),
                }
            }
            groups
        };

        groups
            .into_par_iter()
            .try_for_each(|(chunk, group)| self.fill_group(chunk, group, copy))
    }

    /// Decodes the rows of chunk band `chunk` that `group`'s runs span, once, and fills every
    /// run from it.
    fn fill_group<T: Send>(
        &self,
        chunk: u64,
        mut group: Vec<(u64, &mut [T])>,
        copy: &CopyFn<'_, T>,
    ) -> Result<()> {
        let width = self.row_width;
        // Decode only the rows of the band that the segments span.
        let first = group.iter().map(|(src, _)| *src).min().unwrap_or(0) / width;
        let end = group
            .iter()
            .map(|(src, slice)| *src + slice.len() as u64)
            .max()
            .unwrap_or(0)
            .div_ceil(width);
        let mut fill = |decoded: &Decoded<'_>| {
            let mut filled = Ok(());
            for k in 0..group.len() {
                // The next run's end lines load while this run is copied.
                if let Some((_, next)) = group.get(k + 1) {
                    streaming_copy::prefetch_ends(next);
                }
                let (src, slice) = &mut group[k];
                let src =
                    usize::try_from(*src - first * width).map_err(|e| Error::zarr(&self.path, e));
                filled = src.and_then(|src| copy(decoded, src, slice));
                if filled.is_err() {
                    break;
                }
            }
            // The copies may stream (`streaming_copy`): one fence for the group, before the
            // runs are read or handed on, whether or not all were filled.
            streaming_copy::fence();
            filled
        };
        if let Some(shards) = &self.shards {
            let done = shards.with_rows(
                &self.array,
                &self.store,
                &self.path,
                chunk,
                first..end,
                |bytes| match Decoded::from_bytes(self.dtype, bytes) {
                    Some(decoded) => fill(&decoded),
                    None => Err(Error::zarr(
                        &self.path,
                        std::io::Error::other("decoded bytes are not whole elements"),
                    )),
                },
            )?;
            if done.is_some() {
                return Ok(());
            }
        }
        // Not stored (fill values), or a layout the shard reader does not read.
        let band = chunk * self.chunk_rows;
        let decoded = self.decode(band + first..band + end, Some(chunk))?;
        fill(&decoded.view())
    }
}

/// A decoded chunk band in the array's own element type, owned (what zarrs hands back).
#[derive(Debug)]
enum DecodedVec {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F16(Vec<half::f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl DecodedVec {
    fn view(&self) -> Decoded<'_> {
        match self {
            Self::Bool(v) => Decoded::Bool(v),
            Self::I8(v) => Decoded::I8(v),
            Self::I16(v) => Decoded::I16(v),
            Self::I32(v) => Decoded::I32(v),
            Self::I64(v) => Decoded::I64(v),
            Self::U8(v) => Decoded::U8(v),
            Self::U16(v) => Decoded::U16(v),
            Self::U32(v) => Decoded::U32(v),
            Self::U64(v) => Decoded::U64(v),
            Self::F16(v) => Decoded::F16(v),
            Self::F32(v) => Decoded::F32(v),
            Self::F64(v) => Decoded::F64(v),
        }
    }
}

/// Decoded elements of a chunk band, borrowed, in the array's own element type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decoded<'a> {
    Bool(&'a [bool]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F16(&'a [half::f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Decoded<'_> {
    /// Little-endian `bytes` as elements of `dtype` (`None` for bool and string, or when the
    /// bytes are not whole, aligned elements).
    pub(crate) fn from_bytes(dtype: Dtype, bytes: &[u8]) -> Option<Decoded<'_>> {
        use bytemuck::try_cast_slice as cast;
        Some(match dtype {
            Dtype::I8 => Decoded::I8(cast(bytes).ok()?),
            Dtype::I16 => Decoded::I16(cast(bytes).ok()?),
            Dtype::I32 => Decoded::I32(cast(bytes).ok()?),
            Dtype::I64 => Decoded::I64(cast(bytes).ok()?),
            Dtype::U8 => Decoded::U8(bytes),
            Dtype::U16 => Decoded::U16(cast(bytes).ok()?),
            Dtype::U32 => Decoded::U32(cast(bytes).ok()?),
            Dtype::U64 => Decoded::U64(cast(bytes).ok()?),
            Dtype::F16 => Decoded::F16(cast(bytes).ok()?),
            Dtype::F32 => Decoded::F32(cast(bytes).ok()?),
            Dtype::F64 => Decoded::F64(cast(bytes).ok()?),
            Dtype::Bool | Dtype::String => return None,
        })
    }

    /// Copies `dst.len()` column indices from element `src`, failing on any index outside
    /// `0..n_var` (checked before narrowing, so no wide value can wrap into range).
    pub(crate) fn copy_indices(
        &self,
        src: usize,
        dst: &mut [i32],
        n_var: u64,
        path: &str,
    ) -> Result<()> {
        let end = src + dst.len();
        if end > self.len() {
            return Err(short(path, self.len(), end));
        }
        let bound = i64::try_from(n_var).unwrap_or(i64::MAX);
        let oob = |index: i64| Error::IndexOutOfBounds {
            path: path.to_string(),
            index,
            n_var,
        };
        // One pass that widens and tracks the smallest and largest index (it vectorises, where
        // a check-and-return per element does not); a bad index fails the whole run after it.
        macro_rules! checked {
            ($v:expr) => {{
                let run = &$v[src..end];
                let (mut lo, mut hi) =
                    (run.first().copied().unwrap_or_default(), Default::default());
                for (d, &s) in dst.iter_mut().zip(run) {
                    lo = if s < lo { s } else { lo };
                    hi = if s > hi { s } else { hi };
                    *d = s as i32;
                }
                let wide = |s| i64::try_from(s).unwrap_or(i64::MAX);
                if !run.is_empty() && (wide(lo) < 0 || wide(hi) >= bound) {
                    let bad = run
                        .iter()
                        .map(|&s| wide(s))
                        .find(|i| !(0..bound).contains(i))
                        .unwrap_or(wide(hi));
                    return Err(oob(bad));
                }
            }};
        }
        match self {
            // The common on-disk types stream into place (see `streaming_copy`).
            Self::U16(v) => {
                let run = &v[src..end];
                if u64::from(streaming_copy::widen_u16(run, dst)) >= n_var && !run.is_empty() {
                    let bad = run.iter().find(|&&s| u64::from(s) >= n_var);
                    return Err(oob(i64::from(bad.copied().unwrap_or_default())));
                }
            }
            Self::I32(v) => {
                let run = &v[src..end];
                streaming_copy::copy(run, dst);
                let (lo, hi) = run
                    .iter()
                    .fold((0, 0), |(lo, hi): (i32, i32), &s| (lo.min(s), hi.max(s)));
                if !run.is_empty() && (lo < 0 || i64::from(hi) >= bound) {
                    let bad = run
                        .iter()
                        .map(|&s| i64::from(s))
                        .find(|i| !(0..bound).contains(i))
                        .unwrap_or(i64::from(hi));
                    return Err(oob(bad));
                }
            }
            Self::I8(v) => checked!(v),
            Self::I16(v) => checked!(v),
            Self::I64(v) => checked!(v),
            Self::U8(v) => checked!(v),
            Self::U32(v) => checked!(v),
            Self::U64(v) => checked!(v),
            Self::Bool(_) | Self::F16(_) | Self::F32(_) | Self::F64(_) => {
                return Err(Error::UnsupportedDtype {
                    path: path.to_string(),
                    found: self.dtype_name().into(),
                    expected: "an integer type for CSR indices".into(),
                })
            }
        }
        Ok(())
    }

    fn dtype_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::I8(_) => "int8",
            Self::I16(_) => "int16",
            Self::I32(_) => "int32",
            Self::I64(_) => "int64",
            Self::U8(_) => "uint8",
            Self::U16(_) => "uint16",
            Self::U32(_) => "uint32",
            Self::U64(_) => "uint64",
            Self::F16(_) => "float16",
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
}

/// Copies `dst.len()` elements starting at `src`, converting each with `as`.
pub(crate) trait CopyInto<T> {
    /// Fails when the chunk holds fewer elements than asked for.
    fn copy_into(&self, src: usize, dst: &mut [T], path: &str) -> Result<()>;
}

fn short(path: &str, have: usize, want: usize) -> Error {
    Error::ShapeMismatch {
        path: path.to_string(),
        found: format!("a decoded chunk of {have} elements"),
        expected: format!("at least {want}"),
    }
}

macro_rules! copy_into_impl {
    ($t:ty, $same:ident) => {
        impl CopyInto<$t> for Decoded<'_> {
            fn copy_into(&self, src: usize, dst: &mut [$t], path: &str) -> Result<()> {
                let end = src + dst.len();
                if end > self.len() {
                    return Err(short(path, self.len(), end));
                }
                macro_rules! cast {
                    ($v:expr) => {
                        for (d, s) in dst.iter_mut().zip(&$v[src..end]) {
                            *d = *s as $t;
                        }
                    };
                }
                #[allow(unreachable_patterns)]
                match self {
                    Self::$same(v) => streaming_copy::copy(&v[src..end], dst),
                    Self::Bool(v) => {
                        for (d, s) in dst.iter_mut().zip(&v[src..end]) {
                            *d = u8::from(*s) as $t;
                        }
                    }
                    Self::I8(v) => cast!(v),
                    Self::I16(v) => cast!(v),
                    Self::I32(v) => cast!(v),
                    Self::I64(v) => cast!(v),
                    Self::U8(v) => cast!(v),
                    Self::U16(v) => cast!(v),
                    Self::U32(v) => cast!(v),
                    Self::U64(v) => cast!(v),
                    // Through float32, which holds every float16 exactly.
                    Self::F16(v) => {
                        for (d, s) in dst.iter_mut().zip(&v[src..end]) {
                            *d = s.to_f32() as $t;
                        }
                    }
                    Self::F32(v) => cast!(v),
                    Self::F64(v) => cast!(v),
                }
                Ok(())
            }
        }
    };
}

/// A value type rows can be decoded into (what the generic row readers need of it).
pub(crate) trait FromDecoded: crate::batch::RowValue + bytemuck::Pod {
    /// The stored element type whose bytes are this type's.
    const STORED: Dtype;
    /// [`CopyInto::copy_into`] for this type.
    fn copy_from(decoded: &Decoded<'_>, src: usize, dst: &mut [Self], path: &str) -> Result<()>;
}
macro_rules! from_decoded {
    ($($t:ty => $stored:ident),*) => {$(
        impl FromDecoded for $t {
            const STORED: Dtype = Dtype::$stored;
            fn copy_from(
                decoded: &Decoded<'_>,
                src: usize,
                dst: &mut [Self],
                path: &str,
            ) -> Result<()> {
                decoded.copy_into(src, dst, path)
            }
        }
    )*};
}
from_decoded!(f32 => F32, f64 => F64, i64 => I64, u64 => U64);

copy_into_impl!(f32, F32);
copy_into_impl!(f64, F64);
copy_into_impl!(i32, I32);
copy_into_impl!(i64, I64);
copy_into_impl!(u64, U64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_past_2_to_the_64_elements_is_refused_at_open() {
        use crate::store::write::{attrs, Compressor, Writer};
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Writer::create(dir.path()).expect("writer");
        let values = [1.0f32; 8];
        writer
            .array(
                "a",
                &values,
                &[2, 2, 2],
                (1, 2),
                Compressor::None,
                attrs(&[]),
            )
            .expect("write");
        // Rows × row width (2^33 · 2^33 · 2^2 = 2^68) cannot exist; each factor can.
        let meta = dir.path().join("a/zarr.json");
        let text = std::fs::read_to_string(&meta).expect("read");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
        json["shape"] = serde_json::json!([4u64, 1u64 << 33, 1u64 << 33]);
        std::fs::write(&meta, json.to_string()).expect("write");
        let store = ZarrStore::open(dir.path()).expect("store");
        match ChunkedArray::open(&store, "a") {
            Err(Error::ShapeMismatch { expected, .. }) => assert!(expected.contains("2^64")),
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
    }

    #[test]
    fn streamed_index_copies_check_every_bound() {
        let long_u16: Vec<u16> = (0..3000).map(|i| (i % 700) as u16).collect();
        let long_i32: Vec<i32> = (0..3000).map(|i| i % 700).collect();
        for decoded in [Decoded::U16(&long_u16), Decoded::I32(&long_i32)] {
            let mut dst = vec![0i32; 2990];
            decoded
                .copy_indices(5, &mut dst, 700, "x")
                .expect("in range");
            assert!(dst
                .iter()
                .enumerate()
                .all(|(i, &v)| v == ((i + 5) % 700) as i32));
            match decoded.copy_indices(5, &mut dst, 699, "x") {
                Err(Error::IndexOutOfBounds { index: 699, .. }) => {}
                other => panic!("expected index 699 out of bounds, got {other:?}"),
            }
            // An empty run is in range whatever the width, even none.
            decoded.copy_indices(0, &mut [], 0, "x").expect("empty");
        }
        let negative = [3, -1, 4];
        match Decoded::I32(&negative).copy_indices(0, &mut [0; 3], 10, "x") {
            Err(Error::IndexOutOfBounds { index: -1, .. }) => {}
            other => panic!("expected index -1 out of bounds, got {other:?}"),
        }
    }

    #[test]
    fn series_follow_runs_in_the_order_given() {
        let mut out = [0u8; 12];
        let (a, rest) = out.split_at_mut(2);
        let (b, rest) = rest.split_at_mut(3);
        let (c, rest) = rest.split_at_mut(2);
        let (d, rest) = rest.split_at_mut(1);
        let (e, f) = rest.split_at_mut(2);
        // 10..12 then 12..15 continue; 20..22 leaves a gap; chunk 1 starts anew; 0..2 of chunk 0
        // comes back out of order and stays a series of its own.
        let parts = vec![
            (0, 10, a),
            (0, 12, b),
            (0, 20, c),
            (1, 22, d),
            (0, 0, e),
            (0, 2, f),
        ];
        let series: Vec<(u64, Vec<u64>)> = series_in_order(parts)
            .into_iter()
            .map(|(chunk, runs)| (chunk, runs.iter().map(|(src, _)| *src).collect()))
            .collect();
        assert_eq!(
            series,
            [
                (0, vec![10, 12]),
                (0, vec![20]),
                (1, vec![22]),
                (0, vec![0, 2])
            ]
        );
    }

    #[test]
    fn a_run_splits_at_chunk_edges() {
        let mut out = [0u8; 7];
        let mut parts = Vec::new();
        chunk_runs(5..12, 4, &mut out, &mut parts);
        let shape: Vec<(u64, u64, usize)> = parts.iter().map(|p| (p.0, p.1, p.2.len())).collect();
        assert_eq!(shape, [(1, 1, 3), (2, 0, 4)]);
    }

    #[test]
    fn runs_split_at_chunk_edges_in_request_order() {
        let mut out = [0u8; 9];
        let parts = chunk_runs_of("x", [5..12, 0..2], 4, &mut out).expect("exact");
        let shape: Vec<(u64, u64, usize)> = parts.iter().map(|p| (p.0, p.1, p.2.len())).collect();
        assert_eq!(shape, [(1, 1, 3), (2, 0, 4), (0, 0, 2)]);
        let mut none = [0u8; 0];
        assert!(chunk_runs_of("x", [3..3], 4, &mut none)
            .expect("exact")
            .is_empty());
        assert!(chunk_runs_of("x", [0..3], 4, &mut out).is_err());
    }
}
