//! `annbatch`: the command-line tool (convert, inspect, demo data, read throughput).
//!
//! It uses no tensors: built without the `tch` feature (as `./run` does) it loads no libtorch;
//! the Loader's tensor throughput is `examples/bench_loader.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use annbatch::convert::{ConvertOptions, Size};
use annbatch::demo::{self, SyntheticSpec};
use annbatch::write::Compressor;
use annbatch::{Column, DatasetCollection, XElement};
use clap::{Parser, Subcommand};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// `println!` that ends the program quietly (exit 0) once stdout is closed, as in
/// `annbatch inspect … | head -1`, instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "annbatch",
    version,
    about = "Fast minibatch loading of AnnData collections"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Generate the synthetic demo collection (if needed), summarise it and measure read throughput.
    Demo {
        /// Where to write the demo collection.
        #[arg(long, default_value = "demo_data/collection.zarr")]
        out: PathBuf,
        /// Cells to generate.
        #[arg(long, default_value_t = 20_000)]
        n_obs: u64,
        /// Regenerate even if an up-to-date collection exists.
        #[arg(long)]
        force: bool,
    },
    /// Convert .h5ad / zarr AnnData files into a shuffled, sharded collection (annbatch's
    /// add_adatas), or append them to the collection already at OUTPUT.
    Convert {
        /// Input .h5ad files or zarr AnnData stores.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The collection to create or append to; or a new one at s3://bucket/prefix/NAME.zarr
        /// (staged on local disk, then uploaded; endpoint and credentials from the AWS and
        /// ANNBATCH_REMOTE_* environment).
        #[arg(short, long)]
        output: PathBuf,
        /// Rows per output dataset, or its in-memory size ("20GB"); bounds memory.
        #[arg(long, default_value_t = ConvertOptions::default().dataset_size)]
        dataset_size: Size,
        /// Rows per shard, or the uncompressed size of one ("1GB").
        #[arg(long, default_value_t = ConvertOptions::default().shard_size)]
        shard_size: Size,
        /// Rows per inner chunk (times the average nnz per row for sparse X).
        #[arg(long, default_value_t = ConvertOptions::default().n_obs_per_chunk)]
        n_obs_per_chunk: u64,
        /// Contiguous rows the shuffle keeps together.
        #[arg(long, default_value_t = ConvertOptions::default().shuffle_chunk_size)]
        shuffle_chunk_size: u64,
        /// Keep the input order.
        #[arg(long)]
        no_shuffle: bool,
        /// Shuffle seed (drawn and printed when not given).
        #[arg(long)]
        seed: Option<u64>,
        /// A text file with one var name per line: keep only those genes.
        #[arg(long)]
        var_subset: Option<PathBuf>,
        /// obs columns to sort each dataset by (repeat for several).
        #[arg(long)]
        groupby: Vec<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// Append an input that shares no variable with the collection (refused otherwise).
        #[arg(long)]
        allow_disjoint_var: bool,
        /// Compressor of X's chunks (annbatch's zarr_compressor): none, zstd, blosc-lz4
        /// (annbatch's default), blosc-lz4-bitshuffle; a blosc one may add :BLOCKSIZE in bytes.
        #[arg(long, default_value_t = ConvertOptions::default().compressor.name())]
        compressor: String,
        /// How var columns of several inputs merge (anndata's merge): same, unique, first,
        /// only. Default: one input keeps its var columns, several keep none.
        #[arg(long)]
        merge: Option<String>,
        /// The layer that becomes X (layers/NAME of each input); the inputs' X is kept as
        /// layers/X.
        #[arg(long)]
        layer: Option<String>,
        /// Where an s3:// output is staged before upload (needs its size on disk). Default:
        /// ANNBATCH_STAGING_DIR, else the system's temporary directory.
        #[arg(long)]
        staging_dir: Option<PathBuf>,
    },
    /// Summarise a collection, an AnnData zarr store, or (feature hdf5) an .h5ad file.
    Inspect {
        /// The collection or store.
        path: PathBuf,
    },
    /// Read every row once in random chunks and report cells/s against a whole-array decode.
    ReadBench {
        /// The collection or store.
        path: PathBuf,
        /// Rows per contiguous read.
        #[arg(long, default_value_t = 32)]
        chunk_size: u64,
        /// Chunks per fetch.
        #[arg(long, default_value_t = 256)]
        preload_nchunks: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
}

