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
