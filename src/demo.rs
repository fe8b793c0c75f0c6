//! The built-in demo dataset: synthetic scRNA-like counts written as an annbatch collection.
//!
//! Each cell gets a class label and about `mean_nnz` non-zero genes out of `n_var`; a fifth of
//! them are drawn from its class's marker genes with higher counts, so a linear model can learn
//! the labels. Every row is generated from `(seed, row)` alone: the data do not depend on the
//! number of threads.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde_json::json;

use crate::collection::COLLECTION_ENCODING;
use crate::error::{Error, Result};
use crate::store::write::{attrs, Layout, Writer};
use crate::store::Column;

/// Marker genes per class.
const MARKERS: u64 = 250;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Cells. Default 20,000.
    pub n_obs: u64,
    /// Genes. Default 20,000.
    pub n_var: u64,
    /// Mean non-zeros per cell. Default 1,500.
    pub mean_nnz: u64,
    /// Cell-type classes. Default 8.
    pub n_classes: u64,
    /// Rows per `dataset_N` of the collection. Default 10,000.
    pub dataset_size: u64,
    /// Random seed. Default 0.
    pub seed: u64,
    /// On-disk chunking of `X`.
    pub layout: Layout,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            n_obs: 20_000,
            n_var: 20_000,
            mean_nnz: 1_500,
            n_classes: 8,
            dataset_size: 10_000,
            seed: 0,
            layout: Layout::default(),
        }
    }
}

impl SyntheticSpec {
    fn validate(&self) -> Result<()> {
        let positive = [
            ("n_obs", self.n_obs),
            ("n_var", self.n_var),
            ("n_classes", self.n_classes),
            ("dataset_size", self.dataset_size),
            ("chunk_rows", self.layout.chunk_rows),
            ("shard_rows", self.layout.shard_rows),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::parameter(name, v, "must be positive"));
            }
        }
        if self.mean_nnz == 0 || self.mean_nnz * 13 / 10 > self.n_var {
            return Err(Error::parameter(
                "mean_nnz",
                self.mean_nnz,
                "must be in 1..=n_var/1.3",
            ));
        }
        if self.n_var > u64::from(u32::MAX) {
            return Err(Error::parameter("n_var", self.n_var, "must fit u32"));
        }
        Ok(())
    }

    /// The JSON recorded in the collection's attributes, to recognise an up-to-date demo.
    fn fingerprint(&self) -> serde_json::Value {
        json!({"n_obs": self.n_obs, "n_var": self.n_var, "mean_nnz": self.mean_nnz,
               "n_classes": self.n_classes, "dataset_size": self.dataset_size, "seed": self.seed,
               "chunk_rows": self.layout.chunk_rows, "shard_rows": self.layout.shard_rows})
    }
}

/// Rows of generated data in CSR form.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticRows {
    /// Row pointers (`len = rows + 1`).
    pub indptr: Vec<i64>,
    /// Sorted column indices per row.
    pub indices: Vec<u32>,
    /// Counts (whole numbers, as float32).
    pub data: Vec<f32>,
    /// Class of each row.
    pub labels: Vec<i64>,
}

