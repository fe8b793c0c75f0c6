//! A fetch cut to the memory bound before any of it is read: every batch is sized from what
//! the store already knows (`indptr`, the row width), a batch larger than its share is refused,
//! and a fetch larger than one share is built in groups of whole batches, one after another.
//!
//! The loader holds, at most: the batches waiting in its channel (`capacity`), the groups
//! being built and the one being handed out (`building`), and the two batches a consumer
//! holds. The bound (`batch_memory`, or half of the process's memory bound) is shared
//! among that many *shares*; a batch and a build group each take at most one. Grouping
//! changes no batch and no order: the same rows reach the same batches, only a chunk whose
//! rows fall into two groups is decoded twice.

use super::obs::Extras;
use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::sampler::LoadRequest;
use crate::store::XElement;

/// Bytes a fetch keeps per row besides its matrices: which dataset, local and global row,
/// length and place (`super::scatter`), its obs entries and row id.
const ROW_OVERHEAD: u64 = 64 + 8;

/// The bytes one batch, and one build group, may take.
#[derive(Debug, Clone)]
pub(crate) struct FetchBudget {
    share: u64,
    /// Where `share` comes from, for messages.
    budget: String,
}

impl FetchBudget {
    /// The share of a loader whose channel holds `capacity` batches while `building` groups
    /// are built or handed out: half of this process's memory bound is for batches.
    pub(crate) fn new(capacity: usize, building: usize) -> Self {
        let (memory, source) = crate::budget::memory_budget();
        Self::of(
            memory / 2,
            &format!("1/2 of {source} = {memory} bytes"),
            capacity,
            building,
        )
    }

    /// The share of `memory` bytes for batches (`source` says where they come from) among
    /// `capacity` waiting batches, `building` groups and the consumer's two batches.
    pub(crate) fn of(memory: u64, source: &str, capacity: usize, building: usize) -> Self {
        let shares = (capacity as u64)
            .saturating_add(building as u64)
            .saturating_add(2);
        Self {
            share: memory / shares,
            budget: format!(
                "{source} for batches, shared by up to {shares} batches or build groups \
                 alive at once: {capacity} waiting, {building} being built, 2 held"
            ),
        }
    }

    /// Fails unless a batch of `rows` rows and `bytes` bytes fits one share.
    pub(crate) fn check_batch(&self, rows: usize, bytes: u64) -> Result<()> {
        if bytes > self.share {
            return Err(Error::BatchOverBudget {
                rows,
                bytes,
                limit: self.share,
                budget: self.budget.clone(),
            });
        }
        Ok(())
    }
}

/// Per row, the bytes a fetch of `collection`'s rows takes: what each matrix holds for it
/// (values and, when sparse, indices and `indptr`) and the per-row overhead.
pub(crate) struct RowCost<'a> {
    /// Each matrix (X, then the requested layers / obsm), per dataset.
    matrices: Vec<Vec<&'a XElement>>,
    /// Per row, besides the matrices.
    fixed: u64,
}

impl<'a> RowCost<'a> {
    pub(crate) fn new(collection: &'a DatasetCollection, extras: &'a Extras) -> Self {
        let mut matrices = vec![collection.datasets().iter().map(|d| d.x()).collect()];
        for m in &extras.aligned {
            matrices.push(m.elements.iter().collect());
        }
        Self {
            matrices,
            fixed: ROW_OVERHEAD + 8 * extras.obs.len() as u64,
        }
    }

    /// Bytes of local row `row` of dataset `d`.
    fn of(&self, d: usize, row: u64) -> Result<u64> {
        let mut bytes = self.fixed;
        for elements in &self.matrices {
            let Some(e) = elements.get(d) else { continue };
            let len = e.row_len(row)?;
            let per = if e.row_width().is_some() { 4 } else { 8 };
            bytes = bytes.saturating_add(len.saturating_mul(per));
            if e.row_width().is_none() {
                bytes = bytes.saturating_add(4);
            }
        }
        Ok(bytes)
    }

    /// Bytes of local rows `rows` of dataset `d` (`indptr`'s difference, or the width).
    fn of_range(&self, d: usize, rows: std::ops::Range<u64>) -> Result<u64> {
        let n = rows.end - rows.start;
        let mut bytes = self.fixed.saturating_mul(n);
        for elements in &self.matrices {
            let Some(e) = elements.get(d) else { continue };
            bytes = bytes.saturating_add(e.bytes_of_rows(rows.clone())?);
        }
        Ok(bytes)
    }

