//! A fetch's bytes requested before its turn, for collections in object stores: the rows of a
//! load request become, per matrix the batches carry, the byte ranges their decoding will read.

use std::ops::Range;

use super::obs::Extras;
use crate::collection::DatasetCollection;
use crate::error::Result;
use crate::sampler::LoadRequest;
use crate::store::read_plan::ReadPlan;

/// What holds a fetch's read-ahead bytes (dropping it frees them).
pub(crate) type Held = Vec<crate::store::read_plan::Ticket>;

/// Fetches to read ahead of the one being decoded: 0 when no matrix is in an object store.
pub(crate) fn depth(collection: &DatasetCollection) -> usize {
    collection
        .datasets()
        .iter()
        .filter_map(|d| {
            d.x()
                .remote()
                .map(crate::store::remote::RemoteStore::read_ahead_depth)
        })
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
    let mut plan = ReadPlan::default();
    for (d, rows) in rows.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        collection.datasets()[d].x().plan_reads(rows, &mut plan)?;
        for matrix in &extras.aligned {
            if let Some(element) = matrix.elements.get(d) {
                element.plan_reads(rows, &mut plan)?;
            }
        }
    }
    Ok(plan.submit())
}
