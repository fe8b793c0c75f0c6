//! A `DatasetCollection`: many AnnData datasets read as one virtual concatenation.
//!
//! annbatch writes a collection as a zarr group with attributes
//! `encoding-type: annbatch-preshuffled` and child groups `dataset_0..N`, each a complete
//! AnnData with the same `var`. Global row `r` lives in the dataset whose row offset range holds
//! it. A plain AnnData store opens as a one-dataset collection.

mod inventory;

use std::ops::Range;
use std::path::{Path, PathBuf};

pub(crate) use inventory::{Inventory, KEY as INVENTORY_KEY};

use crate::batch::XBatch;
use crate::error::{Error, Result};
pub use crate::storage::{OpenOptions, RemoteOptions, RemoteTraffic};
use crate::store::dataframe::concat_outer;
use crate::store::{var_space, AnnDataStore, Column};
use crate::zarr::ZarrStore;

/// How the `var` spaces of datasets with different genes become one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VarJoin {
    /// Every dataset must have the same `var` (annbatch's rule); else [`Error::VarMismatch`].
    #[default]
    Same,
    /// The union of the var names, sorted (`anndata.concat(join="outer")`, as the converter
    /// joins); a dataset's missing genes are zeros.
    Outer,
    /// The outer join cut to these names (the converter's `var_subset`), in the union's order;
    /// other genes are dropped.
    Subset(Vec<String>),
}

/// Datasets of a collection in an object store opened at once.
const REMOTE_OPENS: usize = 16;

/// The `encoding-type` annbatch gives a collection's root group.
pub const COLLECTION_ENCODING: &str = "annbatch-preshuffled";

/// A collection of AnnData datasets sharing one `var` space.
///
/// ```no_run
/// # fn main() -> annbatch::Result<()> {
/// let collection = annbatch::DatasetCollection::open("collection.zarr")?;
/// let mut batch = collection.new_batch();
/// // Rows 10..20 and 5000..5032 of the concatenation, whichever datasets hold them.
/// collection.read_rows(&[10..20, 5000..5032], &mut batch)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DatasetCollection {
    path: PathBuf,
    names: Vec<String>,
    datasets: Vec<AnnDataStore>,
    /// `offsets[i]` is the first global row of dataset `i`; the last entry is `n_obs`.
    offsets: Vec<u64>,
    preshuffled: bool,
    /// The dataset whose `var` index names the columns (the first with a named one).
    var_source: usize,
}

