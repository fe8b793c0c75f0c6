//! `annbatch::convert`: rows land exactly once and equal their source rows, runs are seeded,
//! bad input is a typed error, and an interrupted or failed run never leaves a collection that
//! looks complete (the process is killed mid-way).

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use annbatch::convert::{add_adatas, ConvertOptions, Size};
use annbatch::write::{attrs, Compressor, Layout, Writer};
use annbatch::{Column, DatasetCollection, Error, XBatch};
use common::{data, genes, write_csr, Csr, Reference};
use serde_json::json;

fn options(seed: u64) -> ConvertOptions {
    ConvertOptions {
        seed: Some(seed),
        quiet: true,
        dataset_size: Size::Rows(300),
        shuffle_chunk_size: 50,
        n_obs_per_chunk: 16,
        ..ConvertOptions::default()
    }
}

/// One row: obs name, src_path, sorted (column, value) entries.
type Row = (String, String, Vec<(i32, f32)>);

/// Every row of the collection at `path`.
fn rows_of(path: &Path) -> Vec<Row> {
    let c = DatasetCollection::open(path).expect("open collection");
    let names = c.obs_names().expect("obs names");
    let src = c.obs_column("src_path").expect("src_path").to_strings();
    let mut batch = c.new_batch();
    c.read_rows(&[0..c.n_obs()], &mut batch).expect("read");
    let XBatch::Csr(b) = batch else {
        panic!("csr expected")
    };
    (0..names.len())
        .map(|i| {
            let (cols, vals) = b.row(i).expect("row");
            // Sorted: the fixture stores some rows' indices in descending order, kept as is.
            let mut entries: Vec<(i32, f32)> =
                cols.iter().copied().zip(vals.iter().copied()).collect();
            entries.sort_by_key(|e| e.0);
            (
                names[i].clone(),
                src[i].clone().unwrap_or_default(),
                entries,
            )
        })
        .collect()
}

#[test]
fn rows_land_once_and_equal_their_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let (v3, v2) = (
        data("pbmc68k_raw_csr.v3.zarr"),
        data("pbmc68k_raw_csr.v2.zarr"),
    );
    let report = add_adatas(&out, &[&v3, &v2], &options(7)).expect("convert");
    assert_eq!(
        (report.n_obs, report.n_var, report.datasets),
        (1400, 765, 5)
    );
    assert!(!report.appended && report.notes.is_empty());
    let c = DatasetCollection::open(&out).expect("open");
    assert!(c.is_preshuffled());
    assert_eq!(c.var_names(), Reference::load("pbmc68k_raw_csr").var_names);
    let reference = Reference::load("pbmc68k_raw_csr");
    let rows = rows_of(&out);
    let mut seen = HashMap::new();
    for (name, src, entries) in &rows {
        // The second copy's names were made unique with anndata's "-1" suffix.
        let original = if src.ends_with("v2.zarr") {
            name.strip_suffix("-1").expect("made unique")
        } else {
            name.as_str()
        };
        let row = reference.row_of[original];
        assert_eq!(entries, &reference.rows[row], "{name}");
        *seen.entry(src.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), [700, 700]);
    // Shuffled, and the same seed gives the same collection.
    let in_order: Vec<&String> = reference.obs_names.iter().collect();
    assert_ne!(
        rows.iter().take(700).map(|r| &r.0).collect::<Vec<_>>(),
        in_order
    );
    let again = dir.path().join("again.zarr");
    add_adatas(&again, &[&v3, &v2], &options(7)).expect("convert again");
    assert_eq!(rows_of(&again), rows);
    let other = dir.path().join("other.zarr");
    add_adatas(&other, &[&v3, &v2], &options(8)).expect("convert other seed");
    assert_ne!(rows_of(&other), rows);
}