fn convert(
    inputs: &[PathBuf],
    output: &Path,
    options: &annbatch::convert::ConvertOptions,
) -> annbatch::Result<()> {
    let start = Instant::now();
    let report = annbatch::convert::add_adatas(output, inputs, options)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let secs = start.elapsed().as_secs_f64();
    say!(
        "{} {} cells from {} input(s) {} {} ({} cells x {} genes in {} datasets) in {secs:.2} s \
         ({:.0} cells/s), seed {}",
        if report.appended { "appended" } else { "wrote" },
        report.added,
        inputs.len(),
        if report.appended { "to" } else { "into" },
        output.display(),
        report.n_obs,
        report.n_var,
        report.datasets,
        report.added as f64 / secs,
        report.seed,
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { out, n_obs, force } => run_demo(&out, n_obs, force),
        Command::Inspect { path } => inspect(&path),
        Command::Convert {
            inputs,
            output,
            dataset_size,
            shard_size,
            n_obs_per_chunk,
            shuffle_chunk_size,
            no_shuffle,
            seed,
            var_subset,
            groupby,
            quiet,
            allow_disjoint_var,
            compressor,
            merge,
            layer,
            staging_dir,
        } => (|| {
            let var_subset = match var_subset {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| annbatch::Error::Io { path, source })?
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                None => None,
            };
            let options = ConvertOptions {
                n_obs_per_chunk,
                shard_size,
                dataset_size,
                shuffle_chunk_size,
                shuffle: !no_shuffle,
                seed,
                var_subset,
                groupby,
                quiet,
                allow_disjoint_var,
                compressor: Compressor::parse(&compressor)?,
                merge: merge.as_deref().map(str::parse).transpose()?,
                layer,
                remote: annbatch::RemoteOptions::from_env()?,
                staging_dir,
                on_progress: None,
                src_paths: None,
                cancel: Some(interrupt_flag()),
            };
            convert(&inputs, &output, &options)
        })(),
        Command::ReadBench {
            path,
            chunk_size,
            preload_nchunks,
            repeats,
        } => read_bench(&path, chunk_size, preload_nchunks, repeats),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ annbatch::Error::Interrupted { .. }) => {
            eprintln!("error: {e}");
            // As a shell reports a program ended by SIGINT.
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A flag set by SIGINT or SIGTERM, which a conversion stops on (cleaning up what it wrote);
/// a second signal ends the program at once.
fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first: once the flag is set, the same signal again ends the program.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    flag
}

fn run_demo(out: &Path, n_obs: u64, force: bool) -> annbatch::Result<()> {
    let spec = SyntheticSpec {
        n_obs,
        ..SyntheticSpec::default()
    };
    if force || !demo::is_current(out, &spec) {
        say!(
            "generating {} synthetic cells x {} genes (~{} nnz/cell) into {}",
            spec.n_obs,
            spec.n_var,
            spec.mean_nnz,
            out.display()
        );
        let t = Instant::now();
        demo::write_collection(out, &spec)?;
        say!("  written in {:.2} s", t.elapsed().as_secs_f64());
    } else {
        say!("reusing the demo collection at {}", out.display());
    }
    inspect(out)?;
    read_bench(out, 32, 256, 3)?;
    Ok(())
}

