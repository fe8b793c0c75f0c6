//! One fetch: the rows of a [`LoadRequest`] read into a reusable buffer.
//!
//! Rows are read grouped by dataset (each dataset's pieces in one request, so its chunks are
//! decoded once and in parallel), not in request order; `order` maps each row's position in
//! request order (what a [`LoadRequest`]'s `splits` index) to its row in the buffer, so no
//! reordering copy is ever made.

use crate::batch::XBatch;
use crate::collection::DatasetCollection;
use crate::error::Result;
use crate::sampler::LoadRequest;

/// The rows of one load request, in a buffer reused from fetch to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// The fetched rows, grouped by dataset.
    pub x: XBatch,
    /// Global row id of each row, in request order.
    pub rows: Vec<u64>,
    /// Buffer row of each row, in request order.
    pub order: Vec<usize>,
}

impl Fetch {
    /// An empty fetch buffer for `collection`.
    pub fn new(collection: &DatasetCollection) -> Self {
        Self {
            x: collection.new_batch(),
            rows: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Replaces the contents with the rows of `request` (keeping the allocations).
    pub fn read(&mut self, collection: &DatasetCollection, request: &LoadRequest) -> Result<()> {
        self.x.clear();
        self.rows.clear();
        self.order.clear();
        // (dataset, local range, position in request order)
        let mut pieces = Vec::with_capacity(request.requests.len());
        let mut position = 0usize;
        for range in &request.requests {
            self.rows.extend(range.clone());
            for (dataset, local) in collection.split(range.clone())? {
                let len = (local.end - local.start) as usize;
                pieces.push((dataset, local, position));
                position += len;
            }
        }
        pieces.sort_by_key(|p| p.0);
        self.order.resize(position, 0);
        let mut buffer_row = 0usize;
        let mut ranges = Vec::new();
        for group in pieces.chunk_by(|a, b| a.0 == b.0) {
            ranges.clear();
            for (_, local, position) in group {
                let len = (local.end - local.start) as usize;
                for (i, slot) in self.order[*position..position + len].iter_mut().enumerate() {
                    *slot = buffer_row + i;
                }
                buffer_row += len;
                ranges.push(local.clone());
            }
            collection.datasets()[group[0].0]
                .x()
                .append_rows(&ranges, &mut self.x)?;
        }
        Ok(())
    }

    /// Number of fetched rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }
}
