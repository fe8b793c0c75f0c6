#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Row-reader throughput on the synthetic demo data (20k cells x 20k genes, ~1.5k nnz/cell):
//! random 32-row chunks 256 per request (the loader's access pattern), whole datasets in order,
//! and zarrs decoding the same arrays whole (the plain sequential baseline).
//!
//! `cargo bench --bench reader` (or `./run bench`). Set `ANNBATCH_BENCH_DATA` to reuse a
//! collection written by `annbatch demo`.

use std::path::PathBuf;

use annbatch::demo::{self, SyntheticSpec};
use annbatch::DatasetCollection;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use zarrs::array::{Array, ArrayBytes};

fn collection_path() -> (Option<tempfile::TempDir>, PathBuf) {
    if let Some(p) = std::env::var_os("ANNBATCH_BENCH_DATA") {
        return (None, PathBuf::from(p));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.zarr");
    demo::write_collection(&path, &SyntheticSpec::default()).expect("write demo collection");
    (Some(dir), path)
}

fn bench_reader(c: &mut Criterion) {
    let (_guard, path) = collection_path();
    let collection = DatasetCollection::open(&path).expect("open");
    let n = collection.n_obs();
    let mut group = c.benchmark_group("read_rows");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));

    let chunk = 32u64;
    let mut starts: Vec<u64> = (0..n).step_by(chunk as usize).collect();
    starts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0));
    let requests: Vec<Vec<std::ops::Range<u64>>> = starts
        .chunks(256)
        .map(|s| s.iter().map(|&a| a..(a + chunk).min(n)).collect())
        .collect();
    let mut batch = collection.new_batch();
    group.bench_function("random_chunks_32x256", |b| {
        b.iter(|| {
            for r in &requests {
                collection.read_rows(r, &mut batch).expect("read");
            }
        })
    });
    group.bench_function("whole_datasets_in_order", |b| {
        b.iter(|| {
            for w in collection.offsets().windows(2) {
                collection
                    .read_rows(&[w[0]..w[1]], &mut batch)
                    .expect("read");
            }
        })
    });
    let store = std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(&path).expect("store"));
    group.bench_function("plain_zarrs_decode", |b| {
        b.iter(|| {
            for name in collection.dataset_names() {
                for array in ["X/data", "X/indices"] {
                    let a = Array::open(store.clone(), &format!("/{name}/{array}")).expect("open");
                    let bytes: ArrayBytes =
                        a.retrieve_array_subset(&a.subset_all()).expect("decode");
                    std::hint::black_box(bytes);
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_reader);
criterion_main!(benches);
