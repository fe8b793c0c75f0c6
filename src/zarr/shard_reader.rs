//! Inner chunks of a sharded array read straight from their shard files, decoded in place.
//!
//! zarrs' array API allocates the bytes it reads, the chunk it decodes and the subset it hands
//! back, fresh (and, for large ones, page-faulted) on every read. On the loader's hot path that
//! is most of the cost beside decompression itself. For the layout annbatch and our converter
//! write — shards along axis 0, inner chunks spanning every trailing axis, the shard index
//! stored with `bytes` (+ `crc32c`), inner codecs `bytes` then blosc, zstd or nothing — this
//! reader does the same work with per-thread buffers that are allocated once:
//!
//! 1. the shard's index is read once per shard (checked against the file's size and its crc32c)
//!    and kept for the life of the array;
//! 2. an inner chunk's bytes are read with one positioned read (for an uncompressed chunk only
//!    the rows asked for, straight into the output buffer);
//! 3. they are decoded into the per-thread output buffer (blosc decodes only the blocks a part
//!    needs), which the caller copies from once, into place.
//!
//! Memory: per rayon thread, one stored inner chunk and one decoded one, at most (both bounded
//! by the decoded-chunk check at open). Any other layout or codec chain goes through zarrs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value;
use zarrs::array::{Array, ArrayMetadata};
use zarrs::storage::byte_range::ByteRange;

use super::inner_codec::InnerCodec;
use crate::error::{Error, Result};
use crate::storage::Storage;

/// An inner chunk's place in its shard: `(offset, length)` in bytes.
type Entry = (u64, u64);
/// The entry zarr writes for an inner chunk that is not stored.
const EMPTY: Entry = (u64::MAX, u64::MAX);

/// The layout of a sharded array this reader can read, and its shard index cache.
#[derive(Debug)]
pub(crate) struct ShardReader {
    codec: InnerCodec,
    /// Bytes per row of an inner chunk (elements per row × item size).
    row_bytes: usize,
    /// Rows per inner chunk.
    inner_rows: u64,
    /// Inner chunks per shard.
    per_shard: u64,
    /// Whether the index is at the end of the shard (else at its start).
    index_at_end: bool,
    /// Whether the index ends with a crc32c of its entries.
    index_crc: bool,
    shards: RwLock<HashMap<u64, Arc<Shard>>>,
}

/// A shard read once: its store key and its index.
#[derive(Debug)]
struct Shard {
    key: zarrs::storage::StoreKey,
    index: Box<[Entry]>,
}

