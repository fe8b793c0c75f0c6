"""What a `Loader` reads: inputs as annbatch users pass them, turned into native sources.

A native source is a path (a collection or an AnnData zarr store on disk) or, for data in
memory (scipy CSR / numpy ``X``), a dict of numpy arrays that the Rust side copies once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .collection import _path_of


class LazyObs:
    """The obs of every dataset of a collection, read when first asked for (and then kept;
    picklable, so spawned DataLoader workers read their own)."""

    def __init__(self, path: str):
        self.path = path
        self._frames: Optional[List[Any]] = None

    def frames(self, opened: Any = None) -> List[Any]:
        """Each dataset's obs DataFrame, indexed by obs_names. ``opened``: this collection's
        datasets already open (a ``_native.Collection``), read instead of opening it again."""
        if self._frames is None:
            from .collection import obs_frames

            self._frames = obs_frames(self.path, opened=opened)
        return self._frames

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self.path, "_frames": None}

    def __repr__(self) -> str:
        return f"LazyObs({self.path!r})"


@dataclass
class Source:
    """One dataset of a loader: the native source, its rows, the kind of X, and the obs frame
    annbatch would yield for it (AnnData objects with obs columns)."""

    native: Union[str, Dict[str, Any]]
    obs: Any = None  # pandas.DataFrame, LazyObs or None
    labels: Optional[np.ndarray] = None  # ZarrSparseDataset's obs_key values
    var: Any = None  # the var DataFrame given with the data, if any
    # The trailing dimensions of a dense X of more than 2 (annbatch's test_3d): the native side
    # reads rows of their product of values, batches are reshaped to them.
    tail: Optional[Tuple[int, ...]] = None


def _pandas() -> Any:
    import pandas as pd

    return pd


def _is_scipy_csr(x: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy comes with anndata
        return False
    return isinstance(x, (sp.csr_matrix, getattr(sp, "csr_array", sp.csr_matrix)))


def _is_scipy_sparse(x: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(x)


def _array(a: Any, *, values: bool = False) -> np.ndarray:
    """``a`` as the native side reads it (through DLPack): a C-contiguous numeric numpy array
    (float16 widened to float32; bool as float32 for values, tagged ``("bool", uint8)`` for
    obs columns)."""
    a = np.asarray(a)
    if values and a.dtype == np.bool_:
        a = a.astype(np.float32)
    if a.dtype == np.float16 or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=np.float32 if a.dtype == np.float16 else a.dtype)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"dtype {a.dtype} is not numeric")
    if a.dtype == np.bool_:
        return ("bool", a.view(np.uint8))  # type: ignore[return-value]
    return a


def _obs_columns(obs: Any, keys: Optional[Sequence[str]]) -> Dict[str, Any]:
    """The obs columns ``keys`` as the native side takes them: (codes, categories, ordered) or a
    tensor."""
    import pandas as pd

    out: Dict[str, Any] = {}
    for key in keys or ():
        if key not in obs.columns:
            raise KeyError(f"obs has no column {key!r} (columns: {list(obs.columns)})")
        col = obs[key]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cat = col.array
        elif col.dtype.kind in "biuf":
            out[key] = _array(col.to_numpy())
            continue
        else:
            cat = pd.Categorical(col)
        out[key] = (
            np.ascontiguousarray(cat.codes, dtype=np.int64),
            [str(c) for c in cat.categories],
            bool(cat.ordered),
        )
    return out


def in_memory(x: Any, *, obs: Any = None, var_names: Optional[Sequence[str]] = None,
              obs_keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The native dict for an in-memory scipy CSR matrix or numpy array ``x``."""
    if _is_scipy_csr(x):
        native: Dict[str, Any] = dict(
            format="csr", shape=tuple(int(s) for s in x.shape), data=_array(x.data, values=True),
            indices=_array(x.indices), indptr=_array(x.indptr))
    elif isinstance(x, np.ndarray):
        if x.ndim < 2:
            raise ValueError(f"a dense X must have at least 2 dimensions, got shape {x.shape}")
        if x.ndim > 2:  # rows of the trailing dimensions' product; var does not name them
            x, var_names = np.ascontiguousarray(x).reshape(x.shape[0], -1), None
        native = dict(format="dense", shape=tuple(int(s) for s in x.shape),
                      data=_array(x, values=True))
    elif _is_scipy_sparse(x):
        raise TypeError(
            f"{type(x).__name__} cannot be read by rows: convert it with .tocsr() first")
    else:
        raise TypeError(f"cannot load an X of type {type(x).__name__}")
    # The dtype given (the native side holds float32): the loader's mixed-dtype warning.
    native["x_dtype"] = str(np.dtype(x.dtype))
    native["var_names"] = None if var_names is None else [str(v) for v in var_names]
    native["obs_names"] = None if obs is None else [str(v) for v in obs.index]
    native["obs"] = {} if obs is None else _obs_columns(obs, obs_keys)
    return native


