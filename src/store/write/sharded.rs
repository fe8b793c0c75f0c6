//! A streaming writer for one array sharded along axis 0.
//!
//! Values are never held as a whole shard: a callback gathers one inner chunk at a time into a
//! per-thread buffer, a window of inner chunks is encoded in parallel, and the encoded chunks are
//! appended to the shard file in order, followed by the shard index (offset, length per inner
//! chunk; crc32c). Memory is the window of encoded chunks, whatever the shard size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::PathBuf;

use rayon::prelude::*;
use serde_json::{json, Map, Value};
use zarrs::array::{Array, ArrayToBytesCodecTraits, ChunkShape, CodecOptions, IntoArrayBytes};
use zarrs::filesystem::FilesystemStore;

use super::{shard_rows_for, sharded_metadata, Compressor, Writer, ZarrElement};
use crate::error::{Error, Result};

/// Inner chunks encoded at once per worker thread (bounds the memory of encoded chunks).
const WINDOW_PER_THREAD: usize = 4;

/// An array whose metadata is written; [`ShardedArray::write_with`] writes its shards.
pub(crate) struct ShardedArray<'w, T> {
    writer: &'w Writer,
    path: String,
    shape: Vec<u64>,
    inner_rows: u64,
    shard_rows: u64,
    inner: Array<FilesystemStore>,
    inner_shape: ChunkShape,
    index: Array<FilesystemStore>,
    index_shape: ChunkShape,
    _values: std::marker::PhantomData<T>,
}

fn zerr(path: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::zarr(path, e)
}

impl Writer {
    /// Writes the metadata of an array of `shape` sharded along axis 0 (see
    /// [`Writer::array`]) and returns the writer of its shards.
    pub(crate) fn sharded_array<T: ZarrElement>(
        &self,
        path: &str,
        shape: &[u64],
        (inner_rows, shard_rows): (u64, u64),
        compressor: Compressor,
        attrs: Map<String, Value>,
    ) -> Result<ShardedArray<'_, T>> {
        let (inner_rows, shard_rows) = shard_rows_for(shape[0], inner_rows, shard_rows);
        let metadata = sharded_metadata::<T>(shape, inner_rows, shard_rows, compressor, attrs);
        let array = self.new_array(path, metadata)?;
        array.store_metadata().map_err(|e| zerr(path, e))?;

        // Encoders only: arrays whose one chunk is an inner chunk, or a shard index.
        let mut inner_full = vec![inner_rows];
        inner_full.extend(&shape[1..]);
        let inner = self.new_array(
            path,
            json!({
                "zarr_format": 3, "node_type": "array", "shape": inner_full,
                "data_type": T::DATA_TYPE,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": inner_full}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": T::fill_value(),
                "codecs": super::inner_codecs::<T>(compressor),
            }),
        )?;
        let mut index_full = vec![shard_rows / inner_rows];
        index_full.extend(std::iter::repeat_n(1, shape.len() - 1));
        index_full.push(2);
        let index = self.new_array(
            path,
            json!({
                "zarr_format": 3, "node_type": "array", "shape": index_full,
                "data_type": "uint64",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": index_full}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "crc32c"}],
            }),
        )?;
        let zeros = vec![0u64; shape.len()];
        let inner_shape = inner.chunk_shape(&zeros).map_err(|e| zerr(path, e))?;
        let index_shape = index
            .chunk_shape(&vec![0u64; shape.len() + 1])
            .map_err(|e| zerr(path, e))?;
        Ok(ShardedArray {
            writer: self,
            path: path.to_string(),
            shape: shape.to_vec(),
            inner_rows,
            shard_rows,
            inner,
            inner_shape,
            index,
            index_shape,
            _values: std::marker::PhantomData,
        })
    }
}

