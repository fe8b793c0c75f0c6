//! Shared helpers for the integration tests: fixture paths and reference values.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use annbatch::write::{Layout, Writer};
use annbatch::Column;

/// `tests/data/<name>`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn lines(path: PathBuf) -> Vec<String> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn le<T, const N: usize>(path: PathBuf, f: fn([u8; N]) -> T) -> Vec<T> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("exact chunk")))
        .collect()
}

/// Reference values written by `tests/data/make_reference.py` from the source `.h5ad` (anndata).
pub struct Reference {
    pub obs_names: Vec<String>,
    pub var_names: Vec<String>,
    /// Row of each obs name.
    pub row_of: HashMap<String, usize>,
    /// Per source row: sorted `(column, value)` pairs (CSR) or the dense row.
    pub rows: Vec<Vec<(i32, f32)>>,
    pub dense: Option<Vec<Vec<f32>>>,
    pub dir: PathBuf,
}

impl Reference {
    pub fn load(stem: &str) -> Self {
        let dir = data("reference").join(stem);
        let obs_names = lines(dir.join("obs_names.txt"));
        let var_names = lines(dir.join("var_names.txt"));
        let row_of = obs_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let n_var = var_names.len();
        let (rows, dense) = if dir.join("dense.f32").exists() {
            let values = le(dir.join("dense.f32"), f32::from_le_bytes);
            let dense: Vec<Vec<f32>> = values.chunks(n_var).map(<[f32]>::to_vec).collect();
            let rows = dense.iter().map(|r| sparse_of_dense(r)).collect();
            (rows, Some(dense))
        } else if !dir.join("indptr.i64").exists() {
            (Vec::new(), None) // statistics only (rowstats.f64)
        } else {
            let indptr = le(dir.join("indptr.i64"), i64::from_le_bytes);
            let indices = le(dir.join("indices.i32"), i32::from_le_bytes);
            let values = le(dir.join("data.f32"), f32::from_le_bytes);
            let rows = indptr
                .windows(2)
                .map(|w| {
                    let (a, b) = (w[0] as usize, w[1] as usize);
                    sorted_row(&indices[a..b], &values[a..b])
                })
                .collect();
            (rows, None)
        };
        Self {
            obs_names,
            var_names,
            row_of,
            rows,
            dense,
            dir,
        }
    }

    /// A string obs column, one value per source row.
    pub fn obs_strings(&self, column: &str) -> Vec<String> {
        lines(self.dir.join(format!("obs_{column}.txt")))
    }

    /// A numeric obs column, one value per source row.
    pub fn obs_f64(&self, column: &str) -> Vec<f64> {
        le(
            self.dir.join(format!("obs_{column}.f64")),
            f64::from_le_bytes,
        )
    }
}

/// `(column, value)` pairs sorted by column, zeros dropped.
pub fn sorted_row(indices: &[i32], values: &[f32]) -> Vec<(i32, f32)> {
    let mut row: Vec<(i32, f32)> = indices
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect();
    row.sort_by_key(|p| p.0);
    row.retain(|p| p.1 != 0.0);
    row
}

/// Non-zero `(column, value)` pairs of a dense row.
pub fn sparse_of_dense(row: &[f32]) -> Vec<(i32, f32)> {
    row.iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, v)| (i as i32, *v))
        .collect()
}

/// Column strings of a categorical (or string) column.
pub fn labels(column: &Column) -> Vec<String> {
    column
        .to_strings()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

/// An in-memory CSR matrix for building fixtures.
#[derive(Debug, Clone)]
pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
    pub n_var: u64,
}

impl Csr {
    /// From dense rows (zeros not stored).
    pub fn from_dense(rows: &[Vec<f32>]) -> Self {
        let n_var = rows.first().map_or(0, Vec::len) as u64;
        let mut m = Csr {
            indptr: vec![0],
            indices: vec![],
            data: vec![],
            n_var,
        };
        for row in rows {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    m.indices.push(j as u32);
                    m.data.push(v);
                }
            }
            m.indptr.push(m.data.len() as i64);
        }
        m
    }

    pub fn n_obs(&self) -> usize {
        self.indptr.len() - 1
    }

    pub fn row(&self, i: usize) -> Vec<(i32, f32)> {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        self.indices[a..b]
            .iter()
            .map(|&j| j as i32)
            .zip(self.data[a..b].iter().copied())
            .collect()
    }
}

/// Writes `m` as one AnnData group `group` under `root` (obs `cell_type`, generic names).
pub fn write_csr(root: &Path, group: &str, m: &Csr, var_names: &[String], layout: Layout) {
    let writer = Writer::create(root).expect("writer");
    let n = m.n_obs();
    let obs_names: Vec<String> = (0..n).map(|i| format!("{group}cell{i}")).collect();
    let obs = vec![(
        "cell_type".to_string(),
        Column::categorical(
            (0..n as i64).map(|i| i % 3).collect(),
            vec!["a".into(), "b".into(), "c".into()],
            false,
        ),
    )];
    writer
        .anndata_csr(
            group, &m.indptr, &m.indices, &m.data, m.n_var, &obs_names, &obs, var_names, layout,
        )
        .expect("write anndata");
}

/// Gene names `g0..g{n}`.
pub fn genes(n: u64) -> Vec<String> {
    (0..n).map(|j| format!("g{j}")).collect()
}

/// A 1,000-cell, 4-dataset synthetic collection with small chunks, written under `dir`.
pub fn small_collection(dir: &Path) -> std::sync::Arc<annbatch::DatasetCollection> {
    use annbatch::demo::{self, SyntheticSpec};
    let path = dir.join("c.zarr");
    let spec = SyntheticSpec {
        n_obs: 1_000,
        n_var: 60,
        mean_nnz: 12,
        n_classes: 4,
        dataset_size: 300,
        seed: 3,
        layout: Layout {
            chunk_rows: 16,
            shard_rows: 64,
        },
    };
    demo::write_collection(&path, &spec).expect("write");
    std::sync::Arc::new(annbatch::DatasetCollection::open(&path).expect("open"))
}

/// Overwrites the first 16 bytes of the file at `path` (a shard: its first inner chunk).
pub fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    for b in bytes.iter_mut().take(16) {
        *b = 0xee;
    }
    std::fs::write(path, bytes).expect("write");
}

/// Copies the directory tree `from` to `to` (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
