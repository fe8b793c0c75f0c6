//! The [`Loader`]: shuffled minibatches from a collection, produced in the background.
//!
//! ```no_run
//! # fn main() -> annbatch::Result<()> {
//! use annbatch::Loader;
//!
//! let loader = Loader::builder("collection.zarr")
//!     .batch_size(4096)
//!     .chunk_size(32)
//!     .preload_nchunks(256)
//!     .shuffle(true)
//!     .obs_keys(["cell_type"])
//!     .return_index(true)
//!     .seed(0)
//!     .build()?;
//! # #[cfg(feature = "tch")]
//! for epoch in 0..2 {
//!     for batch in loader.epoch(epoch)? {
//!         let batch = batch?;
//!         let (x, labels) = (&batch.x, &batch.obs[0].values); // sparse CSR, int64 codes
//!     }
//! }
//! // Without libtorch (feature `tch` off), the same batches as host buffers:
//! for batch in loader.host_epoch(0)? {
//!     let batch = batch?;
//! }
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::bounded;

use crate::batch::XBatch;
use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::fetch::Fetch;
use crate::pipeline::Outlet;
pub use crate::pipeline::{Batches, LoaderState};
use crate::sampler::{ChunkPlan, LoadRequest, Sampler};
use crate::Column;

/// One requested obs column, held for the whole collection.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsSource {
    /// Category codes (`-1` = missing) and their names.
    Categorical {
        /// Per-row codes.
        codes: Vec<i32>,
        /// Category names.
        categories: Arc<Vec<String>>,
    },
    /// Numeric or boolean values as float32 (missing values of nullable columns are NaN).
    Numeric(Vec<f32>),
}

impl ObsSource {
    fn from_column(name: &str, column: Column) -> Result<Self> {
        let numeric = |v: Vec<f32>| Ok(Self::Numeric(v));
        match column {
            Column::Categorical {
                codes, categories, ..
            } => Ok(Self::Categorical {
                codes: codes.into_iter().map(|c| c as i32).collect(),
                categories: Arc::new(categories),
            }),
            Column::Float(v) => numeric(v.into_iter().map(|x| x as f32).collect()),
            Column::Int(v) => numeric(v.into_iter().map(|x| x as f32).collect()),
            Column::Bool(v) => numeric(v.into_iter().map(|x| f32::from(u8::from(x))).collect()),
            Column::NullableInt { values, mask } => numeric(
                values
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &m)| if m { f32::NAN } else { v as f32 })
                    .collect(),
            ),
            Column::NullableBool { values, mask } => numeric(
                values
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &m)| if m { f32::NAN } else { f32::from(u8::from(v)) })
                    .collect(),
            ),
            _ => Err(Error::UnsupportedObs {
                name: name.to_string(),
                reason: "string columns cannot be batched; store them as categoricals".into(),
            }),
        }
    }
}

/// An obs column's values for one batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostObs {
    /// Category codes.
    Codes(Vec<i64>),
    /// Numeric values.
    Values(Vec<f32>),
}

/// A batch in host memory: what [`Loader::host_epoch`] yields (no libtorch needed).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// The rows of `X`.
    pub x: XBatch,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<HostObs>,
    /// Global row ids, when `return_index`.
    pub index: Option<Vec<i64>>,
}

/// A batch of `tch::Tensor`s: what [`Loader::epoch`] yields.
#[cfg(feature = "tch")]
#[derive(Debug)]
pub struct Batch {
    /// `[rows, n_var]`: sparse CSR (int32 indices, float32 values) or dense float32.
    pub x: tch::Tensor,
    /// Requested obs columns, in `obs_keys` order.
    pub obs: Vec<ObsTensor>,
    /// Global row ids (int64), when `return_index`.
    pub index: Option<tch::Tensor>,
}

/// One obs column of a [`Batch`].
#[cfg(feature = "tch")]
#[derive(Debug)]
pub struct ObsTensor {
    /// The column's name.
    pub name: String,
    /// int64 category codes, or float32 values.
    pub values: tch::Tensor,
    /// Category names (for categorical columns).
    pub categories: Option<Arc<Vec<String>>>,
}

