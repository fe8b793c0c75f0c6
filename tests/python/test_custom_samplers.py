"""Samplers in Python (annbatch's `abc.Sampler` interface) driving the Rust pipeline: custom
samplers, subclasses overriding `_sample`, and the built-ins' Python-only settings (mask,
replacement, num_samples)."""

import importlib.util
import pathlib
import sys

import anndata as ad
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from annbatch_rs import DatasetCollection, Loader
from annbatch_rs.abc import Sampler
from annbatch_rs.samplers import RandomSampler, SequentialSampler

COLLECTION = DatasetCollection(pathlib.Path(__file__).resolve().parents[1] / "data"
                               / "annbatch_collection.zarr")
N_OBS = 700


def rows(sampler) -> list:
    loader = Loader(batch_sampler=sampler, return_index=True).use_collection(COLLECTION)
    return [b["index"].tolist() for b in loader]


class EveryOther(Sampler):
    """Even rows by slices of one row, then odd rows as an index array, two batches each."""

    batch_size = 5
    shuffle = False

    def n_batches(self, n_obs):
        return 4

    def validate(self, n_obs):
        if n_obs < 20:
            raise ValueError("too few rows")

    def _sample(self, n_obs):
        # An object array of slices, as annbatch's own samplers make them.
        even = np.empty(10, dtype=object)
        even[:] = [slice(i, i + 1) for i in range(0, 20, 2)]
        yield {"requests": even, "splits": [np.arange(5), np.arange(5, 10)[::-1]]}
        yield {"requests": np.arange(1, 20, 2)}  # splits made by Sampler.sample


def test_a_custom_sampler_yields_exactly_its_requests():
    got = rows(EveryOther())
    assert got == [[0, 2, 4, 6, 8], [18, 16, 14, 12, 10], [1, 3, 5, 7, 9], [11, 13, 15, 17, 19]]


def test_a_custom_sampler_reads_the_same_values_as_the_rows():
    loader = Loader(batch_sampler=EveryOther(), return_index=True, to="torch")
    loader.use_collection(COLLECTION)
    plain = Loader(batch_size=N_OBS, chunk_size=N_OBS, preload_nchunks=1, to="torch")
    whole = next(iter(plain.use_collection(COLLECTION)))["X"].to_dense()
    for batch in loader:
        assert torch.equal(batch["X"].to_dense(), whole[torch.as_tensor(batch["index"])])


def test_a_subclass_overriding_sample_runs_its_override():
    class Backwards(SequentialSampler):
        def _sample(self, n_obs):
            yield {"requests": [slice(n_obs - 10, n_obs)], "splits": [np.arange(9, -1, -1)]}

        def n_batches(self, n_obs):
            return 1

    assert rows(Backwards(10, 1, 10)) == [list(range(N_OBS - 1, N_OBS - 11, -1))]


def test_a_samplers_exception_reaches_python_unchanged():
    class Fails(EveryOther):
        def _sample(self, n_obs):
            yield {"requests": [slice(0, 5)], "splits": [np.arange(5)]}
            raise KeyError("no more")

    loader = Loader(batch_sampler=Fails()).use_collection(COLLECTION)
    with pytest.raises(KeyError, match="no more"):
        list(loader)
    with pytest.raises(ValueError, match="too few rows"):
        list(Loader(batch_sampler=EveryOther()).add_adata(_small()))


def _small():
    import anndata as ad
    import scipy.sparse as sp

    return ad.AnnData(X=sp.random(10, 4, density=0.5, format="csr", dtype=np.float32))


@pytest.mark.parametrize("bad", [
    {"requests": [slice(0, N_OBS + 5)], "splits": [np.arange(3)]},
    {"requests": [slice(0, 5)], "splits": [np.arange(6)]},
    {"requests": [slice(0, 5, 2)], "splits": [np.arange(2)]},
    {"requests": [slice(0, 5)], "splits": [np.array([-1])]},
    {"requests": np.array([0.5, 1.5]), "splits": [np.arange(2)]},
    "not a request",
])
def test_bad_requests_are_errors(bad):
    class Bad(EveryOther):
        def _sample(self, n_obs):
            yield bad

    with pytest.raises((ValueError, TypeError)):
        list(Loader(batch_sampler=Bad()).use_collection(COLLECTION))


