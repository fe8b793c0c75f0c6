//! Bytes: where a store's keys are read from and written to. Local files ([`files`]: checked
//! opens, O_DIRECT, read-ahead), object stores ([`remote`]: S3 and HTTP(S) through object_store,
//! uploads), the byte ranges of a fetch ([`read_plan`]), and [`Storage`], the one type the zarr
//! layer reads through. Nothing here knows zarr arrays or AnnData.

mod fault;
pub(crate) mod files;
mod keys;
mod open_options;
pub(crate) mod read_plan;
#[cfg(feature = "remote")]
pub(crate) mod remote;
mod traffic;

use std::path::Path;

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    ListableStorageTraits, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError,
    StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
};

use crate::error::{Error, Result};
use fault::StoreFault;
pub(crate) use files::{kind_of, new_read_request, refuse_special, FileStore};
#[cfg(feature = "hdf5")]
pub(crate) use files::{raise_open_file_limit, read_request, read_vectored_at, FileId};
pub(crate) use open_options::url_of;
pub use open_options::{OpenOptions, RemoteOptions};
#[cfg(feature = "remote")]
use remote::RemoteStore;
pub use traffic::RemoteTraffic;

/// Where a zarr store's bytes come from: the store a collection is read through.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// A local directory ([`FileStore`]).
    Files(FileStore),
    /// An object store (`s3://`, `http(s)://`).
    #[cfg(feature = "remote")]
    Remote(RemoteStore),
}

impl Storage {
    /// Opens `location`: a URL (`scheme://…`) as an object store, anything else as a local
    /// directory.
    pub(crate) fn open(location: &Path, options: &OpenOptions) -> Result<Self> {
        if let Some(url) = url_of(location) {
            #[cfg(feature = "remote")]
            {
                return RemoteStore::open(url, &options.remote).map(Self::Remote);
            }
            #[cfg(not(feature = "remote"))]
            {
                return Err(Error::Remote {
                    url: url.to_string(),
                    kind: crate::error::RemoteFailure::NotBuilt,
                    detail: "rebuild with `--features remote` (the Python wheel has it)".into(),
                });
            }
        }
        FileStore::open(location)
            .map(|s| Self::Files(s.direct_io(options.direct_io)))
            .map_err(|source| Error::Io {
                path: location.to_path_buf(),
                source,
            })
    }

    /// The same store, with a missing chunk read as an error rather than as fill values.
    pub(crate) fn strict(&self) -> Self {
        match self {
            Self::Files(s) => Self::Files(s.strict()),
            #[cfg(feature = "remote")]
            Self::Remote(s) => Self::Remote(s.strict()),
        }
    }

    /// The first fault the store met, if any.
    pub(crate) fn fault(&self) -> Option<StoreFault> {
        match self {
            Self::Files(s) => s.fault(),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.fault(),
        }
    }

    /// The object store, when it is one.
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&RemoteStore> {
        match self {
            Self::Remote(s) => Some(s),
            Self::Files(_) => None,
        }
    }

    /// The local directory store, when it is one.
    pub(crate) fn local(&self) -> Option<&FileStore> {
        match self {
            Self::Files(s) => Some(s),
            #[cfg(feature = "remote")]
            Self::Remote(_) => None,
        }
    }

    /// Whether reads go over the network (each a round trip).
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Self::Files(_))
    }

    /// Whether keys can be listed (not over plain HTTP).
    pub(crate) fn listable(&self) -> bool {
        match self {
            Self::Files(_) => true,
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.listable(),
        }
    }

    /// Reads `range` of `key` into `buf[..n]`, returning `n`; `None` when absent.
    pub(crate) fn read_into(
        &self,
        key: &StoreKey,
        range: ByteRange,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StorageError> {
        match self {
            Self::Files(s) => s.read_into(key, range, buf),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.read_into(key, range, buf),
        }
    }

    /// Reads `range` of `key` and hands the bytes to `f` (read into `scratch`, or where a
    /// direct read landed); `None` when absent.
    pub(crate) fn read_with<R>(
        &self,
        key: &StoreKey,
        range: ByteRange,
        scratch: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StorageError> {
        match self {
            Self::Files(s) => s.read_with(key, range, scratch, f),
            #[cfg(feature = "remote")]
            Self::Remote(s) => Ok(s.read_into(key, range, scratch)?.map(|n| f(&scratch[..n]))),
        }
    }

    /// Fills `buf` from byte `offset` of `key`; `None` when absent.
    pub(crate) fn read_exact_into(
        &self,
        key: &StoreKey,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<()>, StorageError> {
        match self {
            Self::Files(s) => s.read_exact_into(key, offset, buf),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.read_exact_into(key, offset, buf),
        }
    }
}

impl ReadableStorageTraits for Storage {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        match self {
            Self::Files(s) => s.get_partial_many(key, byte_ranges),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.get_partial_many(key, byte_ranges),
        }
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        match self {
            Self::Files(s) => s.get(key),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.get(key),
        }
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        match self {
            Self::Files(s) => s.size_key(key),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.size_key(key),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl ListableStorageTraits for Storage {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        match self {
            Self::Files(s) => s.list(),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.list(),
        }
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        match self {
            Self::Files(s) => s.list_prefix(prefix),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.list_prefix(prefix),
        }
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        match self {
            Self::Files(s) => s.list_dir(prefix),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.list_dir(prefix),
        }
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        match self {
            Self::Files(s) => s.size_prefix(prefix),
            #[cfg(feature = "remote")]
            Self::Remote(s) => s.size_prefix(prefix),
        }
    }
}
