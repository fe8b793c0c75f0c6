//! What a store key names.

/// Whether `key` names zarr metadata (v3 or v2), which may be absent while probing a node.
pub(crate) fn is_metadata(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    matches!(
        name,
        "zarr.json" | ".zarray" | ".zgroup" | ".zattrs" | ".zmetadata"
    )
}