#[test]
fn the_progress_hook_is_told_rows_and_datasets_up_to_the_total() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let v3 = data("pbmc68k_raw_csr.v3.zarr");
    let calls = Arc::new(Mutex::new(Vec::<(u64, u64, String)>::new()));
    let seen = calls.clone();
    let opts = ConvertOptions {
        on_progress: Some(annbatch::convert::ProgressHook(Arc::new(
            move |done, total, dataset: &str| {
                seen.lock()
                    .expect("lock")
                    .push((done, total, dataset.to_string()));
            },
        ))),
        ..options(3)
    };
    add_adatas(&out, &[&v3], &opts).expect("convert");
    let calls = calls.lock().expect("lock");
    assert!(
        calls.len() >= 3 && calls.len() <= 110,
        "about once a percent: {}",
        calls.len()
    );
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "rows only grow");
    assert_eq!(calls.last().map(|c| (c.0, c.1)), Some((700, 700)));
    let datasets: std::collections::BTreeSet<&str> = calls.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(datasets.len(), 3, "{datasets:?}");
}

#[test]
fn src_paths_name_the_inputs_and_must_be_one_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let v3 = data("pbmc68k_raw_csr.v3.zarr");
    let named = |names: Vec<&str>| ConvertOptions {
        src_paths: Some(names.into_iter().map(String::from).collect()),
        ..options(3)
    };
    expect_parameter(
        add_adatas(&out, &[&v3], &named(vec!["a", "b"])),
        "src_paths",
    );
    add_adatas(&out, &[&v3], &named(vec!["/data/original.h5ad"])).expect("convert");
    let c = DatasetCollection::open(&out).expect("open");
    for dataset in c.datasets() {
        match dataset.obs_column("src_path").expect("src_path") {
            Column::Categorical { categories, .. } => {
                assert_eq!(categories, vec!["/data/original.h5ad".to_string()]);
            }
            other => panic!("src_path is {other:?}"),
        }
    }
}

#[test]
fn appends_through_a_symlink_land_in_its_target_and_keep_the_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real.zarr");
    let link = dir.path().join("link.zarr");
    let (v3, v2) = (
        data("pbmc68k_raw_csr.v3.zarr"),
        data("pbmc68k_raw_csr.v2.zarr"),
    );
    add_adatas(&real, &[&v3], &options(1)).expect("convert");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    // Two appends at once, one through each name: both land.
    std::thread::scope(|s| {
        let through_link = s.spawn(|| add_adatas(&link, &[&v2], &options(2)));
        let direct = s.spawn(|| add_adatas(&real, &[&v3], &options(3)));
        through_link.join().expect("join").expect("append via link");
        direct.join().expect("join").expect("append");
    });
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    let c = DatasetCollection::open(&real).expect("open");
    assert_eq!(c.n_obs(), 2100);
    // A link to nothing is an error naming it, not a new collection in its place.
    let dangling = dir.path().join("dangling.zarr");
    std::os::unix::fs::symlink(dir.path().join("nothing.zarr"), &dangling).expect("symlink");
    let err = add_adatas(&dangling, &[&v3], &options(4)).expect_err("dangling");
    assert!(err.to_string().contains("dangling.zarr"), "{err}");
}

#[test]
fn unshuffled_keeps_input_order_and_groupby_sorts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v3 = data("pbmc68k_raw_csr.v3.zarr");
    let out = dir.path().join("ordered.zarr");
    let opts = ConvertOptions {
        shuffle: false,
        ..options(0)
    };
    add_adatas(&out, &[&v3], &opts).expect("convert");
    let names: Vec<String> = rows_of(&out).into_iter().map(|r| r.0).collect();
    assert_eq!(names, Reference::load("pbmc68k_raw_csr").obs_names);

    let grouped = dir.path().join("grouped.zarr");
    let opts = ConvertOptions {
        groupby: vec!["cell_type".into()],
        ..options(1)
    };
    add_adatas(&grouped, &[&v3], &opts).expect("convert");
    for d in DatasetCollection::open(&grouped).expect("open").datasets() {
        let Column::Categorical { codes, .. } = d.obs_column("cell_type").expect("column") else {
            panic!("categorical expected")
        };
        assert!(
            codes.windows(2).all(|w| w[0] <= w[1]),
            "sorted within a dataset"
        );
    }
}

