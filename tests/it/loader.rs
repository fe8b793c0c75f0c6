//! The Loader end to end: parity with annbatch, every row once, batches equal the source rows,
//! determinism across thread counts, resume, distributed shards, class balance, early drop,
//! injected errors and panics.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annbatch::loader::HostObs;
use annbatch::sampler::{
    ClassSampler, ClassWeights, DistributedSampler, LoadRequest, RandomSampler, Requests, Sampler,
};
use annbatch::write::Layout;
use annbatch::{DatasetCollection, Error, HostBatch, Loader, LoaderState, XBatch};
use common::{data, small_collection as fixture};
use serde_json::Value;

fn host_batches(loader: &Loader, epoch: u64) -> Vec<HostBatch> {
    loader
        .host_epoch(epoch)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect()
}

fn index(b: &HostBatch) -> Vec<i64> {
    b.index.clone().expect("index")
}

/// The batch's rows equal the collection's rows of its index.
fn check_rows(c: &DatasetCollection, b: &HostBatch) {
    let ranges: Vec<_> = index(b).iter().map(|&i| i as u64..i as u64 + 1).collect();
    let mut want = c.new_batch();
    c.read_rows(&ranges, &mut want).expect("read");
    assert_eq!(b.x, want);
    if let XBatch::Csr(x) = &b.x {
        assert_eq!(x.indptr[0], 0);
        assert!(x.indptr.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*x.indptr.last().expect("indptr") as usize, x.nnz());
    }
}

#[test]
fn sequential_batches_match_annbatch() {
    let text =
        std::fs::read_to_string(data("annbatch_collection.sequential_batches.json")).expect("json");
    let json: Value = serde_json::from_str(&text).expect("parse");
    let loader = Loader::builder(data("annbatch_collection.zarr"))
        .batch_size(64)
        .chunk_size(16)
        .preload_nchunks(4)
        .shuffle(false)
        .return_index(true)
        .obs_keys(["cell_type"])
        .build()
        .expect("loader");
    let want = json["batches"].as_array().expect("batches");
    assert_eq!(loader.len(), json["n_batches"].as_u64().expect("n"));
    let categories = {
        let c = loader.collection().obs_column("cell_type").expect("column");
        common::labels(&c);
        match c {
            annbatch::Column::Categorical { categories, .. } => categories,
            _ => panic!("categorical"),
        }
    };
    let got = host_batches(&loader, 0);
    assert_eq!(got.len(), want.len());
    for (b, w) in got.iter().zip(want) {
        let w_index: Vec<i64> = w["index"]
            .as_array()
            .expect("index")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        assert_eq!(index(b), w_index);
        let XBatch::Csr(x) = &b.x else { panic!("csr") };
        for k in 0..x.n_rows() {
            let (_, values) = x.row(k).expect("row");
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            assert!((sum - w["row_sum"][k].as_f64().expect("sum")).abs() < 1e-3);
            assert_eq!(values.len() as u64, w["row_nnz"][k].as_u64().expect("nnz"));
        }
        let HostObs::Codes(codes) = &b.obs[0] else {
            panic!("codes")
        };
        let labels: Vec<&str> = codes
            .iter()
            .map(|&c| categories[c as usize].as_str())
            .collect();
        let w_labels: Vec<&str> = w["cell_type"]
            .as_array()
            .expect("labels")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(labels, w_labels);
    }
}

#[test]
fn shuffled_epochs_yield_every_row_once_with_the_source_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    for (bs, cs, pre, drop_last) in [
        (32, 8, 8, false),
        (50, 25, 2, true),
        (7, 7, 1, false),
        (40, 100, 2, false),
    ] {
        let loader = Loader::builder_for(c.clone())
            .batch_size(bs)
            .chunk_size(cs)
            .preload_nchunks(pre)
            .shuffle(true)
            .drop_last(drop_last)
            .return_index(true)
            .seed(11)
            .build()
            .expect("loader");
        let batches = host_batches(&loader, 0);
        assert_eq!(batches.len() as u64, loader.len());
        let mut seen: Vec<i64> = batches.iter().flat_map(index).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "no row twice");
        if drop_last {
            assert_eq!(n, 1000 / bs * bs);
            assert!(batches.iter().all(|b| b.x.n_rows() == bs));
        } else {
            assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "every row once");
        }
        for b in &batches {
            check_rows(&c, b);
        }
        // The next epoch is another permutation.
        let next: Vec<i64> = host_batches(&loader, 1).iter().flat_map(index).collect();
        let first: Vec<i64> = batches.iter().flat_map(index).collect();
        assert_ne!(first, next);
    }
}

