#![allow(missing_docs)] // criterion_group! generates undocumented items
//! The read path per on-disk format: the synthetic demo data (20k cells x 20k genes, ~1.5k
//! nnz/cell) converted into each format `annbatch convert` writes, then the loader's access
//! pattern (random 32-row reads, 256 per request, into one reused batch) and the decode
//! ceiling (`throughput::decode_ceiling`) on each.
//!
//! `none@1024` guards the page-fault collapse of session 10: uncompressed 1024-row inner
//! chunks fell to ~21k cells/s when every read decoded into fresh memory (now ~9x that).
//!
//! `cargo bench --bench formats` (or `./run bench`).

use std::ops::Range;
use std::path::Path;

use annbatch::convert::{add_adatas, ConvertOptions};
use annbatch::demo::{self, SyntheticSpec};
use annbatch::throughput::decode_ceiling;
use annbatch::write::Compressor;
use annbatch::DatasetCollection;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const FORMATS: [(&str, u64); 6] = [
    ("blosc-lz4", 64),
    ("blosc-lz4:16384", 32),
    ("blosc-lz4-bitshuffle", 32),
    ("zstd", 32),
    ("none", 32),
    ("none", 1024),
];

fn requests(n: u64) -> Vec<Vec<Range<u64>>> {
    let chunk = 32u64;
    let mut starts: Vec<u64> = (0..n).step_by(chunk as usize).collect();
    starts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0));
    starts
        .chunks(256)
        .map(|s| s.iter().map(|&a| a..(a + chunk).min(n)).collect())
        .collect()
}

fn write_formats(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let source = dir.join("source.zarr");
    demo::write_collection(&source, &SyntheticSpec::default()).expect("write demo collection");
    let inputs: Vec<_> = std::fs::read_dir(&source)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    let mut inputs = inputs;
    inputs.sort();
    FORMATS
        .iter()
        .map(|&(compressor, rows)| {
            let name = format!("{compressor}@{rows}");
            let out = dir.join(name.replace(':', "_"));
            let options = ConvertOptions {
                compressor: Compressor::parse(compressor).expect("compressor"),
                n_obs_per_chunk: rows,
                seed: Some(0),
                quiet: true,
                ..ConvertOptions::default()
            };
            add_adatas(&out, &inputs, &options).expect("convert");
            (name, out)
        })
        .collect()
}

fn bench_formats(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, path) in write_formats(dir.path()) {
        let collection = DatasetCollection::open(&path).expect("open");
        let n = collection.n_obs();
        let mut group = c.benchmark_group(format!("format {name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(n));
        let requests = requests(n);
        let mut batch = collection.new_batch();
        group.bench_function("random_chunks_32x256", |b| {
            b.iter(|| {
                for r in &requests {
                    collection.read_rows(r, &mut batch).expect("read");
                }
            })
        });
        group.bench_function("decode_ceiling", |b| {
            b.iter(|| decode_ceiling(&collection).expect("ceiling"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_formats);
criterion_main!(benches);
