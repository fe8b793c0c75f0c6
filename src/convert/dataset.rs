//! Writing one output dataset: its rows read into memory (remapped to the output var space),
//! permuted, optionally sorted by `groupby`, and written in annbatch's sharded layout.

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::json;

use super::obs_table::{compare_rows, take, ObsTable};
use super::row_reader::{empty_batch, RowReader};
use super::Size;
use crate::batch::{RowValue, XBatch};
use crate::budget;
use crate::error::{Error, Result};
use crate::store::var_space::{ColumnMap, DROPPED};
use crate::store::write::{attrs, Compressor, Writer, ZarrElement};
use crate::zarr::Dtype;

/// Rows read from a source per call: bounds the temporary batch, not the dataset.
const READ_ROWS: u64 = 1024;

/// A run of rows of one source that goes into the dataset.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// Index into the sources.
    pub source: usize,
    /// Rows of that source.
    pub rows: Range<u64>,
    /// Row of `rows.start` in the [`ObsTable`].
    pub obs_start: u64,
}

/// What every dataset of one conversion shares.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// Where each input's `X` is read from: the input's `X`, or the layer that becomes `X`.
    pub x: &'a [&'a dyn RowReader],
    pub maps: &'a [Option<ColumnMap>],
    pub var_names: &'a [String],
    pub var_columns: &'a [(String, crate::store::Column)],
    pub obs: &'a ObsTable,
    pub sparse: bool,
    pub n_obs_per_chunk: u64,
    pub shard_size: Size,
    pub groupby: &'a [String],
    pub compressor: Compressor,
    /// Layers and `obsm` entries, written after `X` with its row order.
    pub elements: &'a [Element<'a>],
    /// What every dataset's `uns` holds.
    pub uns: Option<&'a super::uns::UnsNode>,
    /// `varm` / `varp` copied whole into every dataset.
    pub var_aligned: &'a [(&'static str, super::uns::UnsNode)],
    /// The carried-over `raw`'s variables and `raw/var` columns (its `raw/X` is among
    /// `elements`).
    pub raw: Option<RawVar<'a>>,
    /// The names of the obs, var and raw/var indexes.
    pub index_names: &'a IndexNames,
}

/// The names of the output's dataframe indexes (`None`: unnamed), as the inputs name them:
/// anndata reads them back as `obs.index.name` / `var.index.name`.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexNames {
    pub obs: Option<String>,
    pub var: Option<String>,
    pub raw_var: Option<String>,
}

/// `raw/var` of the output: its variable names and columns.
pub(crate) type RawVar<'a> = (&'a [String], &'a [(String, crate::store::Column)]);

/// One row-aligned matrix of the output besides `X` (a layer, an `obsm` entry): where it
/// goes, and each input's copy of it (in the order of the inputs).
pub(crate) struct Element<'a> {
    /// Path in the dataset: `layers/NAME` or `obsm/NAME`.
    pub path: String,
    /// One per input.
    pub matrices: Vec<&'a dyn RowReader>,
    /// Columns are variables (a layer): remapped to the output var space like `X`.
    pub var_aligned: bool,
    /// Written as CSR (else dense).
    pub sparse: bool,
    /// Output columns of an `obsm` entry (a layer has the output's variables): the values per
    /// row, the product of `tail`.
    pub n_cols: usize,
    /// The dimensions of a row of an `obsm` entry (`[d]`, or more for an N-d array; empty for
    /// a layer).
    pub tail: Vec<u64>,
    /// The stored element type of the output: the inputs' own (joined as numpy promotes).
    pub dtype: Dtype,
    /// Column maps of its own variable space (`raw/X`), instead of `X`'s; then `n_cols` is
    /// that space's size.
    pub maps: Option<&'a [Option<ColumnMap>]>,
}

/// What staging reads: per input, a reader and its column map; the output's columns.
struct Read<'a> {
    readers: Vec<&'a dyn RowReader>,
    maps: Vec<Option<&'a ColumnMap>>,
    n_cols: usize,
}

