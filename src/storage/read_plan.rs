//! [`ReadPlan`]: the byte ranges a fetch will read from object stores, or from local files
//! read with `O_DIRECT`, gathered before the fetch is decoded so that they can be requested
//! ahead of it.

use std::ops::Range;

use zarrs::storage::StoreKey;

use super::files::FileStore;
#[cfg(feature = "remote")]
use super::remote::RemoteStore;

/// Byte ranges of objects, by key.
type Ranges = Vec<(StoreKey, Range<u64>)>;

/// What holds one store's read-ahead bytes (dropping it frees them): GETs to an object store,
/// or direct reads of local files.
pub(crate) type Ticket = Box<dyn Send>;

/// Byte ranges to read ahead, per store.
#[derive(Default)]
pub(crate) struct ReadPlan {
    #[cfg(feature = "remote")]
    remote: Vec<(RemoteStore, Ranges)>,
    files: Vec<(FileStore, Ranges)>,
}

impl ReadPlan {
    /// Adds `range` of the object at `key` of `store`.
    #[cfg(feature = "remote")]
    pub(crate) fn add(&mut self, store: &RemoteStore, key: StoreKey, range: Range<u64>) {
        ranges_of(&mut self.remote, store, RemoteStore::same).push((key, range));
    }

    /// Adds `range` of the file at `key` of the direct-reading local `store`.
    pub(crate) fn add_file(&mut self, store: &FileStore, key: StoreKey, range: Range<u64>) {
        ranges_of(&mut self.files, store, FileStore::same).push((key, range));
    }

    /// Adds every range of `other`.
    pub(crate) fn merge(&mut self, other: ReadPlan) {
        #[cfg(feature = "remote")]
        for (store, ranges) in other.remote {
            for (key, range) in ranges {
                self.add(&store, key, range);
            }
        }
        for (store, ranges) in other.files {
            for (key, range) in ranges {
                self.add_file(&store, key, range);
            }
        }
    }

    /// Starts every read; the bytes live as long as the tickets.
    pub(crate) fn submit(self) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        #[cfg(feature = "remote")]
        tickets.extend(
            self.remote
                .into_iter()
                .map(|(store, ranges)| Box::new(store.read_ahead(ranges)) as Ticket),
        );
        tickets.extend(
            self.files
                .into_iter()
                .map(|(store, ranges)| Box::new(store.read_ahead(ranges)) as Ticket),
        );
        tickets
    }
}

/// The ranges kept for `store` in `stores` (added, empty, when it has none yet).
fn ranges_of<'a, S: Clone>(
    stores: &'a mut Vec<(S, Ranges)>,
    store: &S,
    same: impl Fn(&S, &S) -> bool,
) -> &'a mut Ranges {
    let at = match stores.iter().position(|(s, _)| same(s, store)) {
        Some(at) => at,
        None => {
            stores.push((store.clone(), Vec::new()));
            stores.len() - 1
        }
    };
    &mut stores[at].1
}
