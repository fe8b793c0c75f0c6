//! A conversion into object storage (`annbatch convert -o s3://bucket/prefix/c.zarr`).
//!
//! The converter needs a file system (an advisory lock, random writes into shards, one atomic
//! rename to publish), which an object store is not. So the collection is converted as usual
//! into a local staging directory ([`ConvertOptions::staging_dir`], else
//! `ANNBATCH_STAGING_DIR`, else the system's temporary directory; it needs the collection's
//! size on disk), then uploaded (`storage/remote/upload.rs`: data first, the root's `zarr.json`
//! last, so a reader never finds a partial collection), and the staged copy removed.
//!
//! Appending to a collection already in object storage is refused: it would rewrite objects in
//! place, which no object store does atomically. Convert (and append) locally, then upload.

use std::path::Path;
#[cfg(feature = "remote")]
use std::path::PathBuf;

use super::{ConvertOptions, ConvertReport};
use crate::error::{Error, Result};

/// Converts `inputs` into a new collection at `url` (see the module docs).
pub(super) fn add_adatas<P: AsRef<Path>>(
    url: &str,
    inputs: &[P],
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    #[cfg(not(feature = "remote"))]
    {
        let _ = (inputs, options);
        Err(Error::Remote {
            url: url.to_string(),
            kind: crate::error::RemoteFailure::NotBuilt,
            detail: "rebuild with `--features remote` (the Python wheel has it)".into(),
        })
    }
    #[cfg(feature = "remote")]
    {
        use crate::storage::remote::RemoteStore;

        let store = RemoteStore::open(url, &options.remote)?;
        // What an upload that was cut off (killed, the server gone) left is cleared; anything
        // else under the prefix is never touched.
        let cleared = if store.holds_nothing()? {
            None
        } else {
            store.clear_cut_off_upload()?
        };
        if cleared.is_none() && !store.holds_nothing()? {
            return Err(Error::OutputExists {
                path: PathBuf::from(url),
                found: "objects under this prefix: a conversion into object storage writes a \
                        new collection only (appending would rewrite objects in place); \
                        choose a new prefix, or append locally and upload"
                    .into(),
            });
        }
        let name = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("collection.zarr");
        let staging = Scratch::new(&staging_parent(options))?;
        let local = staging.0.join(name);
        let mut report = super::add_adatas(&local, inputs, options)?;
        if let Some(n) = cleared {
            report.notes.push(format!(
                "removed {n} objects an earlier upload to {url} left when it was cut off"
            ));
        }
        let uploaded = store.upload_tree(&local, options.cancel.clone())?;
        report.notes.push(format!(
            "uploaded {} objects ({} bytes) to {url}",
            uploaded.objects, uploaded.bytes
        ));
        Ok(report)
    }
}

/// Where the staging directory goes.
#[cfg(feature = "remote")]
fn staging_parent(options: &ConvertOptions) -> PathBuf {
    options
        .staging_dir
        .clone()
        .or_else(|| std::env::var_os("ANNBATCH_STAGING_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir)
}

/// A directory of this process's own, removed with everything in it when dropped.
#[cfg(feature = "remote")]
struct Scratch(PathBuf);

#[cfg(feature = "remote")]
impl Scratch {
    fn new(parent: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!("annbatch-upload-{}-{nanos:09}", std::process::id()));
        // `create_dir` fails if it exists: the directory is ours alone.
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(Self(dir))
    }
}

#[cfg(feature = "remote")]
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
