//! Training straight from `.h5ad` files: rows read by file offset (contiguous, chunked,
//! shuffle + gzip + Fletcher32) equal what the HDF5 library reads; loaders over several files,
//! with their `var` spaces joined; files that change or cannot be read by rows.
#![cfg(feature = "hdf5")]

use annbatch::h5ad::H5adFile;
use annbatch::{
    DatasetCollection, Error, HostBatch, Loader, OpenOptions, VarJoin, XBatch, XElement,
};

use crate::common::data;

fn direct(name: &str) -> std::path::PathBuf {
    data(&format!("h5ad_direct/{name}"))
}

/// Scattered row ranges of a matrix of `n` rows: single rows, runs, repeats out of order.
fn ranges(n: u64) -> Vec<std::ops::Range<u64>> {
    vec![n - 1..n, 0..5, 7..8, 30..64, 3..4, n / 2..n / 2 + 17, 0..1]
}

/// The rows as the HDF5 library reads them (the converter's reader).
fn library_rows(path: &std::path::Path, element: &str, r: &[std::ops::Range<u64>]) -> XBatch {
    let f = H5adFile::open(path).expect("open");
    let m = f.matrix(element).expect("matrix");
    let mut out = m.new_batch();
    m.read_rows(r, &mut out).expect("read");
    out
}

#[test]
fn rows_read_by_file_offset_equal_the_hdf5_library() {
    for (path, direct_read) in [
        (direct("contiguous.h5ad"), true),
        (direct("gzip_shuffle.h5ad"), true),
        (direct("dense.h5ad"), true),
        (data("pbmc68k_raw_csr.h5ad"), true),
        (data("oligodendroglioma.h5ad"), true),
        // Dense, chunked across columns too: read through the library.
        (data("10x_pbmc68k_reduced.h5ad"), false),
    ] {
        let c = DatasetCollection::open(&path).expect("open");
        let XElement::H5ad(x) = c.datasets()[0].x() else {
            panic!("{}: not read as an .h5ad", path.display());
        };
        assert_eq!(x.is_direct(), direct_read, "{}", path.display());
        let r = ranges(c.n_obs());
        let mut got = c.new_batch();
        c.read_rows(&r, &mut got).expect("read");
        assert_eq!(got, library_rows(&path, "X", &r), "{}", path.display());
    }
}

#[test]
fn layers_and_obsm_of_an_h5ad_reach_batches() {
    let path = direct("contiguous.h5ad");
    let loader = Loader::builder(&path)
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(4)
        .shuffle(true)
        .seed(3)
        .return_index(true)
        .layers(["counts"])
        .obsm(["X_pca"])
        .obs_keys(["cell_type"])
        .build()
        .expect("loader");
    let mut seen = Vec::new();
    for b in loader.host_epoch(0).expect("epoch") {
        let b = b.expect("batch");
        let index: Vec<u64> = b
            .index
            .clone()
            .expect("index")
            .iter()
            .map(|&i| i as u64)
            .collect();
        let r: Vec<_> = index.iter().map(|&i| i..i + 1).collect();
        assert_eq!(b.x, library_rows(&path, "X", &r));
        assert_eq!(b.layers[0].1, library_rows(&path, "layers/counts", &r));
        assert_eq!(b.obsm[0].1, library_rows(&path, "obsm/X_pca", &r));
        assert_eq!(b.obs.len(), 1);
        seen.extend(index);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..240).collect::<Vec<_>>());
}

fn epoch_index(loader: &Loader, epoch: u64) -> Vec<Vec<i64>> {
    loader
        .host_epoch(epoch)
        .expect("epoch")
        .map(|b| b.expect("batch").index.expect("index"))
        .collect()
}

fn files_loader(files: &[std::path::PathBuf], join: &VarJoin, seed: u64) -> Loader {
    Loader::builder_files(files, join)
        .expect("open")
        .batch_size(16)
        .chunk_size(4)
        .preload_nchunks(8)
        .shuffle(true)
        .seed(seed)
        .return_index(true)
        .build()
        .expect("loader")
}

#[test]
fn blocks_of_several_files_shuffle_by_seed_and_cover_every_row() {
    let files = [
        direct("contiguous.h5ad"),
        direct("gzip_shuffle.h5ad"),
        data("pbmc68k_raw_csr.h5ad"),
    ];
    let loader = files_loader(&files, &VarJoin::Same, 7);
    assert_eq!(loader.n_obs(), 240 + 240 + 700);
    let first = epoch_index(&loader, 0);
    assert_eq!(
        first,
        epoch_index(&files_loader(&files, &VarJoin::Same, 7), 0)
    );
    assert_ne!(first, epoch_index(&loader, 1));
    assert_ne!(
        first,
        epoch_index(&files_loader(&files, &VarJoin::Same, 8), 0)
    );
    let mut all: Vec<i64> = first.concat();
    all.sort_unstable();
    assert_eq!(all, (0..1180).collect::<Vec<_>>());
    // Each batch's rows are the files' rows of its index.
    let c = loader.collection();
    for b in loader.host_epoch(0).expect("epoch") {
        let b: HostBatch = b.expect("batch");
        let r: Vec<_> = b
            .index
            .clone()
            .expect("index")
            .iter()
            .map(|&i| i as u64..i as u64 + 1)
            .collect();
        let mut want = c.new_batch();
        c.read_rows(&r, &mut want).expect("read");
        assert_eq!(b.x, want);
    }
}