impl<T: ZarrElement> ShardedArray<'_, T> {
    /// Writes every shard. `fill(rows, buffer)` appends the row-major values of `rows` (along
    /// axis 0, never past the array's end) to the empty `buffer`; it is called from several
    /// threads at once.
    pub(crate) fn write_with<F>(&self, fill: F) -> Result<()>
    where
        F: Fn(Range<u64>, &mut Vec<T>) -> Result<()> + Sync,
    {
        let rows = self.shape[0];
        let row_width: u64 = self.shape[1..].iter().product();
        let inner_len = (self.inner_rows * row_width) as usize;
        let per_shard = (self.shard_rows / self.inner_rows) as usize;
        let window = (WINDOW_PER_THREAD * rayon::current_num_threads()).max(1);
        let options = CodecOptions::default().with_concurrent_target(1);
        for shard in 0..rows.div_ceil(self.shard_rows) {
            let shard_start = shard * self.shard_rows;
            let file_path = self.shard_path(shard);
            if let Some(dir) = file_path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            let io = |source| Error::Io {
                path: file_path.clone(),
                source,
            };
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&file_path).map_err(io)?);
            let mut index = vec![u64::MAX; per_shard * 2];
            let present = ((rows - shard_start).div_ceil(self.inner_rows) as usize).min(per_shard);
            // Encoding window k+1 (all threads) overlaps writing window k (one thread).
            let written = std::thread::scope(|scope| -> Result<()> {
                let (tx, rx) = crossbeam_channel::bounded::<Vec<Vec<u8>>>(1);
                let file_writer = scope.spawn(|| -> std::io::Result<Vec<u64>> {
                    let mut lens = Vec::with_capacity(present);
                    for window in rx {
                        for bytes in window {
                            out.write_all(&bytes)?;
                            lens.push(bytes.len() as u64);
                        }
                    }
                    out.flush()?;
                    Ok(lens)
                });
                let mut encoded_all = Ok(());
                for first in (0..present).step_by(window) {
                    let encoded: Result<Vec<Vec<u8>>> = (first..(first + window).min(present))
                        .into_par_iter()
                        .map_init(Vec::new, |buffer: &mut Vec<T>, chunk| {
                            let start = shard_start + chunk as u64 * self.inner_rows;
                            let end = (start + self.inner_rows).min(rows);
                            buffer.clear();
                            fill(start..end, buffer)?;
                            if buffer.len() > inner_len {
                                return Err(Error::ShapeMismatch {
                                    path: self.path.clone(),
                                    found: format!(
                                        "{} values for rows {start}..{end}",
                                        buffer.len()
                                    ),
                                    expected: format!("at most {inner_len}"),
                                });
                            }
                            // The grid's chunks are whole: pad the array's last one.
                            buffer.resize(inner_len, T::default());
                            self.encode(buffer, &options)
                        })
                        .collect();
                    match encoded {
                        Ok(e) => {
                            if tx.send(e).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            encoded_all = Err(e);
                            break;
                        }
                    }
                }
                drop(tx);
                let lens = file_writer
                    .join()
                    .map_err(|p| Error::WorkerPanic {
                        message: crate::error::panic_message(p.as_ref()),
                    })?
                    .map_err(io)?;
                encoded_all?;
                let mut offset = 0u64;
                for (i, len) in lens.into_iter().enumerate() {
                    index[i * 2] = offset;
                    index[i * 2 + 1] = len;
                    offset += len;
                }
                Ok(())
            });
            written?;
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(&file_path)
                .map_err(io)?;
            let index_bytes = self
                .index
                .codecs()
                .encode(
                    index
                        .as_slice()
                        .into_array_bytes(self.index.data_type())
                        .map_err(|e| zerr(&self.path, e))?,
                    &self.index_shape,
                    self.index.data_type(),
                    self.index.fill_value(),
                    &options,
                )
                .map_err(|e| zerr(&self.path, e))?;
            out.write_all(&index_bytes).map_err(io)?;
        }
        Ok(())
    }

    fn encode(&self, values: &[T], options: &CodecOptions) -> Result<Vec<u8>> {
        let bytes = values
            .into_array_bytes(self.inner.data_type())
            .map_err(|e| zerr(&self.path, e))?;
        let encoded = self
            .inner
            .codecs()
            .encode(
                bytes,
                &self.inner_shape,
                self.inner.data_type(),
                self.inner.fill_value(),
                options,
            )
            .map_err(|e| zerr(&self.path, e))?;
        Ok(encoded.into_owned())
    }

    /// `<root>/<path>/c/<shard>/0/...`: zarr v3's default chunk key with `/`.
    fn shard_path(&self, shard: u64) -> PathBuf {
        let mut p = self.writer.root.join(self.path.trim_start_matches('/'));
        p.push("c");
        p.push(shard.to_string());
        for _ in 1..self.shape.len() {
            p.push("0");
        }
        p
    }
}