impl DatasetCollection {
    /// Opens a collection (or a single AnnData store as a one-dataset collection).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Zarr`] when the store cannot be read,
    /// [`Error::MissingElement`] without zarr group metadata, [`Error::EmptyCollection`] for a
    /// collection without datasets, and the errors of opening each dataset's `X`, `obs` and
    /// `var` ([`Error::VarMismatch`] when they do not share `var`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// [`Self::open`] with [`OpenOptions`] (direct I/O).
    ///
    /// ```no_run
    /// use annbatch::{DatasetCollection, OpenOptions};
    /// let options = OpenOptions { direct_io: true, ..OpenOptions::default() };
    /// let collection = DatasetCollection::open_with("collection.zarr", &options)?;
    /// # Ok::<(), annbatch::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open`]; with `direct_io`, [`Error::Io`] where the file system refuses
    /// `O_DIRECT` (tmpfs, for one) or off Linux.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let _open = tracing::debug_span!("open", path = %path.display()).entered();
        let label = path.display().to_string();
        crate::storage::refuse_special(path)?;
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            // A file that cannot be opened (a permission, too many open files) says so, rather
            // than being taken for a zarr store that is not there.
            if let Err(source) = std::fs::File::open(path) {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        if crate::store::is_hdf5_file(path) {
            #[cfg(feature = "hdf5")]
            {
                let dataset = AnnDataStore::open_h5ad(path)?;
                let mut this = Self::from_datasets(label, vec![(String::new(), dataset)])?;
                this.path = path.to_path_buf();
                return Ok(this);
            }
            #[cfg(not(feature = "hdf5"))]
            return Err(Error::UnknownEncoding {
                path: label,
                encoding_type: "h5ad (an HDF5 file)".into(),
                encoding_version: String::new(),
                expected: "a zarr collection or AnnData store: this build reads no HDF5 (crate \
                           feature `hdf5`); convert the .h5ad first (`annbatch convert FILE.h5ad \
                           -o OUT.zarr`)"
                    .into(),
            });
        }
        let store = ZarrStore::open_with(path, options)?;
        let attrs = store.attributes("").map_err(|e| match e {
            // In an object store nothing marks a prefix as there: no root metadata is no
            // collection, as a missing directory is locally.
            Error::MissingElement { .. } if crate::storage::url_of(path).is_some() => {
                Error::Remote {
                    url: label.clone(),
                    kind: crate::error::RemoteFailure::NotFound,
                    detail: "no collection here (no zarr.json or .zgroup at its root)".into(),
                }
            }
            Error::MissingElement { .. } => Error::MissingElement {
                path: label.clone(),
                element: "zarr group metadata (zarr.json or .zgroup)".into(),
            },
            e => e,
        })?;
        let (encoding_type, _) = crate::zarr::encoding_of(&attrs);
        let (names, datasets, preshuffled) = if encoding_type == COLLECTION_ENCODING {
            let mut numbered: Vec<(u64, String)> = if store.storage().listable() {
                store
                    .child_groups("")?
                    .into_iter()
                    .filter_map(|name| {
                        let n = name.strip_prefix("dataset_")?.parse::<u64>().ok()?;
                        Some((n, name))
                    })
                    .collect()
            } else {
                numbered_by_probing(&store)?
            };
            numbered.sort();
            let inventory = Inventory::from_attrs(&label, &attrs)?;
            if numbered.is_empty() {
                if let Some(inventory) = &inventory {
                    inventory.check(&label, &[])?;
                }
                return Err(Error::EmptyCollection { path: label });
            }
            // Each dataset is a few dozen small reads (metadata, indptr, var), which an object
            // store answers one round trip at a time: those open in parallel.
            let names: Vec<String> = numbered.into_iter().map(|(_, name)| name).collect();
            let datasets = if store.storage().is_remote() {
                // Waiting on the network, not on cores: more opens in flight than cores, on a
                // pool of this call's own (the global pool does not survive a fork, which
                // DataLoader workers are).
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(REMOTE_OPENS)
                    .thread_name(|i| format!("annbatch-open-{i}"))
                    .build()
                    .map_err(|e| Error::Internal(format!("a thread pool to open datasets: {e}")))?;
                pool.install(|| {
                    use rayon::prelude::*;
                    names
                        .par_iter()
                        .map(|name| AnnDataStore::open_in(&store, name))
                        .collect::<Result<Vec<_>>>()
                })?
            } else {
                names
                    .iter()
                    .map(|name| AnnDataStore::open_in(&store, name))
                    .collect::<Result<Vec<_>>>()?
            };
            if let Some(inventory) = inventory {
                let found: Vec<(&str, u64)> = names
                    .iter()
                    .zip(&datasets)
                    .map(|(n, d)| (n.as_str(), d.n_obs()))
                    .collect();
                inventory.check(&label, &found)?;
            }
            (names, datasets, true)
        } else {
            (
                vec![String::new()],
                vec![AnnDataStore::open_in(&store, "")?],
                false,
            )
        };
        let mut this = Self::from_datasets(label, names.into_iter().zip(datasets).collect())?;
        this.path = path.to_path_buf();
        this.preshuffled = preshuffled;
        tracing::debug!(
            n_obs = this.n_obs(),
            n_var = this.n_var(),
            datasets = this.datasets.len(),
            "opened"
        );
        Ok(this)
    }