def _element_of(x: Any) -> Optional[Tuple[str, str]]:
    """``(store root, element path)`` of a backed X on disk (an anndata ``CSRDataset`` or a
    ``zarr.Array``); None for data in memory."""
    group = getattr(x, "group", None)  # anndata.abc.CSRDataset
    backend = getattr(x, "backend", None)
    if group is not None:
        if backend is not None and backend != "zarr":
            raise TypeError(
                f"Cannot add an X backed by {backend} element by element: pass the .h5ad "
                "file's path (or the backed AnnData) to add_adata(s) instead")
        node = group
    elif hasattr(x, "store") and hasattr(x, "path") and hasattr(x, "chunks"):  # zarr.Array
        node = x
    else:
        return None
    root = getattr(node.store, "root", None)
    if root is None:
        raise TypeError(
            f"X lives in a {type(node.store).__name__}: only zarr stores on a local disk "
            "can be streamed")
    return os.fspath(root), (getattr(node, "path", "") or "").strip("/")


def _backed(element: Tuple[str, str], shape: Sequence[int], obs: Any, var: Any,
            obs_keys: Optional[Sequence[str]]) -> Union[str, Dict[str, Any]]:
    """The native source of a backed X: its AnnData store when X is that store's own ``X``
    (obs and var read from disk), else the element itself with the given obs / var."""
    root, path = element
    parent, _, name = path.rpartition("/")
    if name == "X" and var is not None and obs is not None:
        return os.path.join(root, parent)
    # A dense X of more than 2 dimensions: var does not name its columns.
    named = var is not None and len(shape) == 2
    return dict(format="zarr", store=root, x=path, shape=tuple(int(n) for n in shape),
                var_names=[str(v) for v in var.index] if named else None,
                obs_names=None if obs is None else [str(v) for v in obs.index],
                obs={} if obs is None else _obs_columns(obs, obs_keys))


def source_of(adata: Any, obs_keys: Optional[Sequence[str]] = None) -> Source:
    """A `Source` for what annbatch's ``add_adata`` takes: a path, a zarr group on disk, or an
    AnnData whose X is on disk (a zarr ``CSRDataset`` / ``zarr.Array``) or in memory."""
    if isinstance(adata, (str, os.PathLike)) or hasattr(adata, "store"):
        return Source(_path_of(adata))
    x = getattr(adata, "X", None)
    if x is None or not hasattr(adata, "obs"):
        raise TypeError(
            f"cannot load {type(adata).__name__}: pass a path, a zarr group, or an AnnData")
    if getattr(adata, "isbacked", False):
        # Read from its file as it is (obs, var and X), not through anndata's handle.
        return Source(_path_of(adata))
    frame = adata.obs
    if not isinstance(frame, _pandas().DataFrame) and hasattr(frame, "to_memory"):
        frame = frame.to_memory()  # a lazy obs (anndata.experimental.read_lazy)
    obs = frame if len(frame.columns) else None
    element = _element_of(x)
    if element is not None:
        return Source(_backed(element, x.shape, frame, adata.var, obs_keys), obs=obs,
                      var=adata.var, tail=_tail(x))
    return Source(in_memory(x, obs=frame, var_names=adata.var_names, obs_keys=obs_keys),
                  obs=obs, var=adata.var, tail=_tail(x))


def dataset_source(dataset: Any, obs: Any = None, var: Any = None,
                   obs_keys: Optional[Sequence[str]] = None) -> Source:
    """A `Source` for what annbatch's ``add_dataset`` takes: an X (on disk or in memory), with
    optional obs / var frames."""
    if obs is not None and not hasattr(obs, "columns"):
        raise TypeError("obs must be a pandas DataFrame")
    if var is not None and not hasattr(var, "index"):
        raise TypeError("var must be a pandas DataFrame")
    element = _element_of(dataset)
    frame = obs if obs is not None and len(obs.columns) else None
    if element is not None:
        return Source(_backed(element, dataset.shape, obs, var, obs_keys), obs=frame, var=var,
                      tail=_tail(dataset))
    return Source(
        in_memory(dataset, obs=obs, var_names=None if var is None else var.index,
                  obs_keys=obs_keys),
        obs=frame, var=var, tail=_tail(dataset))


def _tail(x: Any) -> Optional[Tuple[int, ...]]:
    """The dimensions of a row of a dense X of more than 2 dimensions (None otherwise)."""
    shape = tuple(int(n) for n in getattr(x, "shape", ()))
    return shape[1:] if len(shape) > 2 else None
