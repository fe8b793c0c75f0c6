//! Our reader against real files: anndata-written zarr v2/v3 stores and annbatch-written
//! collections, row by row against the source `.h5ad` as anndata reads it.

use crate::common;

use std::collections::HashSet;

use annbatch::{Column, DatasetCollection, XBatch};
use common::{data, labels, sorted_row, Reference};
use serde_json::Value;

/// Reads every row of `c` in a scrambled multi-range order and checks each against `reference`
/// through the obs names. Returns the source rows seen, in global row order.
fn check_rows_against(c: &DatasetCollection, reference: &Reference) -> Vec<usize> {
    assert_eq!(c.n_var() as usize, reference.var_names.len());
    assert_eq!(c.var_names(), reference.var_names.as_slice());
    let names = c.obs_names().expect("obs names");
    assert_eq!(names.len() as u64, c.n_obs());
    let source: Vec<usize> = names
        .iter()
        .map(|n| {
            *reference
                .row_of
                .get(n)
                .unwrap_or_else(|| panic!("unknown cell {n}"))
        })
        .collect();
    // Requests of 7-row ranges, visited out of order, 5 ranges per request.
    let n = c.n_obs();
    let mut starts: Vec<u64> = (0..n).step_by(7).collect();
    starts.reverse();
    let third = starts.len() / 3;
    starts.rotate_left(third);
    let mut batch = c.new_batch();
    for request in starts.chunks(5) {
        let ranges: Vec<_> = request.iter().map(|&s| s..(s + 7).min(n)).collect();
        c.read_rows(&ranges, &mut batch).expect("read rows");
        let mut k = 0;
        for r in &ranges {
            for global in r.clone() {
                let want = &reference.rows[source[global as usize]];
                match &batch {
                    XBatch::Csr(b) => {
                        let (idx, val) = b.row(k).expect("row");
                        assert_eq!(&sorted_row(idx, val), want, "global row {global}");
                    }
                    XBatch::Dense(b) => {
                        let dense = reference.dense.as_ref().expect("dense reference");
                        assert_eq!(
                            b.row(k).expect("row"),
                            dense[source[global as usize]].as_slice()
                        );
                    }
                }
                k += 1;
            }
        }
        assert_eq!(k, batch.n_rows());
    }
    source
}

#[test]
fn anndata_zarr_v2_and_v3_stores_match_the_h5ad() {
    let reference = Reference::load("pbmc68k_raw_csr");
    for store in ["pbmc68k_raw_csr.v2.zarr", "pbmc68k_raw_csr.v3.zarr"] {
        let c = DatasetCollection::open(data(store)).expect(store);
        assert!(!c.is_preshuffled());
        assert_eq!((c.n_obs(), c.n_var()), (700, 765));
        let source = check_rows_against(&c, &reference);
        assert_eq!(
            source,
            (0..700).collect::<Vec<_>>(),
            "{store} keeps the h5ad's order"
        );
        assert_eq!(
            labels(&c.obs_column("cell_type").expect("cell_type")),
            reference.obs_strings("cell_type")
        );
        assert_eq!(
            labels(&c.obs_column("phase").expect("phase")),
            reference.obs_strings("phase")
        );
        match c.obs_column("n_counts").expect("n_counts") {
            // n_counts is float32 in the file, and stays float32.
            Column::Float32(v) => {
                let v: Vec<f64> = v.into_iter().map(f64::from).collect();
                assert_eq!(v, reference.obs_f64("n_counts"))
            }
            other => panic!("n_counts read as {other:?}"),
        }
    }
}

