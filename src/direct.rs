//! Batches built straight from the store: each decoded chunk is scattered into the final batch
//! tensors, so a value is copied once after decoding (no fetch buffer, no gather pass).
//!
//! Used for collections whose `X` is CSR on disk (the common case); a fetch's batches are all
//! allocated up front (their sizes come from `indptr`), then every row's values and column
//! indices are written at their place in their batch while its chunk is hot in cache.

use tch::Device;

use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::loader::{Batch, Shared};
use crate::sampler::LoadRequest;
use crate::store::csr::RowPlace;
use crate::store::XElement;
use crate::tensor::{extras, filled, finish, with_uninit, HostX};

/// Whether every dataset of `collection` can be read by [`batches`].
pub(crate) fn supported(collection: &DatasetCollection) -> bool {
    collection
        .datasets()
        .iter()
        .all(|d| matches!(d.x(), XElement::Csr(_)))
}

/// The batches `request.splits[first..]` of one fetch, as tensors on `device`.
pub(crate) fn batches(
    collection: &DatasetCollection,
    request: &LoadRequest,
    first: usize,
    shared: &Shared,
    device: Device,
) -> Result<Vec<Batch>> {
    let datasets = collection.datasets();
    let csr = |d: usize| match datasets[d].x() {
        XElement::Csr(c) => Ok(c),
        other => Err(Error::parameter(
            "X",
            other.path().to_string(),
            "direct assembly reads CSR X only",
        )),
    };
    // Every fetched row in request order: dataset, local row, global row, stored values.
    let mut dataset = Vec::new();
    let mut local = Vec::new();
    let mut global = Vec::new();
    let mut lens = Vec::new();
    for range in &request.requests {
        global.extend(range.clone());
        for (d, rows) in collection.split(range.clone())? {
            let indptr = csr(d)?.indptr();
            for row in rows {
                dataset.push(d);
                local.push(row);
                lens.push((indptr[row as usize + 1] - indptr[row as usize]) as usize);
            }
        }
    }
    let splits = &request.splits[first.min(request.splits.len())..];
    // A row taken twice (a sampler drawing with replacement inside one fetch) cannot be
    // scattered to two places: such a fetch is staged and gathered instead.
    let mut taken = vec![false; lens.len()];
    if splits
        .iter()
        .flatten()
        .any(|&p| std::mem::replace(&mut taken[p], true))
    {
        let mut fetch = crate::fetch::Fetch::new(collection);
        fetch.read(collection, request)?;
        return splits
            .iter()
            .map(|split| crate::tensor::assemble(&fetch, split, shared, device))
            .collect();
    }
    let nnz: Vec<usize> = splits
        .iter()
        .map(|s| s.iter().map(|&p| lens[p]).sum())
        .collect();
    if let Some(&big) = nnz.iter().find(|&&n| n > i32::MAX as usize) {
        return Err(Error::BatchTooLarge {
            nnz: big as u64,
            max: i32::MAX as u64,
        });
    }
    let (cols, (values, ())) = with_uninit::<i32, _>(&shared.storage, &nnz, |cols| {
        with_uninit::<f32, _>(&shared.storage, &nnz, |values| {
            // Each fetched row's place in its batch, by request position.
            let mut dest: Vec<Option<RowPlace<'_>>> = (0..lens.len()).map(|_| None).collect();
            for ((split, mut c), mut v) in splits.iter().zip(cols).zip(values) {
                for &p in split {
                    let (c_row, c_rest) = std::mem::take(&mut c).split_at_mut(lens[p]);
                    let (v_row, v_rest) = std::mem::take(&mut v).split_at_mut(lens[p]);
                    dest[p] = Some((c_row, v_row));
                    (c, v) = (c_rest, v_rest);
                }
            }
            // Per dataset, its rows and their places (rows no batch takes are not read).
            let mut per_dataset: Vec<(Vec<u64>, Vec<RowPlace<'_>>)> = (0..datasets.len())
                .map(|_| (Vec::new(), Vec::new()))
                .collect();
            for (p, place) in dest.into_iter().enumerate() {
                if let Some(place) = place {
                    let (rows, places) = &mut per_dataset[dataset[p]];
                    rows.push(local[p]);
                    places.push(place);
                }
            }
            for (d, (rows, places)) in per_dataset.into_iter().enumerate() {
                if !rows.is_empty() {
                    csr(d)?.scatter_rows(&rows, places)?;
                }
            }
            Ok(())
        })
    })?;
    let mut out = Vec::with_capacity(splits.len());
    for ((split, col), values) in splits.iter().zip(cols).zip(values) {
        let crow = filled::<i32>(&shared.storage, split.len() + 1, |out| {
            out[0] = 0;
            for (i, &p) in split.iter().enumerate() {
                // Fits: the batch's nnz was checked against i32::MAX.
                out[i + 1] = out[i] + lens[p] as i32;
            }
        })?;
        let size = [split.len() as i64, collection.n_var() as i64];
        let x = HostX::Csr {
            crow,
            col,
            values,
            size,
        };
        let (obs, index) = extras(&global, split, shared)?;
        out.push(finish(x, obs, index, device, shared)?);
    }
    Ok(out)
}
