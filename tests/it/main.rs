//! The integration tests, one binary: each module was a test binary of its own, and each of those
//! linked the whole crate and libtorch again (~4 min of CI). `tests/remote.rs` and `tests/fuzz.rs`
//! stay apart: they set process-wide environment variables the other tests must not see.

#[path = "../common/mod.rs"]
mod common;

mod aligned;
mod assemble;
mod bad_input;
mod capi;
mod capi_header;
mod cli;
mod codecs;
mod collection;
mod convert;
mod cuda;
mod damaged_store;
mod direct;
mod elastic;
mod h5ad;
mod h5ad_rows;
mod loader;
mod real_files;
mod row_reader_props;
mod shard_reader;
mod storage_reuse;
mod tensor;
mod wrong_input;
