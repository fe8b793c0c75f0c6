//! Elastic sharding: the global batch order of an epoch is a function of (seed, epoch) alone,
//! ranks take disjoint runs of it, and a state saved on N ranks resumes on M exactly.

use crate::common;

use std::collections::HashSet;

use annbatch::{Loader, LoaderState};

/// Each batch's global row ids.
fn batches(loader: &Loader, epoch: u64, take: usize) -> Vec<Vec<i64>> {
    loader
        .host_epoch(epoch)
        .expect("epoch")
        .take(take)
        .map(|b| b.expect("batch").index.expect("row ids"))
        .collect()
}

fn loader(dir: &std::path::Path, rank: u64, world: u64, equal: bool) -> annbatch::LoaderBuilder {
    Loader::builder(dir.join("c.zarr"))
        .batch_size(16)
        .chunk_size(8)
        .preload_nchunks(6)
        .shuffle(true)
        .seed(7)
        .return_index(true)
        .elastic(true)
        .equal_batches(equal)
        .shard(rank, world)
}

#[test]
fn the_global_order_does_not_depend_on_the_world_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::small_collection(dir.path());
    for epoch in [0, 1] {
        let mut orders = Vec::new();
        for world in 1..=3 {
            let mut all = Vec::new();
            let mut seen = HashSet::new();
            for rank in 0..world {
                let l = loader(dir.path(), rank, world, false)
                    .build()
                    .expect("loader");
                let mine = batches(&l, epoch, usize::MAX);
                assert_eq!(mine.len() as u64, l.len(), "rank {rank} of {world}");
                for b in &mine {
                    for &row in b {
                        assert!(seen.insert(row), "row {row} twice with {world} ranks");
                    }
                }
                all.extend(mine);
            }
            assert_eq!(seen.len(), 1000, "{world} ranks cover every row");
            orders.push(all);
        }
        assert_eq!(orders[0], orders[1], "1 rank and 2 ranks, epoch {epoch}");
        assert_eq!(orders[0], orders[2], "1 rank and 3 ranks, epoch {epoch}");
    }
    // Equal shards: the same order, the last few batches (fewer than the ranks) left out.
    let one = batches(
        &loader(dir.path(), 0, 1, true).build().expect("loader"),
        0,
        usize::MAX,
    );
    let mut three = Vec::new();
    for rank in 0..3 {
        let l = loader(dir.path(), rank, 3, true).build().expect("loader");
        three.extend(batches(&l, 0, usize::MAX));
    }
    assert_eq!(three.len(), one.len() / 3 * 3);
    assert_eq!(three[..], one[..three.len()]);
}

#[test]
fn a_state_saved_on_two_ranks_resumes_on_three_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::small_collection(dir.path());
    let epoch = 2;
    let full = batches(
        &loader(dir.path(), 0, 1, false).build().expect("loader"),
        epoch,
        usize::MAX,
    );
    for equal in [false, true] {
        // Two ranks in lockstep deliver 9 batches each, then stop.
        let delivered = 9;
        let mut before = Vec::new();
        let mut state = None;
        for rank in 0..2 {
            let l = loader(dir.path(), rank, 2, equal).build().expect("loader");
            before.extend(batches(&l, epoch, delivered));
            state = Some(
                l.elastic_state(LoaderState {
                    epoch,
                    batches: delivered as u64,
                })
                .expect("state"),
            );
        }
        let state = state.expect("a state");
        // Three ranks take over.
        let mut after = Vec::new();
        for rank in 0..3 {
            let l = loader(dir.path(), rank, 3, equal)
                .elastic_resume(state.clone())
                .build()
                .expect("resumed loader");
            after.extend(batches(&l, epoch, usize::MAX));
        }
        let mut rows: Vec<i64> = before.iter().chain(&after).flatten().copied().collect();
        let n = rows.len();
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(rows.len(), n, "equal {equal}: a row delivered twice");
        let mut got: Vec<&Vec<i64>> = before.iter().chain(&after).collect();
        let mut want: Vec<&Vec<i64>> = full.iter().collect();
        if equal {
            // Only the last batches of the epoch (fewer than the ranks) may be missing.
            assert!(
                full.len() - got.len() < 3,
                "equal: {} of {}",
                got.len(),
                full.len()
            );
            want.retain(|b| got.contains(b));
        }
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "equal {equal}: the same batches as one rank's epoch"
        );
    }
}

#[test]
fn an_elastic_state_of_other_settings_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::small_collection(dir.path());
    let bad = annbatch::sampler::ElasticState {
        epoch: 0,
        remaining: vec![0..1_000_000],
    };
    let err = loader(dir.path(), 0, 1, true)
        .elastic_resume(bad)
        .build()
        .and_then(|l| l.host_epoch(0).map(|_| ()))
        .expect_err("ids past the epoch");
    assert!(
        matches!(err, annbatch::Error::InvalidParameter { .. }),
        "{err}"
    );
    let plain = Loader::builder(dir.path().join("c.zarr"))
        .build()
        .expect("loader");
    assert!(plain
        .elastic_state(LoaderState {
            epoch: 0,
            batches: 0
        })
        .is_err());
}