#[cfg(feature = "tch")]
impl Batch {
    /// The obs column `name`, if it was requested.
    pub fn obs(&self, name: &str) -> Option<&ObsTensor> {
        self.obs.iter().find(|o| o.name == name)
    }
}

/// Where the loader reads from.
#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Collection(Arc<DatasetCollection>),
}

/// annbatch's defaults, shared by the builder, the C ABI and the Python module.
pub mod defaults {
    /// Rows per batch.
    pub const BATCH_SIZE: usize = 1;
    /// Rows per contiguous read.
    pub const CHUNK_SIZE: u64 = 512;
    /// Chunks per fetch.
    pub const PRELOAD_NCHUNKS: usize = 32;
}

/// Configures a [`Loader`]; parameters and defaults are annbatch's.
#[derive(Clone)]
pub struct LoaderBuilder {
    source: Source,
    batch_size: usize,
    chunk_size: u64,
    preload_nchunks: usize,
    shuffle: bool,
    drop_last: bool,
    return_index: bool,
    seed: u64,
    obs_keys: Vec<String>,
    sampler: Option<Arc<dyn Sampler>>,
    num_threads: Option<usize>,
    prefetch: Option<usize>,
    #[cfg(feature = "tch")]
    device: tch::Device,
}

impl LoaderBuilder {
    /// Rows per batch. Default 1 (annbatch's).
    pub fn batch_size(mut self, v: usize) -> Self {
        self.batch_size = v;
        self
    }
    /// Rows per contiguous read. Default 512.
    pub fn chunk_size(mut self, v: u64) -> Self {
        self.chunk_size = v;
        self
    }
    /// Chunks per fetch. Default 32.
    pub fn preload_nchunks(mut self, v: usize) -> Self {
        self.preload_nchunks = v;
        self
    }
    /// Random chunk order and in-memory row shuffle. Default false.
    pub fn shuffle(mut self, v: bool) -> Self {
        self.shuffle = v;
        self
    }
    /// Drop the last incomplete batch. Default false.
    pub fn drop_last(mut self, v: bool) -> Self {
        self.drop_last = v;
        self
    }
    /// Add the global row ids to each batch. Default false.
    pub fn return_index(mut self, v: bool) -> Self {
        self.return_index = v;
        self
    }
    /// Random seed for the built-in samplers. Default 0.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
    /// obs columns to add to each batch (categorical → codes, numeric → float32).
    pub fn obs_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.obs_keys = keys.into_iter().map(Into::into).collect();
        self
    }
    /// A custom sampler; replaces batch_size/chunk_size/preload_nchunks/shuffle/drop_last/seed.
    pub fn batch_sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Some(Arc::new(sampler));
        self
    }
    /// Threads decoding and assembling. Default: all cores.
    pub fn num_threads(mut self, v: usize) -> Self {
        self.num_threads = Some(v);
        self
    }
    /// Batches that may wait ready for the consumer (the memory bound). Default: one fetch's
    /// worth (`chunk_size * preload_nchunks / batch_size`), at least 2.
    ///
    /// Memory: the waiting batches, plus one request's batches being built, plus those the
    /// consumer holds. The loader keeps the memory of up to `prefetch + batches per request + 2`
    /// batches for reuse (batches dropped by the consumer are written again in place, without
    /// fresh page faults), and frees it with the loader.
    pub fn prefetch(mut self, v: usize) -> Self {
        self.prefetch = Some(v);
        self
    }
    /// Where tensors are placed (`tch::Device::Cpu` or `tch::Device::Cuda(n)`). Default CPU.
    #[cfg(feature = "tch")]
    pub fn device(mut self, device: tch::Device) -> Self {
        self.device = device;
        self
    }

    /// Opens the collection, loads the obs columns, validates everything.
    pub fn build(self) -> Result<Loader> {
        let collection = match self.source {
            Source::Path(p) => Arc::new(DatasetCollection::open(p)?),
            Source::Collection(c) => c,
        };
        let sampler: Arc<dyn Sampler> = match self.sampler {
            Some(s) => s,
            None => {
                let mut plan = ChunkPlan::new(
                    self.batch_size,
                    self.chunk_size,
                    self.preload_nchunks,
                    self.shuffle,
                );
                plan.drop_last = self.drop_last;
                plan.seed = self.seed;
                Arc::new(plan)
            }
        };
        sampler.validate(collection.n_obs())?;
        let mut obs = Vec::with_capacity(self.obs_keys.len());
        for key in &self.obs_keys {
            obs.push((
                key.clone(),
                ObsSource::from_column(key, collection.obs_column(key)?)?,
            ));
        }
        let threads = self.num_threads.unwrap_or(0);
        if let Some(0) = self.num_threads {
            return Err(Error::parameter("num_threads", 0, "must be positive"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("annbatch-worker-{i}"))
            .build()
            .map_err(|e| Error::parameter("num_threads", threads, e.to_string()))?;
        if let Some(0) = self.prefetch {
            return Err(Error::parameter("prefetch", 0, "must be positive"));
        }
        #[cfg(feature = "tch")]
        crate::tensor::check_device(self.device)?;
        #[cfg(feature = "tch")]
        let storage = {
            // Batches alive at once: those waiting in the channel, one request's being built,
            // and a couple held by the consumer; two pooled arrays each (see `prefetch`).
            let per_request = sampler.batches_per_request();
            let waiting = self.prefetch.unwrap_or_else(|| per_request.max(2));
            let slots = 2 * (waiting + per_request + 2);
            Arc::new(match self.device {
                // Page-locked, so that the copy engine reads it directly (see `crate::cuda`).
                #[cfg(feature = "cuda")]
                tch::Device::Cuda(_) => crate::tensor::StoragePool::pinned(slots, self.device),
                _ => crate::tensor::StoragePool::new(slots),
            })
        };
        #[cfg(feature = "cuda")]
        let copier = match self.device {
            tch::Device::Cuda(n) => Some(Arc::new(crate::cuda::CudaCopier::new(n)?)),
            _ => None,
        };
        Ok(Loader {
            collection,
            sampler,
            obs: Arc::new(obs),
            return_index: self.return_index,
            pool: Arc::new(pool),
            prefetch: self.prefetch,
            #[cfg(feature = "tch")]
            device: self.device,
            #[cfg(feature = "tch")]
            storage,
            #[cfg(feature = "cuda")]
            copier,
        })
    }
}

/// Streams minibatches of a [`DatasetCollection`] (see the [module docs](self)).
pub struct Loader {
    collection: Arc<DatasetCollection>,
    sampler: Arc<dyn Sampler>,
    obs: Arc<Vec<(String, ObsSource)>>,
    return_index: bool,
    pool: Arc<rayon::ThreadPool>,
    prefetch: Option<usize>,
    #[cfg(feature = "tch")]
    device: tch::Device,
    /// Memory of the batches' large arrays, reused once the consumer dropped them.
    #[cfg(feature = "tch")]
    storage: Arc<crate::tensor::StoragePool>,
    /// The CUDA uploader, when the device is `cuda:N`.
    #[cfg(feature = "cuda")]
    copier: Option<Arc<crate::cuda::CudaCopier>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("collection", &self.collection.path())
            .field("n_obs", &self.n_obs())
            .field("batch_size", &self.sampler.batch_size())
            .finish()
    }
}

