"""annbatch's `ClassSampler` (one class per batch) and `WeightedClassSampler` (batches mixing
classes by weight), with annbatch 0.3.1's semantics: chunks inside one run of one class, the
run-length rule, weights, masks, bookkeeping, and batches through the Loader."""

import math

import numpy as np
import pandas as pd
import pytest
from annbatch_rs import DatasetCollection, Loader
from annbatch_rs.samplers import ClassSampler, DistributedSampler, WeightedClassSampler

BOTH = pytest.mark.parametrize("cls", [ClassSampler, WeightedClassSampler],
                               ids=["coherent", "weighted"])


def make(codes, cls=ClassSampler, *, num_samples=1000, chunk_size=10, preload_nchunks=4,
         batch_size=10, seed=0, **kwargs):
    classes = codes if isinstance(codes, pd.Categorical) else pd.Categorical(codes)
    return cls(chunk_size, preload_nchunks, batch_size, classes=classes,
               num_samples=num_samples, rng=np.random.default_rng(seed), **kwargs)


def windows(sampler, codes):
    """Per request: the class of each fetched row, and of each batch's rows."""
    for request in sampler.sample(len(codes)):
        fetched = np.concatenate([codes[s] for s in request["requests"]])
        yield request, fetched, [fetched[split] for split in request["splits"]]


def shares(sampler, codes):
    drawn = np.concatenate([b for _, _, batches in windows(sampler, codes) for b in batches])
    values, counts = np.unique(drawn, return_counts=True)
    return dict(zip(values.tolist(), (counts / counts.sum()).tolist()))