impl<'a> Read<'a> {
    fn x(shared: &Shared<'a>) -> Self {
        Self {
            readers: shared.x.to_vec(),
            maps: shared.maps.iter().map(Option::as_ref).collect(),
            n_cols: shared.var_names.len(),
        }
    }

    fn element(shared: &Shared<'a>, element: &Element<'a>) -> Self {
        let (maps, n_cols) = match (element.maps, element.var_aligned) {
            (Some(own), _) => (own.iter().map(Option::as_ref).collect(), element.n_cols),
            (None, true) => (
                shared.maps.iter().map(Option::as_ref).collect(),
                shared.var_names.len(),
            ),
            (None, false) => (vec![None; element.matrices.len()], element.n_cols),
        };
        Self {
            readers: element.matrices.clone(),
            maps,
            n_cols,
        }
    }
}

/// A column index type of the output (`uint8` / `uint16` / `uint32`, the smallest that fits).
trait OutIndex: ZarrElement + Copy {
    fn from_u32(v: u32) -> Self;
}
impl OutIndex for u8 {
    fn from_u32(v: u32) -> Self {
        v as u8
    }
}
impl OutIndex for u16 {
    fn from_u32(v: u32) -> Self {
        v as u16
    }
}
impl OutIndex for u32 {
    fn from_u32(v: u32) -> Self {
        v
    }
}

