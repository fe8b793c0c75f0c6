"""annbatch_rs.Loader: zero-copy tensors, annbatch parity, DataLoader workers (spawn and fork),
resume, errors, and imports beside any torch (or none)."""

import json
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
annbatch_rs = pytest.importorskip("annbatch_rs")
from annbatch_rs import AnnbatchError, DatasetCollection, Loader, _native

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
COLLECTION = DATA / "annbatch_collection.zarr"


def loader(**kwargs) -> Loader:
    params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    params.update(kwargs)
    return Loader(to="torch", **params).use_collection(DatasetCollection(COLLECTION))


def test_batches_are_the_loaders_tensors_zero_copy():
    batch = next(iter(loader(shuffle=True, obs_keys=["cell_type"])))
    x = batch["X"]
    assert x.layout == torch.sparse_csr and x.shape == (64, 765)
    assert x.crow_indices().dtype == torch.int32 and x.values().dtype == torch.float32
    # The tensor is the loader's memory: the native array's address, no copy.
    ds = loader(shuffle=True)
    raw = next(iter(ds._native(ds._shard()).epoch(0)))
    address = raw["X"][4].address
    from annbatch_rs import _frameworks

    assert _frameworks.torch_tensor(raw["X"]).values().data_ptr() == address
    assert list(batch["obs"].columns) == ["cell_type"]
    assert str(batch["obs"]["cell_type"].dtype) == "category"


def test_sequential_batches_equal_annbatchs():
    want = json.loads((DATA / "annbatch_collection.sequential_batches.json").read_text())
    got = [b["index"].tolist() for b in loader(shuffle=False)]
    assert got == [b["index"] for b in want["batches"]]
    assert len(loader()) == want["n_batches"]


def indices(batches) -> list:
    return [i for b in batches for i in b["index"].tolist()]


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_dataloader_workers_share_the_epoch(context):
    ds = loader(shuffle=True, seed=5)
    if context == "fork":
        next(iter(ds))  # the parent's native loader and threads exist before the fork
        ds.set_epoch(0)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                     multiprocessing_context=context)
    seen = indices(dl)
    assert sorted(seen) == list(range(700)), "disjoint shares whose union is the epoch"


def test_state_dict_resumes_the_epoch_exactly():
    full = indices(loader(shuffle=True, seed=9))
    ds = loader(shuffle=True, seed=9)
    it = iter(ds)
    head = [next(it) for _ in range(4)]
    state = ds.state_dict()
    assert state == {"epoch": 0, "batches": 4}
    resumed = loader(shuffle=True, seed=9)
    resumed.load_state_dict(state)
    assert indices(head) + indices(resumed) == full
    # A finished pass moves on to the next epoch: another shuffle.
    again = loader(shuffle=True, seed=9)
    assert indices(again) == full and indices(again) != full


def test_errors_are_python_exceptions(tmp_path):
    with pytest.raises(ValueError):
        Loader(to="torch", batch_size=0)
    with pytest.raises(FileNotFoundError):
        len(Loader(to="torch", batch_size=4).use_collection(tmp_path / "missing.zarr"))
    with pytest.raises(ValueError):
        len(Loader(to="torch", batch_size=4, chunk_size=2, preload_nchunks=1))
    with pytest.raises(KeyError, match="no_such_column.*the columns are: .*cell_type"):
        len(Loader(to="torch", batch_size=4,
            obs_keys=["no_such_column"]).use_collection(COLLECTION))
    with pytest.raises(RuntimeError):
        len(Loader(to="torch", batch_size=4))
    if not torch.cuda.is_available():
        with pytest.raises(AnnbatchError, match="(?i)cuda"):
            len(Loader(to="torch", batch_size=4, device="cuda").use_collection(COLLECTION))


