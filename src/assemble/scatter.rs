//! A fetch's batches, built straight from the store: every batch's arrays are sized up front
//! (row lengths come from `indptr`, or the row width), cut into one run per row, and each
//! decoded chunk is copied once, straight into its rows' runs — no fetch buffer, no gather pass.
//!
//! This is the one assembly path, for `X` and every matrix a batch carries beside it (layers,
//! obsm), sparse or dense, on disk or in memory, and for every front end (host vectors or
//! tensors, through [`Memory`]). A row that a sampler puts into a fetch's batches more than once
//! is read once and copied to its other places after.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::memory::{filled, Element, Memory};
use super::obs::Extras;
use super::parts::{BatchParts, XParts};
use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::sampler::LoadRequest;
use crate::store::{compact_runs, RowPlaces, XElement};

/// Every fetched row of a request, in request order.
struct Rows {
    /// The dataset each row is in.
    dataset: Vec<usize>,
    /// Its row inside that dataset.
    local: Vec<u64>,
    /// Its global row id.
    global: Vec<u64>,
}

impl Rows {
    fn of(collection: &DatasetCollection, request: &LoadRequest) -> Result<Self> {
        // A sampler may repeat rows, but reserving more than the collection holds is not
        // trusted up front: the vectors grow past it only as rows are actually listed.
        let n = usize::try_from(request.n_rows().min(collection.n_obs())).unwrap_or(0);
        let mut rows = Self {
            dataset: Vec::with_capacity(n),
            local: Vec::with_capacity(n),
            global: Vec::with_capacity(n),
        };
        for range in &request.requests {
            rows.global.extend(range.clone());
            for (d, local) in collection.split(range.clone())? {
                for row in local {
                    rows.dataset.push(d);
                    rows.local.push(row);
                }
            }
        }
        Ok(rows)
    }
}

/// Where a row's values start: (batch, first element in the batch's arrays).
type Spot = (usize, usize);

/// A row's place in its batch: column indices (sparse rows) and values.
type Place<'a> = (Option<&'a mut [i32]>, &'a mut [f32]);

/// The batches `request.splits[first..]` of one fetch, assembled in `memory`: `X` and every
/// matrix of `extras.aligned`, then the obs columns and row ids. Decoding runs in parallel on
/// the current rayon pool; the time spent reading and decoding is added to `read`.
///
/// # Errors
/// Read errors of the store (corrupt chunks, bad indices), [`Error::BatchTooLarge`] when a
/// sparse batch holds more values than int32 indices address, allocation errors of `memory`.
pub(crate) fn fetch_batches<M: Memory>(
    collection: &DatasetCollection,
    request: &LoadRequest,
    first: usize,
    extras: &Extras,
    memory: &M,
    read: &mut Duration,
) -> Result<Vec<BatchParts<M>>> {
    let splits = &request.splits[first.min(request.splits.len())..];
    // One read request: each file the fetch reads is checked once (see `store::files`).
    crate::storage::new_read_request();
    let rows = Rows::of(collection, request)?;
    let x: Vec<&XElement> = collection.datasets().iter().map(|d| d.x()).collect();
    let width = dense_width(collection, &x, "X")?;
    let mut x =
        matrix_parts(&x, width, collection.n_var(), splits, &rows, memory, read)?.into_iter();
    let mut aligned = Vec::with_capacity(extras.aligned.len());
    for matrix in &extras.aligned {
        let elements: Vec<&XElement> = matrix.elements.iter().collect();
        let label = format!("{}/{}", matrix.group.as_str(), matrix.name);
        let width = dense_width(collection, &elements, &label)?;
        let n_var = elements.first().map_or(0, |e| e.n_var());
        aligned
            .push(matrix_parts(&elements, width, n_var, splits, &rows, memory, read)?.into_iter());
    }
    let mut out = Vec::with_capacity(splits.len());
    for split in splits {
        let missing = || Error::Internal("a batch without its matrix".into());
        let x = x.next().ok_or_else(missing)?;
        let aligned = aligned
            .iter_mut()
            .map(|parts| parts.next().ok_or_else(missing))
            .collect::<Result<Vec<_>>>()?;
        let (obs, index) = extras.parts(&rows.global, split, memory)?;
        out.push(BatchParts {
            x,
            aligned,
            obs,
            index,
        });
    }
    Ok(out)
}

