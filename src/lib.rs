//! # annbatch
//!
//! Fast, torch-native minibatch loading of on-disk AnnData collections: a Rust
//! re-implementation of scverse's [annbatch](https://github.com/scverse/annbatch), reading the
//! same on-disk format.
//!
//! The data path, in five lines:
//! 1. A [`DatasetCollection`] opens a zarr group of `dataset_0..N` AnnData groups (or one
//!    AnnData store) as one virtual concatenation of rows.
//! 2. A request is a list of row ranges (random contiguous chunks, when training).
//! 3. Each (inner) zarr chunk the request touches is decoded once, in parallel (rayon, zarrs).
//! 4. Rows are copied straight into a reusable host batch ([`CsrBatch`] / [`DenseBatch`]).
//! 5. [`tensor`] turns a batch into a `tch::Tensor`, sparse CSR or dense.
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
//! ## Features
//! - `tch` (default): `tch::Tensor` conversion, against libtorch 2.11 from the PyPI torch wheel.
//! - `hdf5`: reading `.h5ad` files (needs the system HDF5 library).
//! - `capi`: the C ABI for libtorch C++ programs ([`capi`], `include/annbatch.h`).

pub mod batch;
#[cfg(feature = "capi")]
pub mod capi;
pub mod collection;
pub mod convert;
#[cfg(feature = "cuda")]
mod cuda;
pub mod demo;
#[cfg(feature = "tch")]
mod direct;
pub mod error;
pub mod fetch;
#[cfg(feature = "hdf5")]
pub mod h5ad;
pub mod loader;
pub mod pipeline;
#[cfg(feature = "python")]
mod python;
pub mod sampler;
pub mod store;
#[cfg(feature = "tch")]
pub mod tensor;
pub mod throughput;

pub use batch::{CsrBatch, DenseBatch, XBatch};
pub use collection::DatasetCollection;
pub use error::{Error, Result};
#[cfg(feature = "tch")]
pub use loader::Batch;
pub use loader::{HostBatch, Loader, LoaderBuilder, LoaderState};
pub use sampler::{LoadRequest, Sampler};
pub use store::{
    write, AnnDataStore, Column, CsrElement, DenseElement, Dtype, InMemoryX, XElement,
};