@BOTH
@pytest.mark.parametrize("codes, kwargs, error, match", [
    ([0, 0, 1, 1, 2, 2], {}, ValueError, "at least chunk_size"),
    ([0] * 30 + [1] * 30 + [0] * 3, {}, ValueError, r"at least chunk_size.*\[0\]"),
    (np.repeat([0, 1], 50), {"num_samples": 0}, ValueError, "num_samples must be greater"),
    (np.repeat([0, 1], 50), {"class_weights": np.ones(3)}, ValueError, "one weight per class"),
    (np.repeat([0, 1], 50), {"class_weights": np.zeros(2)}, ValueError, "at least one positive"),
    (np.repeat([0, 1], 50), {"class_weights": pd.Series([9.0, 1.0], index=[1, 0])}, TypeError,
     "not a pandas Series"),
    (np.repeat([0, 1], 50), {"mask": slice(0, 500)}, ValueError, "exceeds loader n_obs"),
    (np.repeat([0, 1], 50), {"batch_size": 50}, ValueError, "batch_size cannot exceed"),
    (np.repeat([0, 1], 50), {"batch_size": 30}, ValueError, "must be divisible"),
])
def test_bad_settings_are_refused(cls, codes, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(codes, cls, **kwargs)


def test_classes_must_be_a_categorical_without_missing_values():
    with pytest.raises(TypeError, match="pandas.Categorical"):
        ClassSampler(10, 4, 10, classes=np.repeat([0, 1], 50), num_samples=10)
    na = pd.Categorical.from_codes([-1, 0, 0, 1, 1] * 20, categories=[0, 1])
    with pytest.raises(ValueError, match="NA values"):
        ClassSampler(10, 4, 10, classes=na, num_samples=10)


def test_the_run_length_error_names_the_labels():
    cat = pd.Categorical(["T"] * 30 + ["B"] * 3 + ["NK"] * 30)
    with pytest.raises(ValueError, match=r"classes \['B'\]"):
        make(cat)
    # A zero weight excludes the class, and its short run with it.
    make(cat, class_weights=np.array([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("chunk_size, batch_size, preload_nchunks",
                         [(10, 10, 4), (10, 5, 4), (20, 5, 3), (10, 20, 4), (9, 6, 4), (6, 5, 10)])
def test_every_batch_of_a_class_sampler_is_one_class(chunk_size, batch_size, preload_nchunks):
    codes = np.concatenate([np.repeat([0, 1, 2, 3], 250), np.repeat([3, 2, 1, 0], 250)])
    sampler = make(codes, num_samples=4000, chunk_size=chunk_size, batch_size=batch_size,
                   preload_nchunks=preload_nchunks)
    for request, _, batches in windows(sampler, codes):
        for chunk in request["requests"]:
            assert np.unique(codes[chunk]).size == 1 and chunk.stop - chunk.start <= chunk_size
        assert all(np.unique(b).size == 1 for b in batches)


def test_weighted_batches_mix_the_classes_of_their_fetch():
    codes = np.repeat([0, 1, 2, 3], 100)
    sampler = make(codes, WeightedClassSampler, num_samples=4000)
    mixed = [np.unique(b).size for _, _, batches in windows(sampler, codes) for b in batches]
    assert max(mixed) > 1


@BOTH
@pytest.mark.parametrize("codes, weights, expected", [
    (np.repeat([0, 1, 2, 3], 100), None, {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}),
    (np.repeat([0, 1, 2], 100), np.array([6.0, 3.0, 1.0]), {0: 0.6, 1: 0.3, 2: 0.1}),
    (np.repeat([0, 1, 2], 100), np.array([1.0, -1.0, 1.0]), {0: 0.5, 2: 0.5}),
])
def test_classes_are_drawn_by_weight(cls, codes, weights, expected):
    got = shares(make(codes, cls, num_samples=40_000, class_weights=weights), codes)
    assert set(got) == set(expected)
    for c, share in expected.items():
        assert abs(got[c] - share) < 0.02, (c, got[c], share)


@BOTH
def test_runs_are_drawn_in_proportion_to_their_chunk_starts(cls):
    codes = np.ones(480, dtype=np.int64)
    codes[0:400] = 0
    codes[440:480] = 0
    sampler = make(codes, cls, num_samples=200_000, class_weights=np.array([1.0, 0.0]))
    chunks = [c for r in sampler.sample(len(codes)) for c in r["requests"]]
    long_share = sum(c.start < 400 for c in chunks) / len(chunks)
    assert abs(long_share - 391 / (391 + 31)) < 0.01


@BOTH
@pytest.mark.parametrize("num_samples, batch_size, drop_last, expected",
                         [(100, 10, False, 10), (105, 10, False, 11), (105, 10, True, 10)])
def test_n_batches_is_what_a_pass_yields(cls, num_samples, batch_size, drop_last, expected):
    codes = np.repeat([0, 1], 100)
    sampler = make(codes, cls, num_samples=num_samples, preload_nchunks=2,
                   batch_size=batch_size, drop_last=drop_last)
    assert sampler.n_batches(200) == expected
    splits = [s for r in sampler.sample(200) for s in r["splits"]]
    assert len(splits) == expected
    rows = sum(s.size for s in splits)
    assert rows == (num_samples // batch_size * batch_size if drop_last else num_samples)
    assert sampler.shuffle is True
    with pytest.raises(ValueError, match="does not match loader n_obs"):
        sampler.validate(999)


@BOTH
def test_the_mask_restricts_renormalises_and_cannot_move_mid_pass(cls):
    codes = np.repeat([0, 1, 2], 100)
    sampler = make(codes, cls, num_samples=40_000, class_weights=np.array([3.0, 1.0, 6.0]))
    sampler.mask = slice(0, 200)
    got = shares(sampler, codes)
    assert abs(got[0] - 0.75) < 0.02 and abs(got[1] - 0.25) < 0.02 and 2 not in got
    passing = sampler.sample(len(codes))
    next(passing)
    sampler.mask = slice(0, 200)  # the same range: allowed
    with pytest.raises(ValueError, match="while a pass is being iterated"):
        sampler.mask = slice(100, 300)
    passing.close()
    sampler.mask = slice(200, 300)
    assert set(shares(sampler, codes)) == {2}
    with pytest.raises(ValueError, match="positive weight is present"):
        make(codes, cls, class_weights=np.array([1.0, 0.0, 0.0]), mask=slice(100, 300))


@BOTH
def test_ranks_draw_independently_and_rng_is_used(cls):
    codes = np.repeat([0, 1, 2, 3], 250)

    def starts(rank):
        sampler = make(codes, cls, num_samples=200, seed=7)
        dist = DistributedSampler(sampler, dist_info=lambda: (rank, 2))
        return [s.start - rank * 500 for r in dist.sample(len(codes)) for s in r["requests"]]

    assert starts(0) != starts(1)

    def reseeded(seed):
        sampler = make(codes, cls, num_samples=200)
        sampler.rng = np.random.default_rng(seed)
        return [s.start for r in sampler.sample(len(codes)) for s in r["requests"]]

    assert reseeded(1) != reseeded(2) and reseeded(1) == reseeded(1)


@BOTH
def test_the_loader_yields_class_coherent_or_mixed_batches(cls, tmp_path, annbatch_bin, data_dir):
    from conftest import run

    out = tmp_path / "sorted.zarr"
    run([annbatch_bin, "convert", "-q", data_dir / "pbmc68k_raw_csr.h5ad", "-o", out,
         "--groupby", "cell_type", "--shuffle-chunk-size", "100000", "--seed", "1"])
    collection = DatasetCollection(out)
    classes = collection.obs(columns=["cell_type"])["cell_type"].values
    run_lengths = np.diff(np.flatnonzero(np.diff(classes.codes, prepend=-2, append=-2)))
    chunk = int(min(8, run_lengths.min()))
    sampler = cls(chunk, 8, chunk * 2, classes=classes, num_samples=800,
                  rng=np.random.default_rng(0))
    loader = Loader(batch_sampler=sampler, obs_keys=["cell_type"], to=None,
                    return_index=True).use_collection(collection)
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(800 / (chunk * 2))
    codes = np.asarray(classes.codes)
    n_labels = [np.unique(codes[np.asarray(b["index"])]).size for b in batches]
    if cls is ClassSampler:
        assert set(n_labels) == {1}
    else:
        assert max(n_labels) > 1
    # Each pass draws anew.
    again = [np.asarray(b["index"]).tolist() for b in loader]
    assert again != [np.asarray(b["index"]).tolist() for b in batches]
