//! Preprocessing: many `.h5ad` / zarr AnnData inputs → one shuffled, sharded collection in
//! annbatch's on-disk format (annbatch's `DatasetCollection.add_adatas`).
//!
//! ```text
//!  inputs (rows 0..N, concatenated)      blocks of shuffle_chunk_size rows, shuffled
//!  ┌────────┬──────────┬─────┐           ┌──┬──┬──┬──┬──┬──┬──┬──┐
//!  │ a.h5ad │ b.zarr   │ ... │  ──────▶  │7 │2 │9 │0 │5 │3 │8 │1 │ ...
//!  └────────┴──────────┴─────┘           └──┴──┴──┴──┴──┴──┴──┴──┘
//!                                          dataset_0   dataset_1 ...  (dataset_size rows each)
//!  each dataset: its blocks read in row order, rows permuted in memory (then `groupby`),
//!  X written sharded (blosc-lz4 inner chunks), obs (+ src_path) and var written.
//! ```
//!
//! Memory is bounded by one dataset (`dataset_size`) plus a small constant: inner chunks are
//! gathered and encoded a window at a time ([`crate::store::write`]).
//!
//! The var spaces are outer-joined (or cut to `var_subset`); obs columns are joined the way
//! `anndata.concat(join="outer")` does; the index is made unique. `X` is stored as float32 (what
//! the loader hands out): inputs of other dtypes are cast, and the report says so.
//!
//! Appending to an existing collection (annbatch's second `add_adatas` call) deals the new rows
//! out across its datasets, each re-permuted, in the collection's var space. Either way the
//! result is published atomically: an interrupted run never leaves a collection that looks
//! complete: it is written into a hidden sibling directory and published with one rename.
//! Writers of one output take turns (an advisory lock beside it, see `lock.rs`): a second
//! conversion or append waits for the first and then appends to what it published. The root
//! records each dataset's row count (see `collection/inventory.rs`), checked on open.
//!
//! An output URL (`s3://bucket/prefix/c.zarr`, feature `remote`) gets a new collection, staged
//! on local disk and then uploaded (see `convert/to_object_store.rs`).
//!
//! ```no_run
//! # fn main() -> annbatch::Result<()> {
//! use annbatch::convert::{add_adatas, ConvertOptions};
//!
//! let options = ConvertOptions { seed: Some(0), ..ConvertOptions::default() };
//! let report = add_adatas("collection.zarr", &["a.h5ad", "b.zarr"], &options)?;
//! println!("{} cells x {} genes in {} datasets", report.n_obs, report.n_var, report.datasets);
//! # Ok(()) }
//! ```

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

mod dataset;
mod elements;
mod lock;
mod obs_table;
mod plan;
mod publish;
mod raw;
mod row_reader;
mod size;
mod source;
mod to_object_store;
mod transpose;
mod uns;
use crate::store::var_space;
mod var_table;

pub use var_table::VarMerge;

use dataset::{write_dataset, Piece, Shared};
use obs_table::{ObsPart, ObsTable};
use row_reader::RowReader;
pub use size::Size;
use source::Source;

use crate::collection::Inventory;
use crate::error::{Error, Result};
use crate::storage::{url_of, RemoteOptions};
use crate::store::write::{attrs, Compressor, Writer};
use crate::store::Column;
use crate::zarr::Dtype;

