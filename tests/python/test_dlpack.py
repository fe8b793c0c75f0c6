"""Batches cross to Python as DLPack arrays: zero-copy into torch and numpy, handed over once,
versioned (DLPack 1.x) or legacy capsules as the consumer asks, memory that outlives the loader
and is reused only once released, and a native module that links no libtorch."""

import ctypes
import gc
import importlib.util
import pathlib
import subprocess

import annbatch_rs
import numpy as np
import pytest
from annbatch_rs import DatasetCollection, Loader, _frameworks

COLLECTION = pathlib.Path(__file__).resolve().parents[1] / "data" / "annbatch_collection.zarr"


def raw_batches(**kwargs):
    params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    params.update(kwargs)
    ds = Loader(**params).use_collection(DatasetCollection(COLLECTION))
    return ds._native(ds._shard()).epoch(0)


def capsule_name(capsule) -> bytes:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    return get_name(capsule)


def test_numpy_and_torch_take_the_loaders_memory_without_a_copy():
    raw = next(iter(raw_batches()))
    kind, shape, indptr, indices, data = raw["X"]
    assert kind == "csr" and tuple(shape) == (64, 765)
    assert (indptr.dtype, indices.dtype, data.dtype) == ("int32", "int32", "float32")
    assert indptr.__dlpack_device__() == (1, 0)
    values = np.from_dlpack(data)
    assert values.__array_interface__["data"][0] == data.address
    assert values.dtype == np.float32 and values.shape == tuple(data.shape)
    torch = pytest.importorskip("torch")
    crow = torch.from_dlpack(indptr)
    assert crow.data_ptr() == indptr.address and crow.dtype == torch.int32
    index = raw["index"]
    assert torch.from_dlpack(index).data_ptr() == index.address


def test_an_array_is_handed_over_once():
    raw = next(iter(raw_batches()))
    data = raw["X"][4]
    first = np.from_dlpack(data)
    assert data.consumed
    with pytest.raises(BufferError, match="already handed over"):
        np.from_dlpack(data)
    assert first.size == data.shape[0]


def test_versioned_capsules_when_asked_legacy_otherwise():
    raw = next(iter(raw_batches()))
    _, _, indptr, indices, data = raw["X"]
    assert capsule_name(indptr.__dlpack__(max_version=(1, 0))) == b"dltensor_versioned"
    assert capsule_name(indices.__dlpack__()) == b"dltensor"
    # Unconsumed capsules release their memory when collected (no leak, no double free).
    gc.collect()
    with pytest.raises(BufferError, match="device"):
        data.__dlpack__(dl_device=(2, 0))


def test_host_arrays_take_any_stream_and_a_cuda_loader_without_a_gpu_says_so():
    raw = next(iter(raw_batches()))
    _, _, indptr, indices, _ = raw["X"]
    # Host memory needs no synchronisation: a stream is accepted and ignored.
    assert capsule_name(indptr.__dlpack__(stream=None)) == b"dltensor"
    assert capsule_name(indices.__dlpack__(stream=-1, max_version=(1, 0))) == \
        b"dltensor_versioned"
    if _cuda_driver():
        pytest.skip("a CUDA driver is present: tests/python/test_cuda.py covers the GPU")
    from annbatch_rs import _native
    from annbatch_rs._native import AnnbatchError, Collection

    with pytest.raises(AnnbatchError, match="cuda:0.*(driver|device)"):
        _native.Loader(Collection([str(COLLECTION)]), batch_size=64, cuda_device=0)


def _cuda_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_batches_outlive_their_loader_and_keep_their_values():
    ds = Loader(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True, to=None)
    ds.use_collection(DatasetCollection(COLLECTION))
    kept = [b for _, b in zip(range(5), ds)]
    copies = [(b["X"].toarray(), b["index"].copy()) for b in kept]
    del ds
    gc.collect()
    # Other loaders reading meanwhile must not write over the kept batches' memory.
    rows = sum(b["X"].shape[0] for b in Loader(batch_size=64, chunk_size=16, preload_nchunks=4)
               .use_collection(DatasetCollection(COLLECTION)))
    assert rows == 700
    for b, (x, index) in zip(kept, copies):
        assert np.array_equal(b["X"].toarray(), x) and np.array_equal(b["index"], index)


def test_released_memory_is_reused_and_held_memory_is_not():
    torch = pytest.importorskip("torch")
    held, addresses = [], set()
    for i, raw in enumerate(raw_batches(batch_size=16, chunk_size=16, preload_nchunks=4)):
        x = _frameworks.torch_tensor(raw["X"])
        addresses.add(x.values().data_ptr())
        if i % 4 == 0:
            held.append((x, x.values().clone()))
    assert len(addresses) < 44, "released batches' memory is used again"
    for x, values in held:
        assert torch.equal(x.values(), values)


def test_the_native_module_links_no_framework():
    native = pathlib.Path(annbatch_rs._native.__file__)
    dynamic = subprocess.run(["readelf", "-d", str(native)], capture_output=True, text=True,
                             check=True).stdout
    for lib in ("libtorch", "libc10", "libtorch_python", "libpython"):
        assert lib not in dynamic, f"{native.name} links {lib}"


def test_too_old_numpy_or_torch_is_an_import_error_naming_the_minimum():
    import sys

    code = "import numpy; numpy.__version__ = '1.21.6'; import annbatch_rs"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "numpy >= 1.22" in result.stderr, result.stderr
    pytest.importorskip("torch")
    code = ("import torch; torch.__version__ = '1.13.1'; import annbatch_rs\n"
            "annbatch_rs.Loader(to='torch')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "torch >= 2.0" in result.stderr and "1.13.1" in result.stderr, result.stderr


def test_the_output_framework_makes_its_first_batch_when_the_loader_is_made():
    """The first call of torch's / scipy's batch constructors (dispatch, warnings) happens when
    the Loader is made, once per process: not inside the first epoch."""
    from annbatch_rs import Loader, _frameworks

    Loader(batch_size=4, chunk_size=2, preload_nchunks=2, to=None)
    assert None in _frameworks._WARMED
    if importlib.util.find_spec("torch") is not None:
        Loader(batch_size=4, chunk_size=2, preload_nchunks=2, to="torch")
        assert "torch" in _frameworks._WARMED


def test_torch_batches_raise_no_sparse_invariant_warning():
    """torch 2.11 warns, once a process, that sparse invariant checks are "implicitly disabled
    ... SEGFAULT" even with `check_invariants=False`: our batches must not show it to users."""
    import sys

    pytest.importorskip("torch")
    code = (
        "import annbatch_rs, torch\n"
        "ds = annbatch_rs.Loader(batch_size=8, chunk_size=4, preload_nchunks=2, to='torch')"
        f".use_collection(annbatch_rs.DatasetCollection({str(COLLECTION)!r}))\n"
        "assert next(iter(ds))['X'].layout == torch.sparse_csr\n"
    )
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "invariant checks" not in result.stderr, result.stderr
