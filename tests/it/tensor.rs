//! Batches read from real collections become the right `tch::Tensor`s.
#![cfg(feature = "tch")]

use crate::common;

use annbatch::tensor::to_tensor;
use annbatch::DatasetCollection;
use common::data;
use tch::{Device, Kind, Tensor};

fn as_vec(t: &Tensor) -> Vec<f32> {
    let flat = t
        .f_reshape([-1])
        .expect("reshape")
        .f_to_kind(Kind::Float)
        .expect("kind");
    let n = flat.size()[0] as usize;
    let mut out = vec![0f32; n];
    flat.f_copy_data(&mut out, n).expect("copy");
    out
}

#[test]
fn sparse_batches_become_csr_tensors_equal_to_the_rows() {
    let c = DatasetCollection::open(data("annbatch_collection.zarr")).expect("open");
    let dense_c = DatasetCollection::open(data("pbmc68k_raw_csr.v3.zarr")).expect("open");
    let names = c.obs_names().expect("names");
    let ranges = [290..310, 650..700];
    let mut batch = c.new_batch();
    c.read_rows(&ranges, &mut batch).expect("read");
    let x = to_tensor(&batch, Device::Cpu).expect("tensor");
    // crow_indices exists only on sparse CSR tensors.
    assert_eq!(x.f_col_indices().expect("csr col").kind(), Kind::Int);
    assert_eq!(x.size(), [70, 765]);
    assert_eq!(x.f_crow_indices().expect("crow").kind(), Kind::Int);
    let got = as_vec(&x.f_to_dense(None, false).expect("dense"));
    // The same cells, found by name in the (unshuffled) v3 store.
    let source_names = dense_c.obs_names().expect("names");
    let mut src_batch = dense_c.new_batch();
    let source_rows: Vec<_> = ranges
        .iter()
        .flat_map(|r| r.clone())
        .map(|g| {
            let i = source_names
                .iter()
                .position(|n| *n == names[g as usize])
                .expect("name") as u64;
            i..i + 1
        })
        .collect();
    dense_c
        .read_rows(&source_rows, &mut src_batch)
        .expect("read");
    let want = as_vec(
        &to_tensor(&src_batch, Device::Cpu)
            .expect("t")
            .f_to_dense(None, false)
            .expect("d"),
    );
    assert_eq!(got, want);
}

#[test]
fn dense_batches_become_dense_tensors() {
    let c = DatasetCollection::open(data("annbatch_dense_collection.zarr")).expect("open");
    let mut batch = c.new_batch();
    c.read_rows(&[390..410], &mut batch).expect("read");
    let x = to_tensor(&batch, Device::Cpu).expect("tensor");
    assert!(x.f_crow_indices().is_err(), "dense, not CSR");
    assert_eq!(x.size(), [20, 765]);
    let annbatch::XBatch::Dense(d) = &batch else {
        panic!("dense")
    };
    assert_eq!(as_vec(&x), d.data);
}
