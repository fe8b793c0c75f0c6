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

mod options;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use options::{defaults, ClassSampling, LoaderOptions, MAX_THREADS};

use crate::assemble::fetch_plan::{self, FetchBudget, RowCost};
use crate::assemble::{
    fetch_batches, AlignedGroup, AlignedMatrix, Extras, HostMemory, PooledMemory,
};
pub use crate::assemble::{DlBatch, DlMatrix, DlObs, HostBatch, HostObs, ObsSource};
use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::pipeline::{self, Built, Counters, Epoch};
pub use crate::pipeline::{Batches, LoaderState, LoaderStats};
use crate::sampler::Sampler;
use crate::store::XElement;
#[cfg(feature = "tch")]
pub use crate::tensor::{Batch, ObsTensor};

/// Where the loader reads from.
#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Collection(Arc<DatasetCollection>),
}

/// Configures a [`Loader`]; parameters and defaults are annbatch's (see [`LoaderOptions`]).
#[derive(Clone)]
pub struct LoaderBuilder {
    source: Source,
    options: LoaderOptions,
    sampler: Option<Arc<dyn Sampler>>,
}

impl LoaderBuilder {
    /// Every setting at once (what the Python and C front ends pass).
    pub fn options(mut self, options: LoaderOptions) -> Self {
        self.options = options;
        self
    }
    /// Rows per batch. Default 1 (annbatch's).
    pub fn batch_size(mut self, v: usize) -> Self {
        self.options.batch_size = v;
        self
    }
    /// Rows per contiguous read. Default 512.
    pub fn chunk_size(mut self, v: u64) -> Self {
        self.options.chunk_size = v;
        self
    }
    /// Chunks per fetch. Default 32.
    pub fn preload_nchunks(mut self, v: usize) -> Self {
        self.options.preload_nchunks = v;
        self
    }
    /// Random chunk order and in-memory row shuffle. Default false.
    pub fn shuffle(mut self, v: bool) -> Self {
        self.options.shuffle = v;
        self
    }
    /// Drop the last incomplete batch. Default false.
    pub fn drop_last(mut self, v: bool) -> Self {
        self.options.drop_last = v;
        self
    }
    /// Add the global row ids to each batch. Default false.
    pub fn return_index(mut self, v: bool) -> Self {
        self.options.return_index = v;
        self
    }
    /// Random seed for the built-in samplers. Default 0.
    pub fn seed(mut self, v: u64) -> Self {
        self.options.seed = v;
        self
    }
    /// obs columns to add to each batch (categorical → codes, numeric → float32).
    pub fn obs_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.options.obs_keys = keys.into_iter().map(Into::into).collect();
        self
    }
    /// `layers` entries to add to each batch (e.g. `counts`): the same rows as `X`, read in
    /// the same fetches, sparse CSR or dense as stored, values as float32.
    pub fn layers<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.options.layers = keys.into_iter().map(Into::into).collect();
        self
    }
    /// `obsm` entries to add to each batch (e.g. `X_pca`): the same rows as `X`, dense
    /// `[rows, d]` (or sparse CSR, as stored), values as float32.
    pub fn obsm<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.options.obsm = keys.into_iter().map(Into::into).collect();
        self
    }
    /// Read only shard `rank` of `world_size` of every epoch (annbatch's `DistributedSampler`:
    /// disjoint shards from a shared seed). Default 0 of 1.
    pub fn shard(mut self, rank: u64, world_size: u64) -> Self {
        self.options.rank = rank;
        self.options.world_size = world_size;
        self
    }
    /// A custom sampler; replaces batch_size/chunk_size/preload_nchunks/shuffle/drop_last/seed
    /// and the shard.
    pub fn batch_sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Some(Arc::new(sampler));
        self
    }
    /// Threads decoding and assembling (at most [`MAX_THREADS`]). Default: all cores.
    pub fn num_threads(mut self, v: usize) -> Self {
        self.options.num_threads = Some(v);
        self
    }
    /// Batches that may wait ready for the consumer (the memory bound). Default: one fetch's
    /// worth (`chunk_size * preload_nchunks / batch_size`), at least 2.
    ///
    /// Memory: the waiting batches, plus the batches of the (up to two) requests being built,
    /// plus those the consumer holds. The loader keeps the memory of up to
    /// `prefetch + 2 × batches per request + 2` batches for reuse (batches dropped by the consumer are written again in place, without
    /// fresh page faults), and frees it with the loader.
    pub fn prefetch(mut self, v: usize) -> Self {
        self.options.prefetch = Some(v);
        self
    }
    /// Bytes the loader's batches may take at once (see [`LoaderOptions::batch_memory`]).
    /// Default: half of `ANNBATCH_MEMORY_LIMIT`, the cgroup's limit or the physical memory.
    pub fn batch_memory(mut self, bytes: u64) -> Self {
        self.options.batch_memory = Some(bytes);
        self
    }
    /// Read the collection with `O_DIRECT`, past the page cache, when the builder opens it
    /// from a path (see [`crate::OpenOptions::direct_io`]). Default false.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.options.direct_io = on;
        self
    }

    /// With several shards, give each the same number of batches (the default), dropping the
    /// few left over; `false` splits them as evenly as possible and delivers every row.
    pub fn equal_batches(mut self, on: bool) -> Self {
        self.options.equal_batches = on;
        self
    }

    /// One global batch order per `(seed, epoch)`, the same for any `world_size`: ranks take
    /// contiguous runs of it, and [`Loader::elastic_state`] saved on `N` ranks resumes on `M`
    /// ([`Self::elastic_resume`]). Default false (annbatch's sharding).
    pub fn elastic(mut self, on: bool) -> Self {
        self.options.elastic = on;
        self
    }

    /// Resumes an elastic epoch from `state` (saved on any world size): this rank takes its
    /// run of the batches left. Implies [`Self::elastic`].
    pub fn elastic_resume(mut self, state: crate::sampler::ElasticState) -> Self {
        self.options.elastic = true;
        self.options.resume = Some(state);
        self
    }

    /// How a collection at an `s3://` or `http(s)://` URL is read (see
    /// [`crate::RemoteOptions`]); only where the loader opens the collection itself.
    pub fn remote(mut self, remote: crate::RemoteOptions) -> Self {
        self.options.remote = remote;
        self
    }
    /// Where tensors are placed (`tch::Device::Cpu` or `tch::Device::Cuda(n)`). Default CPU.
    #[cfg(feature = "tch")]
    pub fn device(mut self, device: tch::Device) -> Self {
        self.options.device = device;
        self
    }

    /// Copies each batch's X, layers and obsm to CUDA device `ordinal` in the prefetch thread
    /// ([`Self::build`] checks it exists): [`Loader::dl_epoch`] then yields `kDLCUDA` arrays
    /// (feature `cuda`). With `tch`, [`Self::device`] says the same and must agree.
    #[cfg(feature = "cuda")]
    pub fn cuda(mut self, ordinal: usize) -> Self {
        self.options.cuda = Some(ordinal);
        self
    }

    /// Opens the collection, loads the obs columns, validates everything.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a bad setting (checked before anything is opened),
    /// errors of [`DatasetCollection::open`], [`Error::MissingElement`] /
    /// [`Error::UnsupportedObs`] for an obs key that cannot be batched; [`Error::MissingElement`]
    /// / [`Error::ShapeMismatch`] for a layer or obsm entry a dataset lacks or stores otherwise,
    /// [`Error::DeviceUnavailable`] for a device that cannot be used.
    pub fn build(self) -> Result<Loader> {
        let options = self.options;
        let custom = self.sampler.is_some();
        let sampler = match self.sampler {
            Some(s) => {
                options.check()?;
                s
            }
            None => options.sampler()?,
        };
        // The plan an elastic state is computed from (chunked sampling only).
        let elastic = (!custom && (options.elastic || options.resume.is_some()))
            .then(|| options.chunk_plan());
        let collection = match self.source {
            Source::Path(p) => {
                let open = crate::OpenOptions {
                    direct_io: options.direct_io,
                    remote: options.remote.clone(),
                };
                Arc::new(DatasetCollection::open_with(p, &open)?)
            }
            Source::Collection(c) => c,
        };
        sampler.validate(collection.n_obs())?;
        let mut obs = Vec::with_capacity(options.obs_keys.len());
        for key in &options.obs_keys {
            obs.push((
                key.clone(),
                ObsSource::from_column(key, collection.obs_column(key)?)?,
            ));
        }
        let mut aligned = Vec::with_capacity(options.layers.len() + options.obsm.len());
        for (group, keys) in [
            (AlignedGroup::Layers, &options.layers),
            (AlignedGroup::Obsm, &options.obsm),
        ] {
            for key in keys {
                aligned.push(AlignedMatrix::open(&collection, group, key)?);
            }
        }
        let threads = options.num_threads.unwrap_or(0);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("annbatch-worker-{i}"))
            .build()
            .map_err(|e| Error::Thread {
                name: format!("annbatch-worker ({threads} threads)"),
                source: std::io::Error::other(e.to_string()),
            })?;
        // Never more room than one epoch's batches: a huge `prefetch` or `preload_nchunks`
        // must not size the channel (allocated up front) or the pool beyond what can exist.
        let epoch_batches = usize::try_from(sampler.n_batches(collection.n_obs()))
            .unwrap_or(usize::MAX)
            .max(1);
        let capacity = options.capacity(sampler.as_ref()).min(epoch_batches);
        // Batches alive at once: those waiting in the channel, those of the requests being
        // built, and a couple held by the consumer (see `prefetch`).
        let per_request = sampler.batches_per_request().min(epoch_batches);
        let alive = capacity + crate::pipeline::BUILDS_IN_FLIGHT * per_request + 2;
        // DLPack batches: X's three arrays, three per layer / obsm matrix, obs, index.
        let arrays = 3 + 3 * aligned.len() + obs.len() + 1;
        // Device buffers kept for reuse: as many as host buffers, which are page-locked for the
        // copies.
        #[cfg(feature = "cuda")]
        let uploader = match options.cuda_device()? {
            Some(n) => Some(Arc::new(crate::cuda::Uploader::new(
                n,
                alive.saturating_mul(arrays),
            )?)),
            None => None,
        };
        #[cfg(feature = "cuda")]
        let page_lock = uploader.as_ref().map(|u| u.page_lock());
        #[cfg(not(feature = "cuda"))]
        let page_lock = None;
        let pooled = PooledMemory::with_page_lock(alive.saturating_mul(arrays), page_lock);
        // Batches paged in at build. Python and C consumers hold their batches a while (each
        // is converted on the consumer's side): every batch that can be alive at once but the
        // two the consumer holds (else the first epoch faults in the rest page by page:
        // ~12,000-30,000 faults, ~25 % of a 100k-cell Python epoch on 2 cores). tch trainers
        // drop them sooner: one request's batches match that epoch's rate with a build ~65 ms
        // shorter (`bench_loader --only loader`, interleaved). Checked at that count.
        let prewarm_count = if cfg!(feature = "tch") {
            per_request
        } else {
            alive - 2
        };
        let extras = Arc::new(Extras {
            aligned,
            obs,
            return_index: options.return_index,
        });
        // The memory bound: each batch and build group takes at most one share. A batch of
        // the mean row that cannot fit is refused now, not at the first batch (a custom
        // sampler's rows may be other than the mean: its batches are checked as they come).
        let building = crate::pipeline::BUILDS_IN_FLIGHT + 1;
        let budget = match options.batch_memory {
            Some(bytes) => FetchBudget::of(bytes, "batch_memory", capacity, building),
            None => FetchBudget::new(capacity, building),
        };
        if !custom {
            let mean = RowCost::new(&collection, &extras).mean(&collection);
            let batch = sampler
                .batch_size()
                .min(usize::try_from(collection.n_obs()).unwrap_or(usize::MAX));
            budget.check_batch(batch, mean.saturating_mul(batch as u64))?;
        }
        let prewarmed = prewarm_size(&collection, sampler.batch_size(), prewarm_count);
        #[cfg(feature = "tch")]
        let placement = Arc::new(crate::tensor::Placement::new(options.device)?);
        if let Some((n, sparse)) = prewarmed {
            pooled.prewarm::<f32>(n, prewarm_count);
            if sparse {
                pooled.prewarm::<i32>(n, prewarm_count);
            }
        }
        Ok(Loader {
            collection,
            sampler,
            elastic,
            extras,
            budget,
            pool: Arc::new(pool),
            capacity,
            stats: Arc::default(),
            pooled,
            #[cfg(feature = "tch")]
            placement,
            #[cfg(feature = "cuda")]
            uploader,
        })
    }
}