/// annbatch's `add_adatas` parameters, with its defaults.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Rows per inner zarr chunk (for CSR: times the average nnz per row). Default 64.
    pub n_obs_per_chunk: u64,
    /// Rows per shard file, or a byte size per shard (of the uncompressed matrix). Default 1GB.
    pub shard_size: Size,
    /// Rows per output dataset, or a byte budget for one dataset in memory, which is what
    /// bounds the conversion's memory. Default 20GB. Ignored when appending.
    pub dataset_size: Size,
    /// Contiguous input rows kept together by the shuffle. Default 1000.
    pub shuffle_chunk_size: u64,
    /// Shuffle rows across and within datasets. Default true.
    pub shuffle: bool,
    /// Seed of the shuffle; `None` draws one (reported, so the run can be repeated).
    pub seed: Option<u64>,
    /// Keep only these variables (a new collection only; appending uses the collection's).
    pub var_subset: Option<Vec<String>>,
    /// obs columns to stable-sort each dataset by, after the shuffle.
    pub groupby: Vec<String>,
    /// No progress bar.
    pub quiet: bool,
    /// Append an input even when it shares no variable with the collection (its rows would be
    /// all zeros). Default false: such an input is refused, as it is almost always the wrong
    /// file or another species' gene ids.
    pub allow_disjoint_var: bool,
    /// The compressor of `X`'s inner chunks (annbatch's `zarr_compressor`). Default
    /// [`Compressor::None`], chosen by measurement (README, "Performance"): uncompressed inner
    /// chunks are read byte-exact with no decoding, ~8-9x annbatch end to end against ~3-4x on
    /// annbatch's blosc-lz4, at 1.25-2.6x its size on disk. [`Compressor::BloscLz4`] is
    /// annbatch's own (the compact choice); anndata and annbatch read every one of them.
    pub compressor: Compressor,
    /// The layer that becomes `X` (`layers/NAME` of every input; of every new input when
    /// appending); the inputs' own `X` is kept as `layers/X`. Default: `X` stays `X`.
    pub layer: Option<String>,
    /// How var columns of several inputs are merged (annbatch's `merge`). `None`, the default:
    /// one input keeps its var columns, several keep none, as `anndata.concat`. Appending keeps
    /// the collection's.
    pub merge: Option<VarMerge>,
    /// How an output in object storage (`s3://…`) is reached: endpoint, credentials, timeouts.
    /// Default: [`RemoteOptions::default`] (the AWS environment).
    pub remote: RemoteOptions,
    /// Where a conversion into object storage stages the collection before uploading it (it
    /// needs the collection's size on disk). Default: `ANNBATCH_STAGING_DIR`, else the system's
    /// temporary directory.
    pub staging_dir: Option<PathBuf>,
    /// Told the rows read so far, the total and the dataset being written, about once per
    /// percent (and at the end), whatever `quiet` says: how a front end shows progress where
    /// stderr is no terminal (a notebook, a log). Default: none.
    pub on_progress: Option<ProgressHook>,
    /// What `obs/src_path` names each input, in the order given (e.g. the file a scratch copy
    /// was made from). Default: the input's path.
    pub src_paths: Option<Vec<String>>,
    /// Set to stop the conversion (the command-line tool sets it on SIGINT / SIGTERM): it
    /// ends with [`Error::Interrupted`] as rows are read or objects uploaded, leaving nothing
    /// behind (no output, no staging copy, no object). Default: none.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// `(rows done, rows in all, dataset name)`: what a [`ProgressHook`] is told.
pub type ProgressFn = dyn Fn(u64, u64, &str) + Send + Sync;

/// A callback for [`ConvertOptions::on_progress`].
#[derive(Clone)]
pub struct ProgressHook(pub Arc<ProgressFn>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            n_obs_per_chunk: 64,
            shard_size: Size::Bytes(1 << 30),
            dataset_size: Size::Bytes(20 << 30),
            shuffle_chunk_size: 1000,
            shuffle: true,
            seed: None,
            var_subset: None,
            groupby: Vec::new(),
            quiet: false,
            allow_disjoint_var: false,
            compressor: Compressor::None,
            layer: None,
            merge: None,
            remote: RemoteOptions::default(),
            staging_dir: None,
            on_progress: None,
            cancel: None,
            src_paths: None,
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// Rows in the collection afterwards.
    pub n_obs: u64,
    /// Variables of the collection.
    pub n_var: u64,
    /// Datasets in the collection.
    pub datasets: usize,
    /// Rows added by this run.
    pub added: u64,
    /// Whether the run appended to an existing collection.
    pub appended: bool,
    /// The shuffle seed used.
    pub seed: u64,
    /// Things the user should know (dtype casts, dropped genes).
    pub notes: Vec<String>,
}

/// What the output path holds.
enum Output {
    New,
    Collection(crate::collection::DatasetCollection),
}

fn inspect_output(path: &Path) -> Result<Output> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Output::New),
        Err(e) => return Err(io(e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::OutputExists {
                path: path.to_path_buf(),
                found: "a file".into(),
            })
        }
        Ok(_) => {}
    }
    if std::fs::read_dir(path).map_err(io)?.next().is_none() || publish::is_empty_group(path) {
        return Ok(Output::New);
    }
    match crate::collection::DatasetCollection::open(path) {
        Ok(c) if c.is_preshuffled() => Ok(Output::Collection(c)),
        Ok(_) => Err(Error::OutputExists {
            path: path.to_path_buf(),
            found: "an AnnData store that is not an annbatch collection".into(),
        }),
        Err(e) => Err(Error::OutputExists {
            path: path.to_path_buf(),
            found: format!("a non-empty directory that is not a collection ({e})"),
        }),
    }
}

