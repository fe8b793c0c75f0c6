//! Zarr stores in object storage: `s3://bucket/prefix` and `http(s)://host/path`.
//!
//! S3 takes its credentials, region and endpoint from the AWS environment (object_store's
//! `from_env`), overridden by [`RemoteOptions`]; HTTP needs a server that honours `Range`. Every
//! request has a timeout and bounded retries with backoff ([`RemoteOptions`]), so a dead server
//! is an error within about `retry_timeout + timeout`, never a hang.
//!
//! Synchronous callers (zarrs, the decode threads) block on a runtime this store owns. Latency
//! is hidden by the [`read_ahead`] stage: the loader hands over the byte ranges of the fetches
//! to come, which are coalesced and requested many at once; reads of those bytes then wait on
//! (or find finished) the GET that covers them instead of sending one of their own.
//!
//! Reads never send a HEAD first: a range is asked for as it is, and a missing object is
//! reported by the GET itself (an error for data that must exist, never zeros). Metadata
//! documents (`zarr.json`, …) are fetched once and kept.

mod read_ahead;
mod upload;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::join_all;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
};

use super::fault::{FirstFault, StoreFault};
use super::keys::is_metadata;
use super::open_options::RemoteOptions;
use super::traffic::RemoteTraffic;
use crate::error::{Error, RemoteFailure, Result};
use read_ahead::ReadAhead;

/// The most range GETs in flight a store may be given.
const MAX_CONCURRENCY: usize = 4096;
/// The most fetches read ahead.
const MAX_READ_AHEAD: usize = 64;

/// What is shared by the lenient and the strict view of one remote store.
struct Inner {
    /// The collection's URL, for messages.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The collection's place in the store (empty for HTTP, whose base URL is the collection).
    prefix: String,
    runtime: tokio::runtime::Runtime,
    /// Whether the store lists keys (S3 does; plain HTTP does not).
    listable: bool,
    options: RemoteOptions,
    /// Metadata documents, fetched once (`None`: absent).
    metadata: Mutex<HashMap<String, Option<Bytes>>>,
    /// Object sizes, asked once.
    sizes: Mutex<HashMap<String, Option<u64>>>,
    fault: FirstFault,
    /// When a request last gave up on a server that did not answer (see [`Self::stalled`]).
    gave_up: Mutex<Option<std::time::Instant>>,
    ahead: ReadAhead,
    /// Permits for batched GETs ([`RemoteOptions::concurrency`]): read-ahead and `read_many`.
    permits: Arc<tokio::sync::Semaphore>,
    traffic: Arc<Counters>,
}

/// Requests and bytes so far.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// A zarr store in an object store (see the module docs).
#[derive(Clone)]
pub(crate) struct RemoteStore {
    inner: Arc<Inner>,
    /// Whether a missing object is an error (chunks of arrays that are stored whole).
    strict: bool,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.inner.url)
            .field("strict", &self.strict)
            .finish()
    }
}