/// The values of one batch of `batch_size` rows of the collection's mean size, and whether X
/// is sparse: what is paged in when a loader is built (`count` such batches of each array), so
/// that the first batch of the first epoch does not wait for page faults. None when it cannot
/// be known from the metadata or would not fit the memory budget.
fn prewarm_size(
    collection: &DatasetCollection,
    batch_size: usize,
    count: usize,
) -> Option<(usize, bool)> {
    let n_obs = collection.n_obs().max(1);
    let mut values: u64 = 0;
    let mut sparse = true;
    for d in collection.datasets() {
        match d.x() {
            XElement::InMemory(_) | XElement::Csc(_) => return None,
            x => {
                sparse &= x.is_sparse();
                values = values.saturating_add(x.stored_values());
            }
        }
    }
    // The mean row's values times rows of a batch, at most all values. The counts come from
    // the metadata, so the pages touched must also fit the memory budget (else no prewarm: the
    // reads themselves report what does not fit).
    let per_batch = (values / n_obs)
        .saturating_mul(batch_size as u64)
        .min(values);
    let arrays: u128 = if sparse { 2 } else { 1 };
    // Pools size each buffer up to an eighth over the mean batch.
    let total = u128::from(per_batch + per_batch / 8) * (count as u128) * arrays;
    crate::budget::check("X", "prewarmed batch memory", total, 4, 4).ok()?;
    Some((usize::try_from(per_batch).ok()?, sparse))
}