impl Loader {
    /// A builder reading the collection (or AnnData store) at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> LoaderBuilder {
        Self::builder_from(Source::Path(path.into()))
    }

    /// A builder reading an already open collection.
    pub fn builder_for(collection: Arc<DatasetCollection>) -> LoaderBuilder {
        Self::builder_from(Source::Collection(collection))
    }

    fn builder_from(source: Source) -> LoaderBuilder {
        LoaderBuilder {
            source,
            batch_size: defaults::BATCH_SIZE,
            chunk_size: defaults::CHUNK_SIZE,
            preload_nchunks: defaults::PRELOAD_NCHUNKS,
            shuffle: false,
            drop_last: false,
            return_index: false,
            seed: 0,
            obs_keys: Vec::new(),
            sampler: None,
            num_threads: None,
            prefetch: None,
            #[cfg(feature = "tch")]
            device: tch::Device::Cpu,
        }
    }

    /// The collection.
    pub fn collection(&self) -> &Arc<DatasetCollection> {
        &self.collection
    }
    /// Number of observations.
    pub fn n_obs(&self) -> u64 {
        self.collection.n_obs()
    }
    /// Number of variables.
    pub fn n_var(&self) -> u64 {
        self.collection.n_var()
    }
    /// Batches per epoch.
    pub fn len(&self) -> u64 {
        self.sampler.n_batches(self.n_obs())
    }
    /// Whether an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sampler.
    pub fn sampler(&self) -> &Arc<dyn Sampler> {
        &self.sampler
    }

    fn capacity(&self) -> usize {
        // One request's worth of batches, 2 at least.
        self.prefetch
            .unwrap_or_else(|| self.sampler.batches_per_request().max(2))
    }

    /// Runs `assemble` over every batch of the epoch from `state`, in a background pipeline.
    fn run<T: Send + 'static>(
        &self,
        state: LoaderState,
        assemble: impl Fn(&Fetch, &[usize], &Shared) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Batches<T>> {
        self.spawn(
            state,
            move |Context {
                      n_obs,
                      shared,
                      collection,
                      sampler,
                      pool,
                  },
                  outlet: &Outlet<T>| {
                // Two stages on the shared pool: a reader thread fills fetch buffers (two, so
                // it decodes fetch k+1 while this thread cuts fetch k into batches and sends
                // each as soon as it is ready).
                let (full_tx, full_rx) = bounded::<Result<(LoadRequest, usize, Fetch)>>(1);
                let (empty_tx, empty_rx) = bounded::<Fetch>(2);
                for _ in 0..2 {
                    // Capacity 2: cannot fail.
                    let _ = empty_tx.send(Fetch::new(&collection));
                }
                std::thread::scope(|scope| -> Result<()> {
                    // Owned here, so that leaving this closure early disconnects both channels
                    // and the reader, wherever it waits, stops before the scope joins it.
                    let (empty_tx, full_rx) = (empty_tx, full_rx);
                    let (sampler, collection, pool) = (&sampler, &collection, &pool);
                    scope.spawn(move || {
                        let read = || -> Result<()> {
                            for item in pending(sampler.as_ref(), n_obs, state)? {
                                let (request, first) = item?;
                                let Ok(mut fetch) = empty_rx.recv() else {
                                    return Ok(()); // the assembler has stopped
                                };
                                pool.install(|| fetch.read(collection, &request))?;
                                if full_tx.send(Ok((request, first, fetch))).is_err() {
                                    return Ok(());
                                }
                            }
                            Ok(())
                        };
                        if let Err(e) = crate::pipeline::catch_panic(read) {
                            let _ = full_tx.send(Err(e));
                        }
                    });
                    for item in full_rx {
                        let (request, first, fetch) = item?;
                        for split in &request.splits[first..] {
                            let batch = pool.install(|| assemble(&fetch, split, &shared));
                            let failed = batch.is_err();
                            if !outlet.send(batch) || failed {
                                return Ok(());
                            }
                        }
                        // Fails only once the reader is done and needs no buffer.
                        let _ = empty_tx.send(fetch);
                    }
                    Ok(())
                })
            },
        )
    }

    /// The batches of `epoch` as host buffers (no libtorch involved).
    pub fn host_epoch(&self, epoch: u64) -> Result<Batches<HostBatch>> {
        self.host_resume(LoaderState { epoch, batches: 0 })
    }

    /// Host batches from `state` on.
    pub fn host_resume(&self, state: LoaderState) -> Result<Batches<HostBatch>> {
        self.run(state, |fetch, split, shared| {
            let rows: Vec<usize> = split.iter().map(|&i| fetch.order[i]).collect();
            let mut x = fetch.x.empty_like();
            x.gather(&fetch.x, &rows);
            let obs = shared
                .obs
                .iter()
                .map(|(_, source)| match source {
                    ObsSource::Categorical { codes, .. } => HostObs::Codes(
                        split
                            .iter()
                            .map(|&i| i64::from(codes[fetch.rows[i] as usize]))
                            .collect(),
                    ),
                    ObsSource::Numeric(v) => {
                        HostObs::Values(split.iter().map(|&i| v[fetch.rows[i] as usize]).collect())
                    }
                })
                .collect();
            let index = shared
                .return_index
                .then(|| split.iter().map(|&i| fetch.rows[i] as i64).collect());
            Ok(HostBatch { x, obs, index })
        })
    }

    /// The batches of `epoch` as `tch::Tensor`s on the loader's device.
    #[cfg(feature = "tch")]
    pub fn epoch(&self, epoch: u64) -> Result<Batches<Batch>> {
        self.resume(LoaderState { epoch, batches: 0 })
    }

    /// Continues an epoch from `state` (from [`Batches::state`]): the rest of the epoch is
    /// exactly what an uninterrupted run would have yielded.
    #[cfg(feature = "tch")]
    pub fn resume(&self, state: LoaderState) -> Result<Batches<Batch>> {
        let device = self.device;
        if crate::direct::supported(&self.collection) {
            return self.run_direct(state, device);
        }
        self.run(state, move |fetch, split, shared| {
            crate::tensor::assemble(fetch, split, shared, device)
        })
    }
}

