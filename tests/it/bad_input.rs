//! Bad input gets a typed error, never a panic: one test per kind of damage.

use crate::common;

use std::path::{Path, PathBuf};

use annbatch::write::{attrs, Compressor, Layout, Writer};
use annbatch::{AnnDataStore, DatasetCollection, Error};
use common::{genes, write_csr, Csr};
use serde_json::{json, Value};

fn small() -> Csr {
    Csr::from_dense(&[
        vec![1.0, 0.0, 2.0, 0.0],
        vec![0.0, 0.0, 0.0, 0.0],
        vec![0.0, 3.0, 0.0, 4.0],
        vec![5.0, 6.0, 7.0, 8.0],
    ])
}

/// A valid one-AnnData store in a fresh temp dir.
fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a.zarr");
    write_csr(
        &root,
        "",
        &small(),
        &genes(4),
        Layout {
            chunk_rows: 1,
            shard_rows: 2,
        },
    );
    (dir, root)
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(path, v.to_string()).expect("write");
}

/// `X/indptr` replaced by `values` makes opening the store fail with `InvalidIndptr`, its reason
/// naming `why`.
fn assert_indptr_refused(values: &[i64], why: &str) {
    let (_d, root) = store();
    overwrite_indptr(&root, values);
    match AnnDataStore::open(&root) {
        Err(Error::InvalidIndptr { reason, .. }) => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected InvalidIndptr, got {other:?}"),
    }
}

fn overwrite_indptr(root: &Path, values: &[i64]) {
    let writer = Writer::create(root).expect("writer");
    std::fs::remove_dir_all(root.join("X/indptr")).expect("rm");
    let n = values.len() as u64;
    writer
        .array(
            "X/indptr",
            values,
            &[n],
            (n, n),
            Compressor::Zstd,
            attrs(&[]),
        )
        .expect("write indptr");
}

fn read_all(root: &Path) -> annbatch::Result<()> {
    let c = DatasetCollection::open(root)?;
    let mut batch = c.new_batch();
    c.read_rows(&[0..c.n_obs()], &mut batch)
}

#[test]
fn the_valid_fixture_reads() {
    let (_d, root) = store();
    read_all(&root).expect("valid store reads");
}

#[test]
fn missing_element_is_named() {
    let (_d, root) = store();
    std::fs::remove_dir_all(root.join("X/indptr")).expect("rm");
    match AnnDataStore::open(&root) {
        Err(Error::MissingElement { path, element }) => {
            assert_eq!((path.as_str(), element.as_str()), ("X", "indptr"))
        }
        other => panic!("expected MissingElement, got {other:?}"),
    }
    let (_d, root) = store();
    std::fs::remove_dir_all(root.join("var")).expect("rm");
    assert!(matches!(
        AnnDataStore::open(&root),
        Err(Error::MissingElement { .. })
    ));
}

#[test]
fn not_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        DatasetCollection::open(dir.path().join("nope.zarr")),
        Err(Error::Io { .. })
    ));
    // An empty directory has no group metadata.
    assert!(matches!(
        DatasetCollection::open(dir.path()),
        Err(Error::MissingElement { .. })
    ));
}

#[test]
fn garbage_metadata_is_an_error() {
    let (_d, root) = store();
    std::fs::write(root.join("X/data/zarr.json"), b"{ not json").expect("write");
    let err = AnnDataStore::open(&root).expect_err("garbage metadata");
    assert!(matches!(err, Error::Zarr { .. }), "{err:?}");
    assert!(
        err.to_string().contains("X/data/zarr.json"),
        "names the file: {err}"
    );
    // The root's own zarr.json, as the loader opens it.
    let (_d, root) = store();
    std::fs::write(root.join("zarr.json"), b"\x00garbage").expect("write");
    let err = DatasetCollection::open(&root).expect_err("garbage root metadata");
    assert!(
        err.to_string().contains("zarr.json"),
        "names the file: {err}"
    );
}

#[test]
fn unknown_encoding() {
    let (_d, root) = store();
    edit_json(&root.join("X/zarr.json"), |v| {
        v["attributes"]["encoding-type"] = json!("coo_matrix")
    });
    match AnnDataStore::open(&root) {
        Err(Error::UnknownEncoding { encoding_type, .. }) => {
            assert_eq!(encoding_type, "coo_matrix")
        }
        other => panic!("expected UnknownEncoding, got {other:?}"),
    }
    let (_d, root) = store();
    edit_json(&root.join("obs/cell_type/zarr.json"), |v| {
        v["attributes"]["encoding-type"] = json!("awkward-array")
    });
    let adata = AnnDataStore::open(&root).expect("X is fine");
    assert!(matches!(
        adata.obs_column("cell_type"),
        Err(Error::UnknownEncoding { .. })
    ));
}