def test_mask_keeps_rows_inside_it():
    got = np.concatenate(rows(SequentialSampler(16, 2, 8, mask=slice(100, 250))))
    assert got.tolist() == list(range(100, 250))
    got = np.concatenate(rows(RandomSampler(16, 2, 8, mask=slice(100, 250), seed=1)))
    assert sorted(got.tolist()) == list(range(100, 250))


def test_a_python_path_sampler_is_shared_by_dataloader_workers():
    sampler = RandomSampler(16, 2, 8, mask=slice(100, 250), seed=4)
    loader = Loader(batch_sampler=sampler, return_index=True).use_collection(COLLECTION)
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2,
                                     multiprocessing_context="spawn")
    got = np.concatenate([np.asarray(b["index"]) for b in dl])
    assert sorted(got.tolist()) == list(range(100, 250))


def test_replacement_and_num_samples():
    sampler = RandomSampler(16, 2, 8, replacement=True, num_samples=333, seed=3)
    batches = rows(sampler)
    assert len(batches) == sampler.n_batches(N_OBS) == 42
    assert sum(map(len, batches)) == 333
    sampler = RandomSampler(16, 2, 8, num_samples=200, seed=3)
    got = np.concatenate(rows(sampler))
    assert len(got) == 200 and len(set(got.tolist())) == 200
    with pytest.raises(ValueError, match="cannot exceed"):
        rows(RandomSampler(16, 2, 8, num_samples=N_OBS + 1))


def test_sample_previews_requests():
    requests = list(SequentialSampler(100, 2, 50).sample(N_OBS))
    assert [r["requests"] for r in requests][0] == [slice(0, 100), slice(100, 200)]
    assert sum(len(s) for r in requests for s in r["splits"]) == N_OBS


def test_rng_seeds_deterministically():
    a = rows(RandomSampler(16, 2, 8, rng=np.random.default_rng(5)))
    b = rows(RandomSampler(16, 2, 8, rng=np.random.default_rng(5)))
    assert sorted(sum(a, [])) == list(range(N_OBS))
    assert a == b
    first = [b["index"].tolist() for b in Loader(shuffle=True, batch_size=8, chunk_size=16,
                               preload_nchunks=2,
             return_index=True, rng=np.random.default_rng(5)).use_collection(COLLECTION)]
    again = [b["index"].tolist() for b in Loader(shuffle=True, batch_size=8, chunk_size=16,
                               preload_nchunks=2,
             return_index=True, rng=np.random.default_rng(5)).use_collection(COLLECTION)]
    assert first == again
    with pytest.raises(ValueError):
        Loader(rng=np.random.default_rng(), seed=1)


def test_outputs_as_annbatch():
    import scipy.sparse as sp

    loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    loader.use_collection(COLLECTION)
    assert isinstance(loader.batch_sampler, SequentialSampler)
    assert loader.var.index.tolist() == COLLECTION_VAR_NAMES()
    batch = next(iter(loader))
    assert set(batch) == {"X", "obs", "var", "index"}
    assert isinstance(batch["X"], sp.csr_matrix) and batch["X"].dtype == np.float32
    assert isinstance(batch["index"], np.ndarray) and batch["index"].tolist() == list(range(64))
    torch_loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4, to="torch")
    x = next(iter(torch_loader.use_collection(COLLECTION)))["X"]
    assert np.array_equal(batch["X"].toarray(), x.to_dense().numpy())
    # Views of the loader's memory, not copies.
    assert all(a.base is not None for a in (batch["X"].data, batch["X"].indices))
    import anndata as ad

    assert issubclass(loader.dataset_type, ad.abc.CSRDataset)
    with pytest.raises(ValueError):
        Loader(to="tensorflow")
    if importlib.util.find_spec("jax") is None:
        with pytest.raises(ImportError, match="jax"):
            Loader(to="jax")



def test_dataset_type_without_anndata_is_a_marker(monkeypatch):
    """Without anndata (an optional dependency) `dataset_type` names our marker type."""
    from annbatch_rs import types

    loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4).use_collection(COLLECTION)
    dense = Loader(batch_size=64, chunk_size=16, preload_nchunks=4).use_collection(
        pathlib.Path(__file__).resolve().parents[1] / "data" / "annbatch_dense_collection.zarr")
    monkeypatch.setitem(sys.modules, "anndata", None)  # `import anndata` raises ImportError
    monkeypatch.setitem(sys.modules, "zarr", None)
    assert loader.dataset_type is types.CSRDataset
    assert dense.dataset_type is types.DenseArray