/// Converts `inputs` (`.h5ad` files or zarr AnnData stores) into the collection at `output`,
/// or appends them to the collection already there. See the [module docs](self).
///
/// # Errors
/// [`Error::Input`] naming the input that cannot be read, [`Error::OutputExists`] for an output
/// that is not a collection, [`Error::InvalidParameter`] for bad options, [`Error::Io`] when
/// writing fails (the output is then left as it was).
pub fn add_adatas<P: AsRef<Path>>(
    output: impl AsRef<Path>,
    inputs: &[P],
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    let output = output.as_ref();
    if inputs.is_empty() {
        return Err(Error::parameter(
            "adata_paths",
            "[]",
            "at least one input is needed",
        ));
    }
    for (name, value) in [
        ("n_obs_per_chunk", options.n_obs_per_chunk),
        ("shuffle_chunk_size", options.shuffle_chunk_size),
    ] {
        if value == 0 {
            return Err(Error::parameter(name, 0, "must be at least 1"));
        }
    }
    if matches!(options.shard_size, Size::Rows(0)) || matches!(options.dataset_size, Size::Rows(0))
    {
        return Err(Error::parameter(
            "shard_size / dataset_size",
            0,
            "must be at least 1",
        ));
    }
    if let Some(names) = &options.src_paths {
        if names.len() != inputs.len() {
            return Err(Error::parameter(
                "src_paths",
                names.len(),
                format!("one per input ({} inputs)", inputs.len()),
            ));
        }
    }
    if let Some(url) = url_of(output) {
        return to_object_store::add_adatas(url, inputs, options);
    }
    // Through a symlink the collection is where the link points: locked and published there,
    // so writers through either name take turns and the link stays a link.
    let resolved;
    let output = match std::fs::symlink_metadata(output) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(output).map_err(|source| Error::Io {
                path: output.to_path_buf(),
                source,
            })?;
            resolved.as_path()
        }
        _ => output,
    };
    // Held until this function returns: what is read below is what the last writer published.
    let _lock = lock::WriteLock::acquire(output, options.quiet)?;
    let existing = inspect_output(output)?;
    let sources: Vec<Source> = inputs
        .iter()
        .map(|p| Source::open(p.as_ref()).map_err(|e| e.in_input(p.as_ref())))
        .collect::<Result<_>>()?;
    let mut notes = Vec::new();
    for s in &sources {
        if let Some(bands) = s.transposed_bands() {
            notes.push(transposed_note(
                &format!("{}: X", s.path().display()),
                bands,
            ));
        }
        if s.x_dtype() != Dtype::F32 {
            notes.push(format!(
                "{}: X is {}; stored as float32 (a collection holds one dtype)",
                s.path().display(),
                s.x_dtype()
            ));
        }
    }
    let seed = options.seed.unwrap_or_else(rand::random);
    match existing {
        Output::New => create(output, sources, options, seed, notes),
        Output::Collection(c) => append(output, c, sources, options, seed, notes),
    }
}

/// What transposing a CSC matrix cost.
pub(crate) fn transposed_note(what: &str, bands: usize) -> String {
    format!(
        "{what} is CSC (stored by columns): transposed to rows in {bands} band(s), reading its \
         values {} times and writing them once to a scratch file under TMPDIR; writing it as \
         CSR first avoids this",
        bands + 1
    )
}

/// What `obs/src_path` names input `i` (`source`): [`ConvertOptions::src_paths`] or its path.
fn src_path_of(options: &ConvertOptions, i: usize, source: &Source) -> String {
    options
        .src_paths
        .as_ref()
        .and_then(|names| names.get(i).cloned())
        .unwrap_or_else(|| source.path().display().to_string())
}

/// The obs of one source. With `src_path`, an input file: annbatch's `src_path` column is
/// (re)set to it; without, a dataset of the collection, kept as it is.
fn source_obs(source: &Source, src_path: Option<String>) -> Result<ObsPart> {
    let path = source.path();
    let n_obs = source.n_obs() as usize;
    let mut columns = Vec::new();
    for name in source.obs_columns().map_err(|e| e.in_input(path))? {
        if src_path.is_some() && name == "src_path" {
            continue;
        }
        let column = source.obs_column(&name).map_err(|e| e.in_input(path))?;
        columns.push((name, column));
    }
    if let Some(label) = src_path {
        columns.push((
            "src_path".to_string(),
            Column::categorical(vec![0; n_obs], vec![label], false),
        ));
    }
    Ok(ObsPart {
        n_obs,
        names: source.obs_names().map_err(|e| e.in_input(path))?,
        columns,
    })
}