#[test]
fn outer_join_fills_zeros_and_append_keeps_the_var_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout {
        chunk_rows: 2,
        shard_rows: 4,
    };
    let a = dir.path().join("a.zarr");
    let b = dir.path().join("b.zarr");
    // a has g0..g3, b has g2..g5: the union is g0..g5.
    write_csr(
        &a,
        "",
        &Csr::from_dense(&vec![vec![1.0, 2.0, 3.0, 4.0]; 6]),
        &genes(4),
        layout,
    );
    let b_var: Vec<String> = (2..6).map(|j| format!("g{j}")).collect();
    write_csr(
        &b,
        "",
        &Csr::from_dense(&vec![vec![5.0, 0.0, 6.0, 7.0]; 4]),
        &b_var,
        layout,
    );
    let out = dir.path().join("joined.zarr");
    let opts = ConvertOptions {
        dataset_size: Size::Rows(4),
        shuffle_chunk_size: 2,
        ..options(3)
    };
    add_adatas(&out, &[&a, &b], &opts).expect("convert");
    let c = DatasetCollection::open(&out).expect("open");
    assert_eq!(c.var_names(), genes(6));
    for (_, src, entries) in rows_of(&out) {
        let want: Vec<(i32, f32)> = if src.ends_with("a.zarr") {
            vec![(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
        } else {
            vec![(2, 5.0), (4, 6.0), (5, 7.0)]
        };
        assert_eq!(entries, want);
    }
    // Appending b alone: it is cut to (and zero-filled in) the collection's var space.
    let before = c.n_obs();
    let report = add_adatas(&out, &[&b], &opts).expect("append");
    assert!(report.appended);
    assert_eq!((report.n_obs, report.added), (before + 4, 4));
    let c = DatasetCollection::open(&out).expect("reopen");
    assert_eq!(
        (c.n_obs(), c.var_names()),
        (before + 4, genes(6).as_slice())
    );
    let from_b = rows_of(&out)
        .into_iter()
        .filter(|r| r.1.ends_with("b.zarr"))
        .count();
    assert_eq!(from_b, 8);
}

/// A store whose X data is float64, written with the public writer.
fn write_f64_store(root: &Path) {
    let w = Writer::create(root).expect("writer");
    w.group(
        "",
        attrs(&[
            ("encoding-type", json!("anndata")),
            ("encoding-version", json!("0.1.0")),
        ]),
    )
    .expect("root");
    w.group(
        "X",
        attrs(&[
            ("encoding-type", json!("csr_matrix")),
            ("encoding-version", json!("0.1.0")),
            ("shape", json!([2, 3])),
        ]),
    )
    .expect("X");
    let none = serde_json::Map::new;
    w.array(
        "X/data",
        &[1.5f64, 2.5, 3.5],
        &[3],
        (2, 2),
        Compressor::Zstd,
        none(),
    )
    .expect("data");
    w.array(
        "X/indices",
        &[0i32, 2, 1],
        &[3],
        (2, 2),
        Compressor::Zstd,
        none(),
    )
    .expect("indices");
    w.array(
        "X/indptr",
        &[0i64, 2, 3],
        &[3],
        (3, 3),
        Compressor::Zstd,
        none(),
    )
    .expect("indptr");
    w.dataframe("obs", None, &["x".into(), "y".into()], &[])
        .expect("obs");
    w.dataframe("var", None, &genes(3), &[]).expect("var");
}

#[test]
fn other_dtypes_are_cast_to_float32_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("f64.zarr");
    write_f64_store(&input);
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&input], &options(0)).expect("convert");
    assert_eq!(report.notes.len(), 1);
    assert!(report.notes[0].contains("float64"), "{:?}", report.notes);
    let rows: Vec<Vec<(i32, f32)>> = rows_of(&out).into_iter().map(|r| r.2).collect();
    assert!(rows.contains(&vec![(0, 1.5), (2, 2.5)]) && rows.contains(&vec![(1, 3.5)]));
}

