//! A local directory tree written into the object store, object by object: how a conversion
//! to `s3://…` publishes the collection it staged on disk.
//!
//! - Data objects go first, then the metadata documents, deepest first, the root's `zarr.json`
//!   last: a reader finds the collection only once every object it names is there.
//! - Objects up to [`PART`] bytes go with one PUT, larger ones as multipart uploads of `PART`-byte
//!   parts (aborted if a part fails), [`FILES_AT_ONCE`] objects at a time.
//! - Memory: at most [`SLOTS`] parts are read and in flight at once, so an upload holds at most
//!   `SLOTS × PART` bytes (256 MiB). Only an object over 10,000 × `PART` (156 GiB, S3's part
//!   count) takes larger parts, and the bound grows with them.
//! - A marker object ([`MARKER`]) goes first and is deleted last: a prefix holding it but no
//!   root `zarr.json` is an upload that was cut off, which the next conversion into that prefix
//!   clears ([`RemoteStore::clear_cut_off_upload`]).
//! - A failed or cancelled upload (a set cancel flag is checked before each object and part)
//!   aborts its multipart uploads, deletes what it had put, and says exactly what it deleted
//!   and what it could not.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Semaphore;

use super::super::keys::is_metadata;
use super::{classify, RemoteStore};
use crate::error::{Error, RemoteFailure, Result};

/// Bytes per part of a multipart upload (S3 wants ≥ 5 MiB for all but the last).
const PART: u64 = 16 << 20;
/// Parts (or whole small objects) read into memory and in flight at once, over all objects.
const SLOTS: usize = 16;
/// Objects uploaded at once.
const FILES_AT_ONCE: usize = 8;
/// Parts of one object in flight at once.
const PARTS_PER_FILE: usize = 4;
/// S3's limit of parts per multipart upload.
const MAX_PARTS: u64 = 10_000;
/// S3's largest part.
const MAX_PART: u64 = 5 << 30;
/// The object an upload puts first and deletes last (see the module docs).
pub(crate) const MARKER: &str = ".annbatch-upload-incomplete";

/// What an upload wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uploaded {
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// One file of the tree: its key under the collection's prefix, its path and length.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    file: PathBuf,
    len: u64,
}

/// Why one object failed.
enum Failed {
    Io(PathBuf, std::io::Error),
    Store(String, object_store::Error),
    Cancelled,
}

fn cancelled(cancel: &Option<Arc<AtomicBool>>) -> bool {
    cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
}

impl RemoteStore {
    /// Whether no object is stored under the collection's prefix (S3; `Err` over HTTP).
    pub(crate) fn holds_nothing(&self) -> Result<bool> {
        if !self.inner.listable {
            return Err(self.not_writable());
        }
        let path = self.object("");
        let store = self.inner.store.clone();
        let first = self.inner.runtime.block_on(async move {
            let mut listing = store.list(Some(&path));
            listing.next().await.transpose()
        });
        match first {
            Ok(found) => Ok(found.is_none()),
            Err(e) => Err(self.write_error("", &e, "listing what is there")),
        }
    }

