//! Streams shuffled epochs with the Loader (tch::Tensor sparse CSR batches) and reports cells/s
//! against the decode-only ceiling (every chunk decoded once into a reused buffer, all cores).
//!
//! ```text
//! cargo run --release --example bench_loader -- COLLECTION [--batch-size 4096]
//!     [--chunk-size 32] [--preload-nchunks 256] [--repeats 3] [--threads N] [--json]
//!     [--device cuda:0] [--direct-io]
//! ```
//! Each epoch and each ceiling pass runs in a fresh process of its own (this binary, re-run
//! with `--only loader|ceiling`), interleaved, so neither warms the other's caches or
//! allocator; min / median / max over `--repeats` rounds are printed.
//! With `--device cuda:N` the batches land on that GPU, and the pinned host-to-device bandwidth
//! measured with torch is printed beside them (the PCIe bound).
//! Without settings it runs both of the issue's settings (4096/32/256 and 4096/512/32).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use annbatch::throughput::{decode_ceiling, dl_loader_rate, loader_rate, median};
use annbatch::DatasetCollection;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The collection or store.
    path: PathBuf,
    /// Rows per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Rows per contiguous read.
    #[arg(long)]
    chunk_size: Option<u64>,
    /// Chunks per fetch.
    #[arg(long)]
    preload_nchunks: Option<usize>,
    /// Epochs to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Print one JSON object per setting instead of text.
    #[arg(long)]
    json: bool,
    /// Where batches land: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Decoding threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Write a synthetic collection of this many cells at the path first, if nothing is there
    /// (`annbatch demo`'s data: 20k genes, ~1.5k non-zeros per cell).
    #[arg(long)]
    synthetic: Option<u64>,
    /// Read with O_DIRECT, past the page cache.
    #[arg(long)]
    direct_io: bool,
    /// Run one measurement in this process: `loader` (one epoch of `tch::Tensor` batches),
    /// `dlpack` (one epoch of the DLPack batches the Python and C front ends hand out, dropped
    /// as they come) or `ceiling` (one pass).
    #[arg(long)]
    only: Option<String>,
}

fn device_of(name: &str) -> anyhow::Result<tch::Device> {
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        other => match other.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(n)) => Ok(tch::Device::Cuda(n)),
            _ => anyhow::bail!("device {other:?}: expected cpu, cuda or cuda:N"),
        },
    }
}

