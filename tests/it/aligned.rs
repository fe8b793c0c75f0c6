//! Batches that carry layers and obsm entries beside `X`: the same rows in the same order, on
//! an annbatch-written collection (sparse int32 and dense layers, float32 / float64 / sparse
//! obsm), from host batches and tensors alike, and the errors for keys that cannot be batched.

use crate::common;

use annbatch::{DatasetCollection, Error, HostBatch, Loader, XBatch};
use common::data;

const LAYERS: [&str; 2] = ["counts", "scaled"];
const OBSM: [&str; 3] = ["X_pca", "X_umap", "peaks"];

/// Rows as (column, value) pairs.
type Rows = Vec<Vec<(i32, f32)>>;

/// Row `row` of `batch` as (column, value) pairs without zeros.
fn row_of(batch: &XBatch, row: usize) -> Vec<(i32, f32)> {
    match batch {
        XBatch::Csr(b) => {
            let (i, v) = b.row(row).expect("row");
            common::sorted_row(i, v)
        }
        XBatch::Dense(b) => common::sparse_of_dense(b.row(row).expect("row")),
    }
}

/// Every row of `path` (e.g. `layers/counts`) over the collection, read directly, in global
/// row order.
fn reference(collection: &DatasetCollection, path: &str) -> Rows {
    let mut rows = Vec::new();
    for dataset in collection.datasets() {
        let m = dataset.matrix(path).expect("matrix");
        let mut batch = m.new_batch();
        m.read_rows(&[0..m.n_obs()], &mut batch).expect("read");
        rows.extend((0..batch.n_rows()).map(|r| row_of(&batch, r)));
    }
    rows
}

fn loader(batch_size: usize, chunk_size: u64, preload: usize) -> Loader {
    Loader::builder(data("annbatch_lossless_collection.zarr"))
        .batch_size(batch_size)
        .chunk_size(chunk_size)
        .preload_nchunks(preload)
        .shuffle(true)
        .seed(3)
        .return_index(true)
        .layers(LAYERS)
        .obsm(OBSM)
        .build()
        .expect("loader")
}

#[test]
fn batches_carry_the_same_rows_of_every_layer_and_obsm_entry() {
    let collection = DatasetCollection::open(data("annbatch_lossless_collection.zarr"))
        .expect("as the fixture holds");
    let x = reference(&collection, "X");
    let wanted: Vec<(String, Rows)> = LAYERS
        .iter()
        .map(|k| format!("layers/{k}"))
        .chain(OBSM.iter().map(|k| format!("obsm/{k}")))
        .map(|p| (p.clone(), reference(&collection, &p)))
        .collect();
    for (batch_size, chunk_size, preload) in [(32, 16, 4), (50, 25, 6), (7, 7, 3)] {
        let loader = loader(batch_size, chunk_size, preload);
        let mut seen = 0;
        for batch in loader.host_epoch(1).expect("as the fixture holds") {
            let batch: HostBatch = batch.expect("as the fixture holds");
            let index = batch.index.clone().expect("as the fixture holds");
            assert_eq!(batch.layers.len(), 2);
            assert_eq!(batch.obsm.len(), 3);
            for (i, &g) in index.iter().enumerate() {
                let g = g as usize;
                assert_eq!(row_of(&batch.x, i), x[g]);
                for (path, rows) in &wanted {
                    let (group, key) = path.split_once('/').expect("as the fixture holds");
                    let m = match group {
                        "layers" => batch.layer(key),
                        _ => batch.obsm_entry(key),
                    }
                    .expect("as the fixture holds");
                    assert_eq!(m.n_rows(), index.len(), "{path}");
                    assert_eq!(row_of(m, i), rows[g], "{path} row {g}");
                }
            }
            seen += index.len();
        }
        assert_eq!(seen as u64, collection.n_obs());
    }
}

