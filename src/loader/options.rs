//! [`LoaderOptions`]: every setting of a loader, checked and turned into a sampler in one place.
//! The builder, the Python module and the C ABI all fill one in.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sampler::{
    check_fetch_shape, check_shard, ChunkPlan, ClassSampler, ClassWeights, Sampler,
};

/// annbatch's defaults, shared by the builder, the C ABI and the Python module.
pub mod defaults {
    /// Rows per batch.
    pub const BATCH_SIZE: usize = 1;
    /// Rows per contiguous read.
    pub const CHUNK_SIZE: u64 = 512;
    /// Chunks per fetch.
    pub const PRELOAD_NCHUNKS: usize = 32;
}

/// Most threads a loader starts: far more than any machine's cores, few enough that a
/// mistyped count is refused before it stalls the machine.
pub const MAX_THREADS: usize = 1024;

/// Class-balanced sampling ([`ClassSampler`]) from per-row category codes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSampling {
    /// Per-row category codes (`-1` = missing, never drawn).
    pub codes: Vec<i64>,
    /// Number of categories.
    pub n_categories: usize,
    /// How classes are weighted.
    pub weights: ClassWeights,
    /// Rows per epoch (default: all).
    pub num_samples: Option<u64>,
}

/// Every setting of a [`crate::loader::Loader`]; defaults are annbatch's.
///
/// ```
/// let mut options = annbatch::LoaderOptions::default();
/// options.batch_size = 256;
/// options.rank = 1;
/// options.world_size = 2;
/// assert!(options.check().is_ok());
/// options.rank = 2;
/// assert!(options.check().is_err());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoaderOptions {
    /// Rows per batch. Default 1.
    pub batch_size: usize,
    /// Rows per contiguous read. Default 512.
    pub chunk_size: u64,
    /// Chunks per fetch. Default 32.
    pub preload_nchunks: usize,
    /// Random chunk order and in-memory row shuffle. Default false.
    pub shuffle: bool,
    /// Drop the last incomplete batch. Default false.
    pub drop_last: bool,
    /// Add the global row ids to each batch. Default false.
    pub return_index: bool,
    /// Random seed of the built-in samplers. Default 0.
    pub seed: u64,
    /// obs columns added to each batch: categorical → int64 codes; integers → int64 (exact);
    /// float64 and nullable integers → float64 (NaN = missing); float32, float16, bool →
    /// float32.
    pub obs_keys: Vec<String>,
    /// `layers` entries added to each batch, read with `X` (sparse or dense as stored).
    pub layers: Vec<String>,
    /// `obsm` entries added to each batch, read with `X` (dense `[rows, d]`, or sparse).
    pub obsm: Vec<String>,
    /// Threads decoding and assembling (at most [`MAX_THREADS`]). Default: all cores.
    pub num_threads: Option<usize>,
    /// Batches that may wait ready for the consumer. Default: one fetch's worth.
    pub prefetch: Option<usize>,
    /// Bytes the loader's batches may take at once: those waiting, being built and held by
    /// the consumer. Default: half of the least of `ANNBATCH_MEMORY_LIMIT`, the cgroup's
    /// `memory.max` and the physical memory. A fetch larger than its share is built in
    /// groups of batches; a batch larger than its share is refused.
    pub batch_memory: Option<u64>,
    /// This process's shard: rank `rank` of `world_size` (ranks × DataLoader workers).
    /// Default 0 of 1 (unsharded).
    pub rank: u64,
    /// Number of shards. Default 1.
    pub world_size: u64,
    /// With several shards, give each the same number of batches. Default true.
    pub equal_batches: bool,
    /// Class-balanced sampling instead of chunked reads.
    pub class_sampling: Option<ClassSampling>,
    /// One global batch order per `(seed, epoch)` whatever `world_size`, ranks taking runs of
    /// it, resumable on another world size (see [`crate::sampler::ElasticState`]). Default
    /// false: annbatch's `DistributedSampler` sharding.
    pub elastic: bool,
    /// With `elastic`: resume this epoch's remaining global batches (from
    /// [`crate::Loader::elastic_state`], saved on any world size).
    pub resume: Option<crate::sampler::ElasticState>,
    /// Read the collection's files with `O_DIRECT`, past the page cache (see
    /// [`crate::OpenOptions::direct_io`]); only where the loader opens the collection from a
    /// path. Default false.
    pub direct_io: bool,
    /// How a collection at an `s3://` or `http(s)://` URL is read: endpoint, credentials,
    /// requests in flight, read-ahead depth, timeouts (see [`crate::RemoteOptions`]).
    pub remote: crate::RemoteOptions,
    /// Where tensors are placed. Default CPU.
    #[cfg(feature = "tch")]
    pub device: tch::Device,
    /// The CUDA device DLPack batches ([`crate::Loader::dl_epoch`]) are copied to by the
    /// prefetch thread, as `kDLCUDA` arrays (feature `cuda`). Default none: host memory. tch
    /// batches use `device`.
    #[cfg(feature = "cuda")]
    pub cuda: Option<usize>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            batch_size: defaults::BATCH_SIZE,
            chunk_size: defaults::CHUNK_SIZE,
            preload_nchunks: defaults::PRELOAD_NCHUNKS,
            shuffle: false,
            drop_last: false,
            return_index: false,
            seed: 0,
            obs_keys: Vec::new(),
            layers: Vec::new(),
            obsm: Vec::new(),
            num_threads: None,
            prefetch: None,
            batch_memory: None,
            rank: 0,
            world_size: 1,
            equal_batches: true,
            class_sampling: None,
            elastic: false,
            resume: None,
            direct_io: false,
            remote: crate::RemoteOptions::default(),
            #[cfg(feature = "tch")]
            device: tch::Device::Cpu,
            #[cfg(feature = "cuda")]
            cuda: None,
        }
    }
}