#[test]
fn batches_do_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let run = |threads| {
        let loader = Loader::builder_for(c.clone())
            .batch_size(40)
            .chunk_size(10)
            .preload_nchunks(12)
            .shuffle(true)
            .return_index(true)
            .obs_keys(["cell_type"])
            .num_threads(threads)
            .seed(5)
            .build()
            .expect("loader");
        host_batches(&loader, 3)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(4));
}

#[test]
fn resuming_after_k_batches_continues_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let loader = Loader::builder_for(c)
        .batch_size(20)
        .chunk_size(10)
        .preload_nchunks(6)
        .shuffle(true)
        .return_index(true)
        .seed(9)
        .build()
        .expect("loader");
    let full = host_batches(&loader, 2);
    for k in [0usize, 1, 2, 3, 7, 49, 50] {
        let mut it = loader.host_epoch(2).expect("epoch");
        let head: Vec<HostBatch> = it.by_ref().take(k).map(|b| b.expect("batch")).collect();
        let state = it.state();
        assert_eq!(
            state,
            LoaderState {
                epoch: 2,
                batches: k as u64
            }
        );
        drop(it);
        let tail: Vec<HostBatch> = loader
            .host_resume(state)
            .expect("resume")
            .map(|b| b.expect("batch"))
            .collect();
        assert_eq!(head.len() + tail.len(), full.len());
        assert_eq!([head, tail].concat(), full, "resume after {k}");
    }
}

#[test]
fn distributed_ranks_get_disjoint_equal_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let rows = |rank, world, equal| -> Vec<Vec<i64>> {
        let loader = Loader::builder_for(c.clone())
            .return_index(true)
            .batch_sampler(
                DistributedSampler::new(16, 8, 4, rank, world)
                    .seed(1)
                    .enforce_equal_batches(equal),
            )
            .build()
            .expect("loader");
        host_batches(&loader, 0).iter().map(index).collect()
    };
    for world in [2u64, 3] {
        let shards: Vec<Vec<Vec<i64>>> = (0..world).map(|r| rows(r, world, true)).collect();
        let counts: HashSet<usize> = shards.iter().map(Vec::len).collect();
        assert_eq!(counts.len(), 1, "equal batch counts across ranks");
        let all: Vec<i64> = shards.iter().flatten().flatten().copied().collect();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "disjoint");
        assert_eq!(all.len() as u64, 1000 / world * world);
        // Without equal batches, the shards cover every row.
        let complete: HashSet<i64> = (0..world)
            .flat_map(|r| rows(r, world, false))
            .flatten()
            .collect();
        assert_eq!(complete.len(), 1000);
    }
}

#[test]
fn class_sampler_balances_a_skewed_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skewed.zarr");
    // 4 classes with 70/20/8/2 % of the cells.
    let n = 2_000u64;
    let m = common::Csr::from_dense(
        &(0..n)
            .map(|i| vec![i as f32 + 1.0, 0.0, 1.0])
            .collect::<Vec<_>>(),
    );
    let codes: Vec<i64> = (0..n as i64)
        .map(|i| match i % 50 {
            0 => 3,
            1..=4 => 2,
            5..=14 => 1,
            _ => 0,
        })
        .collect();
    let writer = annbatch::write::Writer::create(&path).expect("writer");
    let obs = vec![(
        "cell_type".to_string(),
        annbatch::Column::categorical(
            codes.clone(),
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            false,
        ),
    )];
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    writer
        .anndata_csr(
            "",
            &m.indptr,
            &m.indices,
            &m.data,
            3,
            &names,
            &obs,
            &common::genes(3),
            Layout::default(),
        )
        .expect("write");
    let c = Arc::new(DatasetCollection::open(&path).expect("open"));
    let sampler = ClassSampler::from_column(
        &c.obs_column("cell_type").expect("col"),
        ClassWeights::Balanced,
        100,
        5,
        40,
    )
    .expect("sampler")
    .seed(2);
    let loader = Loader::builder_for(c.clone())
        .obs_keys(["cell_type"])
        .return_index(true)
        .batch_sampler(sampler)
        .build()
        .expect("loader");
    let mut counts = [0usize; 4];
    let mut mixed = 0;
    for b in host_batches(&loader, 0) {
        check_rows(&c, &b);
        let HostObs::Codes(batch_codes) = &b.obs[0] else {
            panic!("codes")
        };
        for (&code, &i) in batch_codes.iter().zip(&index(&b)) {
            assert_eq!(code, codes[i as usize], "labels follow their rows");
            counts[code as usize] += 1;
        }
        mixed += usize::from(batch_codes.iter().collect::<HashSet<_>>().len() > 1);
    }
    let total: usize = counts.iter().sum();
    assert_eq!(total, 2_000);
    for c in counts {
        assert!((c as f64 / total as f64 - 0.25).abs() < 0.04, "{counts:?}");
    }
    assert_eq!(mixed, 20, "every batch mixes classes");
}

