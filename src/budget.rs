//! What one read may allocate: a size read from a file is checked against the machine's
//! memory before anything of that size is allocated.
//!
//! A damaged or hostile file can claim any shape; an allocation larger than physical memory
//! either aborts the process or is killed later by the OOM killer. Everything this crate sizes by
//! a number from a file (a whole array read at open, one decoded chunk) passes through
//! [`check`] first.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The memory a read may plan for, in bytes: the smallest of the machine's physical memory
/// (`MemTotal`), the cgroup's limit (`memory.max`, what a container really gets) and
/// `ANNBATCH_MEMORY_LIMIT` (bytes) when set; `isize::MAX` where none is known. Read once.
pub(crate) fn memory_limit() -> u64 {
    memory_budget().0
}

/// [`memory_limit`] and where it comes from: `ANNBATCH_MEMORY_LIMIT`, the cgroup's
/// `memory.max`, the physical memory (`MemTotal`) or none known.
pub(crate) fn memory_budget() -> (u64, &'static str) {
    static LIMIT: OnceLock<(u64, &'static str)> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let physical = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                kib.checked_mul(1024)
            });
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        let asked = std::env::var("ANNBATCH_MEMORY_LIMIT")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        [
            (asked, "ANNBATCH_MEMORY_LIMIT"),
            (cgroup, "the cgroup's memory.max"),
            (physical, "this machine's memory (MemTotal)"),
        ]
        .into_iter()
        .filter_map(|(v, name)| v.map(|v| (v, name)))
        .min_by_key(|(v, _)| *v)
        .unwrap_or((isize::MAX as u64, "no limit known"))
    })
}

/// Fails unless `elements` items of `item_bytes` each fit in `1 / share` of the machine's
/// memory: `what` (e.g. "one chunk") of the element at `path`.
pub(crate) fn check(
    path: &str,
    what: &str,
    elements: u128,
    item_bytes: u64,
    share: u64,
) -> Result<()> {
    let bytes = elements.saturating_mul(u128::from(item_bytes.max(1)));
    let (memory, source) = memory_budget();
    let limit = memory / share.max(1);
    if bytes > u128::from(limit) {
        return Err(Error::TooLarge {
            path: path.to_string(),
            what: what.to_string(),
            bytes,
            limit,
            budget: format!("1/{} of {source} = {memory} bytes", share.max(1)),
        });
    }
    Ok(())
}

/// Fails unless a read of `rows` rows holding `bytes` bytes fits in `1 / share` of the
/// memory: rows requested by a caller, not a size claimed by a file.
pub(crate) fn check_rows(rows: u64, bytes: u128, share: u64) -> Result<()> {
    let (memory, source) = memory_budget();
    let limit = memory / share.max(1);
    if bytes > u128::from(limit) {
        return Err(Error::BatchOverBudget {
            rows: usize::try_from(rows).unwrap_or(usize::MAX),
            bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
            limit,
            budget: format!("1/{} of {source} = {memory} bytes", share.max(1)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_beyond_memory_are_refused_small_ones_pass() {
        assert!(check("X/data", "one chunk", 1 << 20, 4, 4).is_ok());
        let err = check("X/data", "one chunk", 1u128 << 80, 4, 4).expect_err("too large");
        // The message names the limit and where it comes from.
        let text = err.to_string();
        assert!(text.contains("1/4 of "), "{text}");
        assert!(
            [
                "ANNBATCH_MEMORY_LIMIT",
                "memory.max",
                "MemTotal",
                "no limit"
            ]
            .iter()
            .any(|s| text.contains(s)),
            "{text}"
        );
        assert!(memory_limit() > 1 << 20);
    }
}
