//! A careless user's input, not a damaged one: each mistake is an error that says what to do.

use crate::common;

use std::path::{Path, PathBuf};

use annbatch::convert::{add_adatas, ConvertOptions, Size};
use annbatch::write::Layout;
use annbatch::{DatasetCollection, Error};
use common::{write_csr, Csr};

fn store(dir: &Path, name: &str, n_obs: usize, genes: &[&str]) -> PathBuf {
    let root = dir.join(name);
    let rows: Vec<Vec<f32>> = (0..n_obs)
        .map(|i| (0..genes.len()).map(|j| ((i + j) % 3) as f32).collect())
        .collect();
    let m = if n_obs == 0 {
        Csr {
            indptr: vec![0],
            indices: vec![],
            data: vec![],
            n_var: genes.len() as u64,
        }
    } else {
        Csr::from_dense(&rows)
    };
    let names: Vec<String> = genes.iter().map(|g| g.to_string()).collect();
    write_csr(
        &root,
        "",
        &m,
        &names,
        Layout {
            chunk_rows: 4,
            shard_rows: 8,
        },
    );
    root
}

fn options() -> ConvertOptions {
    ConvertOptions {
        seed: Some(0),
        quiet: true,
        shuffle_chunk_size: 4,
        dataset_size: Size::Rows(40),
        ..ConvertOptions::default()
    }
}

#[test]
fn appending_an_input_that_shares_no_gene_is_refused_unless_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let human = store(dir.path(), "human.zarr", 20, &["CD3E", "MS4A1", "LYZ"]);
    let mouse = store(dir.path(), "mouse.zarr", 20, &["Cd3e", "Ms4a1", "Lyz2"]);
    let out = dir.path().join("c.zarr");
    add_adatas(&out, &[&human], &options()).expect("create");
    match add_adatas(&out, &[&mouse], &options()) {
        Err(Error::VarMismatch { detail, .. }) => {
            assert!(detail.contains("shares none") && detail.contains("allow_disjoint_var"))
        }
        other => panic!("expected VarMismatch, got {other:?}"),
    }
    assert_eq!(DatasetCollection::open(&out).expect("open").n_obs(), 20);
    let anyway = ConvertOptions {
        allow_disjoint_var: true,
        ..options()
    };
    add_adatas(&out, &[&mouse], &anyway).expect("append when asked");
    assert_eq!(DatasetCollection::open(&out).expect("open").n_obs(), 40);
}

#[test]
fn an_empty_input_says_it_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = store(dir.path(), "empty.zarr", 0, &["a", "b"]);
    let err = add_adatas(dir.path().join("c.zarr"), &[&empty], &options())
        .expect_err("nothing to convert");
    assert!(matches!(err, Error::EmptyInput { .. }), "{err:?}");
    assert!(err.to_string().contains("holds no cells"), "{err}");
    assert!(err.to_string().contains("empty.zarr"), "{err}");
}

#[test]
fn a_csc_x_says_how_to_make_it_csr() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Square, so that its CSR arrays are a valid CSC matrix too.
    let root = store(dir.path(), "a.zarr", 2, &["a", "b"]);
    let meta = root.join("X/zarr.json");
    let text = std::fs::read_to_string(&meta).expect("read");
    std::fs::write(&meta, text.replace("csr_matrix", "csc_matrix")).expect("write");
    let err = DatasetCollection::open(&root).expect_err("csc");
    let text = err.to_string();
    assert!(
        text.contains("csc_matrix") && text.contains("tocsr()") && text.contains("convert"),
        "{text}"
    );
}

#[test]
fn an_empty_zarr_group_becomes_the_collection_but_other_content_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = store(dir.path(), "in.zarr", 12, &["a", "b"]);
    // What `zarr.open_group(path, mode="a")` (annbatch's DatasetCollection(path)) leaves.
    let out = dir.path().join("c.zarr");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(
        out.join("zarr.json"),
        r#"{"zarr_format": 3, "node_type": "group", "attributes": {}}"#,
    )
    .expect("zarr.json");
    let report = add_adatas(&out, &[&input], &options()).expect("an empty group is filled");
    assert_eq!(report.n_obs, 12);
    assert_eq!(DatasetCollection::open(&out).expect("open").n_obs(), 12);
    // A group holding anything else is not overwritten.
    let busy = dir.path().join("busy.zarr");
    std::fs::create_dir_all(busy.join("mine")).expect("mkdir");
    std::fs::copy(out.join("zarr.json"), busy.join("zarr.json")).expect("copy");
    match add_adatas(&busy, &[&input], &options()) {
        Err(Error::OutputExists { .. }) => {}
        other => panic!("expected OutputExists, got {other:?}"),
    }
    assert!(busy.join("mine").is_dir());
}