#[test]
fn dropping_the_iterator_mid_epoch_stops_the_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let loader = Loader::builder_for(c)
        .batch_size(2)
        .chunk_size(2)
        .preload_nchunks(1)
        .prefetch(2)
        .build()
        .expect("loader");
    assert_eq!(loader.len(), 500);
    let mut it = loader.host_epoch(0).expect("epoch");
    let _first = it.next().expect("one").expect("ok");
    let t = Instant::now();
    drop(it);
    assert!(t.elapsed() < Duration::from_secs(5), "drop joins promptly");
}

/// A sampler whose third request reads past the end, or whose iterator panics.
struct Broken {
    panic: bool,
}

impl Sampler for Broken {
    fn batch_size(&self) -> usize {
        10
    }
    fn validate(&self, _n_obs: u64) -> annbatch::Result<()> {
        Ok(())
    }
    fn n_batches(&self, _n_obs: u64) -> u64 {
        5
    }
    fn requests(&self, n_obs: u64, _epoch: u64) -> annbatch::Result<Requests<'_>> {
        let panic = self.panic;
        Ok(Box::new((0..5u64).map(move |k| {
            if k == 2 {
                assert!(!panic, "injected sampler panic");
                return Ok(LoadRequest {
                    requests: vec![n_obs - 5..n_obs + 5],
                    splits: vec![(0..10).collect()],
                });
            }
            Ok(LoadRequest {
                requests: vec![k * 10..k * 10 + 10],
                splits: vec![(0..10).collect()],
            })
        })))
    }
}

#[test]
fn worker_errors_and_panics_surface_as_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    for panic in [false, true] {
        let loader = Loader::builder_for(c.clone())
            .batch_sampler(Broken { panic })
            .build()
            .expect("loader");
        let items: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
        assert_eq!(items.len(), 3, "two batches, then the error, then the end");
        assert!(items[0].is_ok() && items[1].is_ok());
        match (&items[2], panic) {
            (Err(Error::WorkerPanic { message }), true) => {
                assert!(message.contains("injected"), "{message}")
            }
            (Err(Error::InvalidParameter { .. }), false) => {}
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_corrupt_chunk_mid_epoch_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixture(dir.path()).path().to_path_buf();
    common::corrupt(&path.join("dataset_2/X/data/c/1"));
    // Opened after the damage: damaged after opening, the file would be "changed".
    let c = std::sync::Arc::new(DatasetCollection::open(&path).expect("reopen"));
    let loader = Loader::builder_for(c)
        .batch_size(50)
        .chunk_size(50)
        .preload_nchunks(2)
        .build()
        .expect("loader");
    let items: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
    let errors: Vec<_> = items.iter().filter(|i| i.is_err()).collect();
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(items.last(), Some(Err(Error::CorruptChunk { .. }))),
        "{:?}",
        items.last().map(Result::is_ok)
    );
}

#[test]
fn impossible_parameters_are_rejected_at_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let b = || {
        Loader::builder_for(c.clone())
            .batch_size(64)
            .chunk_size(16)
            .preload_nchunks(4)
    };
    assert!(b().build().is_ok());
    for bad in [
        b().batch_size(0),
        b().chunk_size(0),
        b().preload_nchunks(0),
        b().batch_size(48),
        b().batch_size(128),
        b().chunk_size(u64::MAX).preload_nchunks(2),
        b().num_threads(0),
        b().prefetch(0),
    ] {
        assert!(matches!(bad.build(), Err(Error::InvalidParameter { .. })));
    }
    // An unknown obs key names the columns that exist.
    let err = b().obs_keys(["nope"]).build().expect_err("unknown key");
    assert!(
        matches!(&err, Error::UnknownObsColumn { name, available, .. }
            if name == "nope" && available.iter().any(|c| c == "cell_type")),
        "{err}"
    );
    assert!(err.to_string().contains("the columns are: "), "{err}");
    assert!(Loader::builder_for(c.clone())
        .batch_sampler(RandomSampler::new(10, 10, 0))
        .build()
        .is_err());
}

