//! Zarr nodes: opening a store, telling groups from arrays, paths and `encoding-type` attributes.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use zarrs::array::Array;
use zarrs::group::Group;
use zarrs::node::{meta_key_v2_array, meta_key_v2_group, meta_key_v3, NodePath};
use zarrs::storage::ReadableStorageTraits;

use super::guard::guarded;
use crate::error::{Error, Result};
use crate::storage::OpenOptions;
use crate::storage::Storage;

/// What a zarr node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// A group (`node_type: group` or `.zgroup`).
    Group,
    /// An array (`node_type: array` or `.zarray`).
    Array,
}

/// A zarr store on the local file system, shared by every element read from it.
#[derive(Clone)]
pub(crate) struct ZarrStore {
    store: Arc<Storage>,
    root: std::path::PathBuf,
}

impl std::fmt::Debug for ZarrStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrStore")
            .field("root", &self.root)
            .finish()
    }
}

impl ZarrStore {
    /// Opens the directory (or object store URL) `root` as a zarr store.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, &OpenOptions::default())
    }

    /// Opens the directory (or object store URL) `root` as `options` say.
    pub(crate) fn open_with(root: &Path, options: &OpenOptions) -> Result<Self> {
        let store = Storage::open(root, options)?;
        Ok(Self {
            store: Arc::new(store),
            root: root.to_path_buf(),
        })
    }

    /// The store's directory (or URL).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// What the store reads through.
    pub(crate) fn storage(&self) -> &Storage {
        &self.store
    }

    /// A zarrs error about `path`, or the typed fault the store met on the way.
    fn error(&self, path: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        match self.store.fault() {
            Some(fault) => fault.to_error(),
            None => Error::zarr(path, e),
        }
    }

    /// Whether `path` is a group, an array, or absent.
    pub(crate) fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        let node_path = node_path(path)?;
        let v3 = meta_key_v3(&node_path);
        if let Some(bytes) = self.store.get(&v3).map_err(|e| self.error(path, e))? {
            let meta: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::zarr(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not valid zarr metadata: {e}",
                            self.root.join(v3.as_str()).display()
                        ),
                    ),
                )
            })?;
            return match meta.get("node_type").and_then(Value::as_str) {
                Some("group") => Ok(Some(NodeKind::Group)),
                Some("array") => Ok(Some(NodeKind::Array)),
                other => Err(Error::zarr(
                    path,
                    std::io::Error::other(format!(
                        "zarr.json node_type is {other:?}, expected \"group\" or \"array\""
                    )),
                )),
            };
        }
        let has = |key| -> Result<bool> {
            Ok(self
                .store
                .size_key(&key)
                .map_err(|e| self.error(path, e))?
                .is_some())
        };
        if has(meta_key_v2_array(&node_path))? {
            Ok(Some(NodeKind::Array))
        } else if has(meta_key_v2_group(&node_path))? {
            Ok(Some(NodeKind::Group))
        } else {
            Ok(None)
        }
    }

    /// Opens the group at `path`; a missing node is [`Error::MissingElement`].
    pub(crate) fn group(&self, path: &str) -> Result<Group<Storage>> {
        match self.kind(path)? {
            Some(NodeKind::Group) => guarded(path, || {
                Group::open(self.store.clone(), &abs(path)).map_err(|e| self.error(path, e))
            }),
            Some(NodeKind::Array) => Err(Error::UnknownEncoding {
                path: path.to_string(),
                encoding_type: "array".into(),
                encoding_version: String::new(),
                expected: "a group".into(),
            }),
            None => Err(missing(path)),
        }
    }

    /// Opens the array at `path`; a missing node is [`Error::MissingElement`]. With `whole`, a
    /// missing chunk of it reads as [`Error::MissingData`], not as fill values. Also returns
    /// the store view it reads through (for its faults).
    pub(crate) fn array_in(&self, path: &str, whole: bool) -> Result<(Array<Storage>, Storage)> {
        let files = if whole {
            self.store.strict()
        } else {
            Storage::clone(&self.store)
        };
        match self.kind(path)? {
            Some(NodeKind::Array) => {
                let array = guarded(path, || {
                    Array::open(Arc::new(files.clone()), &abs(path))
                        .map_err(|e| self.error(path, e))
                })?;
                Ok((array, files))
            }
            Some(NodeKind::Group) => Err(Error::UnknownEncoding {
                path: path.to_string(),
                encoding_type: "group".into(),
                encoding_version: String::new(),
                expected: "an array".into(),
            }),
            None => Err(missing(path)),
        }
    }

    /// Attributes of the node at `path` (group or array).
    pub(crate) fn attributes(&self, path: &str) -> Result<Map<String, Value>> {
        match self.kind(path)? {
            Some(NodeKind::Group) => Ok(self.group(path)?.attributes().clone()),
            Some(NodeKind::Array) => Ok(self.array_in(path, false)?.0.attributes().clone()),
            None => Err(missing(path)),
        }
    }

    /// The names of the group `path`'s children, groups and arrays.
    pub(crate) fn children(&self, path: &str) -> Result<Vec<String>> {
        let group = self.group(path)?;
        let children = guarded(path, || {
            group.child_paths().map_err(|e| self.error(path, e))
        })?;
        Ok(last_names(&children))
    }

    /// Names of the child groups of the group at `path`.
    pub(crate) fn child_groups(&self, path: &str) -> Result<Vec<String>> {
        let group = self.group(path)?;
        let children = guarded(path, || {
            group.child_group_paths().map_err(|e| self.error(path, e))
        })?;
        Ok(last_names(&children))
    }
}

/// The last component of each node path.
fn last_names(paths: &[zarrs::node::NodePath]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| p.as_str().rsplit('/').next().map(str::to_string))
        .collect()
}

/// `parent/child` with the root written as the empty string.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "/" {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

/// The absolute zarrs node path of a relative `path`.
fn abs(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

fn node_path(path: &str) -> Result<NodePath> {
    NodePath::new(&abs(path)).map_err(|e| Error::zarr(path, e))
}

/// A [`Error::MissingElement`] for `path`, split into parent and name.
pub(crate) fn missing(path: &str) -> Error {
    let (parent, element) = path.rsplit_once('/').unwrap_or(("", path));
    Error::MissingElement {
        path: if parent.is_empty() {
            "/".into()
        } else {
            parent.into()
        },
        element: element.into(),
    }
}

/// The `encoding-type` and `encoding-version` attributes (empty strings when absent).
pub(crate) fn encoding(attrs: &Map<String, Value>) -> (String, String) {
    let get = |k: &str| {
        attrs
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("encoding-type"), get("encoding-version"))
}