impl Loader {
    /// Streams the epoch from `state` with [`crate::direct`]: one thread builds a fetch's batches
    /// (decoding on the pool) and sends them; it builds the next fetch while the consumer takes
    /// the batches waiting in the channel.
    #[cfg(feature = "tch")]
    fn run_direct(&self, state: LoaderState, device: tch::Device) -> Result<Batches<Batch>> {
        self.spawn(
            state,
            move |Context {
                      n_obs,
                      shared,
                      collection,
                      sampler,
                      pool,
                  },
                  outlet: &Outlet<Batch>| {
                for item in pending(sampler.as_ref(), n_obs, state)? {
                    let (request, first) = item?;
                    if outlet.quit() {
                        return Ok(());
                    }
                    let batches = pool.install(|| {
                        crate::direct::batches(&collection, &request, first, &shared, device)
                    })?;
                    for batch in batches {
                        if !outlet.send(Ok(batch)) {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            },
        )
    }
}

/// What an epoch's background work needs, taken from the loader.
struct Context {
    n_obs: u64,
    shared: Shared,
    collection: Arc<DatasetCollection>,
    sampler: Arc<dyn Sampler>,
    pool: Arc<rayon::ThreadPool>,
}

impl Loader {
    /// Starts `produce` for the epoch from `state` on a background thread (see [`Batches`]).
    fn spawn<T: Send + 'static>(
        &self,
        state: LoaderState,
        produce: impl FnOnce(Context, &Outlet<T>) -> Result<()> + Send + 'static,
    ) -> Result<Batches<T>> {
        let context = self.context()?;
        Batches::spawn(
            self.capacity(),
            state,
            self.len().saturating_sub(state.batches),
            move |outlet: &Outlet<T>| produce(context, outlet),
        )
    }

    /// Validates the sampler against the data and gathers what an epoch's threads need.
    fn context(&self) -> Result<Context> {
        let n_obs = self.n_obs();
        self.sampler.validate(n_obs)?;
        Ok(Context {
            n_obs,
            shared: Shared {
                obs: self.obs.clone(),
                return_index: self.return_index,
                #[cfg(feature = "tch")]
                storage: self.storage.clone(),
                #[cfg(feature = "cuda")]
                copier: self.copier.clone(),
            },
            collection: self.collection.clone(),
            sampler: self.sampler.clone(),
            pool: self.pool.clone(),
        })
    }
}

/// The epoch's load requests from `state` on, each with how many of its leading batches were
/// already delivered (requests fully delivered are skipped), validated against `n_obs`.
fn pending(
    sampler: &dyn Sampler,
    n_obs: u64,
    state: LoaderState,
) -> Result<impl Iterator<Item = Result<(LoadRequest, usize)>> + '_> {
    let mut skip = state.batches;
    Ok(sampler
        .requests(n_obs, state.epoch)?
        .filter_map(move |request| {
            let n_splits = request.splits.len() as u64;
            if skip >= n_splits {
                skip -= n_splits;
                return None;
            }
            let first = std::mem::take(&mut skip) as usize;
            Some(request.validate(n_obs).map(|()| (request, first)))
        }))
}

/// What batch assembly needs besides the fetch.
pub(crate) struct Shared {
    pub(crate) obs: Arc<Vec<(String, ObsSource)>>,
    pub(crate) return_index: bool,
    #[cfg(feature = "tch")]
    pub(crate) storage: Arc<crate::tensor::StoragePool>,
    #[cfg(feature = "cuda")]
    pub(crate) copier: Option<Arc<crate::cuda::CudaCopier>>,
}