#[test]
fn obs_values_reach_batches_exactly_in_their_widest_exact_type() {
    use annbatch::Dtype;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("obs.zarr");
    let n = 64u64;
    let m = common::Csr::from_dense(&(0..n).map(|i| vec![i as f32]).collect::<Vec<_>>());
    let int = |values: Vec<i64>, dtype| annbatch::Column::Int { values, dtype };
    let obs = vec![
        // Past float32's 2^24 and float64's 2^53.
        (
            "i32".to_string(),
            int((0..n as i64).map(|i| 16_778_701 + i).collect(), Dtype::I32),
        ),
        (
            "i64".to_string(),
            int((0..n as i64).map(|i| (1 << 62) + i).collect(), Dtype::I64),
        ),
        // uint64 past i64::MAX: the nearest float64.
        (
            "u64".to_string(),
            int((0..n).map(|i| (u64::MAX - i) as i64).collect(), Dtype::U64),
        ),
        (
            "f64".to_string(),
            annbatch::Column::Float((0..n).map(|i| 0.1 + i as f64).collect()),
        ),
    ];
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    annbatch::write::Writer::create(&path)
        .expect("writer")
        .anndata_csr(
            "",
            &m.indptr,
            &m.indices,
            &m.data,
            1,
            &names,
            &obs,
            &common::genes(1),
            Layout::default(),
        )
        .expect("write");
    let c = Arc::new(DatasetCollection::open(&path).expect("open"));
    assert_eq!(
        c.obs_column("u64").expect("u64"),
        obs[2].1,
        "read back exactly"
    );
    let loader = Loader::builder_for(c)
        .batch_size(16)
        .chunk_size(8)
        .preload_nchunks(2)
        .shuffle(true)
        .return_index(true)
        .obs_keys(["i32", "i64", "u64", "f64"])
        .build()
        .expect("loader");
    for b in host_batches(&loader, 0) {
        let rows: Vec<u64> = index(&b).iter().map(|&i| i as u64).collect();
        let want_int = |base: i64| rows.iter().map(|&r| base + r as i64).collect::<Vec<_>>();
        assert_eq!(b.obs[0], HostObs::Int64(want_int(16_778_701)));
        assert_eq!(b.obs[1], HostObs::Int64(want_int(1 << 62)));
        assert_eq!(
            b.obs[2],
            HostObs::Float64(rows.iter().map(|&r| (u64::MAX - r) as f64).collect())
        );
        assert_eq!(
            b.obs[3],
            HostObs::Float64(rows.iter().map(|&r| 0.1 + r as f64).collect())
        );
    }
}

/// Rows and split positions chosen by the caller: one request per entry of `batches`, each
/// listing `listed` rows from 0 and using the positions given.
struct Listing {
    listed: u64,
    batches: Vec<Vec<usize>>,
}

impl Sampler for Listing {
    fn batch_size(&self) -> usize {
        self.batches.iter().map(Vec::len).max().unwrap_or(1)
    }
    fn validate(&self, _n_obs: u64) -> annbatch::Result<()> {
        Ok(())
    }
    fn n_batches(&self, _n_obs: u64) -> u64 {
        self.batches.len() as u64
    }
    fn requests(&self, _n_obs: u64, _epoch: u64) -> annbatch::Result<Requests<'_>> {
        Ok(Box::new(self.batches.iter().map(|split| {
            Ok(LoadRequest {
                requests: vec![0..self.listed],
                splits: vec![split.clone()],
            })
        })))
    }
}

