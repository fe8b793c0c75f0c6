//! Streams shuffled epochs with the Loader (tch::Tensor sparse CSR batches) and reports cells/s
//! against the decode-only ceiling (decode every chunk once into a reused buffer, all cores).
//!
//! ```text
//! cargo run --release --example bench_loader -- COLLECTION [--batch-size 4096]
//!     [--chunk-size 32] [--preload-nchunks 256] [--repeats 3] [--json] [--device cuda:0]
//! ```
//! With `--device cuda:N` the batches land on that GPU, and the pinned host-to-device bandwidth
//! measured with torch is printed beside them (the PCIe bound).
//! Without settings it runs both of the issue's settings (4096/32/256 and 4096/512/32).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annbatch::throughput::{decode_ceiling, loader_rate, median};
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = match (args.batch_size, args.chunk_size, args.preload_nchunks) {
        (None, None, None) => vec![(4096, 32, 256), (4096, 512, 32)],
        (b, c, p) => vec![(b.unwrap_or(4096), c.unwrap_or(32), p.unwrap_or(256))],
    };
    let device = device_of(&args.device)?;
    if !args.json {
        println!(
            "streaming shuffled epochs with the Loader (tch::Tensor sparse CSR batches on {}):",
            args.device
        );
        if device != tch::Device::Cpu {
            println!(
                "  pinned host-to-device copies: {:.1} GB/s",
                h2d_bandwidth(device)?
            );
        }
    }
    for (batch_size, chunk_size, preload_nchunks) in settings {
        bench(
            &args.path,
            batch_size,
            chunk_size,
            preload_nchunks,
            args.repeats,
            args.json,
            device,
        )?;
    }
    Ok(())
}

fn bench(
    path: &Path,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
    repeats: usize,
    json: bool,
    device: tch::Device,
) -> anyhow::Result<()> {
    let collection = Arc::new(DatasetCollection::open(path)?);
    let loader = annbatch::Loader::builder_for(collection.clone())
        .batch_size(batch_size)
        .chunk_size(chunk_size)
        .preload_nchunks(preload_nchunks)
        .shuffle(true)
        .device(device)
        .build()?;
    let (mut rates, mut firsts, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    let mut buffer = collection.new_batch();
    decode_ceiling(&collection, &mut buffer)?; // warm the buffer
    for epoch in 0..repeats.max(1) {
        let run = loader_rate(&loader, epoch as u64, u64::MAX)?;
        rates.push(run.cells_per_second());
        firsts.push(run.first_batch);
        ceilings.push(decode_ceiling(&collection, &mut buffer)?.cells_per_second());
    }
    let (rate, first, ceiling) = (median(rates), median(firsts), median(ceilings));
    let stats = loader.stats();
    if json {
        println!(
            "{}",
            serde_json::json!({"tool": "annbatch-rs", "batch_size": batch_size,
                "chunk_size": chunk_size, "preload_nchunks": preload_nchunks,
                "cells_per_s": rate, "first_batch_s": first, "ceiling_cells_per_s": ceiling,
                "threads": rayon::current_num_threads(), "device": format!("{device:?}"),
                "stats": {"read_s": stats.read_seconds, "assemble_s": stats.assemble_seconds,
                    "consumer_s": stats.consumer_seconds, "starved_s": stats.starved_seconds}})
        );
    } else {
        println!(
            "  batch {batch_size} / chunk {chunk_size} / preload {preload_nchunks}: {rate:>9.0} \
             cells/s ({:.0} % of the {ceiling:.0} cells/s decode-only ceiling), first batch \
             {:.0} ms",
            100.0 * rate / ceiling,
            first * 1e3
        );
        println!("    loader stats over the {repeats} epochs: {stats}");
    }
    Ok(())
}