impl LoaderOptions {
    /// Checks the settings that do not depend on the data: positive sizes, a fetch of
    /// `chunk_size * preload_nchunks` rows cut into whole batches (annbatch's rule), a shard
    /// below `world_size`, at most [`MAX_THREADS`] threads, a positive `prefetch`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad setting.
    pub fn check(&self) -> Result<()> {
        check_fetch_shape(self.batch_size, self.chunk_size, self.preload_nchunks)?;
        check_shard(self.rank, self.world_size)?;
        if let Some(ClassSampling {
            num_samples: Some(0),
            ..
        }) = self.class_sampling
        {
            return Err(Error::parameter("num_samples", 0, "must be positive"));
        }
        match self.num_threads {
            Some(0) => return Err(Error::parameter("num_threads", 0, "must be positive")),
            Some(n) if n > MAX_THREADS => {
                return Err(Error::parameter(
                    "num_threads",
                    n,
                    format!("at most {MAX_THREADS}"),
                ))
            }
            _ => {}
        }
        if self.prefetch == Some(0) {
            return Err(Error::parameter("prefetch", 0, "must be positive"));
        }
        self.cuda_device().map(|_| ())
    }

    /// The CUDA device the prefetch thread copies batches to: `cuda`, or tch's `device` when
    /// it is `cuda:N` (with feature `cuda`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `cuda` and `device` name different devices.
    pub(crate) fn cuda_device(&self) -> Result<Option<usize>> {
        #[cfg(feature = "cuda")]
        let dl = self.cuda;
        #[cfg(not(feature = "cuda"))]
        let dl: Option<usize> = None;
        // One device for both kinds of batch: tch's `device` decides, `cuda` may only agree.
        #[cfg(all(feature = "cuda", feature = "tch"))]
        let device = match (self.device, dl) {
            (tch::Device::Cuda(n), None) => Ok(Some(n)),
            (tch::Device::Cuda(n), Some(d)) if d == n => Ok(Some(n)),
            (device, Some(d)) => Err(Error::parameter(
                "cuda",
                d,
                format!("the tensors' device is {device:?}: set `device` to cuda:{d}"),
            )),
            (_, None) => Ok(None),
        };
        #[cfg(not(all(feature = "cuda", feature = "tch")))]
        let device = Ok(dl);
        device
    }

    /// The sampler these options describe: class-balanced, sharded, or annbatch's chunked one.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for settings [`Self::check`] refuses, or class codes the
    /// class sampler cannot use.
    pub fn sampler(&self) -> Result<Arc<dyn Sampler>> {
        self.check()?;
        if let Some(class) = &self.class_sampling {
            if self.elastic {
                return Err(Error::parameter(
                    "elastic",
                    true,
                    "applies to chunked sampling, not to class-balanced sampling",
                ));
            }
            let mut sampler = ClassSampler::new(
                &class.codes,
                class.n_categories,
                class.weights.clone(),
                self.batch_size,
                self.chunk_size,
                self.preload_nchunks,
            )?
            .drop_last(self.drop_last)
            .seed(self.seed)
            .shard(self.rank, self.world_size)?;
            if let Some(n) = class.num_samples {
                sampler = sampler.num_samples(n);
            }
            return Ok(Arc::new(sampler));
        }
        Ok(Arc::new(self.chunk_plan()))
    }

    /// The chunked sampling plan of these options (annbatch's, or elastic).
    pub(crate) fn chunk_plan(&self) -> ChunkPlan {
        let mut plan = ChunkPlan::new(
            self.batch_size,
            self.chunk_size,
            self.preload_nchunks,
            self.shuffle,
        );
        plan.drop_last = self.drop_last;
        plan.seed = self.seed;
        plan.shard = (self.rank, self.world_size);
        plan.equal_shards = self.equal_batches;
        plan.elastic = self.elastic || self.resume.is_some();
        plan.resume = self.resume.clone();
        plan
    }

    /// Batches that may wait in the channel: `prefetch`, or one request's worth (2 at least).
    pub(crate) fn capacity(&self, sampler: &dyn Sampler) -> usize {
        self.prefetch
            .unwrap_or_else(|| sampler.batches_per_request().max(2))
    }
}