#[test]
fn a_fetch_over_its_memory_share_is_built_in_groups_with_the_same_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    // 12 chunks of 10 rows a fetch, 3 batches of 40 rows (~7 kB each).
    let b = || {
        Loader::builder_for(c.clone())
            .batch_size(40)
            .chunk_size(10)
            .preload_nchunks(12)
            .shuffle(true)
            .return_index(true)
            .obs_keys(["cell_type"])
            .seed(9)
    };
    let whole = host_batches(&b().build().expect("loader"), 2);
    // 8 shares (3 waiting, 3 building, 2 held) of 12 kB: one batch per group.
    let loader = b().batch_memory(8 * 12_000).build().expect("loader");
    let grouped = host_batches(&loader, 2);
    assert_eq!(whole, grouped);
    // Every full fetch (3 batches) was split; the last (40 rows, one batch) was not.
    assert_eq!(loader.stats().split_fetches, 8);
    for batch in &grouped {
        check_rows(&c, batch);
    }
    // A batch larger than its share is refused when the loader is built, naming the bound.
    let err = b()
        .batch_memory(8 * 1_000)
        .build()
        .expect_err("batch over its share");
    assert!(
        matches!(err, Error::BatchOverBudget { rows: 40, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("batch_memory"), "{err}");
}

#[test]
fn a_custom_samplers_batches_are_held_to_the_bound_and_not_its_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    // Every row listed for batches of 32 (and one of 500): only the used rows are held.
    let sampler = || Listing {
        listed: 1000,
        batches: vec![
            (0..32).map(|i| i * 31).collect(),
            vec![999, 0, 0, 500],
            (0..500).map(|i| i * 2).collect(),
        ],
    };
    let loader = Loader::builder_for(c.clone())
        .batch_sampler(sampler())
        .return_index(true)
        .build()
        .expect("loader");
    let batches = host_batches(&loader, 0);
    assert_eq!(index(&batches[1]), vec![999, 0, 0, 500]);
    for batch in &batches {
        check_rows(&c, batch);
    }
    // Under a bound that fits the small batches, the large one fails when its turn comes,
    // after the batches before it.
    let loader = Loader::builder_for(c.clone())
        .batch_sampler(sampler())
        .return_index(true)
        .prefetch(2)
        .batch_memory(6 * 20_000)
        .build()
        .expect("a custom sampler's batches are checked as they come");
    let got: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
    assert_eq!(got.len(), 3);
    assert!(got[..2].iter().all(Result::is_ok));
    assert!(
        matches!(&got[2], Err(Error::BatchOverBudget { rows: 500, .. })),
        "{:?}",
        got[2].as_ref().err()
    );
}

#[cfg(feature = "tch")]
mod tensors {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn tensor_batches_equal_host_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = fixture(dir.path());
        let loader = Loader::builder_for(c)
            .batch_size(30)
            .chunk_size(10)
            .preload_nchunks(9)
            .shuffle(true)
            .return_index(true)
            .obs_keys(["cell_type"])
            .seed(4)
            .build()
            .expect("loader");
        let host = host_batches(&loader, 0);
        let tensors: Vec<_> = loader
            .epoch(0)
            .expect("epoch")
            .map(|b| b.expect("batch"))
            .collect();
        assert_eq!(host.len(), tensors.len());
        for (h, t) in host.iter().zip(&tensors) {
            let XBatch::Csr(x) = &h.x else { panic!("csr") };
            assert_eq!(t.x.size(), [x.n_rows() as i64, 60]);
            assert_eq!(
                Vec::<i32>::try_from(t.x.f_crow_indices().expect("crow")).expect("vec"),
                x.indptr
            );
            assert_eq!(
                Vec::<i32>::try_from(t.x.f_col_indices().expect("col")).expect("vec"),
                x.indices
            );
            assert_eq!(
                Vec::<f32>::try_from(t.x.f_values().expect("values")).expect("vec"),
                x.data
            );
            assert_eq!(
                Vec::<i64>::try_from(t.index.as_ref().expect("index")).expect("vec"),
                index(h)
            );
            let codes = t.obs("cell_type").expect("obs");
            assert_eq!(codes.values.kind(), Kind::Int64);
            let HostObs::Codes(want) = &h.obs[0] else {
                panic!("codes")
            };
            assert_eq!(&Vec::<i64>::try_from(&codes.values).expect("vec"), want);
            assert_eq!(codes.categories.as_ref().expect("categories").len(), 4);
        }
    }

    #[test]
    fn dense_collections_give_dense_tensors() {
        let loader = Loader::builder(data("annbatch_dense_collection.zarr"))
            .batch_size(100)
            .chunk_size(50)
            .preload_nchunks(4)
            .shuffle(true)
            .build()
            .expect("loader");
        let mut rows = 0;
        for b in loader.epoch(0).expect("epoch") {
            let b = b.expect("batch");
            assert!(b.x.f_crow_indices().is_err(), "dense");
            rows += b.x.size()[0];
        }
        assert_eq!(rows, 700);
    }

    #[test]
    fn cuda_without_a_gpu_is_a_clear_error() {
        if tch::Cuda::is_available() {
            return;
        }
        let r = Loader::builder(data("annbatch_collection.zarr"))
            .device(Device::Cuda(0))
            .build();
        assert!(matches!(r, Err(Error::DeviceUnavailable { .. })), "{r:?}");
    }
}

