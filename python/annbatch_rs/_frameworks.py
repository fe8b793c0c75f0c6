"""The native batches' arrays (DLPack, in the loader's pooled host memory) as the frameworks
users train with: torch tensors, numpy / scipy, cupy or jax arrays, all without a copy on the
host. Each native array is handed over once; the tensor or array made from it owns the memory
and gives it back to the loader's pool when it is freed.

A native matrix is ``("csr", (rows, n_var), indptr, indices, data)`` or ``("dense", shape,
data)``; its arrays have ``__dlpack__`` / ``__dlpack_device__``.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Optional, Tuple

import numpy as np

# The oldest releases whose ``from_dlpack`` takes our arrays (objects with ``__dlpack__``).
MIN_NUMPY = (1, 22)
MIN_TORCH = (2, 0)


def _version(text: str) -> Tuple[int, ...]:
    parts = []
    for p in text.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_numpy() -> None:
    if not hasattr(np, "from_dlpack") or _version(np.__version__) < MIN_NUMPY:
        raise ImportError(
            f"annbatch_rs needs numpy >= {'.'.join(map(str, MIN_NUMPY))} (np.from_dlpack); "
            f"numpy {np.__version__} is installed")


check_numpy()


_TORCH: Any = None  # torch, once checked (every batch asks for it)


def torch_module() -> Any:
    """torch, checked once: a release with ``torch.from_dlpack`` and sparse CSR tensors."""
    global _TORCH
    if _TORCH is not None:
        return _TORCH
    import torch

    if not hasattr(torch, "from_dlpack") or _version(torch.__version__) < MIN_TORCH:
        raise ImportError(
            f"annbatch_rs needs torch >= {'.'.join(map(str, MIN_TORCH))} (torch.from_dlpack) "
            f"for to='torch'; torch {torch.__version__} is installed")
    _TORCH = torch
    return torch


_WARMED: set = set()  # the outputs `import_output` has made a first batch of in this process


def import_output(to: Optional[str]) -> None:
    """Imports what batches for ``to`` are made with (scipy for ``None``, jax for ``"jax"``) and,
    once per process, makes a one-row batch the way every batch is made: the first call of
    ``torch.from_dlpack`` / ``sparse_csr_tensor`` (or scipy's ``csr_matrix``) initialises
    dispatch tables and warnings. Inside the first epoch that work held up the consumer and,
    on a machine with few cores, the loader's threads: the first 100k-cell epoch ran ~25 %
    slower (``benches/python/python_vs_rust.sh``)."""
    if to is None:
        import scipy.sparse
    elif to == "jax":
        import jax.numpy  # noqa: F401
        from jax.experimental import sparse  # noqa: F401
    if to in _WARMED or to == "jax":
        return
    indptr, indices = np.array([0, 1], dtype=np.int32), np.array([0], dtype=np.int32)
    values = np.ones(1, dtype=np.float32)
    if to == "torch":
        torch = torch_module()
        # torch 2.11 warns once a process that "invariant checks are implicitly disabled ...
        # SEGFAULT" even when `check_invariants=False` says so explicitly (2.15 does not): the
        # batches' CSR arrays are the loader's, checked as they are read. This first call is
        # where that warning fires; the user's own warning filters stay as they were.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
            torch.sparse_csr_tensor(torch.from_dlpack(indptr), torch.from_dlpack(indices),
                                    torch.from_dlpack(values), size=(1, 1),
                                    check_invariants=False)
    else:
        scipy.sparse.csr_matrix((np.from_dlpack(values), np.from_dlpack(indices),
                                 np.from_dlpack(indptr)), shape=(1, 1))
    _WARMED.add(to)


def torch_distributed() -> Any:
    """``torch.distributed`` when torch is imported and a process group is up, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def worker_info() -> Any:
    """torch's DataLoader worker info (None outside a worker, or without torch)."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.utils.data.get_worker_info()


#: DLPack's device type of CUDA memory.
KDLCUDA = 2


def numpy_array(a: Any) -> np.ndarray:
    """A native array as numpy, sharing its memory."""
    return np.from_dlpack(a)


def torch_tensor(matrix: Any, device: Optional[str] = None) -> Any:
    """A native matrix as a torch tensor: sparse CSR (int32 indices) or dense, on ``device``."""
    torch = torch_module()
    if matrix[0] == "csr":
        _, shape, indptr, indices, data = matrix
        crow, col, values = (torch.from_dlpack(indptr), torch.from_dlpack(indices),
                             torch.from_dlpack(data))
        if device not in (None, "cpu"):
            crow, col, values = (t.to(device, non_blocking=True) for t in (crow, col, values))
        return torch.sparse_csr_tensor(crow, col, values, size=tuple(shape),
                                       check_invariants=False)
    x = torch.from_dlpack(matrix[2])
    return x if device in (None, "cpu") else x.to(device, non_blocking=True)


def torch_vector(a: Any, device: Optional[str] = None) -> Any:
    """A native 1-d array (obs values, codes, row ids) as a torch tensor on ``device``."""
    t = torch_module().from_dlpack(a)
    return t if device in (None, "cpu") else t.to(device, non_blocking=True)


def scipy_or_numpy(matrix: Any) -> Any:
    """A native matrix as scipy CSR (views of the loader's memory) or a numpy array."""
    if matrix[0] == "csr":
        import scipy.sparse as sp

        _, shape, indptr, indices, data = matrix
        # copy=False: scipy keeps the numpy views, and they keep the memory alive.
        return sp.csr_matrix((numpy_array(data), numpy_array(indices), numpy_array(indptr)),
                             shape=tuple(shape), copy=False)
    return numpy_array(matrix[2])


def cupy_array(matrix: Any, device: str) -> Any:
    """A native matrix on the GPU as cupyx CSR or a cupy array: its device memory as it is
    (DLPack), or host arrays copied."""
    import cupy as cp

    def on_gpu(a: Any) -> Any:
        if a.__dlpack_device__()[0] == KDLCUDA:
            return cp.from_dlpack(a)
        return cp.asarray(numpy_array(a))

    index = int(device.split(":")[1]) if ":" in device else cp.cuda.runtime.getDevice()
    with cp.cuda.Device(index):
        if matrix[0] == "csr":
            import cupyx.scipy.sparse as cpx

            _, shape, indptr, indices, data = matrix
            return cpx.csr_matrix((on_gpu(data), on_gpu(indices), on_gpu(indptr)),
                                  shape=tuple(shape), copy=False)
        return on_gpu(matrix[2])


def jax_array(matrix: Any) -> Any:
    """A native matrix as a jax ``CSR`` (as annbatch gives) or a dense array."""
    import jax.numpy as jnp

    if matrix[0] == "csr":
        from jax.experimental import sparse as jsparse

        _, shape, indptr, indices, data = matrix
        parts = (jnp.from_dlpack(numpy_array(data)), jnp.from_dlpack(numpy_array(indices)),
                 jnp.from_dlpack(numpy_array(indptr)))
        return jsparse.CSR(parts, shape=tuple(shape))
    return jnp.from_dlpack(numpy_array(matrix[2]))