impl RemoteStore {
    /// Connects to the collection at `url` (nothing is requested yet).
    pub(crate) fn open(url: &str, options: &RemoteOptions) -> Result<Self> {
        let bad = |kind: RemoteFailure, detail: String| Error::Remote {
            url: url.to_string(),
            kind,
            detail,
        };
        // Both size what is allocated (semaphore permits, connections; fetches of bytes held).
        if !(1..=MAX_CONCURRENCY).contains(&options.concurrency) {
            return Err(Error::parameter(
                "RemoteOptions.concurrency",
                options.concurrency,
                format!("requests in flight must be 1 to {MAX_CONCURRENCY}"),
            ));
        }
        if options.read_ahead > MAX_READ_AHEAD {
            return Err(Error::parameter(
                "RemoteOptions.read_ahead",
                options.read_ahead,
                format!("at most {MAX_READ_AHEAD} fetches ahead (each holds its bytes)"),
            ));
        }
        let url = url.trim_end_matches('/');
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad(RemoteFailure::BadUrl, "no scheme".into()))?;
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(100),
                max_backoff: std::time::Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: options.retries,
            retry_timeout: options.retry_timeout,
        };
        let client = object_store::ClientOptions::new()
            // Our per-try deadline ([`Patience`]) decides; the client's is a backstop.
            .with_timeout(options.timeout + std::time::Duration::from_secs(1))
            .with_connect_timeout(options.connect_timeout)
            .with_pool_max_idle_per_host(options.concurrency.max(8));
        let (store, prefix, listable): (Arc<dyn ObjectStore>, String, bool) = match scheme {
            "s3" | "s3a" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad(RemoteFailure::BadUrl, "no bucket".into()));
                }
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client);
                if let Some(endpoint) = &options.endpoint {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint.clone());
                } else if std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .is_ok_and(|e| e.starts_with("http://"))
                {
                    builder = builder.with_allow_http(true);
                }
                if options.anonymous {
                    builder = builder.with_skip_signature(true);
                } else if !options.instance_credentials && !credentials_in_env() {
                    // object_store would ask the EC2 metadata service, which off EC2 times out
                    // and reads as "unreachable": say what is missing instead.
                    return Err(bad(
                        RemoteFailure::NoCredentials,
                        "none in the environment".into(),
                    ));
                }
                let store = builder
                    .build()
                    .map_err(|e| bad(RemoteFailure::BadUrl, e.to_string()))?;
                (Arc::new(store), prefix.trim_matches('/').to_string(), true)
            }
            "http" | "https" => {
                let store = object_store::http::HttpBuilder::new()
                    .with_url(url)
                    .with_retry(retry)
                    .with_client_options(client.with_allow_http(scheme == "http"))
                    .build()
                    .map_err(|e| bad(RemoteFailure::BadUrl, e.to_string()))?;
                (Arc::new(store), String::new(), false)
            }
            other => {
                return Err(bad(
                    RemoteFailure::BadUrl,
                    format!("scheme {other}:// is not read here (s3://, http://, https://)"),
                ))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("annbatch-io")
            .enable_all()
            .build()
            .map_err(|source| Error::Thread {
                name: "annbatch-io".into(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_string(),
                store,
                prefix,
                runtime,
                listable,
                options: options.clone(),
                metadata: Mutex::new(HashMap::new()),
                sizes: Mutex::new(HashMap::new()),
                fault: FirstFault::default(),
                gave_up: Mutex::new(None),
                ahead: ReadAhead::default(),
                permits: Arc::new(tokio::sync::Semaphore::new(options.concurrency)),
                traffic: Arc::default(),
            }),
            strict: false,
        })
    }

    /// The same store, with a missing object read as an error rather than as fill values.
    pub(crate) fn strict(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            strict: true,
        }
    }

    /// Whether `other` reads through the same connection and read-ahead.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether keys can be listed (S3); over plain HTTP they cannot.
    pub(crate) fn listable(&self) -> bool {
        self.inner.listable
    }

    /// The first fault met ([`FirstFault`]).
    pub(crate) fn fault(&self) -> Option<StoreFault> {
        self.inner.fault.get()
    }

    fn fail(&self, fault: StoreFault) -> StorageError {
        self.inner.fault.record(fault)
    }

    fn object(&self, key: &str) -> ObjectPath {
        let key = key.trim_start_matches('/');
        if self.inner.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.inner.prefix))
        }
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}/{}", self.inner.url, key.trim_start_matches('/'))
    }

    /// The fault an object store error is, for the object at `key`.
    fn remote_fault(&self, key: &str, e: &object_store::Error) -> StoreFault {
        let kind = classify(e);
        if kind == RemoteFailure::Unreachable {
            *self
                .inner
                .gave_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
        }
        StoreFault::Remote {
            url: self.url_of(key),
            kind,
            detail: e.to_string(),
        }
    }

    /// An error for a read of `key` while the server is known not to answer: a request gave
    /// up on it within the last `retry_timeout`. The reads after it (of the same fetch, the
    /// next ones, the read-ahead's) fail at once instead of each waiting out its own
    /// retries, so a stalled server ends an epoch within about `retry_timeout + timeout`.
    fn stalled(&self, key: &str) -> Option<StorageError> {
        let gave_up = *self
            .inner
            .gave_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ago = gave_up?.elapsed();
        (ago < self.inner.options.retry_timeout).then(|| {
            self.fail(StoreFault::Remote {
                url: self.url_of(key),
                kind: RemoteFailure::Unreachable,
                detail: format!(
                    "an earlier request to this server gave up {ago:.1?} ago (no answer within \
                     its retries); not asking again yet"
                ),
            })
        })
    }

    /// Bytes `range` of the object at `key`: `None` when the object does not exist and the
    /// store is lenient (or `key` is metadata); a missing chunk of a strict store is an error.
    pub(crate) fn fetch(
        &self,
        key: &StoreKey,
        range: ByteRange,
    ) -> Result<Option<Bytes>, StorageError> {
        if let Some(e) = self.stalled(key.as_str()) {
            return Err(e);
        }
        if let ByteRange::FromStart(offset, Some(len)) = range {
            if let Some(found) = self.inner.ahead.find(key.as_str(), offset, len) {
                let got = self.inner.runtime.block_on(found.bytes);
                return match got {
                    Ok(bytes) => {
                        let at = usize::try_from(offset - found.start).unwrap_or(usize::MAX);
                        let end = usize::try_from(len).map_or(usize::MAX, |l| at.saturating_add(l));
                        match bytes.get(at..end) {
                            Some(_) => Ok(Some(bytes.slice(at..end))),
                            None => Err(self.short(key, range, bytes.len())),
                        }
                    }
                    Err(e) if is_not_found(&e) => self.absent(key),
                    Err(e) => Err(self.fail(self.remote_fault(key.as_str(), &e))),
                };
            }
        }
        let fetched = self.inner.runtime.block_on(get(
            self.inner.store.clone(),
            self.object(key.as_str()),
            range,
            self.inner.traffic.clone(),
            Patience::of(&self.inner.options),
        ));
        match fetched {
            Ok(bytes) => {
                if let ByteRange::FromStart(_, Some(len)) = range {
                    if bytes.len() as u64 != len {
                        return Err(self.short(key, range, bytes.len()));
                    }
                }
                Ok(Some(bytes))
            }
            Err(e) if is_not_found(&e) => self.absent(key),
            Err(e) => Err(self.fail(self.remote_fault(key.as_str(), &e))),
        }
    }

    /// A missing object: `None`, or an error where the store is strict.
    fn absent<T>(&self, key: &StoreKey) -> Result<Option<T>, StorageError> {
        if self.strict && !is_metadata(key.as_str()) {
            return Err(self.fail(StoreFault::Remote {
                url: self.url_of(key.as_str()),
                kind: RemoteFailure::NotFound,
                detail: "this object holds rows of the collection but does not exist; the \
                         collection is damaged or incompletely uploaded"
                    .into(),
            }));
        }
        Ok(None)
    }

    fn short(&self, key: &StoreKey, range: ByteRange, got: usize) -> StorageError {
        self.fail(StoreFault::Remote {
            url: self.url_of(key.as_str()),
            kind: RemoteFailure::BadResponse,
            detail: format!(
                "asked for bytes {range:?}, got {got}: the range reaches past the end of the \
                 object (a damaged shard index) or the server ignored it"
            ),
        })
    }

    /// Reads `range` of the object at `key` into `buf[..n]` and returns `n` (as
    /// [`super::files::FileStore::read_into`]).
    pub(crate) fn read_into(
        &self,
        key: &StoreKey,
        range: ByteRange,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StorageError> {
        let Some(bytes) = self.fetch(key, range)? else {
            return Ok(None);
        };
        if buf.len() < bytes.len() {
            buf.resize(bytes.len(), 0);
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(Some(bytes.len()))
    }

    /// Fills `buf` from byte `offset` of the object at `key`.
    pub(crate) fn read_exact_into(
        &self,
        key: &StoreKey,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<()>, StorageError> {
        let range = ByteRange::FromStart(offset, Some(buf.len() as u64));
        let Some(bytes) = self.fetch(key, range)? else {
            return Ok(None);
        };
        buf.copy_from_slice(&bytes);
        Ok(Some(()))
    }

    /// Reads every `(key, range)` at once (up to [`RemoteOptions::concurrency`] in flight):
    /// shard indexes, many of which a read-ahead needs before it can plan.
    pub(crate) fn read_many(
        &self,
        reads: &[(StoreKey, ByteRange)],
    ) -> Vec<Result<Option<Bytes>, StorageError>> {
        // A server known not to answer: every read fails at once (see `stalled`).
        if let Some(errors) = reads
            .iter()
            .map(|(key, _)| self.stalled(key.as_str()))
            .collect::<Option<Vec<_>>>()
            .filter(|e| !e.is_empty())
        {
            return errors.into_iter().map(Err).collect();
        }
        let permits = &self.inner.permits;
        let fetched = self
            .inner
            .runtime
            .block_on(join_all(reads.iter().map(|(key, range)| {
                let (store, path, permits, traffic) = (
                    self.inner.store.clone(),
                    self.object(key.as_str()),
                    permits.clone(),
                    self.inner.traffic.clone(),
                );
                let range = *range;
                let patience = Patience::of(&self.inner.options);
                async move {
                    let _permit = permits.acquire().await;
                    get(store, path, range, traffic, patience).await
                }
            })));
        reads
            .iter()
            .zip(fetched)
            .map(|((key, _), got)| match got {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if is_not_found(&e) => self.absent(key),
                Err(e) => Err(self.fail(self.remote_fault(key.as_str(), &e))),
            })
            .collect()
    }

    /// Starts reading `ranges` (key, byte range) ahead of their use: coalesced, requested with
    /// at most [`RemoteOptions::concurrency`] GETs in flight. The bytes are kept until the
    /// returned ticket is dropped.
    pub(crate) fn read_ahead(&self, ranges: Vec<(StoreKey, Range<u64>)>) -> Ticket {
        let inner = &self.inner;
        let store = inner.store.clone();
        let prefix = inner.prefix.clone();
        let traffic = inner.traffic.clone();
        let patience = Patience::of(&inner.options);
        let id = inner.ahead.submit(
            &inner.runtime,
            ranges,
            inner.options.coalesce_gap,
            &inner.permits,
            move |key: &str, range: Range<u64>| {
                let path = if prefix.is_empty() {
                    ObjectPath::from(key)
                } else {
                    ObjectPath::from(format!("{prefix}/{key}"))
                };
                get(
                    store.clone(),
                    path,
                    ByteRange::FromStart(range.start, Some(range.end - range.start)),
                    traffic.clone(),
                    patience,
                )
            },
        );
        Ticket {
            store: self.clone(),
            id,
        }
    }

    /// Requests and bytes so far.
    pub(crate) fn traffic(&self) -> RemoteTraffic {
        RemoteTraffic {
            requests: self.inner.traffic.requests.load(Ordering::Relaxed),
            bytes: self.inner.traffic.bytes.load(Ordering::Relaxed),
        }
    }

    /// Fetches ahead of their turn (0: none).
    pub(crate) fn read_ahead_depth(&self) -> usize {
        self.inner.options.read_ahead
    }

    /// Every object under `prefix` (a key prefix, `/`-terminated or empty).
    fn objects_under(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
        if !self.inner.listable {
            return Err(self.unlistable());
        }
        let path = self.object(prefix.trim_end_matches('/'));
        let store = self.inner.store.clone();
        self.inner
            .runtime
            .block_on(async move { store.list(Some(&path)).try_collect().await })
            .map_err(|e| self.fail(self.remote_fault(prefix, &e)))
    }

    fn list_under(&self, prefix: &str) -> Result<StoreKeys, StorageError> {
        self.objects_under(prefix)?
            .iter()
            .map(|m| StoreKey::new(self.relative(m.location.as_ref())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StorageError::from)
    }

    /// A store path relative to the collection's prefix.
    fn relative(&self, location: &str) -> String {
        let prefix = &self.inner.prefix;
        if prefix.is_empty() {
            location.to_string()
        } else {
            location
                .strip_prefix(prefix.as_str())
                .unwrap_or(location)
                .trim_start_matches('/')
                .to_string()
        }
    }

    fn unlistable(&self) -> StorageError {
        StorageError::Other(format!(
            "{}: an HTTP server cannot list keys; the collection's groups are found by name",
            self.inner.url
        ))
    }
}

/// The bytes of one fetch read ahead, kept until this is dropped.
pub(crate) struct Ticket {
    store: RemoteStore,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.store.inner.ahead.release(self.id);
    }
}

/// One GET of `range` of `path` (a zero-length range sends nothing).
/// How long one GET may take: each try (headers and body) at most `timeout`; a try that
/// times out is tried again, with backoff, while `retries` and the `window` since the first
/// try allow. Server errors and refused connections are retried by object_store itself
/// (the same `retries` within the same `window`). So a stalled server is an error within
/// about `window + timeout`, never a hang, and one slow answer does not end an epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    timeout: std::time::Duration,
    window: std::time::Duration,
    retries: usize,
}

impl Patience {
    fn of(options: &RemoteOptions) -> Self {
        Self {
            timeout: options.timeout,
            window: options.retry_timeout,
            retries: options.retries,
        }
    }
}

/// Bytes `range` of the object at `path`, tried as `patience` allows.
async fn get(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    range: ByteRange,
    traffic: Arc<Counters>,
    patience: Patience,
) -> std::result::Result<Bytes, object_store::Error> {
    let started = tokio::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(100);
    let mut tries = 0usize;
    loop {
        tries += 1;
        let attempt = get_once(store.clone(), &path, range, &traffic);
        let failed = match tokio::time::timeout(patience.timeout, attempt).await {
            Ok(Ok(bytes)) => return Ok(bytes),
            // A body cut short or a connection dropped mid-answer: tried again. Answers the
            // server meant (not found, refused, a status object_store already retried) end it.
            Ok(Err(e)) if transient(&e) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => object_store::Error::Generic {
                store: "annbatch",
                source: format!(
                    "{path}: no answer within {:?} (timed out)",
                    patience.timeout
                )
                .into(),
            },
        };
        let spent = started.elapsed();
        if tries > patience.retries || spent + backoff >= patience.window {
            return Err(object_store::Error::Generic {
                store: "annbatch",
                source: format!("{tries} tries in {spent:.1?}: {failed}").into(),
            });
        }
        tracing::debug!(%path, tries, error = %failed, "a GET failed; trying again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Whether a failed try is worth another: a body cut short, a connection dropped or reset
/// mid-answer (what the server meant — not found, refused, a bad status — is not).
fn transient(e: &object_store::Error) -> bool {
    let text = match e {
        object_store::Error::Generic { source, .. } => chain_text(source.as_ref()),
        _ => return false,
    }
    .to_ascii_lowercase();
    text.contains("cut short")
        || text.contains("connection closed")
        || text.contains("connection reset")
        || text.contains("end of file")
        || text.contains("unexpected eof")
        || text.contains("error decoding response body")
        || text.contains("error reading a body")
}

/// One try of [`get`].
async fn get_once(
    store: Arc<dyn ObjectStore>,
    path: &ObjectPath,
    range: ByteRange,
    traffic: &Counters,
) -> std::result::Result<Bytes, object_store::Error> {
    let range = match range {
        ByteRange::FromStart(_, Some(0)) | ByteRange::Suffix(0) => return Ok(Bytes::new()),
        ByteRange::FromStart(0, None) => None,
        ByteRange::FromStart(offset, None) => Some(GetRange::Offset(offset)),
        ByteRange::FromStart(offset, Some(len)) => {
            Some(GetRange::Bounded(offset..offset.saturating_add(len)))
        }
        ByteRange::Suffix(len) => Some(GetRange::Suffix(len)),
    };
    let options = GetOptions {
        range,
        ..GetOptions::default()
    };
    let result = store.get_opts(path, options).await?;
    // What the server said it sends (Content-Range, else Content-Length): a body cut short
    // by a dropped connection on a server that sends neither ETag nor an error is caught
    // here, never handed on as a shorter object.
    let expected = result.range.end.saturating_sub(result.range.start);
    let bytes = result.bytes().await?;
    if bytes.len() as u64 != expected {
        return Err(object_store::Error::Generic {
            store: "annbatch",
            source: format!(
                "{path}: response cut short: {} of the {expected} bytes announced",
                bytes.len()
            )
            .into(),
        });
    }
    traffic.requests.fetch_add(1, Ordering::Relaxed);
    traffic
        .bytes
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(bytes)
}

/// Whether the environment gives S3 credentials (keys, a web identity token, a container
/// credentials endpoint) or asks for unsigned requests, so no metadata service is probed.
fn credentials_in_env() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let skip = std::env::var("AWS_SKIP_SIGNATURE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"));
    skip || set("AWS_ACCESS_KEY_ID")
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
}

/// The text of `e` and of every error under it (a TLS failure is several levels down).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// The kind of failure an object store error is.
fn classify(e: &object_store::Error) -> RemoteFailure {
    match e {
        object_store::Error::NotFound { .. } => RemoteFailure::NotFound,
        object_store::Error::Unauthenticated { .. } => RemoteFailure::Unauthenticated,
        object_store::Error::PermissionDenied { .. } => RemoteFailure::PermissionDenied,
        object_store::Error::InvalidPath { .. } => RemoteFailure::BadUrl,
        object_store::Error::Generic { source, .. } => {
            let text = chain_text(source.as_ref()).to_ascii_lowercase();
            // Errors of a listing or an upload carry the status only in their text.
            if text.contains("401 unauthorized")
                || text.contains("signaturedoesnotmatch")
                || text.contains("invalidaccesskeyid")
                || text.contains("expiredtoken")
            {
                RemoteFailure::Unauthenticated
            } else if text.contains("403 forbidden") || text.contains("accessdenied") {
                RemoteFailure::PermissionDenied
            } else if text.contains("certificate")
                || text.contains("unknownissuer")
                || text.contains("unknown issuer")
                || text.contains("self-signed")
                || text.contains("self signed")
            {
                RemoteFailure::UntrustedCertificate
            } else if text.contains("range")
                || text.contains("status code")
                || text.contains("cut short")
            {
                RemoteFailure::BadResponse
            } else if text.contains("sending request")
                || text.contains("timed out")
                || text.contains("timeout")
                || text.contains("connect")
                || text.contains("dns")
            {
                RemoteFailure::Unreachable
            } else {
                RemoteFailure::Other
            }
        }
        _ => RemoteFailure::Other,
    }
}

impl ReadableStorageTraits for RemoteStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let reads: Vec<(StoreKey, ByteRange)> =
            byte_ranges.map(|range| (key.clone(), range)).collect();
        let mut out = Vec::with_capacity(reads.len());
        if reads.len() == 1 {
            let Some(bytes) = self.fetch(key, reads[0].1)? else {
                return Ok(None);
            };
            out.push(bytes);
        } else {
            for got in self.read_many(&reads) {
                let Some(bytes) = got? else {
                    return Ok(None);
                };
                out.push(bytes);
            }
        }
        Ok(Some(Box::new(out.into_iter().map(Ok))))
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        if !is_metadata(key.as_str()) {
            return self.fetch(key, ByteRange::FromStart(0, None));
        }
        let cached = self
            .inner
            .metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_str())
            .cloned();
        if let Some(found) = cached {
            return Ok(found);
        }
        let found = self.fetch(key, ByteRange::FromStart(0, None))?;
        self.inner
            .metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_string(), found.clone());
        Ok(found)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        let cached = self
            .inner
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_str())
            .copied();
        if let Some(size) = cached {
            return Ok(size);
        }
        let (store, path) = (self.inner.store.clone(), self.object(key.as_str()));
        let size = match self
            .inner
            .runtime
            .block_on(async move { store.head(&path).await })
        {
            Ok(meta) => {
                self.inner.traffic.requests.fetch_add(1, Ordering::Relaxed);
                Some(meta.size)
            }
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(self.fail(self.remote_fault(key.as_str(), &e))),
        };
        self.inner
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_string(), size);
        Ok(size)
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl ListableStorageTraits for RemoteStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.list_under("")
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.list_under(prefix.as_str())
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        if !self.inner.listable {
            return Err(self.unlistable());
        }
        let path = self.object(prefix.as_str().trim_end_matches('/'));
        let store = self.inner.store.clone();
        let listed = self
            .inner
            .runtime
            .block_on(async move { store.list_with_delimiter(Some(&path)).await })
            .map_err(|e| self.fail(self.remote_fault(prefix.as_str(), &e)))?;
        let keys = listed
            .objects
            .iter()
            .map(|m| StoreKey::new(self.relative(m.location.as_ref())))
            .collect::<Result<Vec<_>, _>>()?;
        let prefixes = listed
            .common_prefixes
            .iter()
            .map(|p| StorePrefix::new(format!("{}/", self.relative(p.as_ref()))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreKeysPrefixes::new(keys, prefixes))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        Ok(self
            .objects_under(prefix.as_str())?
            .iter()
            .map(|m| m.size)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_name_no_store_are_typed_errors() {
        for url in ["s3:///x", "gs://bucket/x", "ftp://host/x"] {
            match RemoteStore::open(url, &RemoteOptions::default()) {
                Err(Error::Remote { kind, .. }) => assert_eq!(kind, RemoteFailure::BadUrl, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let zero = RemoteOptions {
            concurrency: 0,
            ..RemoteOptions::default()
        };
        assert!(matches!(
            RemoteStore::open("s3://b/x", &zero),
            Err(Error::InvalidParameter { .. })
        ));
        for too_many in [
            RemoteOptions {
                concurrency: usize::MAX,
                ..RemoteOptions::default()
            },
            RemoteOptions {
                read_ahead: 1 << 40,
                ..RemoteOptions::default()
            },
        ] {
            assert!(matches!(
                RemoteStore::open("s3://b/x", &too_many),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }
}