/// A DLPack batch's X as a host batch, for comparison.
fn dl_x(b: &annbatch::DlBatch) -> XBatch {
    match &b.x {
        annbatch::DlMatrix::Csr {
            indptr,
            indices,
            data,
            shape,
        } => XBatch::Csr(annbatch::CsrBatch {
            indptr: indptr.as_slice::<i32>().expect("int32").to_vec(),
            indices: indices.as_slice::<i32>().expect("int32").to_vec(),
            data: data.as_slice::<f32>().expect("float32").to_vec(),
            n_var: shape[1],
        }),
        annbatch::DlMatrix::Dense(data) => XBatch::Dense(annbatch::DenseBatch {
            data: data.as_slice::<f32>().expect("float32").to_vec(),
            row_width: data.shape()[1] as usize,
        }),
    }
}

#[test]
fn dlpack_batches_equal_host_batches_and_outlive_their_loader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let loader = Loader::builder_for(c.clone())
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(8)
        .shuffle(true)
        .return_index(true)
        .obs_keys(["cell_type"])
        .seed(5)
        .build()
        .expect("loader");
    let host = host_batches(&loader, 2);
    let dl: Vec<annbatch::DlBatch> = loader
        .dl_epoch(2)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect();
    assert_eq!(dl.len(), host.len());
    for (d, h) in dl.iter().zip(&host) {
        assert_eq!(dl_x(d), h.x);
        let index = d.index.as_ref().expect("index").as_slice::<i64>();
        assert_eq!(index, h.index.as_deref());
        let HostObs::Codes(codes) = &h.obs[0] else {
            panic!("cell_type is categorical")
        };
        assert_eq!(d.obs[0].values.as_slice::<i64>(), Some(codes.as_slice()));
        assert!(d.obs[0].categories.is_some());
    }
    // Batches kept past their loader keep their values, while another epoch of a second
    // loader runs.
    drop(loader);
    let other = Loader::builder_for(c.clone())
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(8)
        .build()
        .expect("loader");
    assert_eq!(
        other.dl_epoch(0).expect("epoch").count() as u64,
        other.len()
    );
    for (d, h) in dl.iter().zip(&host) {
        assert_eq!(dl_x(d), h.x);
    }
}

#[test]
fn dlpack_batch_memory_is_reused_only_after_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let loader = Loader::builder_for(c.clone())
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(4)
        .return_index(true)
        .build()
        .expect("loader");
    let mut kept = Vec::new();
    let mut addresses = HashSet::new();
    for (i, batch) in loader.dl_epoch(0).expect("epoch").enumerate() {
        let batch = batch.expect("batch");
        addresses.insert(batch.index.as_ref().expect("index").address());
        if i % 5 == 0 {
            let copy = dl_x(&batch);
            kept.push((batch, copy));
        }
    }
    assert!(
        addresses.len() < loader.len() as usize,
        "released buffers are reused"
    );
    for (batch, copy) in &kept {
        assert_eq!(&dl_x(batch), copy, "a held batch is never written again");
    }
}

#[test]
fn dlpack_epochs_are_timed_as_tensor_epochs_count_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = fixture(dir.path());
    let loader = Loader::builder_for(c.clone())
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(8)
        .build()
        .expect("loader");
    let all = annbatch::throughput::dl_loader_rate(&loader, 0, u64::MAX).expect("epoch");
    assert_eq!(all.cells, c.n_obs());
    assert!(all.first_batch <= all.seconds);
    // Stops at the first batch that reaches `max_cells`.
    let some = annbatch::throughput::dl_loader_rate(&loader, 1, 40).expect("epoch");
    assert_eq!(some.cells, 64);
}