fn row_rng(seed: u64, row: u64) -> StdRng {
    // splitmix64 of (seed, row): independent streams per row.
    let mut z = seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

fn generate_row(spec: &SyntheticSpec, row: u64) -> (i64, Vec<u32>, Vec<f32>) {
    let mut rng = row_rng(spec.seed, row);
    let label = rng.random_range(0..spec.n_classes);
    let nnz = (spec.mean_nnz as f64 * rng.random_range(0.7..1.3)) as u64;
    let markers = MARKERS.min(spec.n_var / spec.n_classes).max(1);
    let first_marker = label * markers;
    let n_marker = (nnz / 5).min(markers);
    let mut genes: Vec<(u32, f32)> = Vec::with_capacity(nnz as usize);
    for i in rand::seq::index::sample(&mut rng, markers as usize, n_marker as usize) {
        let count = 2.0 + (-(rng.random::<f64>().max(1e-12)).ln() * 4.0).floor();
        genes.push(((first_marker + i as u64) as u32, count as f32));
    }
    for g in rand::seq::index::sample(&mut rng, spec.n_var as usize, (nnz - n_marker) as usize) {
        let count = 1.0 + (-(rng.random::<f64>().max(1e-12)).ln() * 0.7).floor();
        genes.push((g as u32, count as f32));
    }
    genes.sort_unstable_by_key(|g| g.0);
    genes.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    let (indices, data) = genes.into_iter().unzip();
    (label as i64, indices, data)
}

/// Generates rows `rows` of the dataset `spec` describes (in parallel, deterministically).
pub fn generate(spec: &SyntheticSpec, rows: std::ops::Range<u64>) -> SyntheticRows {
    let per_row: Vec<(i64, Vec<u32>, Vec<f32>)> = rows
        .into_par_iter()
        .map(|r| generate_row(spec, r))
        .collect();
    let nnz: usize = per_row.iter().map(|r| r.1.len()).sum();
    let mut out = SyntheticRows {
        indptr: Vec::with_capacity(per_row.len() + 1),
        indices: Vec::with_capacity(nnz),
        data: Vec::with_capacity(nnz),
        labels: Vec::with_capacity(per_row.len()),
    };
    out.indptr.push(0);
    for (label, indices, data) in per_row {
        out.indices.extend(indices);
        out.data.extend(data);
        out.indptr.push(out.indices.len() as i64);
        out.labels.push(label);
    }
    out
}

/// Class names of the demo's `cell_type` column.
pub fn class_names(spec: &SyntheticSpec) -> Vec<String> {
    (0..spec.n_classes).map(|k| format!("type_{k}")).collect()
}

/// Whether `path` holds a complete demo collection made from exactly `spec`.
pub fn is_current(path: &Path, spec: &SyntheticSpec) -> bool {
    let Ok(text) = std::fs::read_to_string(path.join("zarr.json")) else {
        return false;
    };
    let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    meta.pointer("/attributes/annbatch-rs-demo") == Some(&spec.fingerprint())
}

/// Writes the demo dataset as an annbatch collection at `path` (replacing what is there).
///
/// The root group's metadata is written last, so an interrupted run never looks complete.
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad spec, [`Error::Io`] / [`Error::Zarr`] when writing fails.
pub fn write_collection(path: &Path, spec: &SyntheticSpec) -> Result<()> {
    spec.validate()?;
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let writer = Writer::create(path)?;
    let var_names: Vec<String> = (0..spec.n_var).map(|j| format!("gene_{j:05}")).collect();
    let categories = class_names(spec);
    let n_datasets = spec.n_obs.div_ceil(spec.dataset_size);
    for d in 0..n_datasets {
        let start = d * spec.dataset_size;
        let end = (start + spec.dataset_size).min(spec.n_obs);
        let rows = generate(spec, start..end);
        let obs_names: Vec<String> = (start..end).map(|r| format!("cell_{r}")).collect();
        let obs = vec![
            (
                "cell_type".to_string(),
                Column::categorical(rows.labels.clone(), categories.clone(), false),
            ),
            (
                "src_path".to_string(),
                Column::categorical(
                    vec![0; (end - start) as usize],
                    vec!["synthetic".into()],
                    false,
                ),
            ),
        ];
        writer.anndata_csr(
            &format!("dataset_{d}"),
            &rows.indptr,
            &rows.indices,
            &rows.data,
            spec.n_var,
            &obs_names,
            &obs,
            &var_names,
            spec.layout,
        )?;
    }
    writer.group(
        "",
        attrs(&[
            ("encoding-type", json!(COLLECTION_ENCODING)),
            ("encoding-version", json!("0.1.0")),
            ("annbatch-rs-demo", spec.fingerprint()),
        ]),
    )
}
