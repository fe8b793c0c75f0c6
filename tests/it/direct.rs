//! Tensor batches scattered straight from decoded chunks (`Loader::epoch` on CSR collections)
//! equal the staged host batches, resume mid-fetch, handle rows drawn twice, and fail cleanly.
#![cfg(feature = "tch")]

use crate::common;

use annbatch::loader::HostObs;
use annbatch::sampler::{LoadRequest, Requests, Sampler};
use annbatch::{Batch, Error, HostBatch, Loader, LoaderState, XBatch};
use common::small_collection;
use tch::Tensor;

fn values<T: tch::kind::Element + Copy + Default>(t: &Tensor) -> Vec<T> {
    let n = t.numel();
    let mut out = vec![T::default(); n];
    t.f_to_kind(T::KIND)
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_copy_data(&mut out, n))
        .expect("copy");
    out
}

/// The tensor batch equals the host batch: CSR arrays, obs codes, index.
fn assert_same(tensor: &Batch, host: &HostBatch) {
    let XBatch::Csr(x) = &host.x else {
        panic!("csr")
    };
    assert_eq!(tensor.x.size(), [x.n_rows() as i64, x.n_var as i64]);
    assert_eq!(
        values::<i32>(&tensor.x.f_crow_indices().expect("crow")),
        x.indptr
    );
    assert_eq!(
        values::<i32>(&tensor.x.f_col_indices().expect("col")),
        x.indices
    );
    assert_eq!(values::<f32>(&tensor.x.f_values().expect("values")), x.data);
    for (t, h) in tensor.obs.iter().zip(&host.obs) {
        match h {
            HostObs::Codes(codes) => assert_eq!(&values::<i64>(&t.values), codes),
            HostObs::Values(v) => assert_eq!(&values::<f32>(&t.values), v),
            HostObs::Float64(v) => assert_eq!(&values::<f64>(&t.values), v),
            HostObs::Int64(v) => assert_eq!(&values::<i64>(&t.values), v),
        }
    }
    assert_eq!(
        tensor.index.as_ref().map(values::<i64>),
        host.index.clone(),
        "index"
    );
}

fn loader(sampler: Option<Twice>) -> Loader {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = Loader::builder_for(small_collection(dir.path()))
        .batch_size(20)
        .chunk_size(10)
        .preload_nchunks(6)
        .shuffle(true)
        .seed(4)
        .return_index(true)
        .obs_keys(["cell_type"]);
    let loader = match sampler {
        Some(s) => builder.batch_sampler(s),
        None => builder,
    }
    .build()
    .expect("loader");
    // The loader keeps its files open: the directory may go.
    std::mem::forget(dir);
    loader
}

#[test]
fn scattered_batches_equal_the_staged_ones_and_resume_mid_fetch() {
    let loader = loader(None);
    let host: Vec<HostBatch> = loader
        .host_epoch(1)
        .expect("epoch")
        .map(|b| b.expect("host batch"))
        .collect();
    let direct: Vec<Batch> = loader
        .epoch(1)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect();
    assert_eq!(direct.len(), 50);
    for (d, h) in direct.iter().zip(&host) {
        assert_same(d, h);
    }
    // 3 batches per fetch: resume at a fetch edge and inside fetches.
    for k in [1u64, 3, 4, 49] {
        let tail: Vec<Batch> = loader
            .resume(LoaderState {
                epoch: 1,
                batches: k,
            })
            .expect("resume")
            .map(|b| b.expect("batch"))
            .collect();
        assert_eq!(tail.len() as u64, 50 - k);
        for (d, h) in tail.iter().zip(&host[k as usize..]) {
            assert_same(d, h);
        }
    }
}

/// Every fetch takes rows 0..10 of the request twice (with replacement).
struct Twice;

impl Sampler for Twice {
    fn batch_size(&self) -> usize {
        10
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
                requests: vec![k * 290..k * 290 + 20],
                splits: vec![(0..10).collect(), (0..10).rev().collect()],
            })
        })))
    }
}

#[test]
fn rows_drawn_twice_in_a_fetch_are_gathered() {
    let loader = loader(Some(Twice));
    let host: Vec<HostBatch> = loader
        .host_epoch(0)
        .expect("epoch")
        .map(|b| b.expect("host"))
        .collect();
    let direct: Vec<Batch> = loader
        .epoch(0)
        .expect("epoch")
        .map(|b| b.expect("batch"))
        .collect();
    assert_eq!(direct.len(), 4);
    for (d, h) in direct.iter().zip(&host) {
        assert_same(d, h);
    }
}

#[test]
fn a_corrupt_chunk_is_an_error_from_the_tensor_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = small_collection(dir.path()).path().to_path_buf();
    common::corrupt(&path.join("dataset_2/X/indices/c/1"));
    // Opened after the damage: damaged after opening, the file would be "changed".
    let c = std::sync::Arc::new(annbatch::DatasetCollection::open(&path).expect("reopen"));
    let loader = Loader::builder_for(c)
        .batch_size(50)
        .chunk_size(50)
        .preload_nchunks(2)
        .build()
        .expect("loader");
    let items: Vec<_> = loader.epoch(0).expect("epoch").collect();
    assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
    assert!(matches!(
        items.last(),
        Some(Err(Error::CorruptChunk { .. }))
    ));
}