/// A dataset's rows as pieces of sources: `ranges` are rows of the concatenation of sources
/// `first..`, starting at obs row `obs_base`.
fn pieces_of(sources: &[Source], first: usize, obs_base: u64, ranges: &[Range<u64>]) -> Vec<Piece> {
    let mut starts = Vec::with_capacity(sources.len() - first + 1);
    let mut total = 0;
    for s in &sources[first..] {
        starts.push(total);
        total += s.n_obs();
    }
    starts.push(total);
    let mut pieces = Vec::new();
    for r in ranges {
        let mut row = r.start;
        while row < r.end {
            let i = starts.partition_point(|&s| s <= row) - 1;
            let end = r.end.min(starts[i + 1]);
            pieces.push(Piece {
                source: first + i,
                rows: row - starts[i]..end - starts[i],
                obs_start: obs_base + row,
            });
            row = end;
        }
    }
    pieces
}

fn permutation(shuffle: bool, seed: u64, dataset: usize) -> impl FnOnce(usize) -> Vec<usize> {
    move |n| {
        let mut order: Vec<usize> = (0..n).collect();
        if shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(dataset as u64 + 1);
            order.shuffle(&mut rng);
        }
        order
    }
}

/// Where `swapped[i]`, input `i`'s layer `layer`, opened to be read as its `X`.
///
/// # Errors
/// [`Error::MissingElement`] / [`Error::ShapeMismatch`] naming an input without that layer, or
/// with one that is not over its variables.
fn x_layers(
    sources: &[Source],
    layer: Option<&str>,
    swapped: &[bool],
) -> Result<Vec<Option<source::Matrix>>> {
    sources
        .iter()
        .zip(swapped)
        .map(|(s, &swap)| {
            let Some(name) = layer.filter(|_| swap) else {
                return Ok(None);
            };
            let path = format!("layers/{name}");
            let m = s.matrix(&path).map_err(|e| e.in_input(s.path()))?;
            let n_cols = m.n_cols();
            if m.tail().len() != 1 || n_cols != s.var_names().len() as u64 {
                return Err(Error::ShapeMismatch {
                    path: format!("{}/{path}", s.path().display()),
                    found: format!("{n_cols} columns"),
                    expected: format!("{} (the input's variables)", s.var_names().len()),
                });
            }
            Ok(Some(m))
        })
        .collect()
}

/// Each input's `X` reader: its layer where one was opened, else its own `X`.
fn x_readers<'a>(
    sources: &'a [Source],
    layers: &'a [Option<source::Matrix>],
) -> Vec<&'a dyn RowReader> {
    sources
        .iter()
        .zip(layers)
        .map(|(s, l)| match l {
            Some(m) => m as &dyn RowReader,
            None => s as &dyn RowReader,
        })
        .collect()
}

/// Estimated bytes of one row held in memory while its dataset is written.
fn staged_bytes_per_row(
    sources: &[Source],
    x: &[&dyn RowReader],
    n_var: usize,
    sparse: bool,
) -> f64 {
    let rows: u64 = sources.iter().map(Source::n_obs).sum::<u64>().max(1);
    if !sparse {
        return (n_var * 4 + 16) as f64;
    }
    let nnz: f64 = sources
        .iter()
        .zip(x)
        .map(|(s, x)| match x.indptr() {
            Some(p) => p.last().copied().unwrap_or(0) as f64,
            None => s.n_obs() as f64 * n_var as f64 / 2.0,
        })
        .sum();
    let index_bytes = if n_var <= 255 {
        1.0
    } else if n_var <= 65_535 {
        2.0
    } else {
        4.0
    };
    // values + column indices, plus the staged offset, output indptr and order of each row.
    nnz / rows as f64 * (4.0 + index_bytes) + 24.0
}

/// A conversion's progress: a bar on a terminal (unless quiet), and the options' hook.
struct Progress {
    bar: indicatif::ProgressBar,
    hook: Option<ProgressHook>,
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    /// `done` when the hook was last told.
    told: std::sync::atomic::AtomicU64,
    dataset: std::sync::Mutex<String>,
}

impl Progress {
    fn new(total: u64, options: &ConvertOptions) -> Self {
        let bar = if options.quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(total)
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {human_pos}/{human_len} cells read (eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            hook: options.on_progress.clone(),
            cancel: options.cancel.clone(),
            total,
            done: 0.into(),
            told: 0.into(),
            dataset: std::sync::Mutex::new(String::new()),
        }
    }

    fn set_dataset(&self, name: &str) {
        self.bar.set_message(name.to_string());
        if let Ok(mut d) = self.dataset.lock() {
            name.clone_into(&mut d);
        }
    }

