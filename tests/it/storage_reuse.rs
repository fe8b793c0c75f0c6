//! The loader reuses the memory of batches the consumer dropped, and never the memory of a
//! batch (or any view of it) the consumer still holds.
#![cfg(feature = "tch")]

use std::collections::HashSet;

use annbatch::demo::{self, SyntheticSpec};
use annbatch::store::write::Layout;
use annbatch::{Batch, HostBatch, Loader, XBatch};
use tch::{Kind, Tensor};

/// Batches of 512 rows × ~200 values: their arrays (~400 KB) are pooled.
fn loader(dir: &std::path::Path) -> Loader {
    let path = dir.join("c.zarr");
    let spec = SyntheticSpec {
        n_obs: 6_144,
        n_var: 3_000,
        mean_nnz: 200,
        n_classes: 3,
        dataset_size: 3_072,
        seed: 9,
        layout: Layout {
            chunk_rows: 64,
            shard_rows: 512,
        },
    };
    demo::write_collection(&path, &spec).expect("write");
    Loader::builder(&path)
        .batch_size(512)
        .chunk_size(256)
        .preload_nchunks(4)
        .shuffle(true)
        .seed(1)
        .build()
        .expect("loader")
}

/// Sums of a batch's column indices and values, as f64.
fn checksum(x: &Tensor) -> (f64, f64) {
    let sum = |t: Tensor| {
        t.f_sum(Kind::Double)
            .and_then(|s| s.f_double_value(&[]))
            .expect("sum")
    };
    (
        sum(x.f_col_indices().expect("col")),
        sum(x.f_values().expect("values")),
    )
}

fn host_checksum(b: &HostBatch) -> (f64, f64) {
    let XBatch::Csr(x) = &b.x else { panic!("csr") };
    (
        x.indices.iter().map(|&j| f64::from(j)).sum(),
        x.data.iter().map(|&v| f64::from(v)).sum(),
    )
}

#[test]
fn dropped_batches_are_reused_and_held_ones_stay_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loader = loader(dir.path());
    let expected: Vec<(f64, f64)> = loader
        .host_epoch(0)
        .expect("epoch")
        .map(|b| host_checksum(&b.expect("host")))
        .collect();
    assert_eq!(expected.len(), 12);
    for epoch in 0..3 {
        // Keep every third batch whole and the values of every fourth; drop the rest.
        let mut kept: Vec<(usize, Batch)> = Vec::new();
        let mut kept_values: Vec<(usize, Tensor, f64)> = Vec::new();
        let mut addresses = HashSet::new();
        for (i, batch) in loader.epoch(0).expect("epoch").enumerate() {
            let batch = batch.expect("batch");
            assert_eq!(checksum(&batch.x), expected[i], "epoch {epoch} batch {i}");
            let values = batch.x.f_values().expect("values");
            addresses.insert(values.data_ptr() as usize);
            if i % 3 == 0 {
                kept.push((i, batch));
            } else if i % 4 == 0 {
                kept_values.push((i, values, expected[i].1));
            }
        }
        for (i, batch) in &kept {
            assert_eq!(checksum(&batch.x), expected[*i], "held batch {i}");
        }
        for (i, values, sum) in &kept_values {
            let now = values
                .f_sum(Kind::Double)
                .and_then(|s| s.f_double_value(&[]))
                .expect("sum");
            assert_eq!(now, *sum, "held values of batch {i}");
        }
        // 12 batches, 4 kept whole and 2 by their values: dropped ones were written again.
        assert!(
            addresses.len() < 12,
            "epoch {epoch}: {} distinct value buffers for 12 batches",
            addresses.len()
        );
    }
}