    /// Bytes of a mean row, from the metadata (`nnz` / `n_obs`, the row width).
    pub(crate) fn mean(&self, collection: &DatasetCollection) -> u64 {
        let n_obs = collection.n_obs().max(1);
        let mut bytes = self.fixed;
        for elements in &self.matrices {
            let mut total: u64 = 0;
            for (e, d) in elements.iter().zip(collection.datasets()) {
                let values = match e {
                    XElement::Csr(x) => x.nnz().saturating_mul(8).saturating_add(4 * d.n_obs()),
                    _ => e
                        .row_width()
                        .map_or(0, |w| w.saturating_mul(4).saturating_mul(d.n_obs())),
                };
                total = total.saturating_add(values);
            }
            bytes = bytes.saturating_add(total / n_obs);
        }
        bytes
    }
}

/// `request` (its batches from `first` on) as the requests to build one after another: each
/// reads only the rows its batches use and takes at most one share of `budget`.
///
/// # Errors
/// [`Error::BatchOverBudget`] for a batch larger than a share; read errors of a row's length
/// (a row past its dataset).
pub(crate) fn plan(
    collection: &DatasetCollection,
    cost: &RowCost<'_>,
    budget: &FetchBudget,
    mut request: LoadRequest,
    first: usize,
) -> Result<Vec<LoadRequest>> {
    request.splits.drain(..first.min(request.splits.len()));
    let request = request.compacted();
    // The whole fetch within one share (the usual case): so is each of its batches, sized
    // from the ranges alone.
    let mut total = 0u64;
    for range in &request.requests {
        for (d, local) in collection.split(range.clone())? {
            total = total.saturating_add(cost.of_range(d, local)?);
        }
    }
    if total <= budget.share {
        return Ok(vec![request]);
    }
    // Per fetched row (compacted: bounded by the batches), its bytes.
    let mut row_bytes = Vec::with_capacity(usize::try_from(request.n_rows()).unwrap_or(0));
    for range in &request.requests {
        for (d, local) in collection.split(range.clone())? {
            for row in local {
                row_bytes.push(cost.of(d, row)?);
            }
        }
    }
    let mut groups: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut group_bytes = 0u64;
    let n_splits = request.splits.len();
    let mut splits = request.splits.into_iter();
    for split in splits.by_ref() {
        let bytes = split
            .iter()
            .map(|&p| row_bytes.get(p).copied().unwrap_or(0))
            .fold(0u64, u64::saturating_add);
        budget.check_batch(split.len(), bytes)?;
        match groups.last_mut() {
            Some(group) if group_bytes.saturating_add(bytes) <= budget.share => {
                group.push(split);
                group_bytes += bytes;
            }
            _ => {
                groups.push(vec![split]);
                group_bytes = bytes;
            }
        }
    }
    if groups.len() <= 1 {
        let splits = groups.pop().unwrap_or_default();
        debug_assert_eq!(splits.len(), n_splits);
        return Ok(vec![LoadRequest {
            requests: request.requests,
            splits,
        }]);
    }
    tracing::debug!(
        batches = n_splits,
        groups = groups.len(),
        share = budget.share,
        "fetch built in groups"
    );
    Ok(groups
        .into_iter()
        .map(|splits| {
            LoadRequest {
                requests: request.requests.clone(),
                splits,
            }
            .compacted()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_half_the_memory_over_every_batch_alive() {
        let budget = FetchBudget::of(
            1 << 29,
            "1/2 of ANNBATCH_MEMORY_LIMIT = 1073741824 bytes",
            2,
            3,
        );
        // 2 waiting, 3 built or handed out, 2 held: 7 shares of 512 MiB.
        assert_eq!(budget.share, (1 << 29) / 7);
        assert!(budget.check_batch(10, budget.share).is_ok());
        let err = budget
            .check_batch(4096, 8 << 30)
            .expect_err("over the share");
        let text = err.to_string();
        for part in [
            "4096 rows",
            "ANNBATCH_MEMORY_LIMIT",
            "1073741824",
            "batch_size",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