#[test]
fn kinds_and_widths_are_as_stored() {
    let loader = loader(32, 16, 4);
    let batch = loader
        .host_epoch(0)
        .expect("as the fixture holds")
        .next()
        .expect("as the fixture holds")
        .expect("as the fixture holds");
    assert!(batch
        .layer("counts")
        .expect("as the fixture holds")
        .is_sparse());
    assert!(!batch
        .layer("scaled")
        .expect("as the fixture holds")
        .is_sparse());
    let width = |b: &XBatch| match b {
        XBatch::Dense(d) => d.row_width,
        XBatch::Csr(c) => c.n_var as usize,
    };
    assert_eq!(
        width(batch.obsm_entry("X_pca").expect("as the fixture holds")),
        50
    );
    assert_eq!(
        width(batch.obsm_entry("X_umap").expect("as the fixture holds")),
        2
    );
    assert_eq!(
        width(batch.obsm_entry("peaks").expect("as the fixture holds")),
        20
    );
    assert_eq!(
        width(batch.layer("counts").expect("as the fixture holds")),
        765
    );
    assert!(batch.obsm_entry("nope").is_none());
}

#[test]
fn keys_that_cannot_be_batched_are_typed_errors() {
    let build = |layers: &[&str], obsm: &[&str]| {
        Loader::builder(data("annbatch_lossless_collection.zarr"))
            .batch_size(16)
            .chunk_size(16)
            .preload_nchunks(2)
            .layers(layers.iter().copied())
            .obsm(obsm.iter().copied())
            .build()
    };
    // A key that no dataset has.
    match build(&["nope"], &[]) {
        Err(Error::MissingElement { element, .. }) => assert_eq!(element, "layers/nope"),
        other => panic!("{other:?}"),
    }
    // A key that is not one key.
    assert!(matches!(
        build(&[], &["X_pca/.."]),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        build(&[""], &[]),
        Err(Error::InvalidParameter { .. })
    ));
    // A layer with another number of columns than X: an obsm entry asked for as a layer.
    let dir = tempfile::tempdir().expect("as the fixture holds");
    let copy = dir.path().join("c.zarr");
    common::copy_dir(&data("annbatch_lossless_collection.zarr"), &copy);
    std::fs::rename(
        copy.join("dataset_0/obsm/X_pca"),
        copy.join("dataset_0/layers/pca"),
    )
    .expect("as the fixture holds");
    let built = Loader::builder(&copy)
        .batch_size(16)
        .chunk_size(16)
        .preload_nchunks(2)
        .layers(["pca"])
        .build();
    assert!(
        matches!(built, Err(Error::ShapeMismatch { .. })),
        "{built:?}"
    );
    // Datasets that disagree: sparse in one, dense in the other.
    std::fs::remove_dir_all(copy.join("dataset_1/obsm/X_pca")).expect("as the fixture holds");
    common::copy_dir(
        &copy.join("dataset_1/obsm/peaks"),
        &copy.join("dataset_1/obsm/X_pca"),
    );
    std::fs::remove_dir_all(copy.join("dataset_0/layers/pca")).expect("as the fixture holds");
    let built = Loader::builder(&copy)
        .batch_size(16)
        .chunk_size(16)
        .preload_nchunks(2)
        .obsm(["X_umap", "X_pca"])
        .build();
    assert!(
        matches!(built, Err(Error::MissingElement { .. })),
        "{built:?}"
    );
}

#[cfg(feature = "tch")]
#[test]
fn tensor_batches_carry_the_same_values_as_host_batches() {
    let loader = loader(32, 16, 4);
    let host: Vec<HostBatch> = loader
        .host_epoch(2)
        .expect("as the fixture holds")
        .map(|b| b.expect("as the fixture holds"))
        .collect();
    let tensors: Vec<annbatch::Batch> = loader
        .epoch(2)
        .expect("as the fixture holds")
        .map(|b| b.expect("as the fixture holds"))
        .collect();
    assert_eq!(host.len(), tensors.len());
    for (h, t) in host.iter().zip(&tensors) {
        for (name, m) in h.layers.iter().chain(&h.obsm) {
            let tensor = t
                .layer(name)
                .or_else(|| t.obsm_entry(name))
                .expect("as the fixture holds");
            let dense = if m.is_sparse() {
                tensor.f_to_dense(None, false).expect("dense")
            } else {
                tensor.shallow_clone()
            };
            let rows = dense.size()[0] as usize;
            assert_eq!(rows, m.n_rows());
            for r in 0..rows {
                let values: Vec<f32> = Vec::try_from(dense.f_get(r as i64).expect("row"))
                    .expect("as the fixture holds");
                assert_eq!(common::sparse_of_dense(&values), row_of(m, r), "{name}");
            }
        }
    }
}