#[test]
fn indptr_not_starting_at_zero() {
    assert_indptr_refused(&[1, 2, 2, 4, 8], "start at 0");
}

#[test]
fn indptr_not_monotone() {
    assert_indptr_refused(&[0, 2, 1, 4, 8], "not monotone");
}

#[test]
fn indptr_ending_past_data() {
    assert_indptr_refused(&[0, 2, 2, 4, 9], "past the 8");
}

#[test]
fn indptr_claiming_a_huge_length_is_refused_before_reading() {
    let (_d, root) = store();
    edit_json(&root.join("X/indptr/zarr.json"), |v| {
        v["shape"] = serde_json::json!([1_000_000_000_000_000u64]);
    });
    let err = AnnDataStore::open(&root).expect_err("refused");
    assert!(
        matches!(&err, Error::InvalidIndptr { reason, .. } if reason.contains("n_obs + 1 = 5")),
        "{err}"
    );
}

#[test]
fn indptr_of_wrong_length() {
    let (_d, root) = store();
    overwrite_indptr(&root, &[0, 2, 4, 8]);
    assert!(matches!(
        AnnDataStore::open(&root),
        Err(Error::InvalidIndptr { .. })
    ));
}

#[test]
fn column_index_out_of_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a.zarr");
    let mut m = small();
    m.indices[5] = 4; // n_var is 4
    write_csr(&root, "", &m, &genes(4), Layout::default());
    let adata = AnnDataStore::open(&root).expect("open checks indptr only");
    let mut batch = adata.x().new_batch();
    match adata.x().read_rows(&[0..4], &mut batch) {
        Err(Error::IndexOutOfBounds { index, n_var, .. }) => assert_eq!((index, n_var), (4, 4)),
        other => panic!("expected IndexOutOfBounds, got {other:?}"),
    }
    // Rows before the bad value still read, and a failed read leaves the batch as it was.
    adata
        .x()
        .read_rows(&[0..2], &mut batch)
        .expect("rows 0..2 are clean");
    let before = batch.clone();
    assert!(adata.x().append_rows(&[2..4], &mut batch).is_err());
    assert_eq!(batch, before);
}