fn expect_parameter(result: annbatch::Result<annbatch::convert::ConvertReport>, name: &str) {
    match result {
        Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected InvalidParameter {name}, got {other:?}"),
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v3 = data("pbmc68k_raw_csr.v3.zarr");
    let out = dir.path().join("out.zarr");
    let none: [&Path; 0] = [];
    expect_parameter(add_adatas(&out, &none, &options(0)), "adata_paths");
    let zero = ConvertOptions {
        n_obs_per_chunk: 0,
        ..options(0)
    };
    expect_parameter(add_adatas(&out, &[&v3], &zero), "n_obs_per_chunk");
    let too_big = ConvertOptions {
        shuffle_chunk_size: 1000,
        ..options(0)
    };
    expect_parameter(add_adatas(&out, &[&v3], &too_big), "shuffle_chunk_size");
    let subset = ConvertOptions {
        var_subset: Some(vec!["not-a-gene".into()]),
        ..options(0)
    };
    expect_parameter(add_adatas(&out, &[&v3], &subset), "var_subset");
    let groupby = ConvertOptions {
        groupby: vec!["no_such_column".into()],
        ..options(0)
    };
    assert!(matches!(
        add_adatas(&out, &[&v3], &groupby),
        Err(Error::MissingElement { element, .. }) if element == "no_such_column"
    ));
    // Unreadable inputs: absent, not HDF5 / zarr, X in CSC.
    let missing = dir.path().join("missing.h5ad");
    assert!(matches!(
        add_adatas(&out, &[&missing], &options(0)),
        Err(Error::Io { path, .. }) if path == missing
    ));
    let text = dir.path().join("notes.h5ad");
    std::fs::write(&text, "not hdf5").expect("write");
    let err = add_adatas(&out, &[&text], &options(0)).expect_err("not an input");
    assert!(
        matches!(err, Error::Input { .. } | Error::UnknownEncoding { .. })
            && err.to_string().contains("notes.h5ad"),
        "{err:?}"
    );
    // An X of an encoding that is neither CSR, CSC nor dense.
    let csc = dir.path().join("coo.zarr");
    write_csr(
        &csc,
        "",
        &Csr::from_dense(&vec![vec![1.0, 0.0]; 3]),
        &genes(2),
        Layout::default(),
    );
    let x_meta = csc.join("X/zarr.json");
    let text_meta = std::fs::read_to_string(&x_meta).expect("read");
    std::fs::write(&x_meta, text_meta.replace("csr_matrix", "coo_matrix")).expect("write");
    match add_adatas(&out, &[&csc], &options(0)) {
        Err(Error::Input { path, source }) => {
            assert_eq!(path, csc);
            assert!(
                matches!(*source, Error::UnknownEncoding { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected an input error, got {other:?}"),
    }
    // Outputs that are not collections are left alone.
    let file = dir.path().join("file.zarr");
    std::fs::write(&file, "precious").expect("write");
    assert!(matches!(
        add_adatas(&file, &[&v3], &options(0)),
        Err(Error::OutputExists { .. })
    ));
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("keep.txt"), "precious").expect("write");
    assert!(matches!(
        add_adatas(&busy, &[&v3], &options(0)),
        Err(Error::OutputExists { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).expect("kept"),
        "precious"
    );
    assert!(!out.exists(), "no failed run left an output behind");
    // An empty directory is fine.
    std::fs::create_dir(&out).expect("mkdir");
    add_adatas(&out, &[&v3], &options(0)).expect("into an empty directory");
}

fn listing(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path(), std::fs::read(e.path()).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[test]
fn a_failed_append_leaves_the_collection_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    add_adatas(&out, &[data("pbmc68k_raw_csr.v3.zarr")], &options(0)).expect("convert");
    let before = listing(&out);
    // A valid-looking input whose X shard is truncated: the failure comes mid-append.
    let bad = dir.path().join("bad.zarr");
    write_csr(
        &bad,
        "",
        &Csr::from_dense(&vec![vec![1.0, 2.0]; 64]),
        &genes(2),
        Layout {
            chunk_rows: 4,
            shard_rows: 8,
        },
    );
    let shard = bad.join("X/data/c/3");
    let bytes = std::fs::read(&shard).expect("read");
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).expect("truncate");
    // Its genes are not the collection's: allowed here, the point is the truncated shard.
    let disjoint = ConvertOptions {
        allow_disjoint_var: true,
        ..options(0)
    };
    let err = add_adatas(&out, &[&bad], &disjoint).expect_err("corrupt input");
    assert!(matches!(err, Error::Input { .. }), "{err:?}");
    assert_eq!(listing(&out), before, "the collection is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("annbatch-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the work directory was removed");
}

/// Generates a synthetic input big enough that a conversion takes a while.
fn big_input(dir: &Path) -> PathBuf {
    let path = dir.join("synthetic.zarr");
    let spec = annbatch::demo::SyntheticSpec {
        n_obs: 20_000,
        dataset_size: 20_000,
        ..annbatch::demo::SyntheticSpec::default()
    };
    annbatch::demo::write_collection(&path, &spec).expect("synthetic input");
    path.join("dataset_0")
}

/// Runs `annbatch convert ARGS` and SIGKILLs it once `marker(work_dir)` exists.
fn kill_midway(args: &[&Path], output: &Path, marker: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .arg("convert")
        .args(args)
        .arg("-o")
        .arg(output)
        .args([
            "--dataset-size",
            "1000",
            "--shuffle-chunk-size",
            "100",
            "--quiet",
            // The synthetic genes are not pbmc's: appending them is allowed here.
            "--allow-disjoint-var",
        ])
        .spawn()
        .expect("spawn annbatch convert");
    let name = output
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let work = output.with_file_name(format!(".{name}.annbatch-tmp-{}", child.id()));
    let start = Instant::now();
    while !work.join(marker).exists() {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the conversion finished before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn killing_a_conversion_never_leaves_a_collection_that_looks_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = big_input(dir.path());
    let out = dir.path().join("killed.zarr");
    kill_midway(&[&input], &out, "dataset_3");
    assert!(!out.exists(), "nothing is published by an interrupted run");
    assert!(DatasetCollection::open(&out).is_err());
    // The next run succeeds and cleans up the dead run's work directory.
    let report = add_adatas(&out, &[&input], &options(0)).expect("rerun");
    assert_eq!(report.n_obs, 20_000);
    let leftovers = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("annbatch-tmp"))
        .count();
    assert_eq!(leftovers, 0);

    // Appending is all or nothing: killed mid-way, the collection is exactly the old one.
    let small = dir.path().join("small.zarr");
    add_adatas(&small, &[data("pbmc68k_raw_csr.v3.zarr")], &options(0)).expect("convert");
    let before = listing(&small);
    kill_midway(&[&input], &small, "dataset_1");
    assert_eq!(listing(&small), before, "the killed append changed nothing");
    assert_eq!(DatasetCollection::open(&small).expect("open").n_obs(), 700);
    let disjoint = ConvertOptions {
        allow_disjoint_var: true,
        ..options(0)
    };
    let report = add_adatas(&small, &[&input], &disjoint).expect("append after the kill");
    assert_eq!((report.n_obs, report.datasets), (20_700, 3));
}

/// Each obs name's row of the matrix at `path` in every dataset of `collection`
/// (`""` for `X`), as sorted (column, value) entries.
fn matrix_rows(collection: &Path, path: &str) -> HashMap<String, Vec<(i32, f32)>> {
    let c = DatasetCollection::open(collection).expect("open");
    let mut out = HashMap::new();
    for d in c.datasets() {
        let m = if path.is_empty() {
            None
        } else {
            Some(d.matrix(path).expect("matrix"))
        };
        let x = m.as_ref().unwrap_or(d.x());
        let mut batch = x.new_batch();
        x.read_rows(&[0..x.n_obs()], &mut batch).expect("read");
        let XBatch::Csr(b) = batch else {
            panic!("csr expected")
        };
        for (i, name) in d.obs_names().expect("names").into_iter().enumerate() {
            let (a, e) = (b.indptr[i] as usize, b.indptr[i + 1] as usize);
            let row = b.indices[a..e]
                .iter()
                .copied()
                .zip(b.data[a..e].iter().copied());
            out.insert(name, row.collect());
        }
    }
    out
}

#[test]
fn layers_are_carried_over_with_their_rows() {
    // A dataset written by annbatch 0.3.1 with layers["counts"], as a zarr input.
    let input = data("annbatch_layers_collection.zarr").join("dataset_0");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&input], &options(3)).expect("convert");
    assert!(
        report.notes.iter().all(|n| !n.contains("layers/counts")),
        "{:?}",
        report.notes
    );
    let want = matrix_rows(&input, "layers/counts");
    let got = matrix_rows(&out, "layers/counts");
    assert_eq!(got.len(), want.len());
    for (name, row) in &want {
        assert_eq!(got.get(name), Some(row), "row {name}");
    }
    // X moved with the same rows, and it is not the counts.
    let x = matrix_rows(&out, "");
    assert_eq!(x.len(), want.len());
    assert!(x.iter().any(|(name, row)| want[name] != *row));
}

#[test]
fn matrices_keep_their_dtype_and_kind() {
    // annbatch's dataset of the lossless fixture: int32 counts, float64 X_umap, sparse peaks.
    let input = data("annbatch_lossless_collection.zarr").join("dataset_0");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&input], &options(5)).expect("convert");
    for kept in [
        "layers/counts",
        "layers/scaled",
        "obsm/X_pca",
        "obsm/X_umap",
        "obsm/peaks",
    ] {
        assert!(
            report.notes.iter().all(|n| !n.contains(kept)),
            "{kept}: {:?}",
            report.notes
        );
    }
    let source = annbatch::AnnDataStore::open(&input).expect("input");
    let c = DatasetCollection::open(&out).expect("output");
    for path in [
        "layers/counts",
        "layers/scaled",
        "obsm/X_pca",
        "obsm/X_umap",
        "obsm/peaks",
    ] {
        let (want, got) = (
            source.matrix(path).expect("in"),
            c.datasets()[0].matrix(path).expect("out"),
        );
        assert_eq!(got.dtype(), want.dtype(), "{path}");
        assert_eq!(got.is_sparse(), want.is_sparse(), "{path}");
        assert_eq!(got.n_var(), want.n_var(), "{path}");
    }
    assert_eq!(c.datasets()[0].x().dtype(), annbatch::Dtype::F32);
    let (want, got) = (
        matrix_rows(&input, "obsm/peaks"),
        matrix_rows(&out, "obsm/peaks"),
    );
    assert_eq!(got, want);
    let (want, got) = (
        matrix_rows(&input, "layers/counts"),
        matrix_rows(&out, "layers/counts"),
    );
    assert_eq!(got, want);
}

#[test]
fn uns_and_raw_are_carried_over() {
    let input = data("annbatch_lossless_collection.zarr").join("dataset_0");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&input], &options(7)).expect("convert");
    assert!(
        report.notes.iter().all(|n| !n.contains("left out")),
        "{:?}",
        report.notes
    );
    let dataset = out.join("dataset_0");
    let meta = |p: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dataset.join(p).join("zarr.json")).expect(p);
        serde_json::from_str(&text).expect("json")
    };
    assert_eq!(meta("uns")["attributes"]["encoding-type"], "dict");
    assert_eq!(meta("uns/params")["attributes"]["encoding-type"], "dict");
    let title = meta("uns/title");
    assert_eq!(title["shape"], json!([]));
    assert_eq!(title["data_type"], "string");
    assert_eq!(title["attributes"]["encoding-type"], "string");
    let n_pcs = meta("uns/params/n_pcs");
    assert_eq!(n_pcs["attributes"]["encoding-type"], "numeric-scalar");
    assert_eq!(meta("uns/cell_type_colors")["shape"], json!([3]));
    assert_eq!(meta("raw")["attributes"]["encoding-type"], "raw");
    assert_eq!(meta("raw/var")["attributes"]["encoding-type"], "dataframe");
    // raw/X moved with X's rows.
    let (want, got) = (matrix_rows(&input, "raw/X"), matrix_rows(&out, "raw/X"));
    assert_eq!(got, want);
}