def test_any_torch_version_imports_and_none_is_needed():
    code = ("import torch; torch.__version__ = '2.99.0'; import annbatch_rs, sys; "
            f"sys.exit(sum(b['X'].shape[0] for b in annbatch_rs.Loader(to='torch', "
            f"batch_size=64, chunk_size=16, preload_nchunks=4).use_collection({str(COLLECTION)!r}))"
            " != 700)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # torch unimportable: numpy / scipy batches stream, to="torch" names what is missing.
    code = ("import sys; sys.modules['torch'] = None; import annbatch_rs\n"
            f"rows = sum(b['X'].shape[0] for b in annbatch_rs.Loader(batch_size=64, "
            f"chunk_size=16, preload_nchunks=4).use_collection({str(COLLECTION)!r}))\n"
            "assert rows == 700, rows\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
            "try:\n    annbatch_rs.Loader(to='torch')\nexcept ImportError as e:\n"
            "    print('refused:', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "torch" in result.stdout


def test_convert_then_load(tmp_path):
    out = tmp_path / "c.zarr"
    collection = DatasetCollection(out).add_adatas(
        [DATA / "pbmc68k_raw_csr.h5ad"], dataset_size=300, shuffle_chunk_size=50, seed=1)
    assert collection.last_report["n_obs"] == 700 and not collection.is_empty
    ds = Loader(to="torch", batch_size=100, chunk_size=50, preload_nchunks=2, shuffle=True,
                return_index=True, obs_keys=["src_path"]).use_collection(collection)
    batches = list(ds)
    assert sorted(indices(batches)) == list(range(700))
    assert set(batches[0]["obs"]["src_path"].astype(str)) == {str(DATA / "pbmc68k_raw_csr.h5ad")}
    x = torch.cat([b["X"].to_dense() for b in batches])
    assert x.shape == (700, 765) and float(x.sum()) > 0


def test_torchrun_ranks_get_disjoint_complete_equal_shards(tmp_path):
    worker = pathlib.Path(__file__).with_name("distributed_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29533", str(worker), str(COLLECTION), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 350
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(700))


def test_stats_and_debug_logging_show_where_time_goes():
    # A fresh interpreter: Python's logging is configured before the first epoch, as documented.
    script = f"""
import logging, sys
logging.basicConfig(stream=sys.stdout, format="%(name)s %(message)s")
logging.getLogger("annbatch").setLevel(logging.DEBUG)
import torch
from annbatch_rs import DatasetCollection, Loader
loader = Loader(to="torch", batch_size=64, chunk_size=16, preload_nchunks=4).use_collection(
    DatasetCollection({str(COLLECTION)!r}))
n = sum(b["X"].shape[0] for b in loader)
stats = loader.stats()
assert stats["cells"] == n, stats
assert stats["batches"] == len(loader), stats
assert stats["cells_per_second"] > 0 and stats["read_seconds"] > 0, stats
print("STATS", stats)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "STATS" in out.stdout
    # tracing events reach the `annbatch` loggers.
    assert "annbatch." in out.stdout and "assembled" in out.stdout, out.stdout[:2000]


def test_parameter_errors_have_one_wording():
    with pytest.raises(ValueError, match="rank = 2: must be below world_size 2"):
        _native.Loader(_native.Collection(str(COLLECTION)), batch_size=64, chunk_size=16,
                       preload_nchunks=4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_threads"):
        _native.Loader(_native.Collection(str(COLLECTION)), num_threads=10**6)
    # The Python Loader and samplers refuse at construction, with the native wording.
    with pytest.raises(ValueError, match="batch_size = -4: must be positive"):
        Loader(to="torch", batch_size=-4, chunk_size=16, preload_nchunks=4)
    with pytest.raises(ValueError, match="divisible by batch_size"):
        Loader(to="torch", batch_size=48, chunk_size=16, preload_nchunks=4)
    with pytest.raises(TypeError, match="chunk_size must be an integer"):
        Loader(to="torch", batch_size=64, chunk_size=True, preload_nchunks=4)
    from annbatch_rs.samplers import RandomSampler

    with pytest.raises(ValueError, match="preload_nchunks = 0: must be positive"):
        RandomSampler(chunk_size=16, preload_nchunks=0, batch_size=64)