    /// Uploads every file under `root` to the same key under the collection's prefix (see the
    /// module docs for the order, the memory bound and what a failure leaves).
    pub(crate) fn upload_tree(
        &self,
        root: &Path,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Uploaded> {
        if !self.inner.listable {
            return Err(self.not_writable());
        }
        let marker = self.object(MARKER);
        let store = self.inner.store.clone();
        self.inner
            .runtime
            .block_on(async move {
                let note = PutPayload::from_static(b"an annbatch upload in progress or cut off\n");
                store.put(&marker, note).await
            })
            .map_err(|e| self.write_error(MARKER, &e, "marking the upload as started"))?;
        let mut entries = Vec::new();
        walk(root, "", &mut entries)?;
        // Phases: data, then metadata by depth, deepest first: the root's `zarr.json` last.
        let mut data = Vec::new();
        let mut metadata: BTreeMap<Reverse<usize>, Vec<Entry>> = BTreeMap::new();
        for entry in entries {
            if is_metadata(&entry.key) {
                let depth = entry.key.matches('/').count();
                metadata.entry(Reverse(depth)).or_default().push(entry);
            } else {
                data.push(entry);
            }
        }
        let phases = std::iter::once(data).chain(metadata.into_values());

        let slots = Arc::new(Semaphore::new(SLOTS));
        let mut done = Uploaded::default();
        let mut put: Vec<String> = Vec::new();
        for phase in phases {
            let store = self.inner.store.clone();
            let results: Vec<(String, std::result::Result<u64, Failed>)> =
                self.inner.runtime.block_on(
                    stream::iter(phase)
                        .map(|entry| {
                            let (store, slots) = (store.clone(), slots.clone());
                            let path = self.object(&entry.key);
                            let cancel = cancel.clone();
                            async move {
                                let key = entry.key.clone();
                                (key, put_file(store, path, entry, slots, cancel).await)
                            }
                        })
                        .buffer_unordered(FILES_AT_ONCE)
                        .collect(),
                );
            let mut failure = None;
            for (key, result) in results {
                match result {
                    Ok(bytes) => {
                        done.objects += 1;
                        done.bytes += bytes;
                        put.push(key);
                    }
                    Err(e) if failure.is_none() => failure = Some(e),
                    Err(_) => {}
                }
            }
            if let Some(failed) = failure {
                let cleaned = self.clean_up(&put);
                return Err(match failed {
                    Failed::Io(path, source) => Error::Io { path, source },
                    Failed::Store(key, e) => {
                        self.write_error(&key, &e, &format!("writing; {cleaned}"))
                    }
                    Failed::Cancelled => Error::Interrupted {
                        during: format!("uploading to {}", self.inner.url),
                        cleanup: cleaned,
                    },
                });
            }
        }
        // Complete: the marker goes last (left behind, it is only a stray object).
        let _ = self.remove(&[MARKER.to_string()]);
        Ok(done)
    }

    /// Deletes what a failed upload had put (`keys`), then its marker if nothing is left;
    /// says exactly what was deleted and what was not.
    fn clean_up(&self, keys: &[String]) -> String {
        let failed = self.remove(keys);
        if failed == 0 && self.remove(&[MARKER.to_string()]) == 0 {
            return format!(
                "the {} objects this upload had written under {} were deleted",
                keys.len(),
                self.inner.url
            );
        }
        format!(
            "{failed} of the {} objects this upload had written under {} could not be deleted \
             (the next conversion into the same prefix clears them)",
            keys.len(),
            self.inner.url
        )
    }

    /// Deletes `keys` under the prefix; the number of deletions that failed.
    fn remove(&self, keys: &[String]) -> usize {
        self.delete(keys.iter().map(|k| self.object(k)).collect())
    }

    /// Deletes the objects at `paths` (one already gone counts as deleted); the number of
    /// deletions that failed.
    fn delete(&self, paths: Vec<ObjectPath>) -> usize {
        let store = self.inner.store.clone();
        let results = self.inner.runtime.block_on(
            stream::iter(paths)
                .map(|path| {
                    let store = store.clone();
                    async move {
                        match store.delete(&path).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => true,
                            Err(_) => false,
                        }
                    }
                })
                .buffer_unordered(FILES_AT_ONCE)
                .collect::<Vec<bool>>(),
        );
        results.iter().filter(|&&ok| !ok).count()
    }

    /// When the prefix holds what an upload that was cut off left (its marker, no root
    /// `zarr.json`): deletes all of it and returns how many objects; `None` when the prefix
    /// holds anything else (a collection, other data), which is never touched.
    pub(crate) fn clear_cut_off_upload(&self) -> Result<Option<u64>> {
        let store = self.inner.store.clone();
        let (marker, root) = (self.object(MARKER), self.object("zarr.json"));
        let found = self.inner.runtime.block_on(async move {
            let marker = store.head(&marker).await;
            let root = store.head(&root).await;
            (marker, root)
        });
        let exists = |r: std::result::Result<object_store::ObjectMeta, object_store::Error>,
                      key: &str|
         -> Result<bool> {
            match r {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.write_error(key, &e, "looking for a cut-off upload")),
            }
        };
        if !exists(found.0, MARKER)? || exists(found.1, "zarr.json")? {
            return Ok(None);
        }
        let store = self.inner.store.clone();
        let prefix = self.object("");
        let listed: std::result::Result<Vec<ObjectPath>, object_store::Error> =
            self.inner.runtime.block_on(async move {
                store
                    .list(Some(&prefix))
                    .map_ok(|meta| meta.location)
                    .try_collect()
                    .await
            });
        let listed = listed.map_err(|e| self.write_error("", &e, "listing a cut-off upload"))?;
        let count = listed.len() as u64;
        if self.delete(listed) > 0 {
            return Err(Error::Remote {
                url: self.inner.url.clone(),
                kind: RemoteFailure::Other,
                detail: "could not delete what a cut-off upload left under this prefix".into(),
            });
        }
        Ok(Some(count))
    }

    fn not_writable(&self) -> Error {
        Error::Remote {
            url: self.inner.url.clone(),
            kind: RemoteFailure::BadUrl,
            detail: "collections are written to s3:// only (a plain HTTP server is read-only here)"
                .into(),
        }
    }

    /// A failure of the request for `key` (the prefix itself when empty) while `doing`.
    fn write_error(&self, key: &str, e: &object_store::Error, doing: &str) -> Error {
        Error::Remote {
            url: if key.is_empty() {
                self.inner.url.clone()
            } else {
                self.url_of(key)
            },
            kind: classify(e),
            detail: format!("{doing}: {e}"),
        }
    }
}

