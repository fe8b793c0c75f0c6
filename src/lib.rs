//! # annbatch
//!
//! Fast, torch-native minibatch loading of on-disk AnnData collections: a Rust
//! re-implementation of scverse's [annbatch](https://github.com/scverse/annbatch), reading the
//! same on-disk format.
//!
//! The data path, in five lines:
//! 1. A [`DatasetCollection`] opens a zarr group of `dataset_0..N` AnnData groups (or one
//!    AnnData store) as one virtual concatenation of rows ([`store`] reads each of them).
//! 2. A [`Sampler`] turns an epoch into load requests: row ranges (random contiguous chunks, when
//!    training) and how the fetched rows are cut into batches.
//! 3. Each request's batches are sized up front and every (inner) zarr chunk it touches is
//!    decoded once, in parallel (rayon, zarrs), straight into its rows' places in the batches.
//! 4. One background thread per epoch does this request after request, ahead of the consumer,
//!    through a bounded channel.
//! 5. The [`Loader`] yields the batches as `tch::Tensor`s (sparse CSR or dense, on the CPU or a
//!    GPU), as host buffers ([`HostBatch`]), or as DLPack-exportable pooled arrays
//!    ([`DlBatch`], what the Python and C front ends hand to any torch, numpy or jax).
//!
//! ```no_run
//! # fn main() -> annbatch::Result<()> {
//! use annbatch::DatasetCollection;
//!
//! let collection = DatasetCollection::open("collection.zarr")?;
//! println!("{} cells x {} genes", collection.n_obs(), collection.n_var());
//! let mut batch = collection.new_batch();
//! collection.read_rows(&[0..32, 4096..4128], &mut batch)?;
//! let labels = collection.obs_column("cell_type")?;
//! # #[cfg(feature = "tch")]
//! let x = annbatch::tensor::to_tensor(&batch, tch::Device::Cpu)?;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! The modules follow the data path; each imports only modules below it.
//!
//! | module | what it does |
//! |---|---|
//! | `error`, `budget`, [`batch`] | the error enum, memory limits, the host row buffers reads fill |
//! | `storage` | bytes: local files (checked opens, O_DIRECT), object stores (S3, HTTP), a fetch's byte ranges, uploads |
//! | `zarr` | zarr arrays: nodes, chunked row reads, the shard reader and its inner codecs, streaming copies, dtypes |
//! | [`store`] | AnnData elements in zarr (and `.h5ad`, [`store::h5ad`]): `X` read by rows, obs/var columns, the AnnData writer |
//! | [`collection`] | many datasets as one row space |
//! | [`convert`] | `.h5ad` / zarr inputs → a shuffled, sharded collection (annbatch's `add_adatas`) |
//! | [`sampler`] | an epoch as load requests; one sampler per file |
//! | `assemble` | a request's batches: rows scattered from decoded chunks into batch memory, obs columns and row ids cut per batch |
//! | `pipeline` | the epoch's producer thread, the bounded channel, cancellation |
//! | [`loader`] | the face: options, builder, epochs, resume |
//! | [`tensor`] / `cuda` | batch arrays placed as tensors (pooled memory; pinned and uploaded on a copy stream for CUDA) |
//! | [`dlpack`] | batch arrays handed to other frameworks without a copy (DLPack 1.0 managed tensors) |
//! | `python` / [`capi`] | the front ends: pyo3 module, C ABI — both fill in a [`LoaderOptions`] |
//! | `src/bin` | the `annbatch` command-line tool |
//!
//! Tooling for benchmarks and demos: [`demo`] (a synthetic collection) and [`throughput`]
//! (cells/s of a loader and of the decode-only ceiling).
//!
//! ## Features
//! - `tch` (default): `tch::Tensor` batches, against libtorch 2.11 from the PyPI torch wheel.
//! - `hdf5`: reading `.h5ad` files (needs the system HDF5 library).
//! - `cuda`: batches copied to a GPU by the prefetch thread (cudarc; libcuda loaded at run
//!   time, so it builds and runs without a GPU). Implies `tch`.
//! - `capi`: the C ABI for C and libtorch C++ programs ([`capi`], `include/annbatch.h`): no
//!   libtorch, arrays handed over as DLPack tensors.
//! - `python`: the pyo3 module `annbatch_rs._native` (built by maturin, without default
//!   features). Implies `hdf5`, `remote`; no libtorch.

mod assemble;
pub mod batch;
mod budget;
#[cfg(feature = "capi")]
pub mod capi;
pub mod collection;
pub mod convert;
#[cfg(feature = "cuda")]
mod cuda;
pub mod demo;
pub mod dlpack;
pub mod error;
pub mod loader;
mod pipeline;
#[cfg(feature = "python")]
mod python;
pub mod sampler;
mod storage;
pub mod store;
#[cfg(feature = "tch")]
pub mod tensor;
pub mod throughput;
mod zarr;

pub use batch::{CsrBatch, DenseBatch, XBatch};
pub use collection::{DatasetCollection, OpenOptions, RemoteOptions, RemoteTraffic, VarJoin};
pub use error::{Error, RemoteFailure, Result};
#[cfg(feature = "tch")]
pub use loader::{Batch, ObsTensor};
pub use loader::{
    Batches, DlBatch, DlMatrix, DlObs, HostBatch, HostObs, Loader, LoaderBuilder, LoaderOptions,
    LoaderState, ObsSource,
};
pub use sampler::{LoadRequest, Sampler};
#[cfg(feature = "hdf5")]
pub use store::h5ad;
pub use store::{write, AnnDataStore, Column, CsrElement, DenseElement, InMemoryX, XElement};
pub use zarr::Dtype;
