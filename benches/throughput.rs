//! Loader throughput in cells/s on a synthetic collection of >= 100k cells x 20k genes x ~1.5k
//! nnz written in annbatch's format, for annbatch's two reference settings, next to the
//! decode-only ceiling (every inner chunk decoded once, all cores, into reused buffers).
//!
//! `cargo bench --bench throughput` (or `./run bench`). Environment:
//! - `ANNBATCH_BENCH_DATA`: the collection (default `target/bench-data/synthetic-100k.zarr`,
//!   generated on first use);
//! - `ANNBATCH_BENCH_REPEATS`: repetitions, the median is printed (default 3).

use std::path::PathBuf;
use std::sync::Arc;

use annbatch::demo::{self, SyntheticSpec};
use annbatch::throughput::{decode_ceiling, loader_rate, median};
use annbatch::{DatasetCollection, Loader};

fn main() -> annbatch::Result<()> {
    let path = std::env::var_os("ANNBATCH_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/synthetic-100k.zarr")
        });
    let spec = SyntheticSpec {
        n_obs: 100_000,
        dataset_size: 25_000,
        ..SyntheticSpec::default()
    };
    if std::env::var_os("ANNBATCH_BENCH_DATA").is_none() && !demo::is_current(&path, &spec) {
        eprintln!("writing {} ...", path.display());
        demo::write_collection(&path, &spec)?;
    }
    let repeats: usize = std::env::var("ANNBATCH_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let collection = Arc::new(DatasetCollection::open(&path)?);
    println!(
        "{}: {} cells x {} genes, {} threads, median of {repeats}",
        path.display(),
        collection.n_obs(),
        collection.n_var(),
        rayon::current_num_threads()
    );
    // The loader epochs first: a ceiling pass before them would warm what they are measured on
    // (examples/bench_loader runs each in a fresh process instead).
    let mut lines = Vec::new();
    for (batch_size, chunk_size, preload_nchunks) in [(4096, 32, 256), (4096, 512, 32)] {
        let loader = Loader::builder_for(collection.clone())
            .batch_size(batch_size)
            .chunk_size(chunk_size)
            .preload_nchunks(preload_nchunks)
            .shuffle(true)
            .build()?;
        let runs = (0..repeats)
            .map(|epoch| loader_rate(&loader, epoch as u64, u64::MAX))
            .collect::<annbatch::Result<Vec<_>>>()?;
        let rate = median(runs.iter().map(|r| r.cells_per_second()).collect());
        let first = median(runs.iter().map(|r| r.first_batch).collect());
        lines.push((batch_size, chunk_size, preload_nchunks, rate, first));
    }
    let ceiling = median(
        (0..repeats)
            .map(|_| decode_ceiling(&collection).map(|r| r.cells_per_second()))
            .collect::<annbatch::Result<Vec<_>>>()?,
    );
    println!("decode-only ceiling:                          {ceiling:>9.0} cells/s");
    for (batch_size, chunk_size, preload_nchunks, rate, first) in lines {
        println!(
            "loader batch {batch_size} / chunk {chunk_size:>3} / preload {preload_nchunks:>3}: {rate:>9.0} cells/s  ({:.0} % of ceiling, first batch {:.0} ms)",
            100.0 * rate / ceiling,
            first * 1e3
        );
    }
    Ok(())
}