/// Streams minibatches of a [`DatasetCollection`] (see the [module docs](self)).
pub struct Loader {
    collection: Arc<DatasetCollection>,
    sampler: Arc<dyn Sampler>,
    /// The chunk plan, when sampling is elastic ([`LoaderBuilder::elastic`]).
    elastic: Option<crate::sampler::ChunkPlan>,
    extras: Arc<Extras>,
    /// What one batch and one build group may take (the memory bound).
    budget: FetchBudget,
    pool: Arc<rayon::ThreadPool>,
    capacity: usize,
    stats: Arc<Counters>,
    /// The reused memory of every batch (tensor batches are made of DLPack batches).
    pooled: PooledMemory,
    /// The device of tensor batches.
    #[cfg(feature = "tch")]
    placement: Arc<crate::tensor::Placement>,
    /// Copies each batch to the CUDA device, when there is one.
    #[cfg(feature = "cuda")]
    uploader: Option<Arc<crate::cuda::Uploader>>,
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
    /// A builder reading the collection, AnnData store or `.h5ad` file at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> LoaderBuilder {
        Self::builder_from(Source::Path(path.into()))
    }

    /// A builder reading `.h5ad` files, AnnData stores and collections as one, as they are (no
    /// conversion), their genes joined by `join`; they are opened now.
    ///
    /// ```no_run
    /// use annbatch::{Loader, VarJoin};
    /// let loader = Loader::builder_files(["donor1.h5ad", "donor2.h5ad"], &VarJoin::Outer)?
    ///     .batch_size(4096)
    ///     .chunk_size(32)
    ///     .preload_nchunks(256)
    ///     .shuffle(true)
    ///     .build()?;
    /// for batch in loader.host_epoch(0)? {
    ///     let batch = batch?;
    /// #   let _ = batch;
    /// }
    /// # Ok::<(), annbatch::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`DatasetCollection::open_joined`] (with [`crate::OpenOptions::from_env`]).
    pub fn builder_files<P: AsRef<std::path::Path>>(
        paths: impl IntoIterator<Item = P>,
        join: &crate::VarJoin,
    ) -> Result<LoaderBuilder> {
        let options = crate::OpenOptions::from_env()?;
        let collection = DatasetCollection::open_joined(paths, &options, join)?;
        Ok(Self::builder_for(Arc::new(collection)))
    }

    /// A builder reading an already open collection.
    pub fn builder_for(collection: Arc<DatasetCollection>) -> LoaderBuilder {
        Self::builder_from(Source::Collection(collection))
    }

    fn builder_from(source: Source) -> LoaderBuilder {
        LoaderBuilder {
            source,
            options: LoaderOptions::default(),
            sampler: None,
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

    /// What an epoch's producer needs, from `state` on.
    fn epoch_at(&self, state: LoaderState) -> Epoch {
        Epoch {
            sampler: self.sampler.clone(),
            n_obs: self.n_obs(),
            state,
            pool: self.pool.clone(),
            capacity: self.capacity,
            stats: self.stats.clone(),
            read_ahead: self.read_ahead(),
            plan: Some(self.plan()),
        }
    }

    /// Cuts each request to the memory bound (see [`crate::assemble::fetch_plan`]).
    fn plan(&self) -> crate::pipeline::PlanFn {
        let (collection, extras) = (self.collection.clone(), self.extras.clone());
        let budget = self.budget.clone();
        Arc::new(move |request, first| {
            let cost = RowCost::new(&collection, &extras);
            fetch_plan::plan(&collection, &cost, &budget, request, first)
        })
    }

    /// Where an elastic epoch stands once every rank (in lockstep, as under DDP) has delivered
    /// `at.batches` batches of epoch `at.epoch`: its global batches not yet delivered, to
    /// resume on any number of ranks ([`LoaderBuilder::elastic_resume`]).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when the loader is not elastic, or for more batches than a
    /// rank has in that epoch.
    pub fn elastic_state(&self, at: LoaderState) -> Result<crate::sampler::ElasticState> {
        let Some(plan) = &self.elastic else {
            return Err(Error::parameter(
                "elastic",
                false,
                "an elastic state needs a loader built with elastic(true)",
            ));
        };
        let n_obs = self.n_obs();
        plan.elastic_state(n_obs, at.epoch)?
            .after(plan.shard.1, plan.equal_shards, at.batches)
    }

    /// The read-ahead of a collection in an object store or read with `O_DIRECT`: fetches
    /// ahead, and the call that requests one fetch's bytes. `None` for collections read
    /// through the page cache.
    fn read_ahead(&self) -> Option<(usize, crate::pipeline::ReadAheadFn)> {
        let depth = crate::assemble::read_ahead::depth(&self.collection);
        if depth == 0 {
            return None;
        }
        let (collection, extras) = (self.collection.clone(), self.extras.clone());
        let start: crate::pipeline::ReadAheadFn = Arc::new(move |request| {
            match crate::assemble::read_ahead::read_ahead(&collection, &extras, request) {
                Ok(held) => Box::new(held),
                Err(e) => {
                    // The fetch itself reads (and reports) what could not be planned.
                    tracing::debug!(error = %e, "read-ahead skipped");
                    Box::new(())
                }
            }
        });
        Some((depth, start))
    }

    /// Where the time went, summed over every epoch so far (see [`LoaderStats`]).
    pub fn stats(&self) -> LoaderStats {
        self.stats.snapshot()
    }

    /// The batches of `epoch` as host buffers (no libtorch involved).
    ///
    /// # Errors
    /// The sampler's refusal of the collection, or [`Error::Thread`]; read errors arrive
    /// through the iterator.
    pub fn host_epoch(&self, epoch: u64) -> Result<Batches<HostBatch>> {
        self.host_resume(LoaderState { epoch, batches: 0 })
    }

    /// Host batches from `state` on.
    ///
    /// # Errors
    /// As [`Self::host_epoch`].
    pub fn host_resume(&self, state: LoaderState) -> Result<Batches<HostBatch>> {
        let (collection, extras) = (self.collection.clone(), self.extras.clone());
        pipeline::run(self.epoch_at(state), move |request, first| {
            let mut read = Duration::ZERO;
            let parts =
                fetch_batches(&collection, request, first, &extras, &HostMemory, &mut read)?;
            let batches = parts
                .into_iter()
                .map(|p| {
                    let rows = p.x.rows() as u64;
                    (HostBatch::new(p, &extras), rows)
                })
                .collect();
            Ok(Built { batches, read })
        })
    }

    /// The batches of `epoch` as DLPack-exportable arrays ([`DlBatch`]): the memory of each
    /// array is the consumer's until it drops the array (or a DLPack consumer releases it), and
    /// only then reused for a later batch. Host memory, or `kDLCUDA` buffers on the options'
    /// CUDA device (feature `cuda`; see [`crate::dlpack::DlArray::hand_over`] for the stream a
    /// consumer uses). What the Python and C front ends hand out.
    ///
    /// # Errors
    /// As [`Self::host_epoch`].
    pub fn dl_epoch(&self, epoch: u64) -> Result<Batches<DlBatch>> {
        self.dl_resume(LoaderState { epoch, batches: 0 })
    }

    /// DLPack batches from `state` on (see [`Self::resume`]).
    ///
    /// # Errors
    /// As [`Self::host_epoch`].
    pub fn dl_resume(&self, state: LoaderState) -> Result<Batches<DlBatch>> {
        self.pooled_run(state, Ok)
    }

    /// The batches from `state` on, each assembled in the pool as a [`DlBatch`] and handed out
    /// as `finish` makes it.
    fn pooled_run<B: Send + 'static>(
        &self,
        state: LoaderState,
        finish: impl Fn(DlBatch) -> Result<B> + Send + Sync + 'static,
    ) -> Result<Batches<B>> {
        let (collection, extras) = (self.collection.clone(), self.extras.clone());
        let memory = self.pooled.clone();
        #[cfg(feature = "cuda")]
        let uploader = self.uploader.clone();
        pipeline::run(self.epoch_at(state), move |request, first| {
            let mut read = Duration::ZERO;
            let parts = fetch_batches(&collection, request, first, &extras, &memory, &mut read)?;
            let batches = parts
                .into_iter()
                .map(|p| {
                    let rows = p.x.rows() as u64;
                    let batch = DlBatch::new(p, &extras)?;
                    #[cfg(feature = "cuda")]
                    let batch = match &uploader {
                        Some(uploader) => uploader.upload(batch)?,
                        None => batch,
                    };
                    Ok((finish(batch)?, rows))
                })
                .collect::<Result<_>>()?;
            Ok(Built { batches, read })
        })
    }

    /// The batches of `epoch` as `tch::Tensor`s on the loader's device.
    ///
    /// # Errors
    /// As [`Self::host_epoch`].
    #[cfg(feature = "tch")]
    pub fn epoch(&self, epoch: u64) -> Result<Batches<Batch>> {
        self.resume(LoaderState { epoch, batches: 0 })
    }

    /// Continues an epoch from `state` (from [`Batches::state`]): the rest of the epoch is
    /// exactly what an uninterrupted run would have yielded.
    ///
    /// # Errors
    /// As [`Self::host_epoch`].
    #[cfg(feature = "tch")]
    pub fn resume(&self, state: LoaderState) -> Result<Batches<Batch>> {
        let placement = self.placement.clone();
        self.pooled_run(state, move |batch| placement.batch(batch))
    }
}