/// Row `row` of `path`'s X as (gene name, value), sorted by name.
fn named_row(path: &std::path::Path, row: u64) -> Vec<(String, f32)> {
    let f = H5adFile::open(path).expect("open");
    let mut b = f.new_batch();
    f.read_rows(&[row..row + 1], &mut b).expect("read");
    let names = f.var_names();
    let mut out: Vec<(String, f32)> = match &b {
        XBatch::Csr(c) => c
            .indices
            .iter()
            .zip(&c.data)
            .map(|(&i, &v)| (names[i as usize].clone(), v))
            .collect(),
        XBatch::Dense(d) => names
            .iter()
            .cloned()
            .zip(d.data.iter().copied())
            .filter(|(_, v)| *v != 0.0)
            .collect(),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Row `i` of a joined batch as (gene name, value), sorted by name; columns strictly increasing.
fn joined_row(b: &XBatch, names: &[String], i: usize) -> Vec<(String, f32)> {
    let XBatch::Csr(c) = b else { panic!("sparse") };
    let (a, e) = (c.indptr[i] as usize, c.indptr[i + 1] as usize);
    assert!(
        c.indices[a..e].windows(2).all(|w| w[0] < w[1]),
        "sorted columns"
    );
    let mut out: Vec<(String, f32)> = (a..e)
        .map(|k| (names[c.indices[k] as usize].clone(), c.data[k]))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn files_with_different_genes_join_outer_or_to_a_subset() {
    let files = [direct("genes_a.h5ad"), direct("genes_b.h5ad")];
    let a = H5adFile::open(&files[0]).expect("a");
    let b = H5adFile::open(&files[1]).expect("b");
    assert_ne!(a.var_names(), b.var_names());
    let err = DatasetCollection::open_joined(&files, &OpenOptions::default(), &VarJoin::Same)
        .expect_err("different genes");
    assert!(matches!(err, Error::VarMismatch { .. }), "{err}");

    let subset: Vec<String> = a.var_names()[250..450]
        .iter()
        .chain(&b.var_names()[..40])
        .cloned()
        .collect();
    for join in [VarJoin::Outer, VarJoin::Subset(subset.clone())] {
        let loader = files_loader(&files, &join, 1);
        let c = loader.collection().clone();
        let names = c.var_names().to_vec();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            names, sorted,
            "the union is sorted, as anndata.concat orders it"
        );
        match &join {
            VarJoin::Outer => assert_eq!(c.n_var(), 765),
            _ => assert_eq!(c.n_var() as usize, {
                let mut s = subset.clone();
                s.sort();
                s.dedup();
                s.len()
            }),
        }
        let keep = |row: Vec<(String, f32)>| -> Vec<(String, f32)> {
            row.into_iter().filter(|(n, _)| names.contains(n)).collect()
        };
        let mut rows = 0;
        for batch in loader.host_epoch(0).expect("epoch") {
            let batch = batch.expect("batch");
            let index = batch.index.clone().expect("index");
            for (i, &g) in index.iter().enumerate() {
                let (file, local) = if g < 120 {
                    (&files[0], g)
                } else {
                    (&files[1], g - 120)
                };
                assert_eq!(
                    joined_row(&batch.x, &names, i),
                    keep(named_row(file, local as u64))
                );
                rows += 1;
            }
            // read_rows (the other path) agrees with the loader's batches.
            let r: Vec<_> = index.iter().map(|&i| i as u64..i as u64 + 1).collect();
            let mut want = c.new_batch();
            c.read_rows(&r, &mut want).expect("read");
            assert_eq!(batch.x, want);
        }
        assert_eq!(rows, 240);
    }
}

#[test]
fn a_dense_file_joins_with_a_sparse_one_only_if_kinds_agree() {
    let files = [direct("dense.h5ad"), direct("genes_a.h5ad")];
    let err = DatasetCollection::open_joined(&files, &OpenOptions::default(), &VarJoin::Outer)
        .expect_err("dense + sparse");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    // A dense file in a joined space: its genes at their places, zeros elsewhere.
    let f = H5adFile::open(direct("dense.h5ad")).expect("open");
    let (g1, g2) = (f.var_names()[700].clone(), f.var_names()[3].clone());
    let c = DatasetCollection::open_joined(
        [direct("dense.h5ad")],
        &OpenOptions::default(),
        &VarJoin::Subset(vec![g1.clone(), g2.clone(), "not_a_gene".into()]),
    )
    .expect("subset");
    // One input: its own order (the union is sorted only when inputs differ), as converted.
    let (first, second) = (g2, g1);
    assert_eq!(c.var_names(), [first.clone(), second.clone()]);
    let col = |name: &str| f.var_names().iter().position(|n| n == name).expect("gene");
    let mut b = c.new_batch();
    c.read_rows(&[0..120], &mut b).expect("read");
    let mut full = f.new_batch();
    f.read_rows(&[0..120], &mut full).expect("read");
    let (XBatch::Dense(b), XBatch::Dense(full)) = (&b, &full) else {
        panic!("dense")
    };
    for r in 0..120 {
        assert_eq!(b.data[r * 2], full.data[r * 765 + col(&first)]);
        assert_eq!(b.data[r * 2 + 1], full.data[r * 765 + col(&second)]);
    }
}

#[test]
fn genes_that_cannot_be_joined_are_typed_errors() {
    let files = [direct("duplicate_var.h5ad"), direct("genes_a.h5ad")];
    let err = DatasetCollection::open_joined(&files, &OpenOptions::default(), &VarJoin::Outer)
        .expect_err("a gene twice");
    assert!(
        matches!(&err, Error::VarMismatch { detail, .. } if detail.contains("more than once")),
        "{err}"
    );
    let err = DatasetCollection::open_joined(
        [direct("genes_a.h5ad")],
        &OpenOptions::default(),
        &VarJoin::Subset(vec!["no_such_gene".into()]),
    )
    .expect_err("no gene kept");
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
}

#[test]
fn a_csc_h5ad_says_how_to_make_it_csr() {
    let err = DatasetCollection::open(data("lossless_csc.h5ad")).expect_err("csc");
    let text = err.to_string();
    assert!(matches!(err, Error::UnknownEncoding { .. }), "{text}");
    assert!(text.contains("tocsr") && text.contains("convert"), "{text}");
}

#[test]
fn a_file_rewritten_during_an_epoch_stops_it_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.h5ad");
    std::fs::copy(direct("contiguous.h5ad"), &path).expect("copy");
    let loader = Loader::builder(&path)
        .batch_size(8)
        .chunk_size(4)
        .preload_nchunks(2)
        .prefetch(1)
        .shuffle(true)
        .build()
        .expect("loader");
    let mut epoch = loader.host_epoch(0).expect("epoch");
    epoch.next().expect("first").expect("batch");
    // Rewritten in place (another length and modification time).
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&[0; 64]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, &bytes).expect("rewrite");
    let err = epoch
        .find_map(|b| b.err())
        .expect("an error before the epoch ends");
    assert!(matches!(err, Error::CollectionChanged { .. }), "{err}");
}

