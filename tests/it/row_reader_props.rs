//! Property tests: the row-range reader against an in-memory matrix, over random shapes,
//! chunkings, shardings and requests (few cases: each writes a store).

use crate::common;

use annbatch::write::{attrs, Compressor, Layout, Writer};
use annbatch::{AnnDataStore, XBatch};
use common::{genes, write_csr, Csr};
use proptest::prelude::*;
use serde_json::json;

fn matrix() -> impl Strategy<Value = Vec<Vec<f32>>> {
    (1usize..40, 1usize..30).prop_flat_map(|(rows, cols)| {
        prop::collection::vec(
            prop::collection::vec(prop_oneof![3 => Just(0.0f32), 1 => 1.0f32..100.0], cols),
            rows,
        )
    })
}

/// Row ranges of an `n`-row matrix from arbitrary pairs (empty ranges included).
fn ranges_of(picks: &[(u64, u64)], n: u64) -> Vec<std::ops::Range<u64>> {
    picks
        .iter()
        .map(|&(a, b)| {
            let (a, b) = (a % n, b % (n + 1));
            a.min(b)..a.max(b)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn csr_rows_equal_the_in_memory_rows(
        dense in matrix(),
        chunk_rows in 1u64..6,
        shard_rows in 1u64..12,
        picks in prop::collection::vec((0u64..40, 0u64..41), 1..6),
    ) {
        let m = Csr::from_dense(&dense);
        let n = m.n_obs() as u64;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("p.zarr");
        write_csr(&root, "", &m, &genes(m.n_var), Layout { chunk_rows, shard_rows });
        let adata = AnnDataStore::open(&root).expect("open");
        let mut batch = adata.x().new_batch();
        let ranges = ranges_of(&picks, n);
        adata.x().read_rows(&ranges, &mut batch).expect("read");
        let XBatch::Csr(csr) = &batch else { panic!("csr") };
        prop_assert_eq!(csr.indptr[0], 0);
        prop_assert!(csr.indptr.windows(2).all(|w| w[0] <= w[1]));
        prop_assert_eq!(*csr.indptr.last().expect("indptr") as usize, csr.nnz());
        let mut k = 0;
        for r in &ranges {
            for row in r.clone() {
                let (idx, val) = csr.row(k).expect("row");
                let got: Vec<(i32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
                prop_assert_eq!(got, m.row(row as usize));
                k += 1;
            }
        }
        prop_assert_eq!(k, csr.n_rows());
    }

    #[test]
    fn dense_rows_equal_the_in_memory_rows(
        dense in matrix(),
        chunk_rows in 1u64..6,
        shard_rows in 1u64..12,
        picks in prop::collection::vec((0u64..40, 0u64..41), 1..5),
    ) {
        let n = dense.len() as u64;
        let width = dense[0].len() as u64;
        let flat: Vec<f32> = dense.concat();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("d.zarr");
        write_csr(&root, "", &Csr::from_dense(&dense), &genes(width), Layout::default());
        std::fs::remove_dir_all(root.join("X")).expect("rm");
        Writer::create(&root).expect("writer").array("X", &flat, &[n, width], (chunk_rows, shard_rows), Compressor::BloscLz4,
            attrs(&[("encoding-type", json!("array")), ("encoding-version", json!("0.2.0"))]),
        ).expect("write dense");
        let adata = AnnDataStore::open(&root).expect("open");
        let ranges = ranges_of(&picks, n);
        let mut batch = adata.x().new_batch();
        adata.x().read_rows(&ranges, &mut batch).expect("read");
        let XBatch::Dense(d) = &batch else { panic!("dense") };
        let want: Vec<f32> = ranges.iter().flat_map(|r| r.clone()).flat_map(|i| dense[i as usize].clone()).collect();
        prop_assert_eq!(&d.data, &want);
    }
}