    /// Counts `rows` read; [`Error::Interrupted`] once the caller asked to stop.
    fn inc(&self, rows: u64) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.cancel.as_ref().is_some_and(|c| c.load(Relaxed)) {
            return Err(Error::Interrupted {
                during: "reading the inputs".into(),
                cleanup: "nothing was written".into(),
            });
        }
        self.bar.inc(rows);
        let done = self.done.fetch_add(rows, Relaxed) + rows;
        let step = (self.total / 100).max(1);
        if done - self.told.load(Relaxed) >= step || done >= self.total {
            self.told.store(done, Relaxed);
            self.tell(done);
        }
        Ok(())
    }

    fn tell(&self, done: u64) {
        if let Some(hook) = &self.hook {
            let name = self.dataset.lock().map(|d| d.clone()).unwrap_or_default();
            (hook.0)(done, self.total, &name);
        }
    }

    fn finish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bar.finish_and_clear();
        let done = self.done.load(Relaxed);
        if self.told.load(Relaxed) != done {
            self.tell(done);
        }
    }
}

fn create(
    output: &Path,
    sources: Vec<Source>,
    options: &ConvertOptions,
    seed: u64,
    mut notes: Vec<String>,
) -> Result<ConvertReport> {
    let space = var_space_of(&sources, None, options.var_subset.as_deref())?;
    let n_obs: u64 = sources.iter().map(Source::n_obs).sum();
    if n_obs == 0 {
        let paths: Vec<String> = sources
            .iter()
            .map(|s| s.path().display().to_string())
            .collect();
        return Err(Error::EmptyInput {
            path: paths.join(", "),
        });
    }
    let obs = joined_obs(&sources, 0, options, &mut notes)?;
    let swapped = vec![options.layer.is_some(); sources.len()];
    let (layers, carried) = open_rows(&sources, &swapped, 0, options, &mut notes)?;
    let x = x_readers(&sources, &layers);
    let sparse = x.iter().any(|r| r.indptr().is_some());
    let dataset_rows = options.dataset_size.rows(staged_bytes_per_row(
        &sources,
        &x,
        space.names.len(),
        sparse,
    ));
    if options.shuffle_chunk_size > dataset_rows {
        return Err(Error::parameter(
            "shuffle_chunk_size",
            options.shuffle_chunk_size,
            format!("larger than the {dataset_rows} rows per dataset that dataset_size gives"),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let datasets = plan::new_datasets(
        n_obs,
        options.shuffle_chunk_size,
        dataset_rows,
        options.shuffle,
        &mut rng,
    );
    let parts = sources
        .iter()
        .zip(&space.maps)
        .map(|(s, map)| {
            Ok(var_table::VarPart {
                columns: s.var_columns().map_err(|e| e.in_input(s.path()))?,
                map: map.as_ref(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let var_columns = var_table::join(parts, space.names.len(), options.merge);
    let kept = Kept {
        uns: uns_of(&sources, options.merge, &mut notes),
        var_aligned: var_aligned_of(&sources, space.maps.iter().all(Option::is_none), &mut notes),
        raw: raw::open(&sources, None, options.merge, &mut notes)?,
        index_names: index_names_of(&sources),
    };
    let elements = kept.with_raw(carried.elements(&sources));
    let staging = publish::Staging::begin(output)?;
    let writer = Writer::create(&staging.dir)?;
    let shared = shared(
        &x,
        &space,
        &var_columns,
        &elements,
        &kept,
        &obs,
        sparse,
        options,
    );
    let progress = Progress::new(n_obs, options);
    for (i, ranges) in datasets.iter().enumerate() {
        progress.set_dataset(&format!("dataset_{i}"));
        let pieces = pieces_of(&sources, 0, 0, ranges);
        write_dataset(
            &writer,
            &format!("dataset_{i}"),
            &shared,
            &pieces,
            permutation(options.shuffle, seed, i),
            &|n| progress.inc(n),
        )?;
    }
    // The marker that makes this a collection goes last.
    let inventory = Inventory {
        datasets: datasets
            .iter()
            .enumerate()
            .map(|(i, ranges)| {
                (
                    format!("dataset_{i}"),
                    ranges.iter().map(|r| r.end - r.start).sum(),
                )
            })
            .collect(),
    };
    writer.group("", collection_attrs(&inventory))?;
    staging.publish()?;
    progress.finish();
    Ok(ConvertReport {
        n_obs,
        n_var: space.names.len() as u64,
        datasets: datasets.len(),
        added: n_obs,
        appended: false,
        seed,
        notes,
    })
}

/// What a conversion keeps besides the row-aligned matrices: `uns`, `raw`, `varm` / `varp`,
/// the index names.
struct Kept {
    uns: Option<uns::UnsNode>,
    raw: Option<raw::Raw>,
    var_aligned: Vec<(&'static str, uns::UnsNode)>,
    index_names: dataset::IndexNames,
}

impl Kept {
    /// The row-aligned `elements` to write, with `raw`'s matrix among them when kept.
    fn with_raw<'a>(
        &'a self,
        mut elements: Vec<dataset::Element<'a>>,
    ) -> Vec<dataset::Element<'a>> {
        elements.extend(self.raw.as_ref().map(raw::Raw::element));
        elements
    }
}

/// The var space of `sources`, each labelled by its path: their union (or `subset`), or the
/// collection's `var_names` when appending.
fn var_space_of(
    sources: &[Source],
    var_names: Option<&[String]>,
    subset: Option<&[String]>,
) -> Result<var_space::VarSpace> {
    let labels: Vec<String> = sources
        .iter()
        .map(|s| s.path().display().to_string())
        .collect();
    let labelled: Vec<(&str, &[String])> = labels
        .iter()
        .zip(sources)
        .map(|(l, s)| (l.as_str(), s.var_names()))
        .collect();
    var_space::build(&labelled, var_names, subset)
}

/// The obs of every source joined, the inputs from `n_existing` on labelled in `src_path`
/// (the collection's own datasets, before them, kept as they are); its notes added to
/// `notes`; `groupby` checked against it.
fn joined_obs(
    sources: &[Source],
    n_existing: usize,
    options: &ConvertOptions,
    notes: &mut Vec<String>,
) -> Result<ObsTable> {
    let parts = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let label = (i >= n_existing).then(|| src_path_of(options, i - n_existing, s));
            source_obs(s, label)
        })
        .collect::<Result<_>>()?;
    let obs = ObsTable::join(parts);
    notes.extend(obs.notes.iter().cloned());
    check_groupby(&obs, &options.groupby)?;
    Ok(obs)
}

/// The row-aligned parts of `sources`: each input's layer opened to be its `X` where
/// `swapped`, and the layers / obsm / obsp carried along (their notes added to `notes`).
fn open_rows(
    sources: &[Source],
    swapped: &[bool],
    n_existing: usize,
    options: &ConvertOptions,
    notes: &mut Vec<String>,
) -> Result<(Vec<Option<source::Matrix>>, elements::Carried)> {
    let layer = options.layer.as_deref();
    let layers = x_layers(sources, layer, swapped)?;
    let carried = elements::carry(sources, layer, swapped, n_existing)?;
    notes.extend(carried.notes.iter().cloned());
    Ok((layers, carried))
}

/// The index names the output keeps: one all of `sources` give a frame, else none (as pandas
/// names the union of differently named indexes).
fn index_names_of(sources: &[Source]) -> dataset::IndexNames {
    let common = |frame: &str| -> Option<String> {
        let mut names = sources.iter().map(|s| s.index_name(frame));
        let first = names.next()??;
        names
            .all(|n| n.as_deref() == Some(first.as_str()))
            .then_some(first)
    };
    dataset::IndexNames {
        obs: common("obs"),
        var: common("var"),
        raw_var: common("raw/var"),
    }
}

// One argument per part of what every dataset shares.
#[allow(clippy::too_many_arguments)]
fn shared<'a>(
    x: &'a [&'a dyn RowReader],
    space: &'a var_space::VarSpace,
    var_columns: &'a [(String, Column)],
    elements: &'a [dataset::Element<'a>],
    kept: &'a Kept,
    obs: &'a ObsTable,
    sparse: bool,
    options: &'a ConvertOptions,
) -> Shared<'a> {
    Shared {
        x,
        var_aligned: &kept.var_aligned,
        uns: kept.uns.as_ref(),
        raw: kept
            .raw
            .as_ref()
            .map(|r| (r.space.names.as_slice(), r.var_columns.as_slice())),
        index_names: &kept.index_names,
        maps: &space.maps,
        var_names: &space.names,
        var_columns,
        elements,
        obs,
        sparse,
        n_obs_per_chunk: options.n_obs_per_chunk,
        shard_size: options.shard_size,
        groupby: &options.groupby,
        compressor: options.compressor,
    }
}

/// `varm` and `varp` of a single input whose variables stay as they are: copied whole. Left
/// out (and noted) for several inputs or a changed var space.
fn var_aligned_of(
    sources: &[Source],
    same_vars: bool,
    notes: &mut Vec<String>,
) -> Vec<(&'static str, uns::UnsNode)> {
    let mut kept = Vec::new();
    for group in ["varm", "varp"] {
        let trees: Vec<Option<uns::UnsNode>> = sources
            .iter()
            .map(|s| {
                let (elements, root) = s.elements()?;
                uns::read(
                    elements,
                    root,
                    group,
                    &s.path().display().to_string(),
                    notes,
                )
            })
            .collect();
        match trees.as_slice() {
            [Some(tree)] if same_vars => {
                let n_vars = sources[0].var_names().len() as u64;
                if let Some(tree) = var_shaped(group, tree, n_vars, notes) {
                    kept.push((group, tree));
                }
            }
            t if t.iter().any(Option::is_some) => notes.push(format!(
                "{group} left out: kept for one input whose variables stay as they are \
                 (not for several inputs or a var subset)"
            )),
            _ => {}
        }
    }
    kept
}

/// The entries of the `varm` / `varp` tree `tree` whose shape fits `n_vars` variables (`varm`:
/// one row per variable; `varp`: `n_vars` × `n_vars`), the others left out with a note: a
/// copied mismatch would make the dataset one anndata cannot open.
fn var_shaped(
    group: &str,
    tree: &uns::UnsNode,
    n_vars: u64,
    notes: &mut Vec<String>,
) -> Option<uns::UnsNode> {
    let uns::UnsNode::Dict(entries) = tree else {
        return None;
    };
    let fits = |shape: &[u64]| match group {
        "varp" => shape == [n_vars, n_vars],
        _ => shape.first() == Some(&n_vars),
    };
    let kept: Vec<_> = entries
        .iter()
        .filter(|(key, entry)| match entry.shape() {
            Some(shape) if fits(&shape) => true,
            Some(shape) => {
                notes.push(format!(
                    "{group}/{key} left out: shape {shape:?} does not fit the {n_vars} variables"
                ));
                false
            }
            None => {
                notes.push(format!("{group}/{key} left out: a dict, not an array"));
                false
            }
        })
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(uns::UnsNode::Dict(kept))
}

/// The output's `uns` from the inputs' (see [`uns::merge`]), with a note when several inputs'
/// are dropped.
fn uns_of(
    sources: &[Source],
    merge: Option<VarMerge>,
    notes: &mut Vec<String>,
) -> Option<uns::UnsNode> {
    let trees: Vec<Option<uns::UnsNode>> = sources
        .iter()
        .map(|s| {
            let (elements, root) = s.elements()?;
            uns::read(
                elements,
                root,
                "uns",
                &s.path().display().to_string(),
                notes,
            )
        })
        .collect();
    let merged = uns::merge(&trees, merge);
    if merged.is_none() && trees.iter().any(Option::is_some) {
        notes.push(
            "uns left out: several inputs, and anndata.concat (annbatch) keeps none of their \
             uns; --merge first|same|unique|only keeps the entries it picks"
                .into(),
        );
    }
    merged
}

fn collection_attrs(inventory: &Inventory) -> serde_json::Map<String, serde_json::Value> {
    attrs(&[
        (
            "encoding-type",
            json!(crate::collection::COLLECTION_ENCODING),
        ),
        ("encoding-version", json!("0.1.0")),
        (crate::collection::INVENTORY_KEY, inventory.to_json()),
    ])
}

fn check_groupby(obs: &ObsTable, groupby: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in groupby {
        if !seen.insert(name) {
            return Err(Error::parameter("groupby", name, "columns must be unique"));
        }
        if !obs.columns.iter().any(|(n, _)| n == name) {
            return Err(Error::MissingElement {
                path: "obs".into(),
                element: name.clone(),
            });
        }
    }
    Ok(())
}

fn append(
    output: &Path,
    collection: crate::collection::DatasetCollection,
    new_sources: Vec<Source>,
    options: &ConvertOptions,
    seed: u64,
    mut notes: Vec<String>,
) -> Result<ConvertReport> {
    let names = collection.dataset_names().to_vec();
    let var_names = collection.var_names().to_vec();
    let sparse = matches!(
        collection.datasets().first().map(|d| d.x()),
        Some(crate::store::XElement::Csr(_))
    );
    drop(collection);
    // Existing datasets first, then the new inputs.
    let mut sources: Vec<Source> = names
        .iter()
        .map(|n| {
            let p = output.join(n);
            crate::store::AnnDataStore::open(&p).and_then(|a| Source::zarr(a, p))
        })
        .collect::<Result<_>>()?;
    let n_existing = sources.len();
    sources.extend(new_sources);
    let space = var_space_of(&sources, Some(&var_names), None)?;
    for (s, map) in sources.iter().zip(&space.maps).skip(n_existing) {
        if let Some(map) = map {
            let dropped = map.to.iter().filter(|&&t| t == var_space::DROPPED).count();
            if dropped == map.to.len() && !map.to.is_empty() && !options.allow_disjoint_var {
                return Err(Error::VarMismatch {
                    path: output.display().to_string(),
                    dataset: s.path().display().to_string(),
                    detail: format!(
                        "shares none of its {dropped} variables with the collection's {} (e.g. \
                         {:?} vs {:?}): its rows would be all zeros. Check the file and the \
                         gene ids; append anyway with allow_disjoint_var (--allow-disjoint-var)",
                        var_names.len(),
                        s.var_names().first().map(String::as_str).unwrap_or(""),
                        var_names.first().map(String::as_str).unwrap_or(""),
                    ),
                });
            }
            if dropped > 0 {
                notes.push(format!(
                    "{}: {dropped} variables not in the collection's var were dropped",
                    s.path().display()
                ));
            }
        }
    }
    let obs = joined_obs(&sources, n_existing, options, &mut notes)?;
    let existing_rows: u64 = sources[..n_existing].iter().map(Source::n_obs).sum();
    let added: u64 = sources[n_existing..].iter().map(Source::n_obs).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shares = plan::appended_rows(
        added,
        options.shuffle_chunk_size,
        n_existing,
        options.shuffle,
        &mut rng,
    );
    // The collection's var columns stay (the new inputs are cut to its var space).
    let var_columns = match sources.first() {
        Some(first) => first.var_columns().map_err(|e| e.in_input(first.path()))?,
        None => Vec::new(),
    };
    let swapped: Vec<bool> = (0..sources.len())
        .map(|i| options.layer.is_some() && i >= n_existing)
        .collect();
    let (layers, carried) = open_rows(&sources, &swapped, n_existing, options, &mut notes)?;
    let x = x_readers(&sources, &layers);
    // The collection's uns, varm, varp and index names stay, as its var columns do; its raw
    // variables too.
    let collection_own = &sources[..n_existing.min(1)];
    let uns = uns_of(collection_own, None, &mut notes);
    let var_aligned = var_aligned_of(collection_own, true, &mut notes);
    let raw_names = match sources.first().and_then(Source::elements) {
        Some((elements, root)) => {
            let var = if root.is_empty() {
                "raw/var".to_string()
            } else {
                format!("{root}/raw/var")
            };
            match elements.kind(&var)? {
                Some(_) => Some(crate::store::dataframe::read_index(elements, &var)?),
                None => None,
            }
        }
        None => None,
    };
    let kept = Kept {
        uns,
        var_aligned,
        raw: match &raw_names {
            Some(names) => raw::open(&sources, Some(names), None, &mut notes)?,
            None => None,
        },
        index_names: index_names_of(collection_own),
    };
    let elements = kept.with_raw(carried.elements(&sources));
    let staging = publish::Staging::begin(output)?;
    let writer = Writer::create(&staging.dir)?;
    let shared = shared(
        &x,
        &space,
        &var_columns,
        &elements,
        &kept,
        &obs,
        sparse,
        options,
    );
    let progress = Progress::new(existing_rows + added, options);
    let mut obs_start = 0;
    let mut inventory = Inventory::default();
    for (i, (name, share)) in names.iter().zip(&shares).enumerate() {
        let own = sources[i].n_obs();
        let received: u64 = share.iter().map(|r| r.end - r.start).sum();
        inventory.datasets.push((name.clone(), own + received));
        progress.set_dataset(name);
        if share.is_empty() {
            publish::link_tree(&output.join(name), &staging.dir.join(name))?;
            progress.inc(own)?;
        } else {
            let mut pieces = vec![Piece {
                source: i,
                rows: 0..own,
                obs_start,
            }];
            pieces.extend(pieces_of(&sources, n_existing, existing_rows, share));
            write_dataset(
                &writer,
                name,
                &shared,
                &pieces,
                permutation(options.shuffle, seed, i),
                &|n| progress.inc(n),
            )?;
        }
        obs_start += own;
    }
    writer.group("", collection_attrs(&inventory))?;
    // Every file of the old collection that is not a dataset (e.g. user metadata) comes along.
    for entry in std::fs::read_dir(output).map_err(|source| Error::Io {
        path: output.to_path_buf(),
        source,
    })? {
        let entry = entry.map_err(|source| Error::Io {
            path: output.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "zarr.json" && !names.contains(&name) {
            let from = entry.path();
            if from.is_dir() {
                publish::link_tree(&from, &staging.dir.join(&name))?;
            } else {
                std::fs::copy(&from, staging.dir.join(&name)).map_err(|source| Error::Io {
                    path: from.clone(),
                    source,
                })?;
            }
        }
    }
    staging.publish_replacing()?;
    progress.finish();
    Ok(ConvertReport {
        n_obs: existing_rows + added,
        n_var: space.names.len() as u64,
        datasets: n_existing,
        added,
        appended: true,
        seed,
        notes,
    })
}