thread_local! {
    /// The stored bytes of one inner chunk.
    static STORED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Decoded rows, 8-byte aligned so that any element type can view them.
    static DECODED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl ShardReader {
    /// The reader for `array` (elements of `item_bytes` bytes), or `None` when its layout or
    /// codecs are not ones it reads (zarrs reads those).
    pub(crate) fn for_array(array: &Array<Storage>, item_bytes: usize) -> Option<Self> {
        let ArrayMetadata::V3(meta) = array.metadata() else {
            return None;
        };
        let meta = serde_json::to_value(meta).ok()?;
        let shape = array.shape();
        let (_, trailing) = shape.split_first()?;
        let shard_shape = meta.pointer("/chunk_grid/configuration/chunk_shape")?;
        if meta.pointer("/chunk_grid/name")?.as_str()? != "regular" {
            return None;
        }
        let [sharding] = meta.get("codecs")?.as_array()?.as_slice() else {
            return None;
        };
        if sharding.get("name")?.as_str()? != "sharding_indexed" {
            return None;
        }
        let config = sharding.get("configuration")?;
        let inner_shape = config.get("chunk_shape")?;
        let (shard_rows, inner_rows) = (
            rows_spanning(shard_shape, trailing)?,
            rows_spanning(inner_shape, trailing)?,
        );
        if inner_rows == 0 || shard_rows % inner_rows != 0 {
            return None;
        }
        let codec = InnerCodec::of(config.get("codecs")?)?;
        let index_crc = match config.get("index_codecs")?.as_array()?.as_slice() {
            [bytes] if is_little_bytes(bytes) => false,
            [bytes, crc] if is_little_bytes(bytes) && crc.get("name")? == "crc32c" => true,
            _ => return None,
        };
        let index_at_end = match config.get("index_location").and_then(Value::as_str) {
            None | Some("end") => true,
            Some("start") => false,
            Some(_) => return None,
        };
        let row_elements =
            usize::try_from(trailing.iter().try_fold(1u64, |a, &n| a.checked_mul(n))?).ok()?;
        Some(Self {
            codec,
            row_bytes: row_elements.checked_mul(item_bytes)?,
            inner_rows,
            per_shard: shard_rows / inner_rows,
            index_at_end,
            index_crc,
            shards: RwLock::new(HashMap::new()),
        })
    }

    /// Whether a part of a chunk is read as exactly its bytes (uncompressed chunks).
    pub(crate) fn reads_exact_bytes(&self) -> bool {
        self.codec == InnerCodec::Raw
    }

    /// Rows per inner chunk.
    pub(crate) fn inner_rows(&self) -> u64 {
        self.inner_rows
    }

    /// Decodes rows `rows` of inner chunk `chunk` and calls `f` with their bytes. `None` when
    /// the chunk (or its whole shard) is not stored: the caller reads it as fill values.
    pub(crate) fn with_rows<R>(
        &self,
        array: &Array<Storage>,
        files: &Storage,
        path: &str,
        chunk: u64,
        rows: Range<u64>,
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| Error::CorruptChunk {
            path: path.to_string(),
            chunk,
            source,
        };
        let fault = |e: zarrs::storage::StorageError| match files.fault() {
            Some(fault) => fault.to_error(),
            None => Error::zarr(path, e),
        };
        let Some((shard, (offset, stored_len), chunk_bytes)) =
            self.locate(array, files, path, chunk)?
        else {
            return Ok(None);
        };
        let key = &shard.key;
        let (start, end) = (self.bytes_of(rows.start), self.bytes_of(rows.end));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(corrupt("rows past the inner chunk".into()));
        };
        if start > end || end > chunk_bytes {
            return Err(corrupt("rows past the inner chunk".into()));
        }
        let part = (start, end) != (0, chunk_bytes);
        DECODED.with(|decoded| {
            let mut owned = Vec::new();
            let mut borrowed = decoded.try_borrow_mut();
            let decoded: &mut Vec<u64> = match borrowed.as_deref_mut() {
                Ok(v) => v,
                Err(_) => &mut owned,
            };
            let words = (end - start).div_ceil(8);
            if decoded.len() < words {
                decoded.resize(words, 0);
            }
            let out = &mut bytemuck::cast_slice_mut::<u64, u8>(decoded)[..end - start];
            if self.codec == InnerCodec::Raw {
                let at = raw_at(path, chunk, (offset, stored_len), chunk_bytes, start)?;
                match files.read_exact_into(key, at, out).map_err(fault)? {
                    Some(()) => {}
                    None => return Ok(None),
                }
            } else {
                let part = part.then_some(start..end);
                // From an object store the response is decoded where it landed: no copy into
                // `STORED` first.
                #[cfg(feature = "remote")]
                if let Some(remote) = files.remote() {
                    let range = ByteRange::FromStart(offset, Some(stored_len));
                    let Some(bytes) = remote.fetch(key, range).map_err(fault)? else {
                        return Ok(None);
                    };
                    self.codec
                        .decode(&bytes, out, chunk_bytes, part)
                        .map_err(|e| corrupt(Box::new(e)))?;
                    return f(out).map(Some);
                }
                let read = STORED.with(|stored| {
                    let mut owned = Vec::new();
                    let mut borrowed = stored.try_borrow_mut();
                    let stored: &mut Vec<u8> = match borrowed.as_deref_mut() {
                        Ok(v) => v,
                        Err(_) => &mut owned,
                    };
                    let range = ByteRange::FromStart(offset, Some(stored_len));
                    // A direct read is decoded where it landed (no copy into `stored`).
                    let decode = |bytes: &[u8]| self.codec.decode(bytes, out, chunk_bytes, part);
                    let Some(decoded) =
                        files.read_with(key, range, stored, decode).map_err(fault)?
                    else {
                        return Ok(false);
                    };
                    decoded.map_err(|e| corrupt(Box::new(e)))?;
                    Ok::<_, Error>(true)
                })?;
                if !read {
                    return Ok(None);
                }
            }
            f(out).map(Some)
        })
    }

    /// Reads the stored bytes of an uncompressed inner chunk `chunk` of a local store, from byte
    /// `start` on, straight into `bufs`, back to back (one `preadv`: no staging buffer, no
    /// copy). `None` when the chunk (or its shard) is not stored.
    pub(crate) fn read_raw_into(
        &self,
        array: &Array<Storage>,
        files: &Storage,
        path: &str,
        chunk: u64,
        start: usize,
        bufs: &mut [&mut [u8]],
    ) -> Result<Option<()>> {
        let Some(local) = files.local() else {
            return Err(Error::Internal(format!(
                "{path}: raw reads into place are for local files"
            )));
        };
        if self.codec != InnerCodec::Raw {
            return Err(corrupt_chunk(
                path,
                chunk,
                "a compressed chunk read as raw bytes",
            ));
        }
        let Some((shard, entry, chunk_bytes)) = self.locate(array, files, path, chunk)? else {
            return Ok(None);
        };
        bufs.iter()
            .try_fold(start, |at, b| at.checked_add(b.len()))
            .filter(|&end| end <= chunk_bytes)
            .ok_or_else(|| corrupt_chunk(path, chunk, "rows past the inner chunk"))?;
        let at = raw_at(path, chunk, entry, chunk_bytes, start)?;
        // Each row's first and last lines load while the kernel copies the rows before them.
        for b in bufs.iter() {
            super::streaming_copy::prefetch_ends(b);
        }
        let read = local.read_exact_vectored(&shard.key, at, bufs);
        read.map_err(|e| match files.fault() {
            Some(fault) => fault.to_error(),
            None => Error::zarr(path, e),
        })
    }

    /// Where inner chunk `chunk` is stored: its shard, its index entry and its decoded size in
    /// bytes; `None` when it (or its whole shard) is not stored.
    fn locate(
        &self,
        array: &Array<Storage>,
        files: &Storage,
        path: &str,
        chunk: u64,
    ) -> Result<Option<(Arc<Shard>, Entry, usize)>> {
        let (shard, local) = (chunk / self.per_shard, chunk % self.per_shard);
        let Some(shard) = self.shard(array, files, path, shard)? else {
            return Ok(None);
        };
        let entry = shard.index.get(local as usize).copied().ok_or_else(|| {
            corrupt_chunk(path, chunk, "the shard index is shorter than the shard")
        })?;
        if entry == EMPTY {
            return Ok(None);
        }
        let chunk_bytes = self.bytes_of(self.inner_rows).ok_or_else(|| {
            corrupt_chunk(
                path,
                chunk,
                "an inner chunk is larger than this machine can address",
            )
        })?;
        Ok(Some((shard, entry, chunk_bytes)))
    }

    /// Bytes of `rows` rows, if addressable.
    fn bytes_of(&self, rows: u64) -> Option<usize> {
        usize::try_from(rows).ok()?.checked_mul(self.row_bytes)
    }

    /// Shard `shard`, its index read on first use; `None` when the shard is not stored.
    fn shard(
        &self,
        array: &Array<Storage>,
        files: &Storage,
        path: &str,
        shard: u64,
    ) -> Result<Option<Arc<Shard>>> {
        if let Some(found) = self.cached(shard) {
            return Ok(Some(found));
        }
        let (key, range, len) = self.index_place(array, path, shard)?;
        // The store checks `len` against the file's size before allocating it.
        let mut bytes = Vec::new();
        let n = match files.read_into(&key, range, &mut bytes) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(None),
            Err(e) => return Err(store_error(files, path, e)),
        };
        self.parse_index(path, shard, key, &bytes[..n], len)
            .map(Some)
    }

    /// Reads, all at once from the object store `remote`, the indexes of `shards` not read yet.
    /// Shards that are not stored are left out.
    #[cfg(feature = "remote")]
    pub(crate) fn load_indexes(
        &self,
        array: &Array<Storage>,
        remote: &crate::storage::remote::RemoteStore,
        path: &str,
        shards: impl IntoIterator<Item = u64>,
    ) -> Result<()> {
        let mut wanted = Vec::new();
        for shard in shards {
            if self.cached(shard).is_none() {
                let (key, range, len) = self.index_place(array, path, shard)?;
                wanted.push((shard, key, range, len));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let reads: Vec<_> = wanted.iter().map(|(_, k, r, _)| (k.clone(), *r)).collect();
        for ((shard, key, _, len), got) in wanted.into_iter().zip(remote.read_many(&reads)) {
            let got = got.map_err(|e| match remote.fault() {
                Some(fault) => fault.to_error(),
                None => Error::zarr(path, e),
            })?;
            if let Some(bytes) = got {
                self.parse_index(path, shard, key, &bytes, len)?;
            }
        }
        Ok(())
    }

    /// Reads, one after another from local files, the indexes of `shards` not read yet.
    pub(crate) fn load_local_indexes(
        &self,
        array: &Array<Storage>,
        files: &Storage,
        path: &str,
        shards: impl IntoIterator<Item = u64>,
    ) -> Result<()> {
        for shard in shards {
            self.shard(array, files, path, shard)?;
        }
        Ok(())
    }

    /// The bytes of `rows` of inner chunk `chunk` as read from its shard: `(key, byte range)`,
    /// the rows exactly for uncompressed chunks, the whole stored chunk otherwise. `None` when
    /// the shard's index is not loaded or the chunk is not stored.
    pub(crate) fn byte_range(
        &self,
        chunk: u64,
        rows: Range<u64>,
    ) -> Option<(zarrs::storage::StoreKey, Range<u64>)> {
        let shard = self.cached(chunk / self.per_shard)?;
        let &(offset, stored_len) = shard
            .index
            .get(usize::try_from(chunk % self.per_shard).ok()?)?;
        if (offset, stored_len) == EMPTY {
            return None;
        }
        let range = if self.codec == InnerCodec::Raw {
            let start = offset.checked_add(u64::try_from(self.bytes_of(rows.start)?).ok()?)?;
            let end = offset.checked_add(u64::try_from(self.bytes_of(rows.end)?).ok()?)?;
            start..end
        } else {
            offset..offset.checked_add(stored_len)?
        };
        Some((shard.key.clone(), range))
    }

    /// Inner chunks per shard.
    pub(crate) fn per_shard(&self) -> u64 {
        self.per_shard
    }

    fn cached(&self, shard: u64) -> Option<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shard)
            .cloned()
    }

    /// Where shard `shard`'s index is: its key, byte range and length.
    fn index_place(
        &self,
        array: &Array<Storage>,
        path: &str,
        shard: u64,
    ) -> Result<(zarrs::storage::StoreKey, ByteRange, u64)> {
        let mut key_indices = vec![0u64; array.shape().len()];
        key_indices[0] = shard;
        let key = array.chunk_key(&key_indices);
        let crc_len = if self.index_crc { 4 } else { 0 };
        let len = self
            .per_shard
            .checked_mul(16)
            .and_then(|n| n.checked_add(crc_len))
            .ok_or_else(|| {
                bad_index(
                    path,
                    shard,
                    self.per_shard,
                    "more inner chunks than any file can index".into(),
                )
            })?;
        let range = if self.index_at_end {
            ByteRange::Suffix(len)
        } else {
            ByteRange::FromStart(0, Some(len))
        };
        Ok((key, range, len))
    }

    /// Checks and keeps shard `shard`'s index, read as `bytes` (`len` expected).
    fn parse_index(
        &self,
        path: &str,
        shard: u64,
        key: zarrs::storage::StoreKey,
        bytes: &[u8],
        len: u64,
    ) -> Result<Arc<Shard>> {
        let bad = |reason: String| bad_index(path, shard, self.per_shard, reason);
        let n = bytes.len();
        if n as u64 != len {
            return Err(bad(format!("{n} bytes read, {len} expected")));
        }
        let crc_len = if self.index_crc { 4 } else { 0 };
        let (entries, crc) = bytes.split_at(n - crc_len);
        if self.index_crc {
            let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32c::crc32c(entries) != stored {
                return Err(bad("its crc32c does not match".into()));
            }
        }
        let index = entries
            .chunks_exact(16)
            .map(|e| {
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&e[i..i + 8]);
                    u64::from_le_bytes(w)
                };
                (word(0), word(8))
            })
            .collect();
        let found = Arc::new(Shard { key, index });
        self.shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard, found.clone());
        Ok(found)
    }
}

