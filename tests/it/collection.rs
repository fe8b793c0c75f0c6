//! Collections: datasets in numeric order, global row mapping, obs columns across datasets.

use annbatch::demo::{self, SyntheticSpec};
use annbatch::write::Layout;
use annbatch::{Column, DatasetCollection};

#[test]
fn datasets_are_ordered_numerically_and_rows_map_globally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.zarr");
    let spec = SyntheticSpec {
        n_obs: 115,
        n_var: 30,
        mean_nnz: 5,
        n_classes: 3,
        dataset_size: 10,
        seed: 1,
        layout: Layout {
            chunk_rows: 4,
            shard_rows: 8,
        },
    };
    demo::write_collection(&path, &spec).expect("write");
    let c = DatasetCollection::open(&path).expect("open");
    let names: Vec<String> = (0..12).map(|i| format!("dataset_{i}")).collect();
    assert_eq!(
        c.dataset_names(),
        names.as_slice(),
        "dataset_10 after dataset_9"
    );
    assert_eq!(c.offsets().last().copied(), Some(115));
    assert_eq!(c.locate(0), Some((0, 0)));
    assert_eq!(c.locate(109), Some((10, 9)));
    assert_eq!(c.locate(114), Some((11, 4)));
    assert_eq!(
        c.split(8..23).expect("split"),
        vec![(0, 8..10), (1, 0..10), (2, 0..3)]
    );
    // Reading across dataset boundaries equals the generator's rows.
    let want = demo::generate(&spec, 0..115);
    let mut batch = c.new_batch();
    c.read_rows(&[95..115, 0..12], &mut batch).expect("read");
    let annbatch::XBatch::Csr(csr) = batch else {
        panic!("csr")
    };
    for (k, row) in (95..115).chain(0..12).enumerate() {
        let (idx, val) = csr.row(k).expect("row");
        let (a, b) = (want.indptr[row] as usize, want.indptr[row + 1] as usize);
        let want_idx: Vec<i32> = want.indices[a..b].iter().map(|&i| i as i32).collect();
        assert_eq!(idx, want_idx.as_slice());
        assert_eq!(val, &want.data[a..b]);
    }
    match c.obs_column("cell_type").expect("cell_type") {
        Column::Categorical {
            codes, categories, ..
        } => {
            assert_eq!(categories, demo::class_names(&spec));
            assert_eq!(codes, want.labels);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.obs_names().expect("names")[114], "cell_114");
}

#[test]
fn several_stores_and_in_memory_data_read_as_one() {
    use annbatch::{AnnDataStore, Error, InMemoryX, XBatch};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.zarr");
    let spec = SyntheticSpec {
        n_obs: 40,
        n_var: 6,
        mean_nnz: 3,
        n_classes: 2,
        dataset_size: 20,
        seed: 2,
        layout: Layout {
            chunk_rows: 4,
            shard_rows: 8,
        },
    };
    demo::write_collection(&path, &spec).expect("write");
    // A collection, then one of its datasets again as a plain AnnData store.
    let many = DatasetCollection::open_many([path.clone(), path.join("dataset_1")]).expect("open");
    assert_eq!(many.n_obs(), 60);
    assert_eq!(many.dataset_names().len(), 3);
    let (mut a, mut b) = (many.new_batch(), many.new_batch());
    many.read_rows(&[20..40], &mut a).expect("read");
    many.read_rows(&[40..60], &mut b).expect("read");
    assert_eq!(a, b);

    // In-memory data joins by var names; unnamed var is matched by count.
    let dense = InMemoryX::csr(6, vec![0, 1, 1], vec![5], vec![9.0]).expect("x");
    let memory = AnnDataStore::in_memory(dense, None, None, vec![]).expect("adata");
    let mut datasets = DatasetCollection::open(&path)
        .expect("open")
        .into_datasets();
    datasets.push(("memory".into(), memory));
    let joined = DatasetCollection::from_datasets("joined", datasets).expect("join");
    assert_eq!(joined.n_obs(), 42);
    assert_eq!(
        joined.var_names().first().map(String::as_str),
        Some("gene_00000")
    );
    let mut rows = joined.new_batch();
    joined.read_rows(&[40..42], &mut rows).expect("read");
    let XBatch::Csr(rows) = rows else {
        panic!("csr")
    };
    assert_eq!(
        (rows.indptr, rows.indices, rows.data),
        (vec![0, 1, 1], vec![5], vec![9.0])
    );

    // A different var, or another kind of X, is refused.
    let wide = InMemoryX::csr(7, vec![0], vec![], vec![]).expect("x");
    let wide = AnnDataStore::in_memory(wide, None, None, vec![]).expect("adata");
    let mut datasets = DatasetCollection::open(&path)
        .expect("open")
        .into_datasets();
    datasets.push(("wide".into(), wide));
    assert!(matches!(
        DatasetCollection::from_datasets("bad", datasets),
        Err(Error::VarMismatch { .. })
    ));
    let dense = InMemoryX::dense(6, vec![0.0; 6]).expect("x");
    let dense = AnnDataStore::in_memory(dense, None, None, vec![]).expect("adata");
    let mut datasets = DatasetCollection::open(&path)
        .expect("open")
        .into_datasets();
    datasets.push(("dense".into(), dense));
    assert!(matches!(
        DatasetCollection::from_datasets("bad", datasets),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        DatasetCollection::from_datasets("none", vec![]),
        Err(Error::EmptyCollection { .. })
    ));
    // obs of the wrong length is refused.
    let x = InMemoryX::dense(1, vec![1.0, 2.0]).expect("x");
    assert!(matches!(
        AnnDataStore::in_memory(x, None, None, vec![("c".into(), Column::int64(vec![1]))]),
        Err(Error::ShapeMismatch { .. })
    ));
}