/// Every file under `dir` (keys relative to the tree's root, `/`-separated), in name order.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|raw| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{raw:?} is not UTF-8 (object keys must be)"),
            ),
        })?;
        names.push((name, path));
    }
    names.sort();
    for (name, path) in names {
        let key = format!("{prefix}{name}");
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(&path, &format!("{key}/"), out)?;
        } else {
            out.push(Entry {
                key,
                file: path,
                len: meta.len(),
            });
        }
    }
    Ok(())
}

/// Bytes per part for an object of `len` bytes: [`PART`], larger when S3's part count needs it.
fn part_size(len: u64) -> u64 {
    PART.max(len.div_ceil(MAX_PARTS)).min(MAX_PART)
}

/// `len` bytes of `file` from `offset`, read on the blocking pool.
async fn read_part(file: PathBuf, offset: u64, len: u64) -> std::result::Result<Vec<u8>, Failed> {
    let path = file.clone();
    let read = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        // `len` is at most PART (or a part size bounded by MAX_PART), of a file that has it.
        let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        std::fs::File::open(&file)?.read_exact_at(&mut buf, offset)?;
        Ok::<_, std::io::Error>(buf)
    })
    .await;
    match read {
        Ok(Ok(buf)) => Ok(buf),
        Ok(Err(e)) => Err(Failed::Io(path, e)),
        Err(e) => Err(Failed::Io(path, std::io::Error::other(e.to_string()))),
    }
}

/// Uploads one file to `path`; its bytes on success.
async fn put_file(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    entry: Entry,
    slots: Arc<Semaphore>,
    cancel: Option<Arc<AtomicBool>>,
) -> std::result::Result<u64, Failed> {
    if cancelled(&cancel) {
        return Err(Failed::Cancelled);
    }
    let store_err = |e| Failed::Store(entry.key.clone(), e);
    let closed = || {
        Failed::Io(
            entry.file.clone(),
            std::io::Error::other("upload cancelled"),
        )
    };
    if entry.len <= PART {
        let _slot = slots.acquire().await.map_err(|_| closed())?;
        let bytes = read_part(entry.file.clone(), 0, entry.len).await?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(store_err)?;
        return Ok(entry.len);
    }
    if entry.len.div_ceil(MAX_PART) > MAX_PARTS {
        return Err(Failed::Io(
            entry.file.clone(),
            std::io::Error::other("larger than one S3 object can be (10,000 parts of 5 GiB)"),
        ));
    }
    let part = part_size(entry.len);
    let mut upload = store.put_multipart(&path).await.map_err(store_err)?;
    let mut in_flight = FuturesUnordered::new();
    let parts = async {
        let mut offset = 0;
        while offset < entry.len {
            if cancelled(&cancel) {
                return Err(Failed::Cancelled);
            }
            let n = part.min(entry.len - offset);
            let slot = slots.clone().acquire_owned().await.map_err(|_| closed())?;
            let bytes = read_part(entry.file.clone(), offset, n).await?;
            let sent = upload.put_part(PutPayload::from(bytes));
            in_flight.push(async move {
                let sent = sent.await;
                drop(slot);
                sent
            });
            while in_flight.len() >= PARTS_PER_FILE {
                in_flight.try_next().await.map_err(store_err)?;
            }
            offset += n;
        }
        while in_flight.try_next().await.map_err(store_err)?.is_some() {}
        Ok::<_, Failed>(())
    }
    .await;
    let completed = match parts {
        Ok(()) => upload.complete().await.map_err(store_err).map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = completed {
        let _ = upload.abort().await;
        return Err(e);
    }
    Ok(entry.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3s_limits() {
        assert_eq!(part_size(1), PART);
        assert_eq!(part_size(PART * MAX_PARTS), PART);
        assert!(part_size(PART * MAX_PARTS + 1) > PART);
        let huge = 40u64 << 40;
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
        assert_eq!(part_size(u64::MAX), MAX_PART);
    }

    #[test]
    fn a_tree_is_walked_in_key_order_with_slash_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/c")).expect("mkdir");
        std::fs::write(dir.path().join("zarr.json"), b"{}").expect("write");
        std::fs::write(dir.path().join("a/c/0"), b"123").expect("write");
        std::fs::write(dir.path().join("a/zarr.json"), b"{}").expect("write");
        let mut out = Vec::new();
        walk(dir.path(), "", &mut out).expect("walk");
        let keys: Vec<_> = out.iter().map(|e| (e.key.as_str(), e.len)).collect();
        assert_eq!(keys, [("a/c/0", 3), ("a/zarr.json", 2), ("zarr.json", 2)]);
    }
}
