//! Which input rows go to which output dataset: annbatch's block shuffle.
//!
//! Rows are cut into blocks of `shuffle_chunk_size` contiguous rows; the blocks are shuffled and
//! dealt out, `dataset_size / shuffle_chunk_size` per new dataset (or split evenly across the
//! existing datasets when appending). Each dataset's blocks are then read in row order and its
//! rows permuted in memory, so memory is bounded by one dataset.

use std::ops::Range;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The row ranges (in increasing order) of each output dataset, for a new collection.
///
/// Unlike annbatch, `dataset_size < 2 * shuffle_chunk_size` gives one block per dataset rather
/// than one dataset holding every row.
pub(crate) fn new_datasets(
    n_obs: u64,
    shuffle_chunk_size: u64,
    dataset_size: u64,
    shuffle: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<Range<u64>>> {
    let blocks = blocks(n_obs, shuffle_chunk_size, shuffle, rng);
    if n_obs <= dataset_size {
        return vec![sorted(blocks)];
    }
    let per_dataset = (dataset_size / shuffle_chunk_size).max(1) as usize;
    blocks
        .chunks(per_dataset)
        .map(|c| sorted(c.to_vec()))
        .collect()
}

/// The new rows (ranges in increasing order) each of `n_datasets` existing datasets receives,
/// as `numpy.array_split` deals the shuffled blocks: the first `len % n` get one block more.
pub(crate) fn appended_rows(
    n_obs: u64,
    shuffle_chunk_size: u64,
    n_datasets: usize,
    shuffle: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<Range<u64>>> {
    let blocks = blocks(n_obs, shuffle_chunk_size, shuffle, rng);
    let n = n_datasets.max(1);
    let (base, extra) = (blocks.len() / n, blocks.len() % n);
    let mut rest = blocks.as_slice();
    (0..n)
        .map(|i| {
            let (take, tail) = rest.split_at(base + usize::from(i < extra));
            rest = tail;
            sorted(take.to_vec())
        })
        .collect()
}

/// `0..n_obs` cut into runs of `size` rows, shuffled if asked.
fn blocks(n_obs: u64, size: u64, shuffle: bool, rng: &mut ChaCha8Rng) -> Vec<Range<u64>> {
    let size = size.max(1);
    let mut blocks: Vec<Range<u64>> = (0..n_obs.div_ceil(size))
        .map(|i| i * size..((i + 1) * size).min(n_obs))
        .collect();
    if shuffle {
        blocks.shuffle(rng);
    }
    blocks
}

fn sorted(mut blocks: Vec<Range<u64>>) -> Vec<Range<u64>> {
    blocks.sort_by_key(|r| r.start);
    blocks
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rows(plan: &[Vec<Range<u64>>]) -> Vec<u64> {
        let mut all: Vec<u64> = plan.iter().flatten().flat_map(|r| r.clone()).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn every_row_lands_in_exactly_one_dataset() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let plan = new_datasets(10_050, 100, 3_000, true, &mut rng);
        assert_eq!(plan.len(), 4);
        assert_eq!(rows(&plan), (0..10_050).collect::<Vec<_>>());
        assert!(plan[..3]
            .iter()
            .all(|d| d.iter().map(|r| r.end - r.start).sum::<u64>() == 3_000));
        let unshuffled = new_datasets(1_000, 100, 500, false, &mut rng);
        assert_eq!(
            unshuffled[0],
            (0..5).map(|i| i * 100..i * 100 + 100).collect::<Vec<_>>()
        );
        assert_eq!(new_datasets(1_000, 100, 100, true, &mut rng).len(), 10);
    }

    #[test]
    fn appended_rows_split_like_array_split() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plan = appended_rows(1_050, 100, 3, true, &mut rng);
        let sizes: Vec<usize> = plan.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 4, 3]);
        assert_eq!(rows(&plan), (0..1_050).collect::<Vec<_>>());
        assert_eq!(appended_rows(150, 100, 3, true, &mut rng)[2].len(), 0);
    }
}