/// A damaged index of shard `shard`.
fn bad_index(path: &str, shard: u64, per_shard: u64, reason: String) -> Error {
    Error::CorruptChunk {
        path: path.to_string(),
        chunk: shard.saturating_mul(per_shard),
        source: format!("the index of shard {shard}: {reason}").into(),
    }
}

/// A store error about `path`, or the typed fault the store met on the way.
fn store_error(files: &Storage, path: &str, e: zarrs::storage::StorageError) -> Error {
    match files.fault() {
        Some(fault) => fault.to_error(),
        None => Error::zarr(path, e),
    }
}

/// Rows of a chunk shape that spans every trailing axis of an array (`trailing`), else `None`.
fn rows_spanning(shape: &Value, trailing: &[u64]) -> Option<u64> {
    let shape = shape
        .as_array()?
        .iter()
        .map(Value::as_u64)
        .collect::<Option<Vec<u64>>>()?;
    let (&rows, rest) = shape.split_first()?;
    (rest == trailing).then_some(rows)
}

fn is_little_bytes(codec: &Value) -> bool {
    codec.get("name").and_then(Value::as_str) == Some("bytes")
        && matches!(
            codec
                .pointer("/configuration/endian")
                .and_then(Value::as_str),
            None | Some("little")
        )
}

/// A [`Error::CorruptChunk`] for inner chunk `chunk` of the array at `path`.
fn corrupt_chunk(path: &str, chunk: u64, detail: impl Into<String>) -> Error {
    Error::CorruptChunk {
        path: path.to_string(),
        chunk,
        source: detail.into().into(),
    }
}

/// The file offset of byte `start` of an uncompressed inner chunk stored at `(offset, len)`,
/// once its stored length is checked to be its decoded size.
fn raw_at(
    path: &str,
    chunk: u64,
    (offset, len): Entry,
    chunk_bytes: usize,
    start: usize,
) -> Result<u64> {
    if usize::try_from(len).ok() != Some(chunk_bytes) {
        return Err(corrupt_chunk(
            path,
            chunk,
            format!("{len} bytes stored, {chunk_bytes} expected"),
        ));
    }
    offset
        .checked_add(start as u64)
        .ok_or_else(|| corrupt_chunk(path, chunk, "a chunk offset past any file"))
}