    /// Opens several collections or AnnData stores and reads them as one, in order (annbatch's
    /// `Loader.add_adatas`). Every dataset must share `var` and the kind of `X`.
    ///
    /// # Errors
    /// As [`Self::open`] for each path; [`Error::VarMismatch`] / [`Error::ShapeMismatch`] when the
    /// datasets do not share `var` or the kind of `X`.
    pub fn open_many<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        Self::open_joined(paths, &OpenOptions::default(), &VarJoin::Same)
    }

    /// Opens collections, AnnData zarr stores and `.h5ad` files and reads them as one, in order,
    /// their `var` spaces joined by `join` — training straight from files as they are, no
    /// conversion step.
    ///
    /// ```no_run
    /// use annbatch::{DatasetCollection, OpenOptions, VarJoin};
    /// let files = ["donor1.h5ad", "donor2.h5ad", "atlas.zarr"];
    /// let collection = DatasetCollection::open_joined(&files, &OpenOptions::default(), &VarJoin::Outer)?;
    /// println!("{} cells x {} genes", collection.n_obs(), collection.n_var());
    /// # Ok::<(), annbatch::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_with`] for each path; as [`Self::from_datasets_joined`].
    pub fn open_joined<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
        options: &OpenOptions,
        join: &VarJoin,
    ) -> Result<Self> {
        let mut datasets = Vec::new();
        let mut labels = Vec::new();
        for path in paths {
            let c = Self::open_with(path, options)?;
            labels.push(c.path.display().to_string());
            datasets.extend(c.into_datasets());
        }
        Self::from_datasets_joined(labels.join(" + "), datasets, join)
    }

    /// [`Self::from_datasets`] with the datasets' `var` spaces joined by `join`.
    ///
    /// # Errors
    /// As [`Self::from_datasets`]; for [`VarJoin::Outer`] / [`VarJoin::Subset`],
    /// [`Error::VarMismatch`] for a dataset without var names or with a name twice,
    /// [`Error::InvalidParameter`] for a subset that names none of the datasets' variables.
    pub fn from_datasets_joined(
        label: impl Into<String>,
        datasets: Vec<(String, AnnDataStore)>,
        join: &VarJoin,
    ) -> Result<Self> {
        let label = label.into();
        let subset = match join {
            VarJoin::Same => return Self::from_datasets(label, datasets),
            VarJoin::Outer => None,
            VarJoin::Subset(names) => Some(names.as_slice()),
        };
        if let Some((name, _)) = datasets.iter().find(|(_, d)| !d.var_named()) {
            return Err(Error::VarMismatch {
                path: label,
                dataset: name.clone(),
                detail: "has no var names, so its genes cannot be joined with others' by name"
                    .into(),
            });
        }
        let space = {
            let inputs: Vec<(&str, &[String])> = datasets
                .iter()
                .map(|(name, d)| (name.as_str(), d.var_names()))
                .collect();
            var_space::build(&inputs, None, subset)?
        };
        let names = std::sync::Arc::new(space.names);
        let datasets = datasets
            .into_iter()
            .zip(space.maps)
            .map(|((name, d), map)| {
                Ok(match map {
                    Some(map) => (name, d.joined(names.clone(), std::sync::Arc::new(map))?),
                    None => (name, d),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_datasets(label, datasets)
    }

    /// The datasets and their names (`DIR/dataset_i`, or `DIR` for a plain AnnData store), to
    /// combine with others in [`Self::from_datasets`].
    pub fn into_datasets(self) -> Vec<(String, AnnDataStore)> {
        let dir = self.path.display().to_string();
        self.names
            .into_iter()
            .map(|name| {
                if name.is_empty() {
                    dir.clone()
                } else {
                    format!("{dir}/{name}")
                }
            })
            .zip(self.datasets)
            .collect()
    }

    /// Reads `datasets` (named for errors) as one collection labelled `label`; they must share
    /// `var` (unnamed in-memory `var`s are matched by count) and the kind of `X`.
    ///
    /// # Errors
    /// [`Error::EmptyCollection`] without datasets; [`Error::VarMismatch`] /
    /// [`Error::ShapeMismatch`] when they do not share `var` or the kind of `X`.
    pub fn from_datasets(
        label: impl Into<String>,
        datasets: Vec<(String, AnnDataStore)>,
    ) -> Result<Self> {
        let label = label.into();
        let (names, datasets): (Vec<String>, Vec<AnnDataStore>) = datasets.into_iter().unzip();
        if datasets.is_empty() {
            return Err(Error::EmptyCollection { path: label });
        }
        let var_source = datasets.iter().position(|d| d.var_named()).unwrap_or(0);
        let first = &datasets[var_source];
        for (name, d) in names.iter().zip(&datasets) {
            // Rows of a CSC X cannot be read; the converter transposes it.
            if d.x().is_csc() {
                return Err(d.x().csc_error());
            }
            let detail = if d.var_named() && first.var_named() {
                var_difference(first.var_names(), d.var_names())
            } else {
                (d.n_var() != first.n_var())
                    .then(|| format!("{} variables, expected {}", d.n_var(), first.n_var()))
            };
            if let Some(detail) = detail {
                return Err(Error::VarMismatch {
                    path: label,
                    dataset: name.clone(),
                    detail: format!(
                        "differs from the first dataset: {detail} (to join different genes: \
                         var_join=\"outer\" in Python, VarJoin::Outer in Rust)"
                    ),
                });
            }
            if d.x().is_sparse() != first.x().is_sparse() {
                return Err(Error::ShapeMismatch {
                    path: format!("{label}/{name}/X"),
                    found: "an X of another kind (sparse vs dense) than the first dataset".into(),
                    expected: "the same X encoding in every dataset".into(),
                });
            }
        }
        let mut offsets = Vec::with_capacity(datasets.len() + 1);
        let mut total = 0u64;
        offsets.push(0);
        for d in &datasets {
            total += d.n_obs();
            offsets.push(total);
        }
        Ok(Self {
            path: PathBuf::from(label),
            names,
            datasets,
            offsets,
            preshuffled: false,
            var_source,
        })
    }

    /// The collection's directory (for one made of several stores or of in-memory data, the
    /// label it was given, e.g. the paths joined by ` + `).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Whether the root carries annbatch's `annbatch-preshuffled` encoding (else: one AnnData).
    pub fn is_preshuffled(&self) -> bool {
        self.preshuffled
    }
    /// Total number of observations.
    pub fn n_obs(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }
    /// Number of variables, shared by every dataset.
    pub fn n_var(&self) -> u64 {
        self.datasets[self.var_source].n_var()
    }
    /// The shared `var` index (column numbers when every dataset is unnamed in-memory data).
    pub fn var_names(&self) -> &[String] {
        self.datasets[self.var_source].var_names()
    }
    /// What reading this collection from object stores has cost so far (`None` when no
    /// dataset's `X` is in one): requests and bytes, read-ahead included.
    pub fn remote_traffic(&self) -> Option<RemoteTraffic> {
        #[cfg(feature = "remote")]
        {
            let mut stores: Vec<&crate::storage::remote::RemoteStore> = Vec::new();
            for d in &self.datasets {
                if let Some(r) = d.x().remote() {
                    if !stores.iter().any(|s| s.same(r)) {
                        stores.push(r);
                    }
                }
            }
            if stores.is_empty() {
                return None;
            }
            let mut total = RemoteTraffic::default();
            for s in stores {
                total += s.traffic();
            }
            Some(total)
        }
        #[cfg(not(feature = "remote"))]
        None
    }

    /// The datasets, in order (`dataset_0`, `dataset_1`, ...).
    pub fn datasets(&self) -> &[AnnDataStore] {
        &self.datasets
    }
    /// The datasets' group names (empty for a plain AnnData store).
    pub fn dataset_names(&self) -> &[String] {
        &self.names
    }
    /// First global row of each dataset, plus `n_obs` at the end.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// The dataset holding global row `row`, and the row's index inside it.
    pub fn locate(&self, row: u64) -> Option<(usize, u64)> {
        if row >= self.n_obs() {
            return None;
        }
        let i = self.offsets.partition_point(|&o| o <= row) - 1;
        Some((i, row - self.offsets[i]))
    }

    /// Splits a global row range into `(dataset, local range)` pieces, in order.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`.
    pub fn split(&self, range: Range<u64>) -> Result<Vec<(usize, Range<u64>)>> {
        if range.start > range.end || range.end > self.n_obs() {
            return Err(Error::RowsOutOfRange {
                path: self.path.display().to_string(),
                start: range.start,
                end: range.end,
                n_obs: self.n_obs(),
            });
        }
        let mut pieces = Vec::new();
        let mut row = range.start;
        while row < range.end {
            let (i, local) = self.locate(row).ok_or_else(|| Error::RowsOutOfRange {
                path: self.path.display().to_string(),
                start: row,
                end: range.end,
                n_obs: self.n_obs(),
            })?;
            let end = range.end.min(self.offsets[i + 1]);
            pieces.push((i, local..local + (end - row)));
            row = end;
        }
        Ok(pieces)
    }

    /// An empty batch of the right kind (sparse or dense) for this collection.
    pub fn new_batch(&self) -> XBatch {
        self.datasets[0].x().new_batch()
    }

    /// Replaces the contents of `out` with the global rows of `ranges`, in order.
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices.
    pub fn read_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        out.clear();
        self.append_rows(ranges, out)
    }

    /// Appends the global rows of `ranges`, in order, to `out`. Consecutive pieces in the same
    /// dataset are read in one request (each of its chunks decoded once).
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for a range past `n_obs`, [`Error::CorruptChunk`] /
    /// [`Error::Zarr`] when a chunk cannot be read, [`Error::IndexOutOfBounds`] for a stored column
    /// index outside `0..n_var`, [`Error::BatchTooLarge`] past int32 CSR indices;
    /// [`Error::ShapeMismatch`] for an `out` of the other kind; [`Error::BatchOverBudget`] for
    /// rows that together hold more than half of the memory bound.
    pub fn append_rows(&self, ranges: &[Range<u64>], out: &mut XBatch) -> Result<()> {
        // What the rows hold is known before any is read (`indptr`, the row width): a read
        // that cannot fit in memory is refused, not grown until the OOM killer.
        let (mut rows, mut bytes) = (out.n_rows() as u64, out.bytes() as u128);
        for range in ranges {
            for (i, local) in self.split(range.clone())? {
                let (r, b) = self.datasets[i].x().read_size::<f32>(&[local]);
                rows += r;
                bytes += b;
            }
        }
        crate::budget::check_rows(rows, bytes, 2)?;
        let mut run: Vec<Range<u64>> = Vec::new();
        let mut run_dataset = None;
        for range in ranges {
            for (i, local) in self.split(range.clone())? {
                if run_dataset != Some(i) {
                    if let Some(d) = run_dataset {
                        self.datasets[d].x().append_rows(&run, out)?;
                    }
                    run.clear();
                    run_dataset = Some(i);
                }
                run.push(local);
            }
        }
        if let Some(d) = run_dataset {
            self.datasets[d].x().append_rows(&run, out)?;
        }
        Ok(())
    }

    /// The `obs` column `name` over the whole collection. Categorical columns get the union of
    /// the datasets' categories (in order of first appearance) and codes remapped to it.
    ///
    /// # Errors
    /// [`Error::MissingElement`] for a column that does not exist, [`Error::UnknownEncoding`] /
    /// [`Error::UnsupportedDtype`] for one this crate cannot read; [`Error::ShapeMismatch`] when a
    /// dataset's column has another length.
    pub fn obs_column(&self, name: &str) -> Result<Column> {
        let mut columns = Vec::with_capacity(self.datasets.len());
        for d in &self.datasets {
            columns.push(d.obs_column(name)?);
        }
        concat_columns(&self.path.display().to_string(), name, columns)
    }

    /// The `obs` index over the whole collection.
    ///
    /// # Errors
    /// [`Error::MissingElement`] / [`Error::Zarr`] when a dataset's obs index cannot be read.
    pub fn obs_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::with_capacity(self.n_obs() as usize);
        for d in &self.datasets {
            names.extend(d.obs_names()?);
        }
        Ok(names)
    }
}

/// The first difference between two var indexes, or `None` when equal.
fn var_difference(a: &[String], b: &[String]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} variables, expected {}", b.len(), a.len()));
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .map(|i| format!("var name {i} is {:?}, expected {:?}", b[i], a[i]))
}

/// The datasets' columns one after the other; categorical categories unified in order of
/// first appearance (see [`concat_outer`]). Every dataset must hold the column with one type.
fn concat_columns(path: &str, name: &str, columns: Vec<Column>) -> Result<Column> {
    let first = columns.first().map(std::mem::discriminant);
    if first.is_none()
        || columns
            .iter()
            .any(|c| Some(std::mem::discriminant(c)) != first)
    {
        return Err(Error::ShapeMismatch {
            path: format!("{path}/obs/{name}"),
            found: "columns of different types across datasets".into(),
            expected: "one column type in every dataset".into(),
        });
    }
    Ok(concat_outer(
        columns.into_iter().map(|c| (c.len(), Some(c))).collect(),
    ))
}

/// The `dataset_N` groups of a store that cannot list (plain HTTP): `dataset_0`, `dataset_1`, …
/// up to the first that is absent.
fn numbered_by_probing(store: &ZarrStore) -> Result<Vec<(u64, String)>> {
    let mut found = Vec::new();
    for n in 0u64.. {
        let name = format!("dataset_{n}");
        match store.kind(&name)? {
            Some(crate::zarr::NodeKind::Group) => found.push((n, name)),
            _ => break,
        }
    }
    Ok(found)
}