/// Pinned host-to-device copy bandwidth in GB/s (256 MB copies, median of 5).
fn h2d_bandwidth(device: tch::Device) -> anyhow::Result<f64> {
    let tch::Device::Cuda(n) = device else {
        anyhow::bail!("{device:?} is not a CUDA device");
    };
    let bytes = 256usize << 20;
    let host = tch::Tensor::f_empty([bytes as i64], (tch::Kind::Uint8, tch::Device::Cpu))?
        .f_pin_memory(device)?;
    let mut rates = Vec::new();
    for _ in 0..6 {
        tch::Cuda::synchronize(n as i64);
        let start = std::time::Instant::now();
        let on_device = host.f_to_device_(device, tch::Kind::Uint8, false, false)?;
        tch::Cuda::synchronize(n as i64);
        rates.push(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
        drop(on_device);
    }
    Ok(median(rates[1..].to_vec()))
}

/// One measurement as its child process prints it.
struct Measured {
    cells_per_s: f64,
    first_batch_s: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = match (args.batch_size, args.chunk_size, args.preload_nchunks) {
        (None, None, None) => vec![(4096, 32, 256), (4096, 512, 32)],
        (b, c, p) => vec![(b.unwrap_or(4096), c.unwrap_or(32), p.unwrap_or(256))],
    };
    let device = device_of(&args.device)?;
    if let Some(n_obs) = args.synthetic {
        if !args.path.exists() && !args.path.to_string_lossy().contains("://") {
            let spec = annbatch::demo::SyntheticSpec {
                n_obs,
                ..annbatch::demo::SyntheticSpec::default()
            };
            annbatch::demo::write_collection(&args.path, &spec)?;
        }
    }
    if let Some(only) = &args.only {
        let (b, c, p) = settings[0];
        return measure(&args, only, b, c, p, device);
    }
    if !args.json {
        println!(
            "streaming shuffled epochs with the Loader (tch::Tensor sparse CSR batches on {}), \
             each epoch and each ceiling pass in a fresh process, {} rounds:",
            args.device, args.repeats
        );
        if device != tch::Device::Cpu {
            println!(
                "  pinned host-to-device copies: {:.1} GB/s",
                h2d_bandwidth(device)?
            );
        }
    }
    for (batch_size, chunk_size, preload_nchunks) in settings {
        let (mut rates, mut firsts, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeats.max(1) {
            let child = |only: &str| child(&args, only, batch_size, chunk_size, preload_nchunks);
            ceilings.push(child("ceiling")?.cells_per_s);
            let run = child("loader")?;
            rates.push(run.cells_per_s);
            firsts.push(run.first_batch_s);
        }
        let (rate, first, ceiling) = (spread(&rates), spread(&firsts), spread(&ceilings));
        if args.json {
            println!(
                "{}",
                serde_json::json!({"tool": "annbatch-rs", "batch_size": batch_size,
                    "chunk_size": chunk_size, "preload_nchunks": preload_nchunks,
                    "cells_per_s": rate[1], "cells_per_s_min_median_max": rate,
                    "first_batch_s": first[1], "ceiling_cells_per_s": ceiling[1],
                    "ceiling_min_median_max": ceiling, "device": format!("{device:?}")})
            );
        } else {
            println!(
                "  batch {batch_size} / chunk {chunk_size} / preload {preload_nchunks}: \
                 {:.0} / {:.0} / {:.0} cells/s (min / median / max); decode-only ceiling \
                 {:.0} / {:.0} / {:.0}; median {:.0} % of the median ceiling; first batch \
                 {:.0} ms (median)",
                rate[0],
                rate[1],
                rate[2],
                ceiling[0],
                ceiling[1],
                ceiling[2],
                100.0 * rate[1] / ceiling[1],
                first[1] * 1e3
            );
        }
    }
    Ok(())
}

/// `[min, median, max]` of `values`.
fn spread(values: &[f64]) -> [f64; 3] {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.as_slice() {
        [] => [0.0; 3],
        v => [v[0], v[v.len() / 2], v[v.len() - 1]],
    }
}

/// Runs this binary once more with `--only only` and reads the JSON line it prints.
fn child(
    args: &Args,
    only: &str,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
) -> anyhow::Result<Measured> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(&args.path)
        .args(["--only", only, "--device", &args.device])
        .args(["--batch-size", &batch_size.to_string()])
        .args(["--chunk-size", &chunk_size.to_string()])
        .args(["--preload-nchunks", &preload_nchunks.to_string()]);
    if let Some(threads) = args.threads {
        cmd.args(["--threads", &threads.to_string()]);
    }
    if args.direct_io {
        cmd.arg("--direct-io");
    }
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{only} run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let line = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("{only} run printed no result"))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(Measured {
        cells_per_s: field("cells_per_s"),
        first_batch_s: field("first_batch_s"),
    })
}

/// One epoch of the loader, or one ceiling pass, in this process; prints one JSON line.
fn measure(
    args: &Args,
    only: &str,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
    device: tch::Device,
) -> anyhow::Result<()> {
    let path: &Path = &args.path;
    // A collection URL (s3://, http(s)://) is read as ANNBATCH_REMOTE_* and AWS_* say.
    let open = annbatch::OpenOptions {
        direct_io: args.direct_io,
        ..annbatch::OpenOptions::from_env()?
    };
    let collection = Arc::new(DatasetCollection::open_with(path, &open)?);
    let threads = args.threads.unwrap_or(0);
    let rate = match only {
        "ceiling" => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            pool.install(|| decode_ceiling(&collection))?
        }
        "loader" | "dlpack" => {
            let mut builder = annbatch::Loader::builder_for(collection.clone())
                .batch_size(batch_size)
                .chunk_size(chunk_size)
                .preload_nchunks(preload_nchunks)
                .shuffle(true)
                .device(device);
            if threads > 0 {
                builder = builder.num_threads(threads);
            }
            let loader = builder.build()?;
            if only == "dlpack" {
                dl_loader_rate(&loader, 0, u64::MAX)?
            } else {
                loader_rate(&loader, 0, u64::MAX)?
            }
        }
        other => anyhow::bail!("--only {other:?}: expected loader, dlpack or ceiling"),
    };
    let traffic = collection.remote_traffic().unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"only": only, "cells_per_s": rate.cells_per_second(),
            "first_batch_s": rate.first_batch, "seconds": rate.seconds,
            "requests": traffic.requests, "bytes": traffic.bytes})
    );
    Ok(())
}