fn inspect(path: &Path) -> annbatch::Result<()> {
    #[cfg(feature = "hdf5")]
    if path.is_file() {
        return inspect_h5ad(path);
    }
    let t = Instant::now();
    let c = DatasetCollection::open_with(path, &annbatch::OpenOptions::from_env()?)?;
    say!(
        "{}: {} ({} datasets), n_obs {}, n_var {}  [opened in {:.1} ms]",
        path.display(),
        if c.is_preshuffled() {
            "annbatch collection"
        } else {
            "AnnData store"
        },
        c.datasets().len(),
        c.n_obs(),
        c.n_var(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for (name, d) in c.dataset_names().iter().zip(c.datasets()) {
        let x = match d.x() {
            XElement::Csr(x) => {
                let (data_chunk, _) = x.chunk_lens();
                format!(
                    "csr, nnz {} ({:.0}/row), inner chunk {} values",
                    x.nnz(),
                    x.nnz() as f64 / x.n_obs().max(1) as f64,
                    data_chunk
                )
            }
            XElement::Dense(x) => format!("dense, inner chunk {} rows", x.chunk_rows()),
            XElement::Csc(x) => format!("csc, nnz {} (convert it to read rows)", x.nnz()),
            XElement::InMemory(_) => "in memory".into(),
            #[cfg(feature = "hdf5")]
            XElement::H5ad(x) => format!(
                "{} in an .h5ad, read {}",
                if x.indptr().is_some() { "csr" } else { "dense" },
                if x.is_direct() {
                    "by file offset"
                } else {
                    "through the HDF5 library"
                }
            ),
            XElement::Joined(j) => format!("joined into {} columns", j.n_var()),
        };
        let label = if name.is_empty() { "/" } else { name };
        say!("  {label}: {} rows, X {x}", d.n_obs());
    }
    let columns = c.datasets()[0].obs_columns()?;
    say!("  obs columns: {}", columns.join(", "));
    for name in &columns {
        if let Column::Categorical {
            codes, categories, ..
        } = c.obs_column(name)?
        {
            let mut counts = vec![0u64; categories.len()];
            for code in codes.iter().filter_map(|&k| usize::try_from(k).ok()) {
                counts[code] += 1;
            }
            let shown: Vec<String> = categories
                .iter()
                .zip(&counts)
                .take(6)
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let more = if categories.len() > 6 { ", ..." } else { "" };
            say!(
                "    {name}: {} categories ({}{more})",
                categories.len(),
                shown.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(feature = "hdf5")]
fn inspect_h5ad(path: &Path) -> annbatch::Result<()> {
    let f = annbatch::h5ad::H5adFile::open(path)?;
    say!(
        "{}: .h5ad, n_obs {}, n_var {}, X {}",
        path.display(),
        f.n_obs(),
        f.n_var(),
        if f.is_sparse() { "csr" } else { "dense" }
    );
    say!("  obs columns: {}", f.obs_columns()?.join(", "));
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn read_bench(
    path: &Path,
    chunk_size: u64,
    preload_nchunks: usize,
    repeats: usize,
) -> annbatch::Result<()> {
    if chunk_size == 0 || preload_nchunks == 0 || repeats == 0 {
        return Err(annbatch::Error::InvalidParameter {
            name: "chunk_size/preload_nchunks/repeats",
            value: format!("{chunk_size}/{preload_nchunks}/{repeats}"),
            reason: "must be positive".into(),
        });
    }
    let c = DatasetCollection::open_with(path, &annbatch::OpenOptions::from_env()?)?;
    let n = c.n_obs();
    let threads = rayon::current_num_threads();
    say!(
        "read throughput, {threads} threads, every row once per pass, median of {repeats} passes:"
    );
    // 1. Our reader: random contiguous chunks, `preload_nchunks` per fetch (the loader's pattern).
    let mut starts: Vec<u64> = (0..n).step_by(chunk_size as usize).collect();
    let mut batch = c.new_batch();
    let mut random = Vec::new();
    let mut bytes = 0;
    for rep in 0..repeats {
        starts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(rep as u64));
        let t = Instant::now();
        bytes = 0;
        for fetch in starts.chunks(preload_nchunks) {
            let ranges: Vec<_> = fetch.iter().map(|&s| s..(s + chunk_size).min(n)).collect();
            c.read_rows(&ranges, &mut batch)?;
            bytes += batch.bytes() as u64;
        }
        random.push(t.elapsed().as_secs_f64());
    }
    let t_random = median(random);
    say!(
        "  reader, random chunks ({chunk_size} rows x {preload_nchunks}/fetch): {:>10.0} cells/s  {:.2} GB/s decoded",
        n as f64 / t_random,
        bytes as f64 / t_random / 1e9
    );
    // 2. Our reader, in order, one dataset-sized request at a time.
    let mut sequential = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        for (i, _) in c.datasets().iter().enumerate() {
            c.read_rows(&[c.offsets()[i]..c.offsets()[i + 1]], &mut batch)?;
        }
        sequential.push(t.elapsed().as_secs_f64());
    }
    let t_seq = median(sequential);
    say!(
        "  reader, whole datasets in order:                  {:>10.0} cells/s  {:.2} GB/s decoded",
        n as f64 / t_seq,
        bytes as f64 / t_seq / 1e9
    );
    // 3. Baseline: zarrs decodes the same arrays whole, in order (no row logic, no copies),
    // from local files only.
    if path.to_str().is_some_and(|p| p.contains("://")) {
        if let Some(t) = c.remote_traffic() {
            say!(
                "  object store: {} requests, {:.1} MB received (no local baseline)",
                t.requests,
                t.bytes as f64 / 1e6
            );
        }
        return Ok(());
    }
    if path.to_str().is_none() {
        // zarrs' filesystem store takes UTF-8 paths only; our reader above does not need them.
        say!("  plain zarrs baseline: skipped (the path is not UTF-8, which zarrs needs)");
        return Ok(());
    }
    let mut plain = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        for d in c.datasets() {
            plain_decode(path, d.group(), d.x())?;
        }
        plain.push(t.elapsed().as_secs_f64());
    }
    let t_plain = median(plain);
    say!(
        "  plain zarrs whole-array decode (baseline):        {:>10.0} cells/s  {:.2} GB/s decoded",
        n as f64 / t_plain,
        bytes as f64 / t_plain / 1e9
    );
    say!(
        "  random-chunk reader / plain decode: {:.2}x",
        t_plain / t_random
    );
    Ok(())
}

/// Decodes `X`'s arrays whole with zarrs, nothing else: the reference for decode speed.
fn plain_decode(root: &Path, group: &str, x: &XElement) -> annbatch::Result<()> {
    use zarrs::array::{Array, ArrayBytes};
    let store =
        std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(root).map_err(|e| {
            annbatch::Error::InvalidParameter {
                name: "path",
                value: root.display().to_string(),
                reason: e.to_string(),
            }
        })?);
    let prefix = if group.is_empty() {
        String::new()
    } else {
        format!("/{group}")
    };
    let names: &[&str] = match x {
        XElement::Csr(_) | XElement::Csc(_) => &["X/data", "X/indices"],
        XElement::Dense(_) => &["X"],
        XElement::InMemory(_) | XElement::Joined(_) => &[],
        #[cfg(feature = "hdf5")]
        XElement::H5ad(_) => &[],
    };
    for name in names {
        let path = format!("{prefix}/{name}");
        let fail = |e: &dyn std::fmt::Display| annbatch::Error::InvalidParameter {
            name: "path",
            value: path.clone(),
            reason: e.to_string(),
        };
        let array = Array::open(store.clone(), &path).map_err(|e| fail(&e))?;
        let bytes: ArrayBytes = array
            .retrieve_array_subset(&array.subset_all())
            .map_err(|e| fail(&e))?;
        std::hint::black_box(bytes);
    }
    Ok(())
}
