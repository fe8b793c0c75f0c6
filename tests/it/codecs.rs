//! Every codec and layout the reader claims: zarr v3 unsharded with gzip and crc32c, sharded
//! with zstd, v2 with blosc (the anndata fixture), and integer widths for indices and indptr.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use annbatch::write::Layout;
use annbatch::{AnnDataStore, XBatch};
use common::{genes, write_csr, Csr};
use serde_json::json;
use zarrs::array::{Array, ArrayMetadata, Element};
use zarrs::filesystem::FilesystemStore;

fn matrix() -> Csr {
    let rows: Vec<Vec<f32>> = (0..37)
        .map(|i| {
            (0..23)
                .map(|j| {
                    if (i * 7 + j * 3) % 5 == 0 {
                        (i * 23 + j) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    Csr::from_dense(&rows)
}

/// Rewrites the 1-D array at `path` of `root` with `codecs`, chunks of `chunk` elements, and
/// data type `data_type` holding `values`.
fn rewrite<T: Element + Clone>(
    root: &Path,
    path: &str,
    values: &[T],
    data_type: &str,
    chunk: u64,
    codecs: serde_json::Value,
) {
    std::fs::remove_dir_all(root.join(path)).expect("rm");
    let store = Arc::new(FilesystemStore::new(root).expect("store"));
    let n = values.len() as u64;
    let meta: ArrayMetadata = serde_json::from_value(json!({
        "zarr_format": 3, "node_type": "array", "shape": [n], "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": codecs, "attributes": {}
    }))
    .expect("metadata");
    let array = Array::new_with_metadata(store, &format!("/{path}"), meta).expect("array");
    array.store_metadata().expect("store metadata");
    for (i, part) in values.chunks(chunk as usize).enumerate() {
        let mut part = part.to_vec();
        part.resize(chunk as usize, part[0].clone());
        array.store_chunk(&[i as u64], part).expect("store chunk");
    }
}

fn check(root: &Path, m: &Csr) {
    let adata = AnnDataStore::open(root).expect("open");
    let mut batch = adata.x().new_batch();
    adata
        .x()
        .read_rows(&[30..37, 0..5, 11..20], &mut batch)
        .expect("read");
    let XBatch::Csr(csr) = batch else {
        panic!("csr")
    };
    for (k, row) in (30..37).chain(0..5).chain(11..20).enumerate() {
        let (idx, val) = csr.row(k).expect("row");
        let got: Vec<(i32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
        assert_eq!(got, m.row(row));
    }
}

#[test]
fn unsharded_v3_with_gzip_crc32c_and_various_integer_widths() {
    let m = matrix();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a.zarr");
    write_csr(
        &root,
        "",
        &m,
        &genes(23),
        Layout {
            chunk_rows: 4,
            shard_rows: 8,
        },
    );
    let gzip = json!([{"name": "bytes", "configuration": {"endian": "little"}},
                      {"name": "gzip", "configuration": {"level": 5}},
                      {"name": "crc32c"}]);
    rewrite(&root, "X/data", &m.data, "float32", 13, gzip.clone());
    check(&root, &m);
    // indices as int64, uint8 and int32; indptr as int32 and uint64.
    let i64s: Vec<i64> = m.indices.iter().map(|&i| i64::from(i)).collect();
    rewrite(&root, "X/indices", &i64s, "int64", 17, gzip.clone());
    check(&root, &m);
    let u8s: Vec<u8> = m.indices.iter().map(|&i| i as u8).collect();
    rewrite(&root, "X/indices", &u8s, "uint8", 9, gzip.clone());
    check(&root, &m);
    let i32s: Vec<i32> = m.indices.iter().map(|&i| i as i32).collect();
    rewrite(&root, "X/indices", &i32s, "int32", 1000, gzip.clone());
    let indptr32: Vec<i32> = m.indptr.iter().map(|&i| i as i32).collect();
    rewrite(&root, "X/indptr", &indptr32, "int32", 5, gzip.clone());
    check(&root, &m);
    let indptr_u64: Vec<u64> = m.indptr.iter().map(|&i| i as u64).collect();
    rewrite(&root, "X/indptr", &indptr_u64, "uint64", 38, gzip);
    check(&root, &m);
    // float64 values, zstd.
    let f64s: Vec<f64> = m.data.iter().map(|&v| f64::from(v)).collect();
    let zstd = json!([{"name": "bytes", "configuration": {"endian": "little"}},
                      {"name": "zstd", "configuration": {"level": 3, "checksum": true}}]);
    rewrite(&root, "X/data", &f64s, "float64", 50, zstd);
    check(&root, &m);
}