/// One matrix's part of every batch of `splits` (positions into `rows`): sized up front from
/// the row lengths, each row decoded once straight into its first place, then copied to any
/// other place a sampler gave it.
fn matrix_parts<M: Memory>(
    elements: &[&XElement],
    width: Option<usize>,
    n_var: u64,
    splits: &[Vec<usize>],
    rows: &Rows,
    memory: &M,
    read: &mut Duration,
) -> Result<Vec<XParts<M>>> {
    let len = match width {
        Some(w) => vec![w; rows.local.len()],
        None => rows
            .dataset
            .iter()
            .zip(&rows.local)
            .map(|(&d, &row)| Ok(elements[d].row_len(row)? as usize))
            .collect::<Result<Vec<_>>>()?,
    };
    // Each batch's size, and where each row goes: its first place, or a copy of it.
    let mut spot: Vec<Option<Spot>> = vec![None; len.len()];
    let mut copies: Vec<(Spot, Spot, usize)> = Vec::new();
    let mut sizes = Vec::with_capacity(splits.len());
    for (b, split) in splits.iter().enumerate() {
        let mut at = 0usize;
        for &p in split {
            match spot[p] {
                None => spot[p] = Some((b, at)),
                Some(src) => copies.push((src, (b, at), len[p])),
            }
            at += len[p];
        }
        if width.is_none() && at > i32::MAX as usize {
            return Err(Error::BatchTooLarge {
                nnz: at as u64,
                max: i32::MAX as u64,
            });
        }
        sizes.push(at);
    }
    let mut values = sizes
        .iter()
        .map(|&n| memory.array::<f32>(n))
        .collect::<Result<Vec<_>>>()?;
    let mut indices = match width {
        Some(_) => Vec::new(),
        None => sizes
            .iter()
            .map(|&n| memory.array::<i32>(n))
            .collect::<Result<Vec<_>>>()?,
    };
    let started = Instant::now();
    scatter::<M>(
        elements,
        splits,
        rows,
        &len,
        &spot,
        &mut indices,
        &mut values,
    )?;
    *read += started.elapsed();
    for &(src, dst, n) in &copies {
        copy_run::<M, f32>(&mut values, src, dst, n);
        if width.is_none() {
            copy_run::<M, i32>(&mut indices, src, dst, n);
        }
    }
    // A joined space that drops genes shortens sparse rows: their kept lengths, per batch (only
    // then; otherwise a row's length is `len`).
    let mut kept_lens: Option<Vec<Vec<usize>>> = None;
    if width.is_none() && elements.iter().any(|e| e.drops_columns()) {
        let kept = kept_lens.insert(
            splits
                .iter()
                .map(|split| split.iter().map(|&p| len[p]).collect())
                .collect(),
        );
        for ((lens, i), v) in kept.iter_mut().zip(&mut indices).zip(&mut values) {
            let total = compact_runs(M::slice(i), M::slice(v), lens);
            M::truncate(i, total)?;
            M::truncate(v, total)?;
        }
    }
    let mut indices = indices.into_iter();
    let mut out = Vec::with_capacity(splits.len());
    for (b, (split, data)) in splits.iter().zip(values).enumerate() {
        out.push(match width {
            Some(width) => XParts::Dense {
                data,
                rows: split.len(),
                width,
            },
            None => XParts::Csr {
                indptr: filled(memory, split.len() + 1, |out: &mut [i32]| {
                    out[0] = 0;
                    for (i, &p) in split.iter().enumerate() {
                        let n = kept_lens.as_ref().map_or(len[p], |k| k[b][i]);
                        // Fits: the batch's values were checked against i32::MAX.
                        out[i + 1] = out[i] + n as i32;
                    }
                })?,
                indices: indices
                    .next()
                    .ok_or_else(|| Error::Internal("a batch without column indices".into()))?,
                data,
                rows: split.len(),
                n_var,
            },
        });
    }
    Ok(out)
}