#[test]
fn mismatched_var_between_datasets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("c.zarr");
    write_csr(&root, "dataset_0", &small(), &genes(4), Layout::default());
    let mut other = genes(4);
    other[2] = "XIST".into();
    write_csr(&root, "dataset_1", &small(), &other, Layout::default());
    let writer = Writer::create(&root).expect("writer");
    writer
        .group(
            "",
            attrs(&[
                ("encoding-type", json!("annbatch-preshuffled")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )
        .expect("root");
    match DatasetCollection::open(&root) {
        Err(Error::VarMismatch {
            dataset, detail, ..
        }) => {
            assert_eq!(dataset, "dataset_1");
            assert!(detail.contains("XIST"), "{detail}");
        }
        other => panic!("expected VarMismatch, got {other:?}"),
    }
}

#[test]
fn empty_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = Writer::create(dir.path()).expect("writer");
    writer
        .group(
            "",
            attrs(&[
                ("encoding-type", json!("annbatch-preshuffled")),
                ("encoding-version", json!("0.1.0")),
            ]),
        )
        .expect("root");
    assert!(matches!(
        DatasetCollection::open(dir.path()),
        Err(Error::EmptyCollection { .. })
    ));
}

#[test]
fn truncated_shard() {
    let (_d, root) = store();
    let shard = root.join("X/data/c/0");
    let bytes = std::fs::read(&shard).expect("read");
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = read_all(&root).expect_err("truncated shard must fail");
    assert!(
        matches!(err, Error::CorruptChunk { .. } | Error::Zarr { .. }),
        "{err:?}"
    );
}

#[test]
fn corrupt_chunk_payload_and_shard_index() {
    // The first bytes of a shard are the first inner chunk's blosc header.
    let (_d, root) = store();
    let shard = root.join("X/data/c/0");
    let mut bytes = std::fs::read(&shard).expect("read");
    for b in bytes.iter_mut().take(12) {
        *b = 0xff;
    }
    std::fs::write(&shard, &bytes).expect("write");
    match read_all(&root) {
        Err(Error::CorruptChunk { path, chunk, .. }) => {
            assert_eq!((path.as_str(), chunk), ("X/data", 0))
        }
        other => panic!("expected CorruptChunk, got {other:?}"),
    }
    // The shard index ends in a crc32c checksum.
    let (_d, root) = store();
    let shard = root.join("X/indices/c/0");
    let mut bytes = std::fs::read(&shard).expect("read");
    let n = bytes.len();
    bytes[n - 6] ^= 0x5a;
    std::fs::write(&shard, &bytes).expect("write");
    let err = read_all(&root).expect_err("bad shard index must fail");
    assert!(
        matches!(err, Error::CorruptChunk { .. } | Error::Zarr { .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_dtypes() {
    let (_d, root) = store();
    let writer = Writer::create(&root).expect("writer");
    std::fs::remove_dir_all(root.join("X/indices")).expect("rm");
    let as_float: Vec<f32> = small().indices.iter().map(|&i| i as f32).collect();
    writer
        .array(
            "X/indices",
            &as_float,
            &[8],
            (8, 8),
            Compressor::Zstd,
            attrs(&[]),
        )
        .expect("write");
    match AnnDataStore::open(&root) {
        Err(Error::UnsupportedDtype { found, .. }) => assert_eq!(found, "float32"),
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
    let (_d, root) = store();
    let writer = Writer::create(&root).expect("writer");
    std::fs::remove_dir_all(root.join("X/data")).expect("rm");
    let strings: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    writer
        .array(
            "X/data",
            &strings,
            &[8],
            (8, 8),
            Compressor::Zstd,
            attrs(&[]),
        )
        .expect("write");
    assert!(matches!(
        AnnDataStore::open(&root),
        Err(Error::UnsupportedDtype { .. })
    ));
}

#[test]
fn dense_x_must_be_two_dimensional() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("d.zarr");
    write_csr(&root, "", &small(), &genes(4), Layout::default());
    std::fs::remove_dir_all(root.join("X")).expect("rm");
    let writer = Writer::create(&root).expect("writer");
    writer
        .array(
            "X",
            &[1.0f32, 2.0, 3.0, 4.0],
            &[4],
            (2, 4),
            Compressor::BloscLz4,
            attrs(&[
                ("encoding-type", json!("array")),
                ("encoding-version", json!("0.2.0")),
            ]),
        )
        .expect("write");
    assert!(matches!(
        AnnDataStore::open(&root),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn var_length_must_match_x() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a.zarr");
    write_csr(&root, "", &small(), &genes(5), Layout::default());
    assert!(matches!(
        AnnDataStore::open(&root),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn rows_out_of_range() {
    let (_d, root) = store();
    let c = DatasetCollection::open(&root).expect("open");
    let mut batch = c.new_batch();
    assert!(matches!(
        c.read_rows(&[2..5], &mut batch),
        Err(Error::RowsOutOfRange {
            end: 5,
            n_obs: 4,
            ..
        })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = [3..1];
    assert!(matches!(
        c.read_rows(&backwards, &mut batch),
        Err(Error::RowsOutOfRange { .. })
    ));
    assert!(c.split(0..9).is_err());
    assert_eq!(c.locate(4), None);
}

#[test]
fn category_codes_out_of_range() {
    let (_d, root) = store();
    let writer = Writer::create(&root).expect("writer");
    std::fs::remove_dir_all(root.join("obs/cell_type/codes")).expect("rm");
    writer
        .array(
            "obs/cell_type/codes",
            &[0i8, 1, 7, 2],
            &[4],
            (4, 4),
            Compressor::Zstd,
            attrs(&[]),
        )
        .expect("write");
    let adata = AnnDataStore::open(&root).expect("open");
    match adata.obs_column("cell_type") {
        Err(Error::InvalidCategoryCode {
            row: 2,
            code: 7,
            n_categories: 3,
            ..
        }) => {}
        other => panic!("expected InvalidCategoryCode, got {other:?}"),
    }
    assert!(matches!(
        adata.obs_column("no_such_column"),
        Err(Error::UnknownObsColumn { available, .. }) if available == ["cell_type"]
    ));
}
