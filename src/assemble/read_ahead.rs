//! A fetch's bytes requested before its turn, for collections in object stores or read with
//! `O_DIRECT`: the rows of a load request become, per matrix the batches carry, the byte
//! ranges their decoding will read.

use std::ops::Range;

use super::obs::Extras;
use crate::collection::DatasetCollection;
use crate::error::Result;
use crate::sampler::LoadRequest;
use crate::storage::read_plan::ReadPlan;

/// Threads that plan one fetch's datasets at once (each may wait on the object store).
const MAX_PLANNERS: usize = 16;

/// What holds a fetch's read-ahead bytes (dropping it frees them).
pub(crate) type Held = Vec<crate::storage::read_plan::Ticket>;

/// Fetches to read ahead of the one being decoded: 0 when every matrix is read through the
/// page cache or from memory.
pub(crate) fn depth(collection: &DatasetCollection) -> usize {
    collection
        .datasets()
        .iter()
        .map(|d| d.x().read_ahead_depth())
        .max()
        .unwrap_or(0)
}

/// Requests every byte range `request` will read (X and `extras`' layers / obsm); the bytes are
/// kept until the result is dropped.
///
/// # Errors
/// Rows past the collection; a shard index that cannot be read or is damaged.
pub(crate) fn read_ahead(
    collection: &DatasetCollection,
    extras: &Extras,
    request: &LoadRequest,
) -> Result<Held> {
    let mut rows: Vec<Vec<Range<u64>>> = vec![Vec::new(); collection.datasets().len()];
    for range in &request.requests {
        for (d, local) in collection.split(range.clone())? {
            if let Some(list) = rows.get_mut(d) {
                list.push(local);
            }
        }
    }
    // Planning a dataset may first read shard indexes (a round trip each array): datasets are
    // planned side by side, so a fetch's first round trips overlap instead of adding up.
    let work: Vec<(usize, &[Range<u64>])> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(d, r)| (d, r.as_slice()))
        .collect();
    let plan_group = |group: &[(usize, &[Range<u64>])]| -> Result<ReadPlan> {
        let mut plan = ReadPlan::default();
        for &(d, rows) in group {
            collection.datasets()[d].x().plan_reads(rows, &mut plan)?;
            for matrix in &extras.aligned {
                if let Some(element) = matrix.elements.get(d) {
                    element.plan_reads(rows, &mut plan)?;
                }
            }
        }
        Ok(plan)
    };
    let threads = work.len().clamp(1, MAX_PLANNERS);
    if threads == 1 {
        return Ok(plan_group(&work)?.submit());
    }
    let per_thread = work.len().div_ceil(threads);
    let plans = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(per_thread)
            .map(|group| scope.spawn(move || plan_group(group)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().map_err(|_| {
                    crate::error::Error::Internal("a thread planning reads panicked".into())
                })?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut plan = ReadPlan::default();
    for part in plans {
        plan.merge(part);
    }
    Ok(plan.submit())
}