/// Reads `pieces` and writes them as the AnnData group `group` of `writer`, rows in `order`
/// from `permute(n_rows)`. Calls `progress(rows)` as rows are read.
pub(crate) fn write_dataset(
    writer: &Writer,
    group: &str,
    shared: &Shared<'_>,
    pieces: &[Piece],
    permute: impl FnOnce(usize) -> Vec<usize>,
    progress: &dyn Fn(u64) -> Result<()>,
) -> Result<()> {
    let staged = stage::<f32>(&Read::x(shared), shared.sparse, pieces, progress)?;
    let obs_rows: Vec<usize> = pieces
        .iter()
        .flat_map(|p| (p.obs_start..p.obs_start + (p.rows.end - p.rows.start)).map(|r| r as usize))
        .collect();
    let mut order = permute(obs_rows.len());
    if !shared.groupby.is_empty() {
        let keys: Vec<_> = shared
            .groupby
            .iter()
            .map(|name| {
                shared
                    .obs
                    .columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| take(c, &obs_rows))
                    .ok_or_else(|| Error::MissingElement {
                        path: "obs".into(),
                        element: name.clone(),
                    })
            })
            .collect::<Result<_>>()?;
        // Stable: rows of one group keep their shuffled order.
        order.sort_by(|&a, &b| {
            keys.iter()
                .map(|c| compare_rows(c, a, b))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }
    let p = |child: &str| format!("{group}/{child}");
    writer.group(
        group,
        attrs(&[
            ("encoding-type", json!("anndata")),
            ("encoding-version", json!("0.1.0")),
        ]),
    )?;
    // X is float32 (what annbatch's loader and ours read).
    write_staged(writer, &p("X"), &staged, &order, shared, |v: f32| v)?;
    drop(staged);
    // The other matrices one at a time, rows in the same order: memory for one of them. They
    // keep their dtype, staged in a type that holds it exactly (float32 as is, uint64 as
    // u64, other integers as i64, float64, float16 and bool as f64) and written back in its
    // own type.
    for element in shared.elements {
        let read = Read::element(shared, element);
        let path = p(&element.path);
        macro_rules! staged_as {
            ($v:ty, $($dtype:ident => $t:ty),*) => {{
                let mut staged = stage::<$v>(&read, element.sparse, pieces, &|_| Ok(()))?;
                staged.set_tail(&element.tail);
                match element.dtype {
                    $(Dtype::$dtype => write_staged(
                        writer, &path, &staged, &order, shared, <$t as FromStaged<$v>>::from_staged,
                    )?,)*
                    other => {
                        return Err(Error::Internal(format!("{path}: {other} staged as {}",
                            stringify!($v))))
                    }
                }
            }};
        }
        match element.dtype {
            Dtype::F32 => {
                let mut staged = stage::<f32>(&read, element.sparse, pieces, &|_| Ok(()))?;
                staged.set_tail(&element.tail);
                write_staged(writer, &path, &staged, &order, shared, |v: f32| v)?;
            }
            Dtype::U64 => staged_as!(u64, U64 => u64),
            d if d.is_integer() => staged_as!(
                i64, I8 => i8, I16 => i16, I32 => i32, I64 => i64, U8 => u8, U16 => u16,
                U32 => u32
            ),
            _ => staged_as!(f64, F64 => f64, F16 => half::f16, Bool => bool),
        }
    }
    let obs_order: Vec<usize> = order.iter().map(|&r| obs_rows[r]).collect();
    let names: Vec<String> = obs_order
        .iter()
        .map(|&r| shared.obs.names[r].clone())
        .collect();
    let columns: Vec<(String, crate::store::Column)> = shared
        .obs
        .columns
        .iter()
        .map(|(n, c)| (n.clone(), take(c, &obs_order)))
        .collect();
    let names_of = &shared.index_names;
    writer.dataframe(&p("obs"), names_of.obs.as_deref(), &names, &columns)?;
    writer.dataframe(
        &p("var"),
        names_of.var.as_deref(),
        shared.var_names,
        shared.var_columns,
    )?;
    if let Some(uns) = shared.uns {
        super::uns::write(writer, &p("uns"), uns)?;
    }
    for (group, tree) in shared.var_aligned {
        super::uns::write(writer, &p(group), tree)?;
    }
    if let Some((raw_names, raw_columns)) = shared.raw {
        writer.group(
            &p("raw"),
            attrs(&[
                ("encoding-type", json!("raw")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )?;
        writer.dataframe(
            &p("raw/var"),
            names_of.raw_var.as_deref(),
            raw_names,
            raw_columns,
        )?;
        writer.group(
            &p("raw/varm"),
            attrs(&[
                ("encoding-type", json!("dict")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )?;
    }
    // The dict groups (holding the carried-over matrices, or empty).
    for empty in ["layers", "obsm", "obsp", "varm", "varp", "uns"] {
        let written = match empty {
            "uns" => shared.uns.is_some(),
            _ => shared.var_aligned.iter().any(|(g, _)| *g == empty),
        };
        if written {
            continue;
        }
        writer.group(
            &p(empty),
            attrs(&[
                ("encoding-type", json!("dict")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )?;
    }
    Ok(())
}

/// How staging reads values of type `V` from a [`RowReader`].
trait ReadAs: RowValue {
    fn batch(reader: &dyn RowReader) -> XBatch<Self>;
    fn read(reader: &dyn RowReader, ranges: &[Range<u64>], out: &mut XBatch<Self>) -> Result<()>;
}

impl ReadAs for f32 {
    fn batch(reader: &dyn RowReader) -> XBatch<f32> {
        reader.new_batch()
    }
    fn read(reader: &dyn RowReader, ranges: &[Range<u64>], out: &mut XBatch<f32>) -> Result<()> {
        reader.read_rows(ranges, out)
    }
}

macro_rules! read_as {
    ($t:ty, $read:ident) => {
        impl ReadAs for $t {
            fn batch(reader: &dyn RowReader) -> XBatch<$t> {
                empty_batch(reader)
            }
            fn read(
                reader: &dyn RowReader,
                ranges: &[Range<u64>],
                out: &mut XBatch<$t>,
            ) -> Result<()> {
                reader.$read(ranges, out)
            }
        }
    };
}
read_as!(f64, read_rows_wide);
read_as!(i64, read_rows_i64);
read_as!(u64, read_rows_u64);

/// An output element type made from a staged value of type `V` (exact for the input's own
/// type: staging chose `V` to hold it).
trait FromStaged<V>: ZarrElement + Copy {
    fn from_staged(v: V) -> Self;
}

macro_rules! from_staged {
    ($v:ty => $($t:ty),*) => {$(
        impl FromStaged<$v> for $t {
            fn from_staged(v: $v) -> Self {
                v as $t
            }
        }
    )*};
}
from_staged!(f64 => f32, f64);
from_staged!(i64 => i8, i16, i32, i64, u8, u16, u32);
from_staged!(u64 => u64);
impl FromStaged<f64> for half::f16 {
    fn from_staged(v: f64) -> Self {
        half::f16::from_f64(v)
    }
}
impl FromStaged<f64> for bool {
    fn from_staged(v: f64) -> Self {
        v != 0.0
    }
}

/// The dtype the inputs' copies of one matrix are stored as in the output: numpy's promotion
/// of their dtypes (what `anndata.concat` stores), e.g. int16 + uint8 → int16, int64 + uint64
/// → float64, int16 + float32 → float32, int32 + float32 → float64.
pub(crate) fn joined_dtype(dtypes: impl IntoIterator<Item = Dtype>) -> Dtype {
    dtypes
        .into_iter()
        .reduce(Dtype::promote)
        .unwrap_or(Dtype::F32)
}

/// The dtype a matrix of joined dtype `dtype` is written in: its own, except float16 in a
/// sparse matrix, which scipy (so anndata) cannot hold: float32, exact.
pub(crate) fn stored_dtype(dtype: Dtype, sparse: bool) -> Dtype {
    match dtype {
        Dtype::F16 if sparse => Dtype::F32,
        d => d,
    }
}

/// Stages the rows of `pieces` as CSR (the smallest column index type that fits) or dense.
fn stage<V: ReadAs>(
    read: &Read<'_>,
    sparse: bool,
    pieces: &[Piece],
    progress: &dyn Fn(u64) -> Result<()>,
) -> Result<Staged<V>> {
    let n_cols = read.n_cols as u64;
    Ok(if !sparse {
        Staged::Dense(stage_dense(read, pieces, progress)?)
    } else if n_cols <= u64::from(u8::MAX) {
        Staged::U8(stage_csr(read, pieces, progress)?, n_cols)
    } else if n_cols <= u64::from(u16::MAX) {
        Staged::U16(stage_csr(read, pieces, progress)?, n_cols)
    } else {
        Staged::U32(stage_csr(read, pieces, progress)?, n_cols)
    })
}

/// Writes staged rows as elements of type `T`, each made by `out` from its staged value.
fn write_staged<V: RowValue, T: ZarrElement>(
    writer: &Writer,
    path: &str,
    staged: &Staged<V>,
    order: &[usize],
    shared: &Shared<'_>,
    out: fn(V) -> T,
) -> Result<()> {
    match staged {
        Staged::U8(s, n) => write_csr(writer, path, s, *n, order, shared, out),
        Staged::U16(s, n) => write_csr(writer, path, s, *n, order, shared, out),
        Staged::U32(s, n) => write_csr(writer, path, s, *n, order, shared, out),
        Staged::Dense(s) => write_dense(writer, path, s, order, shared, out),
    }
}

/// Staged rows; CSR with its number of columns.
enum Staged<V> {
    U8(StagedCsr<u8, V>, u64),
    U16(StagedCsr<u16, V>, u64),
    U32(StagedCsr<u32, V>, u64),
    Dense(StagedDense<V>),
}

/// Rows in read order: row `r` is `data[offsets[r]..offsets[r + 1]]`.
struct StagedCsr<I, V> {
    data: Vec<V>,
    indices: Vec<I>,
    offsets: Vec<u64>,
}

struct StagedDense<V> {
    data: Vec<V>,
    width: usize,
    /// The dimensions of a row when it has more than one (an N-d obsm entry).
    tail: Vec<u64>,
}

impl<V> Staged<V> {
    /// Gives dense rows of an N-d array their dimensions (`tail`, whose product is the row
    /// width); ignored otherwise.
    fn set_tail(&mut self, tail: &[u64]) {
        if let Staged::Dense(d) = self {
            if tail.len() > 1 && tail.iter().product::<u64>() == d.width as u64 {
                d.tail = tail.to_vec();
            }
        }
    }
}

/// Reads `pieces` in order on a reader thread (two batches in flight, recycled) and calls
/// `consume(batch, map)` for each on this thread, so that reading and staging overlap.
fn for_each_batch<V: ReadAs>(
    read: &Read<'_>,
    pieces: &[Piece],
    progress: &dyn Fn(u64) -> Result<()>,
    mut consume: impl FnMut(&XBatch<V>, Option<&ColumnMap>),
) -> Result<()> {
    let sources = &read.readers;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = crossbeam_channel::bounded::<Result<(usize, XBatch<V>)>>(2);
        let (empty_tx, empty_rx) = crossbeam_channel::unbounded::<(usize, XBatch<V>)>();
        let reader = scope.spawn(move || {
            let mut stash: Vec<Vec<XBatch<V>>> = (0..sources.len()).map(|_| Vec::new()).collect();
            for piece in pieces {
                let source = sources[piece.source];
                let mut start = piece.rows.start;
                while start < piece.rows.end {
                    let end = (start + READ_ROWS).min(piece.rows.end);
                    for (i, b) in empty_rx.try_iter() {
                        stash[i].push(b);
                    }
                    let mut batch = stash[piece.source]
                        .pop()
                        .unwrap_or_else(|| V::batch(source));
                    let read = V::read(source, &[start..end], &mut batch)
                        .map(|()| (piece.source, batch))
                        .map_err(|e| e.in_input(source.path()));
                    let failed = read.is_err();
                    if full_tx.send(read).is_err() || failed {
                        return;
                    }
                    start = end;
                }
            }
        });
        let mut result = Ok(());
        for message in full_rx.iter() {
            match message {
                Ok((i, batch)) => {
                    consume(&batch, read.maps[i]);
                    if let Err(e) = progress(batch.n_rows() as u64) {
                        // Leaving drops the channel: the reader thread stops at its next send.
                        result = Err(e);
                        break;
                    }
                    let _ = empty_tx.send((i, batch));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(full_rx);
        match reader.join() {
            Ok(()) => result,
            Err(panic) => Err(Error::WorkerPanic {
                message: crate::error::panic_message(panic.as_ref()),
            }),
        }
    })
}

/// Row `i` of `batch` as `(column, value)` entries in the output var space (dropped columns
/// removed, sorted by column), into `entries`.
fn row_entries<V: RowValue>(
    batch: &XBatch<V>,
    i: usize,
    map: Option<&ColumnMap>,
    entries: &mut Vec<(u32, V)>,
) {
    entries.clear();
    match batch {
        XBatch::Csr(b) => {
            if let Some((cols, vals)) = b.row(i) {
                entries.extend(cols.iter().map(|&c| c as u32).zip(vals.iter().copied()));
            }
        }
        XBatch::Dense(b) => {
            if let Some(vals) = b.row(i) {
                entries.extend(
                    vals.iter()
                        .enumerate()
                        .filter(|(_, v)| !v.is_zero())
                        .map(|(c, &v)| (c as u32, v)),
                );
            }
        }
    }
    if let Some(map) = map {
        entries.retain_mut(|(c, _)| {
            *c = map.to.get(*c as usize).copied().unwrap_or(DROPPED);
            *c != DROPPED
        });
        if !map.monotone {
            entries.sort_unstable_by_key(|&(c, _)| c);
        }
    }
}

fn stage_csr<I: OutIndex, V: ReadAs>(
    read: &Read<'_>,
    pieces: &[Piece],
    progress: &dyn Fn(u64) -> Result<()>,
) -> Result<StagedCsr<I, V>> {
    let n_rows: u64 = pieces.iter().map(|p| p.rows.end - p.rows.start).sum();
    // Exact when every source is CSR: one allocation per dataset.
    let nnz: u64 = pieces
        .iter()
        .filter_map(|p| {
            let indptr = read.readers[p.source].indptr()?;
            Some(indptr[p.rows.end as usize] - indptr[p.rows.start as usize])
        })
        .sum();
    let mut staged = StagedCsr {
        data: Vec::with_capacity(nnz as usize),
        indices: Vec::with_capacity(nnz as usize),
        offsets: Vec::with_capacity(n_rows as usize + 1),
    };
    staged.offsets.push(0);
    let mut entries = Vec::new();
    for_each_batch(read, pieces, progress, |batch: &XBatch<V>, map| {
        match (batch, map) {
            // The common case: same var space, CSR in, CSR out: whole-batch copies.
            (XBatch::Csr(b), None) => {
                let base = staged.data.len() as u64;
                staged.data.extend_from_slice(&b.data);
                staged
                    .indices
                    .extend(b.indices.iter().map(|&c| I::from_u32(c as u32)));
                staged
                    .offsets
                    .extend(b.indptr[1..].iter().map(|&p| base + p as u64));
            }
            _ => {
                for i in 0..batch.n_rows() {
                    row_entries(batch, i, map, &mut entries);
                    staged.data.extend(entries.iter().map(|&(_, v)| v));
                    staged
                        .indices
                        .extend(entries.iter().map(|&(c, _)| I::from_u32(c)));
                    staged.offsets.push(staged.data.len() as u64);
                }
            }
        }
    })?;
    Ok(staged)
}

fn stage_dense<V: ReadAs>(
    read: &Read<'_>,
    pieces: &[Piece],
    progress: &dyn Fn(u64) -> Result<()>,
) -> Result<StagedDense<V>> {
    let width = read.n_cols;
    let n_rows: u64 = pieces.iter().map(|p| p.rows.end - p.rows.start).sum();
    // `width` of an obsm entry is its shape as the file claims it: checked before allocating.
    let path = read
        .readers
        .first()
        .map_or_else(String::new, |r| r.path().display().to_string());
    budget::check(
        &path,
        "one dataset of a dense matrix in memory",
        u128::from(n_rows) * width as u128,
        std::mem::size_of::<V>() as u64,
        1,
    )?;
    let mut data = Vec::with_capacity(n_rows as usize * width);
    let mut entries = Vec::new();
    for_each_batch(read, pieces, progress, |batch: &XBatch<V>, map| {
        match (batch, map) {
            (XBatch::Dense(b), None) => data.extend_from_slice(&b.data),
            _ => {
                for i in 0..batch.n_rows() {
                    row_entries(batch, i, map, &mut entries);
                    let start = data.len();
                    data.resize(start + width, V::default());
                    for &(c, v) in &entries {
                        data[start + c as usize] = v;
                    }
                }
            }
        }
    })?;
    Ok(StagedDense {
        data,
        width,
        tail: Vec::new(),
    })
}

fn write_csr<I: OutIndex, V: RowValue, T: ZarrElement>(
    writer: &Writer,
    path: &str,
    staged: &StagedCsr<I, V>,
    n_var: u64,
    order: &[usize],
    shared: &Shared<'_>,
    out: fn(V) -> T,
) -> Result<()> {
    let n_obs = order.len() as u64;
    let mut indptr: Vec<i64> = Vec::with_capacity(order.len() + 1);
    indptr.push(0);
    let mut total = 0i64;
    for &r in order {
        total += (staged.offsets[r + 1] - staged.offsets[r]) as i64;
        indptr.push(total);
    }
    let nnz = total as u64;
    // annbatch's write_sharded: element counts from the average nnz per row; bytes per row of
    // the in-memory scipy matrix (float32 data, int32 indices and indptr).
    let avg = nnz as f64 / n_obs.max(1) as f64;
    let chunk_rows = shared.n_obs_per_chunk.min(n_obs).max(1);
    let bytes_per_row = (nnz * 8 + (n_obs + 1) * 4) as f64 / n_obs.max(1) as f64;
    // annbatch's `_shard_size_param_to_n_obs`.
    let shard_obs = shared.shard_size.rows(bytes_per_row);
    let mut chunk = ((chunk_rows as f64 * avg) as u64).max(1);
    let mut shard = ((shard_obs as f64 * avg) as u64).max(1);
    if nnz > 0 {
        chunk = chunk.min(nnz);
        shard = shard.min(nnz);
    }
    let shard = chunk.max(shard - shard % chunk);
    writer.group(
        path,
        attrs(&[
            ("encoding-type", json!("csr_matrix")),
            ("encoding-version", json!("0.1.0")),
            ("shape", json!([n_obs, n_var])),
        ]),
    )?;
    // Calls `f` with the staged spans that make up output elements `elements`, in order.
    let gather = |elements: Range<u64>, f: &mut dyn FnMut(Range<usize>)| {
        // The first output row whose entries reach past `elements.start`.
        let mut r = indptr.partition_point(|&p| p as u64 <= elements.start) - 1;
        while r < order.len() && (indptr[r] as u64) < elements.end {
            let (a, b) = (indptr[r] as u64, indptr[r + 1] as u64);
            let (lo, hi) = (a.max(elements.start), b.min(elements.end));
            if lo < hi {
                let base = staged.offsets[order[r]];
                f((base + lo - a) as usize..(base + hi - a) as usize);
            }
            r += 1;
        }
    };
    write_gathered(
        writer,
        &format!("{path}/data"),
        &staged.data,
        out,
        nnz,
        (chunk, shard),
        shared.compressor,
        &gather,
    )?;
    write_gathered(
        writer,
        &format!("{path}/indices"),
        &staged.indices,
        |i: I| i,
        nnz,
        (chunk, shard),
        shared.compressor,
        &gather,
    )?;
    writer.array(
        &format!("{path}/indptr"),
        &indptr,
        &[n_obs + 1],
        (n_obs + 1, n_obs + 1),
        shared.compressor,
        Default::default(),
    )
}

/// Calls its second argument with the staged spans that make up a range of output elements.
type Gather<'a> = dyn Fn(Range<u64>, &mut dyn FnMut(Range<usize>)) + Sync + 'a;

/// Writes the 1-D array `path` of `len` elements, gathered from spans of `values` (each made
/// an element by `out`).
// One argument per part of the array's description; a struct would only name them again.
#[allow(clippy::too_many_arguments)]
fn write_gathered<S: Copy + Sync, T: ZarrElement>(
    writer: &Writer,
    path: &str,
    values: &[S],
    out: fn(S) -> T,
    len: u64,
    chunking: (u64, u64),
    compressor: Compressor,
    gather: &Gather<'_>,
) -> Result<()> {
    writer
        .sharded_array::<T>(path, &[len], chunking, compressor, Default::default())?
        .write_with(|elements, buffer| {
            gather(elements, &mut |s| {
                buffer.extend(values[s].iter().map(|&v| out(v)));
            });
            Ok(())
        })
}

fn write_dense<V: RowValue, T: ZarrElement>(
    writer: &Writer,
    path: &str,
    staged: &StagedDense<V>,
    order: &[usize],
    shared: &Shared<'_>,
    out: fn(V) -> T,
) -> Result<()> {
    let n_obs = order.len() as u64;
    let width = staged.width;
    let chunk = shared.n_obs_per_chunk.min(n_obs).max(1);
    let item = std::mem::size_of::<T>();
    let shard_obs = shared.shard_size.rows((width * item) as f64).min(n_obs);
    let mut shape = vec![n_obs];
    if staged.tail.is_empty() {
        shape.push(width as u64);
    } else {
        shape.extend(&staged.tail);
    }
    let shard = chunk.max(shard_obs - shard_obs % chunk);
    writer
        .sharded_array::<T>(
            path,
            &shape,
            (chunk, shard),
            shared.compressor,
            attrs(&[
                ("encoding-type", json!("array")),
                ("encoding-version", json!("0.2.0")),
            ]),
        )?
        .write_with(|rows, buffer| {
            for r in rows {
                let s = order[r as usize] * width;
                buffer.extend(staged.data[s..s + width].iter().map(|&v| out(v)));
            }
            Ok(())
        })
}
