//! The crate's one error type.
//!
//! Messages are lower-case and say what was found and what was expected; the zarr path or
//! dataset comes first as context, e.g. `dataset_1/X/indptr: indptr must start at 0, found 3`.

use std::path::PathBuf;

/// Everything that can go wrong when opening or reading AnnData stores and collections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The zarr library failed to open or read a node (bad metadata, unsupported codec, I/O).
    #[error("{path}: {source}")]
    Zarr {
        /// The zarr node path, relative to the store root.
        path: String,
        /// The zarrs error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The HDF5 library failed to open or read an `.h5ad` element.
    #[cfg(feature = "hdf5")]
    #[error("{path}: {source}")]
    Hdf5 {
        /// The element path inside the file.
        path: String,
        /// The HDF5 error.
        #[source]
        source: hdf5::Error,
    },

    /// Data the collection says it holds is not there (a deleted shard or chunk file).
    #[error("{}: missing: this chunk file holds rows of the collection but does not exist; the \
             collection is damaged (rewrite it, e.g. convert its sources again)", path.display())]
    MissingData {
        /// The file that should exist.
        path: PathBuf,
    },

    /// The collection changed on disk while it was being read (an append published a new
    /// version, or files were replaced or deleted).
    #[error("{}: the collection changed while reading: {detail}", path.display())]
    CollectionChanged {
        /// The file or directory found changed.
        path: PathBuf,
        /// What changed.
        detail: String,
    },

    /// Something claims more memory than this machine has: a damaged file, or one too large to
    /// read whole here.
    #[error(
        "{path}: {what} needs {bytes} bytes, more than the {limit} bytes it may take ({budget}); \
             the file is damaged or too large to read here"
    )]
    TooLarge {
        /// The element path.
        path: String,
        /// What would be allocated.
        what: String,
        /// The bytes it would take.
        bytes: u128,
        /// The limit.
        limit: u64,
        /// Where the limit comes from, e.g. "1/4 of ANNBATCH_MEMORY_LIMIT = 536870912".
        budget: String,
    },

    /// A chunk could not be decoded: truncated, corrupt, or failing its checksum.
    #[error("{path}: chunk {chunk} is corrupt or truncated: {source}")]
    CorruptChunk {
        /// The zarr array path.
        path: String,
        /// The (inner) chunk index along the first axis.
        chunk: u64,
        /// The zarrs decode error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Reading one input of a conversion failed.
    #[error("{}: {source}", path.display())]
    Input {
        /// The input file or store.
        path: PathBuf,
        /// What went wrong inside it.
        #[source]
        source: Box<Error>,
    },

    /// The output path of a conversion holds something that is not a collection.
    #[error(
        "{path}: {found}; expected a missing path, an empty directory or an annbatch collection"
    )]
    OutputExists {
        /// The output path.
        path: PathBuf,
        /// What is there.
        found: String,
    },

    /// An append would remove an element (a layer, an obsm entry) from the cells a collection
    /// already holds: refused, the collection left as it was.
    #[error(
        "{}: appending would remove {element} from the collection's cells ({reason}); give \
         every new input {element} (in anndata: set it before writing the file), or convert \
         all inputs into a new collection, which keeps only what every input has",
        dataset.display()
    )]
    AppendWouldDrop {
        /// The collection's dataset that holds the element.
        dataset: PathBuf,
        /// The element, such as `layers/counts`.
        element: String,
        /// Why the append cannot carry it.
        reason: String,
    },

    /// A required AnnData element (group or array) does not exist.
    #[error("{path}: missing element {element:?}")]
    MissingElement {
        /// The group that should contain it.
        path: String,
        /// The element's name.
        element: String,
    },

    /// An element's `encoding-type` / `encoding-version` is not one this crate reads.
    #[error("{path}: unsupported encoding {encoding_type:?} (version {encoding_version:?}); expected {expected}")]
    UnknownEncoding {
        /// The element path.
        path: String,
        /// The `encoding-type` attribute found (empty if absent).
        encoding_type: String,
        /// The `encoding-version` attribute found (empty if absent).
        encoding_version: String,
        /// What was expected here.
        expected: String,
    },

    /// An array has a data type this position cannot hold.
    #[error("{path}: unsupported data type {found}; expected {expected}")]
    UnsupportedDtype {
        /// The array path.
        path: String,
        /// The data type found.
        found: String,
        /// The data types accepted here.
        expected: String,
    },

    /// A string array holds bytes that are not UTF-8 (anndata reads strings as UTF-8, so it
    /// could not open a copy either).
    #[error(
        "{path}: entry {index} is not valid UTF-8 ({lossy:?}, invalid bytes shown as U+FFFD); \
         anndata reads strings as UTF-8: rewrite them with h5py/zarr"
    )]
    NotUtf8 {
        /// The string array path.
        path: String,
        /// The position of the first such entry.
        index: u64,
        /// That entry with each invalid byte replaced by U+FFFD.
        lossy: String,
    },

    /// Shapes that must agree do not.
    #[error("{path}: shape mismatch: found {found}, expected {expected}")]
    ShapeMismatch {
        /// The element path.
        path: String,
        /// What was found.
        found: String,
        /// What was expected.
        expected: String,
    },

    /// A CSR `indptr` array is not a valid row-pointer array.
    #[error("{path}: invalid indptr: {reason}")]
    InvalidIndptr {
        /// The indptr array path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A categorical column's code does not name one of its categories.
    #[error(
        "{path}: category code {code} at row {row} names no category: codes must be -1 \
             (missing) or below the {n_categories} categories"
    )]
    InvalidCategoryCode {
        /// The codes array path.
        path: String,
        /// The row holding it.
        row: u64,
        /// The code found.
        code: i64,
        /// The number of categories.
        n_categories: u64,
    },

    /// A CSR column index is negative or not below `n_var`.
    #[error("{path}: column index {index} out of bounds for n_var {n_var}")]
    IndexOutOfBounds {
        /// The indices array path.
        path: String,
        /// The offending index.
        index: i64,
        /// The number of variables (columns).
        n_var: u64,
    },

    /// A requested row lies outside the store or collection.
    #[error("{path}: rows {start}..{end} out of range for n_obs {n_obs}")]
    RowsOutOfRange {
        /// The store or collection.
        path: String,
        /// First requested row.
        start: u64,
        /// One past the last requested row.
        end: u64,
        /// The number of observations (rows).
        n_obs: u64,
    },

    /// The datasets of a collection do not share one `var` index.
    #[error("{path}: var of {dataset}: {detail}")]
    VarMismatch {
        /// The collection path.
        path: String,
        /// The dataset whose var differs.
        dataset: String,
        /// The first difference found.
        detail: String,
    },

    /// A collection group holds no dataset.
    #[error("{path}: empty collection (no dataset_N groups)")]
    EmptyCollection {
        /// The collection path.
        path: String,
    },

    /// The inputs of a conversion hold no cells.
    #[error("{path}: the input holds no cells (X has 0 rows): nothing to convert")]
    EmptyInput {
        /// The input(s).
        path: String,
    },

    /// A parameter is out of its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name, as the user spells it.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it is invalid.
        reason: String,
    },

    /// A batch is too large for 32-bit CSR indices.
    #[error("batch has {nnz} stored values; at most {max} fit in int32 CSR indices")]
    BatchTooLarge {
        /// Stored values requested.
        nnz: u64,
        /// The maximum.
        max: u64,
    },

    /// One batch needs more memory than the loader may hold for it: the memory bound is
    /// shared by every batch alive at once (waiting, being built, held by the consumer).
    #[error(
        "one batch of {rows} rows needs {bytes} bytes, more than the {limit} bytes a batch may \
         take ({budget}); read fewer rows at once (batch_size, prefetch, chunk_size × \
         preload_nchunks) or raise ANNBATCH_MEMORY_LIMIT"
    )]
    BatchOverBudget {
        /// Rows of the batch.
        rows: usize,
        /// The bytes its arrays (and bookkeeping) take.
        bytes: u64,
        /// The bytes one batch may take.
        limit: u64,
        /// Where that limit comes from.
        budget: String,
    },

    /// The caller asked to stop (a signal, [`crate::convert::ConvertOptions::cancel`]); what
    /// the work had written is gone.
    #[error("interrupted while {during}; {cleanup}")]
    Interrupted {
        /// What was running.
        during: String,
        /// What was cleaned up, or what is left and how to clear it.
        cleanup: String,
    },

    /// A prefetch worker panicked; the message is the panic's.
    #[error("a prefetch worker panicked: {message}")]
    WorkerPanic {
        /// The panic payload, when it is a string.
        message: String,
    },

    /// A requested obs column does not exist.
    #[error("{path}: no obs column {name:?}; the columns are: {}", available.join(", "))]
    UnknownObsColumn {
        /// The AnnData (store and group) whose obs was searched.
        path: String,
        /// The column asked for.
        name: String,
        /// The columns that exist.
        available: Vec<String>,
    },

    /// An obs column cannot be turned into batch values.
    #[error("obs column {name:?}: {reason}")]
    UnsupportedObs {
        /// The column's name.
        name: String,
        /// Why.
        reason: String,
    },

    /// The requested device cannot be used.
    #[error("device {device}: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A CUDA driver call failed while copying a batch to the device.
    #[error("cuda:{device}: {message}")]
    Cuda {
        /// The device ordinal.
        device: usize,
        /// The driver's error.
        message: String,
    },

    /// A background thread could not be started (the system is out of threads or memory).
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A custom sampler could not produce its next load request (one written in Python raised,
    /// or handed over something that is not a load request).
    #[error("batch sampler: {0}")]
    Sampler(String),

    /// An invariant of this library does not hold: a bug, not a problem with the input.
    #[error("internal error (please report it): {0}")]
    Internal(String),

    /// A collection in an object store (`s3://`, `http(s)://`) could not be read.
    #[error("{url}: {kind}: {detail}")]
    Remote {
        /// The object's (or the collection's) URL.
        url: String,
        /// What kind of failure it was.
        kind: RemoteFailure,
        /// What the store or the server said.
        detail: String,
    },

    /// A libtorch call failed.
    #[cfg(feature = "tch")]
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The kinds of [`Error::Remote`]: what a caller may act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// The object does not exist (never read as zeros or fill values).
    NotFound,
    /// The server refused the credentials (or their absence).
    Unauthenticated,
    /// The credentials are valid but may not read this object.
    PermissionDenied,
    /// No credentials were found for an S3 store (none in the environment, anonymous access
    /// not asked for, the instance role not asked for).
    NoCredentials,
    /// The `https://` server's certificate is not trusted by this machine.
    UntrustedCertificate,
    /// The server could not be reached, or did not answer within the timeout, after retries.
    Unreachable,
    /// The server answered in a way no reader can use (a range it did not honour, say).
    BadResponse,
    /// The address is not one this reader understands.
    BadUrl,
    /// This build of the library reads no remote stores (cargo feature `remote`).
    NotBuilt,
    /// Anything else the store reported.
    Other,
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Unauthenticated => {
                "the credentials were refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / \
                 AWS_SESSION_TOKEN; AWS_SKIP_SIGNATURE=true for a public bucket)"
            }
            Self::PermissionDenied => "access denied to these credentials",
            Self::NoCredentials => {
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                 AWS_WEB_IDENTITY_TOKEN_FILE), ANNBATCH_REMOTE_ANONYMOUS=1 for a public bucket, \
                 or ANNBATCH_REMOTE_INSTANCE_CREDENTIALS=1 for this machine's instance role"
            }
            Self::UntrustedCertificate => {
                "the server's TLS certificate is not trusted: add its CA to the system's trust \
                 store (update-ca-certificates) or point SSL_CERT_FILE at a bundle holding it"
            }
            Self::Unreachable => "the server is unreachable or did not answer in time",
            Self::BadResponse => "the server's answer cannot be used",
            Self::BadUrl => "not a collection URL (s3://bucket/path or http(s)://host/path)",
            Self::NotBuilt => "this build reads no remote stores (cargo feature `remote`)",
            Self::Other => "the object store failed",
        })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Entry `index` of the string array `path`, checked to be UTF-8.
    pub(crate) fn utf8(path: &str, index: usize, bytes: &[u8]) -> Result<String> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Error::NotUtf8 {
                path: path.to_string(),
                index: index as u64,
                lossy: String::from_utf8_lossy(bytes).into_owned(),
            })
    }

    /// Wraps a zarrs error with the node path it concerns.
    pub(crate) fn zarr(
        path: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Zarr {
            path: path.into(),
            source: Box::new(source),
        }
    }

    /// Row `row` is past the `n_obs` rows of `path`.
    pub(crate) fn row_out_of_range(path: impl Into<String>, row: u64, n_obs: u64) -> Self {
        Self::RowsOutOfRange {
            path: path.into(),
            start: row,
            end: row.saturating_add(1),
            n_obs,
        }
    }

    /// Checks that each range of `ranges` is ordered and within the `n_obs` rows of the element
    /// `path` names (called only on failure).
    ///
    /// # Errors
    /// [`Error::RowsOutOfRange`] for the first range that is not.
    pub(crate) fn check_row_ranges(
        path: impl FnOnce() -> String,
        ranges: &[std::ops::Range<u64>],
        n_obs: u64,
    ) -> Result<(), Self> {
        match ranges.iter().find(|r| r.start > r.end || r.end > n_obs) {
            Some(r) => Err(Self::RowsOutOfRange {
                path: path(),
                start: r.start,
                end: r.end,
                n_obs,
            }),
            None => Ok(()),
        }
    }

    /// A parameter error.
    pub(crate) fn parameter(
        name: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl Error {
    /// This error as one about the input `path`, unless it already names a file: an
    /// [`Error::Input`], an [`Error::Io`] (which carries its file), or an error whose element
    /// path lies inside `path`.
    pub fn in_input(self, path: &std::path::Path) -> Self {
        let inside = self
            .element_path()
            .is_some_and(|p| std::path::Path::new(p).starts_with(path));
        match self {
            e @ (Self::Input { .. }
            | Self::Io { .. }
            | Self::MissingData { .. }
            | Self::CollectionChanged { .. }) => e,
            e if inside => e,
            e => Self::Input {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }

    /// The element (or store) path the error carries, if any.
    fn element_path(&self) -> Option<&str> {
        match self {
            Self::Zarr { path, .. }
            | Self::CorruptChunk { path, .. }
            | Self::MissingElement { path, .. }
            | Self::UnknownEncoding { path, .. }
            | Self::UnsupportedDtype { path, .. }
            | Self::ShapeMismatch { path, .. }
            | Self::InvalidIndptr { path, .. }
            | Self::IndexOutOfBounds { path, .. }
            | Self::RowsOutOfRange { path, .. }
            | Self::VarMismatch { path, .. }
            | Self::EmptyCollection { path }
            | Self::TooLarge { path, .. }
            | Self::InvalidCategoryCode { path, .. }
            | Self::UnknownObsColumn { path, .. } => Some(path),
            #[cfg(feature = "hdf5")]
            Self::Hdf5 { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Runs `f`, turning a panic into [`Error::WorkerPanic`] with the panic's message.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(Error::WorkerPanic {
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The message of a panic payload (a `&str` or `String`; other payloads are named so).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
