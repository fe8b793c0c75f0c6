//! [`StoreFault`]: what a store found wrong, kept typed while zarrs carries it as a string;
//! [`FirstFault`]: the first one a store met, sticky.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use zarrs::storage::StorageError;

use crate::error::Error;
#[cfg(feature = "remote")]
use crate::error::RemoteFailure;

/// A damaged or changing store, as this store found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreFault {
    /// The file (or the collection's directory) is not what it was when first read.
    Changed { file: PathBuf, detail: String },
    /// A chunk that must exist does not.
    Missing { file: PathBuf },
    /// A byte range reaches past the end of its file.
    PastEnd { file: PathBuf, detail: String },
    /// A directory entry's name is not UTF-8.
    NotUtf8 { dir: PathBuf, name: String },
    /// A directory, FIFO, socket or device where a file must be.
    NotAFile { file: PathBuf, kind: &'static str },
    /// An object store request failed (after its retries).
    #[cfg(feature = "remote")]
    Remote {
        url: String,
        kind: RemoteFailure,
        detail: String,
    },
}

impl StoreFault {
    /// The crate error this fault is.
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Self::Changed { file, detail } => Error::CollectionChanged {
                path: file.clone(),
                detail: detail.clone(),
            },
            Self::Missing { file } => Error::MissingData { path: file.clone() },
            Self::PastEnd { file, detail } => Error::Io {
                path: file.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail.clone()),
            },
            Self::NotAFile { file, kind } => Error::Io {
                path: file.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("is a {kind} where a chunk or shard file must be"),
                ),
            },
            Self::NotUtf8 { dir, name } => Error::Io {
                path: dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("entry name {name} is not valid UTF-8 (zarr keys must be)"),
                ),
            },
            #[cfg(feature = "remote")]
            Self::Remote { url, kind, detail } => Error::Remote {
                url: url.clone(),
                kind: *kind,
                detail: detail.clone(),
            },
        }
    }

    pub(crate) fn message(&self) -> String {
        self.to_error().to_string()
    }
}

/// The first fault a store (or any view of it) met. Sticky on purpose: reads that run in
/// parallel all fail once a file is damaged or replaced, and each must report the fault rather
/// than whichever raw zarrs error it saw (a store that met one is damaged).
#[derive(Debug, Default)]
pub(crate) struct FirstFault(Mutex<Option<StoreFault>>);

impl FirstFault {
    /// The first fault met, if any.
    pub(crate) fn get(&self) -> Option<StoreFault> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `fault` unless one came first, and returns it as the error zarrs carries.
    pub(crate) fn record(&self, fault: StoreFault) -> StorageError {
        let message = fault.message();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(fault);
        }
        StorageError::Other(message)
    }
}
