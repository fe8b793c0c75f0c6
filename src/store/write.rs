//! Writing AnnData groups in annbatch's on-disk layout (zarr v3, sharded).
//!
//! `X` gets blosc-lz4 (clevel 3, byte shuffle) inner chunks inside shards, `obs`/`var` columns
//! zstd, exactly as annbatch's `write_sharded` lays them out, so annbatch and anndata read what
//! we write. Shards are encoded in parallel.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use zarrs::array::{Array, ArrayMetadata, Element, IntoArrayBytes};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use super::dataframe::Column;
use crate::zarr::dtype::Dtype;

mod sharded;
use crate::error::{Error, Result};

/// How `X` is chunked on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows per inner (decoded-at-once) chunk: annbatch's `n_obs_per_chunk`. Default 64.
    pub chunk_rows: u64,
    /// Rows per shard (one file): annbatch's `shard_size` in rows. Default 2048.
    pub shard_rows: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            chunk_rows: 64,
            shard_rows: 2048,
        }
    }
}

/// The compressor of an array's inner chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// blosc, lz4, clevel 3, byte shuffle, blosc's own block size: annbatch's X, exactly.
    BloscLz4,
    /// blosc, lz4, clevel 3, with a bit shuffle instead of a byte shuffle (`bitshuffle`) and/or
    /// blocks of `blocksize` bytes (0: blosc's own choice, which for X's chunks is one block
    /// per chunk). Small blocks let a read of part of a chunk decode only the blocks it needs.
    BloscLz4With {
        /// Bit shuffle rather than byte shuffle.
        bitshuffle: bool,
        /// Block size in bytes; 0 lets blosc choose.
        blocksize: u32,
    },
    /// zstd level 0 (annbatch's obs / var).
    Zstd,
    /// No compression: the raw little-endian bytes (strings are still zstd-compressed).
    None,
}

impl Compressor {
    /// Parses a name: `none`, `zstd`, `blosc-lz4` (annbatch's), `blosc-lz4-bitshuffle`, each
    /// blosc one optionally with `:BLOCKSIZE` in bytes (`blosc-lz4:16384`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for any other name.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = || {
            Error::parameter(
                "compressor",
                name,
                "none, zstd, blosc-lz4 or blosc-lz4-bitshuffle, a blosc one optionally with \
                 :BLOCKSIZE in bytes (blosc-lz4:16384)",
            )
        };
        let (base, blocksize) = match name.split_once(':') {
            Some((base, size)) => (base, Some(size.parse::<u32>().map_err(|_| bad())?)),
            None => (name, None),
        };
        Ok(match (base, blocksize) {
            ("none", None) => Self::None,
            ("zstd", None) => Self::Zstd,
            ("blosc-lz4", None | Some(0)) => Self::BloscLz4,
            ("blosc-lz4", Some(blocksize)) => Self::BloscLz4With {
                bitshuffle: false,
                blocksize,
            },
            ("blosc-lz4-bitshuffle", blocksize) => Self::BloscLz4With {
                bitshuffle: true,
                blocksize: blocksize.unwrap_or(0),
            },
            _ => return Err(bad()),
        })
    }

    /// The name [`Self::parse`] reads back.
    pub fn name(&self) -> String {
        match *self {
            Self::None => "none".into(),
            Self::Zstd => "zstd".into(),
            Self::BloscLz4 => "blosc-lz4".into(),
            Self::BloscLz4With {
                bitshuffle,
                blocksize,
            } => {
                let base = if bitshuffle {
                    "blosc-lz4-bitshuffle"
                } else {
                    "blosc-lz4"
                };
                match blocksize {
                    0 => base.into(),
                    n => format!("{base}:{n}"),
                }
            }
        }
    }
}

impl std::fmt::Display for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// An element type the writer knows the zarr v3 data type and fill value of.
pub trait ZarrElement: Element + Clone + Default + Send + Sync {
    /// The zarr v3 `data_type` name.
    const DATA_TYPE: &'static str;
    /// The fill value in JSON.
    fn fill_value() -> Value;
}

macro_rules! zarr_element {
    ($($t:ty => $name:literal, $fill:expr;)*) => {$(
        impl ZarrElement for $t {
            const DATA_TYPE: &'static str = $name;
            fn fill_value() -> Value {
                $fill
            }
        }
    )*};
}

