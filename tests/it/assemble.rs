//! The one assembly path (rows scattered from decoded chunks into batch memory) against an
//! independent read of the same rows (`DatasetCollection::read_rows`, the staged reader), for
//! every kind of X: sparse and dense, on disk and in memory; rows drawn twice; loader options
//! checked once; loader stats.

use crate::common;

use std::sync::Arc;

use annbatch::sampler::{LoadRequest, Requests, Sampler};
use annbatch::{
    AnnDataStore, DatasetCollection, Error, HostBatch, HostObs, InMemoryX, Loader, LoaderOptions,
    XBatch,
};
use common::{data, small_collection};

/// Each batch's X equals the rows its index names, read one by one by the staged reader.
fn assert_rows_match(collection: &DatasetCollection, batches: &[HostBatch]) {
    assert!(!batches.is_empty());
    for batch in batches {
        let index = batch.index.as_ref().expect("index");
        let ranges: Vec<_> = index.iter().map(|&r| r as u64..r as u64 + 1).collect();
        let mut expected = collection.new_batch();
        collection.read_rows(&ranges, &mut expected).expect("read");
        assert_eq!(batch.x, expected, "rows {index:?}");
    }
}

fn host_epoch(loader: &Loader, epoch: u64) -> Vec<HostBatch> {
    loader
        .host_epoch(epoch)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect()
}

#[test]
fn sparse_on_disk_rows_equal_the_staged_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = small_collection(dir.path());
    let loader = Loader::builder_for(c.clone())
        .batch_size(20)
        .chunk_size(10)
        .preload_nchunks(6)
        .shuffle(true)
        .seed(9)
        .return_index(true)
        .obs_keys(["cell_type"])
        .build()
        .expect("loader");
    let batches = host_epoch(&loader, 2);
    assert_rows_match(&c, &batches);
    // Every row exactly once, with its own label.
    let mut seen: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.index.clone().expect("index"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<i64>>());
    let annbatch::Column::Categorical { codes, .. } = c.obs_column("cell_type").expect("col")
    else {
        panic!("categorical")
    };
    for b in &batches {
        let HostObs::Codes(got) = &b.obs[0] else {
            panic!("codes")
        };
        let want: Vec<i64> = b
            .index
            .as_ref()
            .expect("index")
            .iter()
            .map(|&r| codes[r as usize])
            .collect();
        assert_eq!(got, &want);
    }
}

#[test]
fn dense_on_disk_rows_equal_the_staged_reader() {
    let c =
        Arc::new(DatasetCollection::open(data("annbatch_dense_collection.zarr")).expect("open"));
    let n = c.n_obs();
    let loader = Loader::builder_for(c.clone())
        .batch_size(8)
        .chunk_size(4)
        .preload_nchunks(4)
        .shuffle(true)
        .seed(1)
        .return_index(true)
        .build()
        .expect("loader");
    let batches = host_epoch(&loader, 0);
    assert!(matches!(batches[0].x, XBatch::Dense(_)));
    assert_rows_match(&c, &batches);
    let rows: usize = batches.iter().map(|b| b.x.n_rows()).sum();
    assert_eq!(rows as u64, n);
}

fn in_memory(x: InMemoryX) -> Arc<DatasetCollection> {
    let store = AnnDataStore::in_memory(x, None, None, Vec::new()).expect("store");
    Arc::new(DatasetCollection::from_datasets("mem", vec![("mem".into(), store)]).expect("c"))
}

#[test]
fn in_memory_rows_sparse_and_dense_equal_the_staged_reader() {
    let n = 37u64;
    let mut indptr = vec![0u64];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for r in 0..n {
        for c in 0..(r % 4) as i32 {
            indices.push(c * 2);
            values.push(r as f32 + c as f32 / 10.0);
        }
        indptr.push(indices.len() as u64);
    }
    let dense: Vec<f32> = (0..n * 3).map(|v| v as f32).collect();
    for c in [
        in_memory(InMemoryX::csr(8, indptr, indices, values).expect("csr")),
        in_memory(InMemoryX::dense(3, dense).expect("dense")),
    ] {
        let loader = Loader::builder_for(c.clone())
            .batch_size(5)
            .chunk_size(3)
            .preload_nchunks(5)
            .shuffle(true)
            .return_index(true)
            .build()
            .expect("loader");
        assert_rows_match(&c, &host_epoch(&loader, 3));
    }
}