def COLLECTION_VAR_NAMES():
    import anndata as ad
    import zarr

    group = zarr.open_group(str(COLLECTION.path), mode="r")
    return ad.io.read_elem(group["dataset_0/var"]).index.tolist()


def test_a_custom_load_adata_is_run_not_ignored():
    called = []

    def load_x_only(group):
        called.append(group.basename)
        return ad.AnnData(X=ad.io.sparse_dataset(group["X"]))

    loader = Loader(batch_size=64).use_collection(COLLECTION, load_adata=load_x_only)
    assert called == ["dataset_0", "dataset_1", "dataset_2"]
    assert next(iter(loader))["obs"] is None  # the function kept no obs columns


@pytest.mark.parametrize("request_, error", [
    ({"requests": [slice(0.5, 32.7)], "splits": [np.arange(5)]}, "integer slice bounds"),
    ({"requests": [slice(0, 10)], "splits": [np.arange(5) + 0.5]}, "integer positions"),
    ({"requests": [slice(0, 10)], "splits": [np.array([0.0, 1.0, 2.0])]}, "integer positions"),
])
def test_float_bounds_and_splits_are_refused_not_truncated(request_, error):
    class Floats(EveryOther):
        def n_batches(self, n_obs):
            return 1

        def _sample(self, n_obs):
            yield dict(request_)

    with pytest.raises(TypeError, match=error):
        rows(Floats())


@pytest.mark.parametrize("n, error", [(-1, ValueError), (10**30, ValueError),
                                      ("3", TypeError), (None, TypeError), (3.0, TypeError),
                                      (True, TypeError)])
def test_n_batches_of_a_wrong_type_or_size_is_refused(n, error):
    class Odd(EveryOther):
        def n_batches(self, n_obs):
            return n

    loader = Loader(batch_sampler=Odd(), return_index=True).use_collection(COLLECTION)
    with pytest.raises(error, match="n_batches"):
        len(loader)
    with pytest.raises(error, match="n_batches"):
        list(loader)


class Slow(SequentialSampler):
    """annbatch's sequential requests, each after `pause` seconds (forever: a sampler stuck)."""

    def __init__(self, pause, **kwargs):
        super().__init__(**kwargs)
        self.pause = pause

    def _sample(self, n_obs):
        import time

        for request in super()._sample(n_obs):
            time.sleep(self.pause)
            yield request


def test_leaving_an_epoch_of_a_python_sampler_returns_at_once():
    # The producer waits for the GIL to call the sampler: stopping it with the GIL held never
    # ended (a loop broken early, Lightning's limit_train_batches).
    import time

    loader = Loader(batch_sampler=Slow(0.2, batch_size=8, chunk_size=8, preload_nchunks=1),
                    return_index=True).use_collection(COLLECTION)
    it = iter(loader)
    next(it), next(it)
    started = time.monotonic()
    it.close()
    assert time.monotonic() - started < 2
    assert len(rows(SequentialSampler(batch_size=100, chunk_size=100, preload_nchunks=1))) == 7


def test_ctrl_c_interrupts_a_loop_whose_sampler_blocks():
    import signal
    import subprocess
    import sys
    import time

    here = str(pathlib.Path(__file__).parent)
    code = (
        f"import sys, time; sys.path.insert(0, {here!r})\n"
        "from test_custom_samplers import Slow, COLLECTION, Loader\n"
        "loader = Loader(batch_sampler=Slow(1e6, batch_size=8, chunk_size=8, preload_nchunks=1))"
        ".use_collection(COLLECTION)\n"
        "print('iterating', flush=True)\n"
        "try:\n"
        "    next(iter(loader))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "iterating"
    time.sleep(1.0)
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 3 and "interrupted" in out
    assert time.monotonic() - started < 10


class Reentrant(SequentialSampler):
    """A sampler that reads batches of a loader while deciding its rows."""

    def _sample(self, n_obs):
        inner = Loader(batch_size=8, chunk_size=8, preload_nchunks=1).use_collection(COLLECTION)
        for request in super()._sample(n_obs):
            next(iter(inner))
            yield request


def test_a_sampler_that_iterates_a_loader_is_refused():
    import threading

    before = threading.active_count()
    loader = Loader(batch_sampler=Reentrant(batch_size=8, chunk_size=8, preload_nchunks=1)
                    ).use_collection(COLLECTION)
    with pytest.raises(RuntimeError, match="iterates a Loader"):
        list(loader)
    assert threading.active_count() <= before + 2