/// Elements per row of a dense matrix (`None` for sparse); every dataset must agree.
fn dense_width(
    collection: &DatasetCollection,
    elements: &[&XElement],
    label: &str,
) -> Result<Option<usize>> {
    let mut widths = elements.iter().map(|e| e.row_width());
    let first = widths.next().flatten();
    for (name, w) in collection.dataset_names().iter().zip(widths) {
        if w != first {
            return Err(Error::ShapeMismatch {
                path: format!("{}/{name}/{label}", collection.path().display()),
                found: format!("rows of {w:?} elements (None = sparse)"),
                expected: format!("{first:?}, as the first dataset"),
            });
        }
    }
    first
        .map(|w| usize::try_from(w).map_err(|_| Error::Internal(format!("row width {w}"))))
        .transpose()
}

/// Cuts the batches' arrays into one run per row and has every dataset write its rows' first
/// places, datasets in parallel (each decoding its chunks in parallel too).
fn scatter<M: Memory>(
    elements: &[&XElement],
    splits: &[Vec<usize>],
    rows: &Rows,
    len: &[usize],
    spot: &[Option<Spot>],
    indices: &mut [M::Array<i32>],
    values: &mut [M::Array<f32>],
) -> Result<()> {
    let sparse = !indices.is_empty();
    let mut value_runs: Vec<&mut [f32]> = values.iter_mut().map(M::slice).collect();
    let mut index_runs: Vec<&mut [i32]> = indices.iter_mut().map(M::slice).collect();
    // Per position in request order, the runs of its first place.
    let mut places: Vec<Option<Place<'_>>> = (0..len.len()).map(|_| None).collect();
    for (b, split) in splits.iter().enumerate() {
        for &p in split {
            let (v, rest) = std::mem::take(&mut value_runs[b]).split_at_mut(len[p]);
            value_runs[b] = rest;
            let i = if sparse {
                let (i, rest) = std::mem::take(&mut index_runs[b]).split_at_mut(len[p]);
                index_runs[b] = rest;
                Some(i)
            } else {
                None
            };
            // Copies (not first places) keep their runs empty until `copy_run`.
            if spot[p].is_some_and(|(sb, _)| sb == b) && places[p].is_none() {
                places[p] = Some((i, v));
            }
        }
    }
    // Per dataset, its rows and their places, in request order.
    let mut groups: Vec<(Vec<u64>, Vec<Place<'_>>)> = (0..elements.len())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    for (p, place) in places.into_iter().enumerate() {
        if let Some(place) = place {
            let (local, runs) = &mut groups[rows.dataset[p]];
            local.push(rows.local[p]);
            runs.push(place);
        }
    }
    groups
        .into_par_iter()
        .enumerate()
        .filter(|(_, (local, _))| !local.is_empty())
        .try_for_each(|(d, (local, runs))| {
            tracing::trace!(dataset = d, rows = local.len(), "decode");
            let places = if sparse {
                RowPlaces::Csr(
                    runs.into_iter()
                        .map(|(i, v)| (i.unwrap_or_default(), v))
                        .collect(),
                )
            } else {
                RowPlaces::Dense(runs.into_iter().map(|(_, v)| v).collect())
            };
            elements[d].scatter_rows_within(&local, places)
        })
}

/// Copies `len` elements from `src` to `dst` (batch, offset) among `arrays`.
fn copy_run<M: Memory, T: Element>(
    arrays: &mut [M::Array<T>],
    (sb, so): Spot,
    (db, d_o): Spot,
    len: usize,
) {
    if sb == db {
        M::slice(&mut arrays[sb]).copy_within(so..so + len, d_o);
        return;
    }
    let (lo, hi) = arrays.split_at_mut(sb.max(db));
    let (src, dst) = if sb < db {
        (M::slice(&mut lo[sb]), M::slice(&mut hi[0]))
    } else {
        (M::slice(&mut hi[0]), M::slice(&mut lo[db]))
    };
    dst[d_o..d_o + len].copy_from_slice(&src[so..so + len]);
}