/// Rows drawn more than once in one fetch: twice in one batch, and again in another batch.
struct WithReplacement;

impl Sampler for WithReplacement {
    fn batch_size(&self) -> usize {
        6
    }
    fn validate(&self, _n_obs: u64) -> annbatch::Result<()> {
        Ok(())
    }
    fn n_batches(&self, _n_obs: u64) -> u64 {
        4
    }
    fn requests(&self, _n_obs: u64, _epoch: u64) -> annbatch::Result<Requests<'_>> {
        Ok(Box::new((0..2u64).map(|k| {
            Ok(LoadRequest {
                requests: vec![k * 500..k * 500 + 4, 990..1000],
                splits: vec![vec![0, 5, 0, 13, 5, 2], vec![13, 1, 0, 0, 9, 13]],
            })
        })))
    }
}

#[test]
fn rows_drawn_several_times_are_copied_to_every_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = small_collection(dir.path());
    let loader = Loader::builder_for(c.clone())
        .batch_sampler(WithReplacement)
        .return_index(true)
        .build()
        .expect("loader");
    let batches = host_epoch(&loader, 0);
    assert_eq!(batches.len(), 4);
    assert_eq!(
        batches[0].index.as_deref(),
        Some(&[0, 991, 0, 999, 991, 2][..])
    );
    assert_rows_match(&c, &batches);
}

#[test]
fn loader_options_are_checked_once_with_one_wording() {
    let mut o = LoaderOptions::default();
    o.rank = 2;
    o.world_size = 2;
    let err = o.check().expect_err("rank past world_size");
    assert_eq!(
        err.to_string(),
        "invalid parameter rank = 2: must be below world_size 2"
    );
    o.world_size = 0;
    assert!(matches!(
        o.check(),
        Err(Error::InvalidParameter {
            name: "world_size",
            ..
        })
    ));
    let mut o = LoaderOptions::default();
    o.num_threads = Some(1_000_000);
    assert!(matches!(
        o.check(),
        Err(Error::InvalidParameter {
            name: "num_threads",
            ..
        })
    ));
    // The builder refuses before opening anything: the path does not exist.
    let err = Loader::builder("/nonexistent/collection.zarr")
        .shard(3, 3)
        .build()
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidParameter { name: "rank", .. }));
    // A sharded loader from options reads only its shard.
    let dir = tempfile::tempdir().expect("tempdir");
    let c = small_collection(dir.path());
    let mut o = LoaderOptions::default();
    (o.batch_size, o.chunk_size, o.preload_nchunks) = (10, 10, 2);
    (o.rank, o.world_size, o.return_index) = (1, 4, true);
    let loader = Loader::builder_for(c).options(o).build().expect("loader");
    assert_eq!(loader.len(), 25);
}

#[test]
fn huge_prefetch_or_preload_is_capped_by_the_epoch_not_allocated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = small_collection(dir.path());
    for (prefetch, preload) in [(1_000_000_000usize, 2usize), (4, 1_000_000_000)] {
        let loader = Loader::builder_for(c.clone())
            .batch_size(10)
            .chunk_size(10)
            .preload_nchunks(preload)
            .prefetch(prefetch)
            .build()
            .expect("loader");
        assert_eq!(host_epoch(&loader, 0).len(), 100);
    }
    // chunk_size * preload_nchunks past u64: refused, not wrapped.
    let err = Loader::builder_for(c)
        .batch_size(3)
        .chunk_size(u64::MAX / 2)
        .preload_nchunks(1 << 20)
        .build()
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
}

#[test]
fn stats_count_every_delivered_cell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = small_collection(dir.path());
    let loader = Loader::builder_for(c)
        .batch_size(50)
        .chunk_size(10)
        .preload_nchunks(10)
        .shuffle(true)
        .build()
        .expect("loader");
    assert_eq!(loader.stats().cells, 0);
    for _ in 0..2 {
        assert_eq!(host_epoch(&loader, 0).len(), 20);
    }
    let s = loader.stats();
    assert_eq!((s.cells, s.batches), (2000, 40));
    assert!(s.seconds > 0.0 && s.read_seconds > 0.0, "{s}");
    assert!(s.cells_per_second() > 0.0);
    assert!(s.to_string().contains("2000 cells in 40 batches"), "{s}");
}
