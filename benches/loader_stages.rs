#![allow(missing_docs)] // criterion_group! generates undocumented items
//! The loader's stages one at a time, on the demo-sized synthetic collection (20k cells x 20k
//! genes, ~1.5k nnz/cell): planning a fetch (sampler), reading its rows (decode into a reused
//! buffer), cutting one batch out of such a buffer (host gather, the copy the loader's direct
//! assembly avoids), and a whole shuffled epoch.
//!
//! `cargo bench --bench loader_stages`. `ANNBATCH_BENCH_DATA` reuses an existing collection.

use std::path::PathBuf;
use std::sync::Arc;

use annbatch::demo::{self, SyntheticSpec};
use annbatch::sampler::{RandomSampler, Sampler};
use annbatch::{DatasetCollection, Loader};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn collection() -> (Option<tempfile::TempDir>, Arc<DatasetCollection>) {
    let (guard, path) = match std::env::var_os("ANNBATCH_BENCH_DATA") {
        Some(p) => (None, PathBuf::from(p)),
        None => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("bench.zarr");
            demo::write_collection(&path, &SyntheticSpec::default()).expect("write");
            (Some(dir), path)
        }
    };
    (
        guard,
        Arc::new(DatasetCollection::open(path).expect("open")),
    )
}

fn stages(c: &mut Criterion) {
    let (_guard, collection) = collection();
    let n = collection.n_obs();
    let sampler = RandomSampler::new(4096, 32, 256).seed(1);
    let request = sampler
        .requests(n, 0)
        .expect("requests")
        .next()
        .expect("a request")
        .expect("a valid request");
    let rows = request.n_rows();

    let mut group = c.benchmark_group("loader_stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(rows));
    group.bench_function("plan_epoch", |b| {
        b.iter(|| sampler.requests(n, 0).expect("requests").count())
    });
    let mut fetched = collection.new_batch();
    group.bench_function("read_8192_rows", |b| {
        b.iter(|| {
            collection
                .read_rows(&request.requests, &mut fetched)
                .expect("read")
        })
    });
    collection
        .read_rows(&request.requests, &mut fetched)
        .expect("read");
    // Rows are read in request order: a split's positions are buffer rows.
    let split = &request.splits[0];
    let mut out = fetched.empty_like();
    group.throughput(Throughput::Elements(split.len() as u64));
    group.bench_function("gather_4096_rows", |b| {
        b.iter(|| out.gather(&fetched, split))
    });
    group.throughput(Throughput::Elements(n));
    let loader = Loader::builder_for(collection.clone())
        .batch_size(4096)
        .chunk_size(32)
        .preload_nchunks(256)
        .shuffle(true)
        .build()
        .expect("loader");
    group.bench_function("host_epoch", |b| {
        b.iter(|| {
            for batch in loader.host_epoch(0).expect("epoch") {
                std::hint::black_box(batch.expect("batch"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
