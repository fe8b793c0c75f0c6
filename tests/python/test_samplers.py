"""annbatch_rs.samplers through Loader(batch_sampler=...): the same batches as the equivalent
Loader settings, distributed shards, class-balanced batches, and parameter errors."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from annbatch_rs import DatasetCollection, Loader
from annbatch_rs.samplers import (
    DistributedSampler,
    MixedClassSampler,
    RandomSampler,
    SequentialSampler,
)

COLLECTION = DatasetCollection(pathlib.Path(__file__).resolve().parents[1] / "data"
                               / "annbatch_collection.zarr")


def rows(loader) -> list:
    return [b["index"].tolist() for b in loader]


def with_sampler(sampler, **kwargs) -> Loader:
    return Loader(to="torch", batch_sampler=sampler, return_index=True,
                  **kwargs).use_collection(COLLECTION)


def test_sequential_and_random_samplers_match_the_loader_settings():
    plain = Loader(to="torch", batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    expected = rows(plain.use_collection(COLLECTION))
    assert rows(with_sampler(SequentialSampler(16, 4, 64))) == expected
    shuffled = Loader(to="torch", batch_size=64, chunk_size=16, preload_nchunks=4, shuffle=True,
                      seed=3,
                      return_index=True).use_collection(COLLECTION)
    assert rows(with_sampler(RandomSampler(16, 4, 64, seed=3))) == rows(shuffled)


def test_distributed_sampler_shards_are_disjoint_and_equal():
    shards = [
        [i for b in rows(with_sampler(DistributedSampler(RandomSampler(35, 2, 35, seed=1),
                                                         dist_info=lambda r=r: (r, 2))))
         for i in b]
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 350
    assert sorted(shards[0] + shards[1]) == list(range(700))


def test_class_sampler_balances_classes():
    classes = COLLECTION.obs(columns=["cell_type"])["cell_type"].values
    sampler = MixedClassSampler(8, 8, 64, classes=classes, num_samples=6400, seed=2)
    counts = np.zeros(len(classes.categories))
    codes = np.asarray(classes.codes)
    for batch in rows(with_sampler(sampler)):
        np.add.at(counts, codes[batch], 1)
    assert counts.sum() == 6400
    present = counts[np.bincount(codes, minlength=len(counts)) > 0]
    share = present / present.sum()
    assert np.all(np.abs(share - 1 / len(present)) < 0.05), share
    # Weighted: one class twice as often as each other one.
    weights = np.ones(len(classes.categories))
    weights[0] = 2.0
    weighted = MixedClassSampler(8, 8, 64, classes=classes, class_weights=weights,
                                 num_samples=6400, seed=2)
    counts[:] = 0
    for batch in rows(with_sampler(weighted)):
        np.add.at(counts, codes[batch], 1)
    assert counts[0] > 1.5 * np.median(counts[1:][counts[1:] > 0])


def test_sampler_parameter_errors():
    with pytest.raises(ValueError):
        Loader(to="torch", batch_sampler=RandomSampler(16, 4, 64), batch_size=64)
    with pytest.raises(TypeError):
        Loader(to="torch", batch_sampler=object())
    with pytest.raises(ValueError):
        RandomSampler(0, 4, 64)
    with pytest.raises(ValueError):
        SequentialSampler(16, 4, 64, mask=slice(10, 5))
    with pytest.raises(TypeError):
        MixedClassSampler(16, 4, 64, classes=[0, 1, 2])


def test_class_sampler_is_sharded_over_dataloader_workers():
    classes = COLLECTION.obs(columns=["cell_type"])["cell_type"].values
    sampler = MixedClassSampler(8, 8, 64, classes=classes, num_samples=6400, seed=2)
    dl = torch.utils.data.DataLoader(with_sampler(sampler), batch_size=None, num_workers=2,
                                     multiprocessing_context="spawn")
    batches = rows(dl)
    # Each worker draws half the epoch from its own stream: 50 batches each, none repeated.
    assert len(batches) == 100 and sum(map(len, batches)) == 6400
    assert batches[0::2] != batches[1::2]
    codes = np.asarray(classes.codes)
    counts = np.bincount(codes[np.concatenate(batches)], minlength=len(classes.categories))
    present = counts[np.bincount(codes, minlength=len(counts)) > 0]
    assert np.all(np.abs(present / present.sum() - 1 / len(present)) < 0.05)


def test_class_sampler_mask_and_preview():
    """annbatch's mask (scvi-tools splits train / validation with it) and sample(n_obs)."""
    classes = COLLECTION.obs(columns=["cell_type"])["cell_type"].values
    sampler = MixedClassSampler(8, 8, 64, classes=classes, num_samples=640, mask=slice(100, 400),
                           rng=np.random.default_rng(5))
    drawn = np.concatenate(rows(with_sampler(sampler)))
    assert len(drawn) == 640 and drawn.min() >= 100 and drawn.max() < 400
    preview = list(sampler.sample(len(classes)))
    ranges = [(s.start, s.stop) for r in preview for s in r["requests"]]
    assert sum(b - a for a, b in ranges) == 640
    assert all(100 <= a < b <= 400 for a, b in ranges)
    assert sum(len(s) for r in preview for s in r["splits"]) == 640
    with pytest.raises(ValueError, match="rows"):
        list(sampler.sample(len(classes) + 1))
