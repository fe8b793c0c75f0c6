//! [`ReadPlan`]: the byte ranges a fetch will read from object stores, gathered before the
//! fetch is decoded so that they can be requested ahead of it.

use std::ops::Range;

use zarrs::storage::StoreKey;

use super::remote::RemoteStore;
pub(crate) use super::remote::Ticket;

/// Byte ranges of objects, by key.
type Ranges = Vec<(StoreKey, Range<u64>)>;

/// Byte ranges to read ahead, per object store.
#[derive(Default)]
pub(crate) struct ReadPlan {
    stores: Vec<(RemoteStore, Ranges)>,
}

impl ReadPlan {
    /// Adds `range` of the object at `key` of `store`.
    pub(crate) fn add(&mut self, store: &RemoteStore, key: StoreKey, range: Range<u64>) {
        let at = match self.stores.iter().position(|(s, _)| s.same(store)) {
            Some(at) => at,
            None => {
                self.stores.push((store.clone(), Vec::new()));
                self.stores.len() - 1
            }
        };
        self.stores[at].1.push((key, range));
    }

    /// Adds every range of `other`.
    pub(crate) fn merge(&mut self, other: ReadPlan) {
        for (store, ranges) in other.stores {
            for (key, range) in ranges {
                self.add(&store, key, range);
            }
        }
    }

    /// Starts every GET; the bytes live as long as the tickets.
    pub(crate) fn submit(self) -> Vec<Ticket> {
        self.stores
            .into_iter()
            .map(|(store, ranges)| store.read_ahead(ranges))
            .collect()
    }
}