#[test]
fn an_uns_entry_claiming_a_huge_shape_is_a_note_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.zarr");
    common::copy_dir(
        &data("annbatch_lossless_collection.zarr").join("dataset_0"),
        &input,
    );
    let colors = input.join("uns/cell_type_colors/zarr.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&colors).expect("read")).expect("json");
    meta["shape"] = json!([u64::MAX / 2]);
    std::fs::write(&colors, meta.to_string()).expect("write");
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&input], &options(7)).expect("convert");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("uns/cell_type_colors left out")),
        "{:?}",
        report.notes
    );
    assert!(out.join("dataset_0/uns/title/zarr.json").exists());
}

#[test]
fn a_csc_input_converts_to_the_same_rows_as_its_csr() {
    // The annbatch dataset (CSR) and the same matrix stored as CSC, written by hand from it.
    let input = data("annbatch_lossless_collection.zarr").join("dataset_0");
    let dir = tempfile::tempdir().expect("tempdir");
    let csc = dir.path().join("csc.zarr");
    common::copy_dir(&input, &csc);
    let store = annbatch::AnnDataStore::open(&input).expect("input");
    let mut batch = store.x().new_batch();
    store
        .x()
        .read_rows(&[0..store.n_obs()], &mut batch)
        .expect("read");
    let XBatch::Csr(rows) = batch else {
        panic!("csr")
    };
    // Columns: (row, value) per column, rows ascending.
    let n_var = store.n_var() as usize;
    let mut by_col: Vec<Vec<(i32, f32)>> = vec![Vec::new(); n_var];
    for r in 0..rows.n_rows() {
        let (cols, vals) = rows.row(r).expect("row");
        for (&c, &v) in cols.iter().zip(vals) {
            by_col[c as usize].push((r as i32, v));
        }
    }
    let m = Csr {
        indptr: std::iter::once(0)
            .chain(by_col.iter().scan(0i64, |n, c| {
                *n += c.len() as i64;
                Some(*n)
            }))
            .collect(),
        indices: by_col.iter().flatten().map(|&(r, _)| r as u32).collect(),
        data: by_col.iter().flatten().map(|&(_, v)| v).collect(),
        n_var: store.n_obs(),
    };
    let transposed = dir.path().join("t.zarr");
    write_csr(
        &transposed,
        "",
        &m,
        &genes(store.n_obs()),
        Layout::default(),
    );
    std::fs::remove_dir_all(csc.join("X")).expect("rm X");
    std::fs::rename(transposed.join("X"), csc.join("X")).expect("move X");
    let meta = csc.join("X/zarr.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("read")).expect("json");
    v["attributes"]["encoding-type"] = json!("csc_matrix");
    v["attributes"]["shape"] = json!([store.n_obs(), store.n_var()]);
    std::fs::write(&meta, v.to_string()).expect("write");
    // The loader refuses it, naming the way out; the converter transposes it.
    let err = DatasetCollection::open(&csc).expect_err("csc");
    assert!(err.to_string().contains("convert"), "{err}");
    let out = dir.path().join("c.zarr");
    let report = add_adatas(&out, &[&csc], &options(3)).expect("convert");
    assert!(
        report.notes.iter().any(|n| n.contains("X is CSC")),
        "{:?}",
        report.notes
    );
    assert_eq!(matrix_rows(&out, ""), matrix_rows(&input, ""));
}

#[test]
fn an_append_that_would_drop_a_layer_is_refused_and_changes_nothing() {
    let src = data("annbatch_layers_collection.zarr").join("dataset_0");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    add_adatas(&out, &[&src], &options(3)).expect("convert");
    // The same cells without layers["counts"].
    let bare = dir.path().join("bare.zarr");
    common::copy_dir(&src, &bare);
    std::fs::remove_dir_all(bare.join("layers").join("counts")).expect("remove the layer");
    let before = listing(&out);
    let err = add_adatas(&out, &[&bare], &options(4)).expect_err("refused");
    assert!(
        matches!(&err, Error::AppendWouldDrop { element, .. } if element == "layers/counts"),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("new collection"), "{message}");
    assert_eq!(listing(&out), before, "the refused append changed nothing");
    // An input that has the layer appends, and every dataset keeps it.
    let report = add_adatas(&out, &[&src], &options(5)).expect("append");
    assert!(report.appended);
    let c = DatasetCollection::open(&out).expect("open");
    for name in c.dataset_names() {
        assert!(
            out.join(name).join("layers").join("counts").is_dir(),
            "{name} keeps layers/counts"
        );
    }
}

#[test]
fn a_dead_runs_staging_directory_goes_even_when_its_pid_was_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A live process that started after the directory was last written: not its creator.
    let mut other = Command::new("sleep").arg("30").spawn().expect("sleep");
    let stale = dir
        .path()
        .join(format!(".c.zarr.annbatch-tmp-{}", other.id()));
    std::fs::create_dir_all(stale.join("X")).expect("stale dir");
    std::fs::write(stale.join("X/zarr.json"), "{}").expect("a file in it");
    let touched = Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&stale)
        .status()
        .expect("touch");
    assert!(touched.success());
    let input = data("annbatch_layers_collection.zarr").join("dataset_0");
    add_adatas(dir.path().join("c.zarr"), &[&input], &options(1)).expect("convert");
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        !stale.exists(),
        "the dead run's staging directory is removed"
    );
}