#[test]
fn annbatch_sparse_collection_holds_every_source_row_once() {
    let reference = Reference::load("pbmc68k_raw_csr");
    let c = DatasetCollection::open(data("annbatch_collection.zarr")).expect("open");
    assert!(c.is_preshuffled());
    assert_eq!(c.dataset_names(), ["dataset_0", "dataset_1", "dataset_2"]);
    assert_eq!(c.offsets(), [0, 300, 600, 700]);
    let source = check_rows_against(&c, &reference);
    let unique: HashSet<_> = source.iter().collect();
    assert_eq!(unique.len(), 700, "every source cell exactly once");
    // Labels follow their rows through the shuffle; categories unified across datasets.
    let cell_type = labels(&c.obs_column("cell_type").expect("cell_type"));
    let want = reference.obs_strings("cell_type");
    for (global, &src) in source.iter().enumerate() {
        assert_eq!(cell_type[global], want[src]);
    }
    match c.obs_column("src_path").expect("src_path") {
        Column::Categorical { categories, .. } => assert_eq!(categories.len(), 2),
        other => panic!("src_path read as {other:?}"),
    }
}

#[test]
fn annbatch_dense_collection_matches_the_h5ad() {
    let reference = Reference::load("pbmc68k_dense");
    let c = DatasetCollection::open(data("annbatch_dense_collection.zarr")).expect("open");
    assert!(matches!(c.new_batch(), XBatch::Dense(_)));
    let source = check_rows_against(&c, &reference);
    assert_eq!(source.iter().collect::<HashSet<_>>().len(), 700);
    let bulk = labels(&c.obs_column("bulk_labels").expect("bulk_labels"));
    let want = reference.obs_strings("bulk_labels");
    for (global, &src) in source.iter().enumerate() {
        assert_eq!(bulk[global], want[src]);
    }
}

/// annbatch 0.3.1's sequential batches name global rows by index; the same global rows must
/// have the same row sums, nnz and labels in our reader.
#[test]
fn global_rows_agree_with_annbatch_sequential_output() {
    let text =
        std::fs::read_to_string(data("annbatch_collection.sequential_batches.json")).expect("json");
    let json: Value = serde_json::from_str(&text).expect("parse");
    let c = DatasetCollection::open(data("annbatch_collection.zarr")).expect("open");
    assert_eq!(json["n_obs"].as_u64(), Some(c.n_obs()));
    assert_eq!(json["n_var"].as_u64(), Some(c.n_var()));
    let cell_type = labels(&c.obs_column("cell_type").expect("cell_type"));
    let mut batch = c.new_batch();
    let mut seen = 0;
    for b in json["batches"].as_array().expect("batches") {
        let index: Vec<u64> = b["index"]
            .as_array()
            .expect("index")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let ranges: Vec<_> = index.iter().map(|&i| i..i + 1).collect();
        c.read_rows(&ranges, &mut batch).expect("read");
        let XBatch::Csr(csr) = &batch else {
            panic!("sparse collection")
        };
        for (k, &global) in index.iter().enumerate() {
            let (_, values) = csr.row(k).expect("row");
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (sum - b["row_sum"][k].as_f64().expect("sum")).abs() < 1e-3,
                "row {global}"
            );
            assert_eq!(values.len() as u64, b["row_nnz"][k].as_u64().expect("nnz"));
            assert_eq!(
                cell_type[global as usize],
                b["cell_type"][k].as_str().expect("label")
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 700);
}

#[test]
fn a_single_dataset_of_a_collection_opens_as_an_anndata_store() {
    let adata =
        annbatch::AnnDataStore::open(data("annbatch_collection.zarr/dataset_1")).expect("open");
    assert_eq!((adata.n_obs(), adata.n_var()), (300, 765));
    assert_eq!(
        adata.obs_columns().expect("columns"),
        ["cell_type", "phase", "n_counts", "src_path"]
    );
    let mut batch = adata.x().new_batch();
    adata.x().read_rows(&[0..300], &mut batch).expect("read");
    let XBatch::Csr(csr) = batch else {
        panic!("csr")
    };
    assert_eq!(csr.nnz() as u64, 74877);
    assert_eq!(csr.indptr.last().copied(), Some(74877));
}
