"""Hostile and careless input from Python: every case an exception `except Exception` catches,
naming the parameter or file: never a PanicException, an OverflowError or a crashed interpreter."""

import os
import pathlib
import shutil

import pytest

torch = pytest.importorskip("torch")
annbatch_rs = pytest.importorskip("annbatch_rs")
from annbatch_rs import AnnbatchError, Loader, _native

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
COLLECTION = DATA / "annbatch_collection.zarr"
SETTINGS = dict(batch_size=10, chunk_size=5, preload_nchunks=4)


def test_a_panic_in_native_code_is_an_annbatch_error():
    with pytest.raises(AnnbatchError, match="internal error.*panic: boom"):
        _native._panic("boom")
    assert issubclass(AnnbatchError, Exception)  # `except Exception` catches it


def test_negative_and_zero_integers_name_their_parameter():
    collection = _native.Collection(str(COLLECTION))
    with pytest.raises(ValueError, match="rank = -1: must be 0 or more"):
        _native.Loader(collection, rank=-1, world_size=2)
    with pytest.raises(ValueError, match="world_size = -2: must be 0 or more"):
        _native.Loader(collection, world_size=-2)
    with pytest.raises(ValueError, match="world_size = 0: must be positive"):
        _native.Loader(collection, world_size=0)
    with pytest.raises(ValueError, match="seed = -5: must be 0 or more"):
        _native.Loader(collection, seed=-5)
    with pytest.raises(ValueError, match="n_obs_per_chunk = -1: must be positive"):
        _native.convert("unused.zarr", [str(DATA / "pbmc68k_raw_csr.h5ad")], n_obs_per_chunk=-1)

def test_huge_settings_are_capped_not_allocated():
    # 10**9 chunks per fetch would be terabytes if allocated: capped by what one epoch holds.
    ds = Loader(to="torch", batch_size=10, chunk_size=5,
                preload_nchunks=10**9).use_collection(COLLECTION)
    assert next(iter(ds))["X"].shape[0] == 10
    with pytest.raises(ValueError, match="num_threads"):
        _native.Loader(_native.Collection(str(COLLECTION)), num_threads=10**6)


def test_a_distributed_world_of_size_zero_is_refused():
    from annbatch_rs.samplers import DistributedSampler, SequentialSampler

    sampler = DistributedSampler(SequentialSampler(**SETTINGS), dist_info=lambda: (0, 0))
    with pytest.raises(ValueError, match="world_size = 0"):
        len(Loader(to="torch", batch_sampler=sampler).use_collection(COLLECTION))


def test_an_h5ad_given_as_a_collection_is_read_as_it_is():
    loader = Loader(to="torch", **SETTINGS).use_collection(DATA / "pbmc68k_raw_csr.h5ad")
    assert loader.n_obs == 700
    with pytest.raises(ValueError, match="load_adata"):
        Loader(to="torch", **SETTINGS).use_collection([DATA / "pbmc68k_raw_csr.h5ad"],
                                                      load_adata=lambda g: g)


def test_damaged_collections_are_errors_not_zeros(tmp_path):
    broken = tmp_path / "c.zarr"
    shutil.copytree(COLLECTION, broken)
    shards = sorted((broken / "dataset_1" / "X" / "data" / "c").iterdir())
    os.remove(shards[0])
    with pytest.raises(AnnbatchError, match="missing"):
        list(Loader(to="torch", **SETTINGS).use_collection(broken))
    stray = os.fsencode(broken) + b"/dataset_\xff"
    os.mkdir(stray)
    with pytest.raises(OSError, match="UTF-8"):
        len(Loader(to="torch", **SETTINGS).use_collection(broken))