zarr_element! {
    bool => "bool", json!(false);
    i8 => "int8", json!(0);
    i16 => "int16", json!(0);
    i32 => "int32", json!(0);
    i64 => "int64", json!(0);
    u8 => "uint8", json!(0);
    u16 => "uint16", json!(0);
    u32 => "uint32", json!(0);
    u64 => "uint64", json!(0);
    half::f16 => "float16", json!(0.0);
    f32 => "float32", json!(0.0);
    f64 => "float64", json!(0.0);
    String => "string", json!("");
}

/// An open writable store.
pub struct Writer {
    root: std::path::PathBuf,
    store: Arc<FilesystemStore>,
}

fn zerr(path: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::zarr(path, e)
}

impl Writer {
    /// Creates (or opens) the directory `root` as a writable zarr store.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zarr`] when the directory cannot be created.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let store = FilesystemStore::new(root).map_err(|e| zerr(&root.display().to_string(), e))?;
        Ok(Self {
            root: root.to_path_buf(),
            store: Arc::new(store),
        })
    }

    /// Writes group metadata at `path` with `attrs`.
    ///
    /// # Errors
    /// [`Error::Zarr`] / [`Error::Io`] when the metadata cannot be written.
    pub fn group(&self, path: &str, attrs: Map<String, Value>) -> Result<()> {
        let group = GroupBuilder::new()
            .attributes(attrs)
            .build(self.store.clone(), &abs(path))
            .map_err(|e| zerr(path, e))?;
        group.store_metadata().map_err(|e| zerr(path, e))
    }

    /// Writes an array of `shape` (row-major `values`), sharded along axis 0 into shards of
    /// `shard_rows` rows made of inner chunks of `inner_rows` rows.
    ///
    /// # Errors
    /// [`Error::Zarr`] / [`Error::Io`] when the array cannot be written.
    pub fn array<T: ZarrElement>(
        &self,
        path: &str,
        values: &[T],
        shape: &[u64],
        (inner_rows, shard_rows): (u64, u64),
        compressor: Compressor,
        attrs: Map<String, Value>,
    ) -> Result<()> {
        let row_width = shape[1..].iter().product::<u64>() as usize;
        if values.len() as u64 != shape.iter().product::<u64>() {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("{} values", values.len()),
                expected: format!("{} (shape {shape:?})", shape.iter().product::<u64>()),
            });
        }
        self.sharded_array::<T>(path, shape, (inner_rows, shard_rows), compressor, attrs)?
            .write_with(|rows, buffer| {
                let (a, b) = (
                    rows.start as usize * row_width,
                    rows.end as usize * row_width,
                );
                buffer.extend_from_slice(&values[a..b]);
                Ok(())
            })
    }

    /// Writes a small array whole, as one zstd chunk, with any number of dimensions (a 0-d
    /// scalar too): what `uns` entries are.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `values` does not fill `shape`, [`Error::Zarr`] /
    /// [`Error::Io`] when writing fails.
    pub(crate) fn whole_array<T: ZarrElement>(
        &self,
        path: &str,
        values: &[T],
        shape: &[u64],
        attrs: Map<String, Value>,
    ) -> Result<()> {
        let n = shape.iter().product::<u64>();
        if values.len() as u64 != n {
            return Err(Error::ShapeMismatch {
                path: path.to_string(),
                found: format!("{} values", values.len()),
                expected: format!("{n} (shape {shape:?})"),
            });
        }
        let chunk: Vec<u64> = shape.iter().map(|&d| d.max(1)).collect();
        let array = self.new_array(
            path,
            json!({
                "zarr_format": 3, "node_type": "array", "shape": shape,
                "data_type": T::DATA_TYPE,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": T::fill_value(),
                "codecs": inner_codecs::<T>(Compressor::Zstd),
                "attributes": attrs,
            }),
        )?;
        array.store_metadata().map_err(|e| zerr(path, e))?;
        if n == 0 {
            return Ok(());
        }
        let bytes = values
            .into_array_bytes(array.data_type())
            .map_err(|e| zerr(path, e))?;
        array
            .store_array_subset(&array.subset_all(), bytes)
            .map_err(|e| zerr(path, e))
    }

    /// An array handle for `metadata` at `path` (nothing is written).
    pub(crate) fn new_array(&self, path: &str, metadata: Value) -> Result<Array<FilesystemStore>> {
        let metadata: ArrayMetadata =
            serde_json::from_value(metadata).map_err(|e| zerr(path, e))?;
        Array::new_with_metadata(self.store.clone(), &abs(path), metadata)
            .map_err(|e| zerr(path, e))
    }

    /// Writes a dataframe group (`obs` or `var`) with its index (named `index_name`: `None`
    /// for an unnamed one, stored as anndata stores it, `_index`) and columns.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for columns whose length is not the index's, [`Error::Zarr`] /
    /// [`Error::Io`] when writing fails.
    pub fn dataframe(
        &self,
        path: &str,
        index_name: Option<&str>,
        index: &[String],
        columns: &[(String, Column)],
    ) -> Result<()> {
        let order: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        // A name that is also a column's keeps the column: the index is unnamed then.
        let index_name = index_name
            .filter(|n| !order.contains(n) && !n.is_empty())
            .unwrap_or("_index");
        self.group(
            path,
            attrs(&[
                ("encoding-type", json!("dataframe")),
                ("encoding-version", json!("0.2.0")),
                ("_index", json!(index_name)),
                ("column-order", json!(order)),
            ]),
        )?;
        self.strings(&format!("{path}/{index_name}"), index)?;
        for (name, column) in columns {
            self.column(&format!("{path}/{name}"), column)?;
        }
        Ok(())
    }

    /// A 1-D array in one zstd chunk (obs/var columns).
    fn small<T: ZarrElement>(
        &self,
        path: &str,
        values: &[T],
        attributes: Map<String, Value>,
    ) -> Result<()> {
        let n = values.len() as u64;
        self.array(path, values, &[n], (n, n), Compressor::Zstd, attributes)
    }

    fn strings(&self, path: &str, values: &[String]) -> Result<()> {
        let a = attrs(&[
            ("encoding-type", json!("string-array")),
            ("encoding-version", json!("0.2.0")),
        ]);
        self.small(path, values, a)
    }

    /// Integers stored as `i64` (bits for `uint64`), written in their own `dtype`: the values
    /// came from an array of that dtype, so each fits it.
    fn ints(
        &self,
        path: &str,
        values: &[i64],
        dtype: Dtype,
        attributes: Map<String, Value>,
    ) -> Result<()> {
        macro_rules! narrowed {
            ($t:ty) => {{
                let v: Vec<$t> = values.iter().map(|&x| x as $t).collect();
                self.small(path, &v, attributes)
            }};
        }
        match dtype {
            Dtype::I8 => narrowed!(i8),
            Dtype::I16 => narrowed!(i16),
            Dtype::I32 => narrowed!(i32),
            Dtype::U8 => narrowed!(u8),
            Dtype::U16 => narrowed!(u16),
            Dtype::U32 => narrowed!(u32),
            Dtype::U64 => narrowed!(u64),
            _ => self.small(path, values, attributes),
        }
    }

    /// Categories in their stored dtype: names, or numbers and bools from their exact text.
    fn categories(&self, path: &str, categories: &[String], dtype: Dtype) -> Result<()> {
        let bad = |text: &str| Error::Internal(format!("{path}: category {text:?} is not {dtype}"));
        let array_attrs = attrs(&[
            ("encoding-type", json!("array")),
            ("encoding-version", json!("0.2.0")),
        ]);
        match dtype {
            Dtype::Bool => {
                let v = categories
                    .iter()
                    .map(|c| c.parse::<bool>().map_err(|_| bad(c)))
                    .collect::<Result<Vec<_>>>()?;
                self.small(path, &v, array_attrs)
            }
            Dtype::F16 | Dtype::F32 | Dtype::F64 => {
                let v = categories
                    .iter()
                    .map(|c| c.parse::<f64>().map_err(|_| bad(c)))
                    .collect::<Result<Vec<_>>>()?;
                match dtype {
                    Dtype::F64 => self.small(path, &v, array_attrs),
                    Dtype::F32 => {
                        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                        self.small(path, &v, array_attrs)
                    }
                    _ => {
                        let v: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f64(x)).collect();
                        self.small(path, &v, array_attrs)
                    }
                }
            }
            d if d.is_integer() => {
                let v = categories
                    .iter()
                    .map(|c| {
                        c.parse::<i128>()
                            .ok()
                            .and_then(|x| {
                                if d == Dtype::U64 {
                                    u64::try_from(x).ok().map(|x| x as i64)
                                } else {
                                    i64::try_from(x).ok()
                                }
                            })
                            .ok_or_else(|| bad(c))
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.ints(path, &v, d, array_attrs)
            }
            _ => self.strings(path, categories),
        }
    }

    fn column(&self, path: &str, column: &Column) -> Result<()> {
        let array_attrs = || {
            attrs(&[
                ("encoding-type", json!("array")),
                ("encoding-version", json!("0.2.0")),
            ])
        };
        match column {
            Column::Categorical {
                codes,
                categories,
                ordered,
                categories_dtype,
            } => {
                self.group(
                    path,
                    attrs(&[
                        ("encoding-type", json!("categorical")),
                        ("encoding-version", json!("0.2.0")),
                        ("ordered", json!(ordered)),
                    ]),
                )?;
                self.categories(&format!("{path}/categories"), categories, *categories_dtype)?;
                // Smallest code type that fits, as pandas does.
                if categories.len() < i8::MAX as usize {
                    let c: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
                    self.small(&format!("{path}/codes"), &c, array_attrs())
                } else if categories.len() < i16::MAX as usize {
                    let c: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
                    self.small(&format!("{path}/codes"), &c, array_attrs())
                } else {
                    let c: Vec<i32> = codes.iter().map(|&c| c as i32).collect();
                    self.small(&format!("{path}/codes"), &c, array_attrs())
                }
            }
            Column::Float(v) => self.small(path, v, array_attrs()),
            Column::Float32(v) => self.small(path, v, array_attrs()),
            Column::Int { values, dtype } => self.ints(path, values, *dtype, array_attrs()),
            Column::Bool(v) => self.small(path, v, array_attrs()),
            Column::String(v) => self.strings(path, v),
            Column::NullableInt {
                values,
                mask,
                dtype,
            } => {
                self.group(
                    path,
                    attrs(&[
                        ("encoding-type", json!("nullable-integer")),
                        ("encoding-version", json!("0.1.0")),
                    ]),
                )?;
                self.ints(&format!("{path}/values"), values, *dtype, array_attrs())?;
                self.small(&format!("{path}/mask"), mask, array_attrs())
            }
            Column::NullableBool { values, mask } => {
                self.group(
                    path,
                    attrs(&[
                        ("encoding-type", json!("nullable-boolean")),
                        ("encoding-version", json!("0.1.0")),
                    ]),
                )?;
                self.small(&format!("{path}/values"), values, array_attrs())?;
                self.small(&format!("{path}/mask"), mask, array_attrs())
            }
            Column::NullableString { values, mask } => {
                self.group(
                    path,
                    attrs(&[
                        ("encoding-type", json!("nullable-string-array")),
                        ("encoding-version", json!("0.1.0")),
                        ("na-value", json!("NaN")),
                    ]),
                )?;
                self.small(&format!("{path}/values"), values, array_attrs())?;
                self.small(&format!("{path}/mask"), mask, array_attrs())
            }
        }
    }

    /// Writes a complete AnnData group with CSR `X` (anndata's element encodings, annbatch's
    /// chunking), plus the empty `layers`, `obsm`, `obsp`, `varm`, `varp`, `uns` groups.
    ///
    /// # Errors
    /// [`Error::Zarr`] / [`Error::Io`] when writing fails.
    #[allow(clippy::too_many_arguments)]
    pub fn anndata_csr(
        &self,
        group: &str,
        indptr: &[i64],
        indices: &[u32],
        data: &[f32],
        n_var: u64,
        obs_names: &[String],
        obs: &[(String, Column)],
        var_names: &[String],
        layout: Layout,
    ) -> Result<()> {
        let p = |child: &str| {
            if group.is_empty() {
                child.to_string()
            } else {
                format!("{group}/{child}")
            }
        };
        self.group(
            group,
            attrs(&[
                ("encoding-type", json!("anndata")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )?;
        let n_obs = (indptr.len() - 1) as u64;
        self.group(
            &p("X"),
            attrs(&[
                ("encoding-type", json!("csr_matrix")),
                ("encoding-version", json!("0.1.0")),
                ("shape", json!([n_obs, n_var])),
            ]),
        )?;
        let nnz = data.len() as u64;
        let per_row = nnz.checked_div(n_obs).unwrap_or(1).max(1);
        let inner = layout.chunk_rows * per_row;
        let shard = layout.shard_rows * per_row;
        let none = Map::new;
        self.array(
            &p("X/data"),
            data,
            &[nnz],
            (inner, shard),
            Compressor::BloscLz4,
            none(),
        )?;
        // Indices downcast to the smallest unsigned type that fits, as annbatch does.
        if n_var <= u64::from(u16::MAX) {
            let idx: Vec<u16> = indices.iter().map(|&i| i as u16).collect();
            self.array(
                &p("X/indices"),
                &idx,
                &[nnz],
                (inner, shard),
                Compressor::BloscLz4,
                none(),
            )?;
        } else {
            self.array(
                &p("X/indices"),
                indices,
                &[nnz],
                (inner, shard),
                Compressor::BloscLz4,
                none(),
            )?;
        }
        self.array(
            &p("X/indptr"),
            indptr,
            &[n_obs + 1],
            (n_obs + 1, n_obs + 1),
            Compressor::BloscLz4,
            none(),
        )?;
        self.dataframe(&p("obs"), None, obs_names, obs)?;
        self.dataframe(&p("var"), None, var_names, &[])?;
        for empty in ["layers", "obsm", "obsp", "varm", "varp", "uns"] {
            self.group(
                &p(empty),
                attrs(&[
                    ("encoding-type", json!("dict")),
                    ("encoding-version", json!("0.1.0")),
                ]),
            )?;
        }
        Ok(())
    }
}

/// Inner-chunk and shard lengths along axis 0 for an array of `rows` rows: both at least one
/// row and at most the array, the shard a whole number of inner chunks.
pub(crate) fn shard_rows_for(rows: u64, inner_rows: u64, shard_rows: u64) -> (u64, u64) {
    let inner_rows = inner_rows.clamp(1, rows.max(1));
    let shard_rows = shard_rows.max(inner_rows).div_ceil(inner_rows) * inner_rows;
    let shard_rows = shard_rows.min(rows.max(1).div_ceil(inner_rows) * inner_rows);
    (inner_rows, shard_rows)
}

/// The codecs of an inner chunk of `T` values compressed by `compressor`.
pub(crate) fn inner_codecs<T: ZarrElement>(compressor: Compressor) -> Value {
    let typesize = std::mem::size_of::<T>();
    match (compressor, T::DATA_TYPE) {
        (_, "string") => json!([{"name": "vlen-utf8", "configuration": {}},
                                 {"name": "zstd", "configuration": {"level": 0, "checksum": false}}]),
        (Compressor::Zstd, _) => json!([{"name": "bytes", "configuration": {"endian": "little"}},
                                 {"name": "zstd", "configuration": {"level": 0, "checksum": false}}]),
        (Compressor::None, _) => json!([{"name": "bytes", "configuration": {"endian": "little"}}]),
        (Compressor::BloscLz4, _) => blosc_lz4(typesize, false, 0),
        (
            Compressor::BloscLz4With {
                bitshuffle,
                blocksize,
            },
            _,
        ) => blosc_lz4(typesize, bitshuffle, blocksize),
    }
}

/// `bytes` then blosc lz4 clevel 3.
fn blosc_lz4(typesize: usize, bitshuffle: bool, blocksize: u32) -> Value {
    let shuffle = if bitshuffle { "bitshuffle" } else { "shuffle" };
    json!([{"name": "bytes", "configuration": {"endian": "little"}},
           {"name": "blosc", "configuration": {"typesize": typesize, "cname": "lz4",
            "clevel": 3, "shuffle": shuffle, "blocksize": blocksize}}])
}

/// Zarr v3 metadata of an array of `T` sharded along axis 0: shards of `shard_rows` rows made of
/// inner chunks of `inner_rows` rows (see [`shard_rows_for`]), the shard index at the end with a
/// crc32c, as zarr-python writes it.
pub(crate) fn sharded_metadata<T: ZarrElement>(
    shape: &[u64],
    inner_rows: u64,
    shard_rows: u64,
    compressor: Compressor,
    attrs: Map<String, Value>,
) -> Value {
    let mut shard_shape = vec![shard_rows];
    shard_shape.extend(&shape[1..]);
    let mut inner_shape = vec![inner_rows];
    inner_shape.extend(&shape[1..]);
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": T::DATA_TYPE,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": T::fill_value(),
        "codecs": [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": inner_shape,
            "codecs": inner_codecs::<T>(compressor),
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": "end"}}],
        "attributes": attrs,
    })
}

/// A JSON attribute map from pairs.
pub fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn abs(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}