#[test]
fn a_truncated_h5ad_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.h5ad");
    let bytes = std::fs::read(direct("contiguous.h5ad")).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    assert!(DatasetCollection::open(&path).is_err());
}

#[test]
fn a_column_index_past_n_var_is_an_error() {
    let c = DatasetCollection::open(direct("bad_index.h5ad")).expect("open");
    let mut b = c.new_batch();
    let err = c
        .read_rows(&[0..20], &mut b)
        .expect_err("index 765 of 765 genes");
    assert!(
        matches!(err, Error::IndexOutOfBounds { index: 765, .. }),
        "{err}"
    );
    let loader = Loader::builder(direct("bad_index.h5ad"))
        .batch_size(16)
        .chunk_size(4)
        .preload_nchunks(4)
        .build()
        .expect("loader");
    let got: Vec<_> = loader.host_epoch(0).expect("epoch").collect();
    assert!(got
        .iter()
        .any(|b| matches!(b, Err(Error::IndexOutOfBounds { .. }))));
}

#[test]
fn layers_follow_x_into_a_joined_space() {
    let path = direct("contiguous.h5ad");
    let names = H5adFile::open(&path).expect("open").var_names().to_vec();
    // Genes from the middle, so that every row loses some entries.
    let subset: Vec<String> = names[100..400].to_vec();
    let loader = Loader::builder_files([&path], &VarJoin::Subset(subset.clone()))
        .expect("open")
        .batch_size(32)
        .chunk_size(8)
        .preload_nchunks(4)
        .shuffle(true)
        .return_index(true)
        .layers(["counts"])
        .build()
        .expect("loader");
    let joined = loader.collection().var_names().to_vec();
    assert_eq!(joined, subset);
    let mut rows = 0;
    for b in loader.host_epoch(0).expect("epoch") {
        let b = b.expect("batch");
        for (i, &g) in b.index.clone().expect("index").iter().enumerate() {
            let r = [g as u64..g as u64 + 1];
            for (element, got) in [("X", &b.x), ("layers/counts", &b.layers[0].1)] {
                let XBatch::Csr(stored) = library_rows(&path, element, &r) else {
                    panic!("sparse")
                };
                let want: Vec<(String, f32)> = stored
                    .indices
                    .iter()
                    .zip(&stored.data)
                    .map(|(&c, &v)| (names[c as usize].clone(), v))
                    .filter(|(n, _)| subset.contains(n))
                    .collect();
                let mut want = want;
                want.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(joined_row(got, &joined, i), want, "{element}, row {g}");
            }
            rows += 1;
        }
    }
    assert_eq!(rows, 240);
}
