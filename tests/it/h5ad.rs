//! `.h5ad` reading (feature `hdf5`) against reference values from anndata, including the
//! legacy encoding of `oligodendroglioma.h5ad`.
#![cfg(feature = "hdf5")]

use crate::common;

use annbatch::h5ad::H5adFile;
use annbatch::{Column, Error, XBatch};
use common::{data, labels, sorted_row, Reference};

fn le_f64(path: std::path::PathBuf) -> Vec<f64> {
    std::fs::read(path)
        .expect("read")
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn modern_csr_h5ad_matches_anndata() {
    let reference = Reference::load("pbmc68k_raw_csr");
    let f = H5adFile::open(data("pbmc68k_raw_csr.h5ad")).expect("open");
    assert!(f.is_sparse());
    assert_eq!((f.n_obs(), f.n_var()), (700, 765));
    assert_eq!(f.var_names(), reference.var_names.as_slice());
    assert_eq!(f.obs_names().expect("obs"), reference.obs_names);
    let mut batch = f.new_batch();
    f.read_rows(&[650..700, 0..13, 13..13, 300..333], &mut batch)
        .expect("read");
    let rows: Vec<u64> = (650..700).chain(0..13).chain(300..333).collect();
    let XBatch::Csr(csr) = &batch else {
        panic!("csr")
    };
    assert_eq!(csr.n_rows(), rows.len());
    for (k, &r) in rows.iter().enumerate() {
        let (idx, val) = csr.row(k).expect("row");
        assert_eq!(sorted_row(idx, val), reference.rows[r as usize], "row {r}");
    }
    assert_eq!(
        labels(&f.obs_column("cell_type").expect("cell_type")),
        reference.obs_strings("cell_type")
    );
    match f.obs_column("n_counts").expect("n_counts") {
        // n_counts is float32 in the file, and stays float32.
        Column::Float32(v) => {
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            assert_eq!(v, reference.obs_f64("n_counts"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dense_h5ad_matches_anndata() {
    let reference = Reference::load("pbmc68k_dense");
    let f = H5adFile::open(data("10x_pbmc68k_reduced.h5ad")).expect("open");
    assert!(!f.is_sparse());
    let mut batch = f.new_batch();
    f.read_rows(&[0..700], &mut batch).expect("read");
    let XBatch::Dense(d) = &batch else {
        panic!("dense")
    };
    let dense = reference.dense.as_ref().expect("dense reference");
    for (i, row) in dense.iter().enumerate() {
        assert_eq!(d.row(i).expect("row"), row.as_slice(), "row {i}");
    }
    assert_eq!(
        labels(&f.obs_column("bulk_labels").expect("bulk_labels")),
        reference.obs_strings("bulk_labels")
    );
    assert_eq!(f.obs_columns().expect("columns").len(), 8);
    assert!(matches!(
        f.obs_column("n_genes").expect("n_genes"),
        Column::Int { .. }
    ));
}

#[test]
fn legacy_encoding_h5ad_matches_anndata() {
    let reference = Reference::load("oligodendroglioma");
    let f = H5adFile::open(data("oligodendroglioma.h5ad")).expect("open");
    assert_eq!((f.n_obs(), f.n_var()), (184, 9450));
    assert_eq!(f.var_names(), reference.var_names.as_slice());
    assert_eq!(f.obs_names().expect("obs"), reference.obs_names);
    // Legacy categorical: int8 codes + obs/__categories/cell_type.
    assert_eq!(
        labels(&f.obs_column("cell_type").expect("cell_type")),
        reference.obs_strings("cell_type")
    );
    let stats = le_f64(data("reference/oligodendroglioma/rowstats.f64"));
    let mut batch = f.new_batch();
    f.read_rows(&[0..184], &mut batch).expect("read");
    let XBatch::Csr(csr) = &batch else {
        panic!("csr")
    };
    for i in 0..184 {
        let (idx, val) = csr.row(i).expect("row");
        let sum: f64 = val.iter().map(|&v| f64::from(v)).sum();
        let weighted: f64 = idx
            .iter()
            .zip(val)
            .map(|(&j, &v)| f64::from(j + 1) * f64::from(v))
            .sum();
        let want = &stats[i * 3..i * 3 + 3];
        assert_eq!(idx.len() as f64, want[0], "nnz of row {i}");
        assert!(
            (sum - want[1]).abs() <= 1e-9 * want[1].abs().max(1.0),
            "sum of row {i}"
        );
        assert!(
            (weighted - want[2]).abs() <= 1e-9 * want[2].abs().max(1.0),
            "weighted sum of row {i}"
        );
    }
}

#[test]
fn bad_h5ad_inputs_are_typed_errors() {
    assert!(matches!(
        H5adFile::open(data("no_such.h5ad")),
        Err(Error::Io { .. })
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let not_hdf5 = dir.path().join("x.h5ad");
    std::fs::write(&not_hdf5, b"this is not HDF5").expect("write");
    assert!(matches!(H5adFile::open(&not_hdf5), Err(Error::Hdf5 { .. })));
    let no_x = dir.path().join("no_x.h5ad");
    {
        let file = hdf5::File::create(&no_x).expect("create");
        file.create_group("obs").expect("obs");
    }
    match H5adFile::open(&no_x) {
        Err(Error::MissingElement { element, .. }) => assert_eq!(element, "X"),
        other => panic!("expected MissingElement, got {other:?}"),
    }
    let f = H5adFile::open(data("pbmc68k_raw_csr.h5ad")).expect("open");
    let mut batch = f.new_batch();
    assert!(matches!(
        f.read_rows(&[690..701], &mut batch),
        Err(Error::RowsOutOfRange { .. })
    ));
}
