"""The names of annbatch's first releases (and its seed documents): `ZarrSparseDataset` and
`ZarrDenseDataset`, each a `Loader` that yields tuples ``(X, labels, [index])``.

    ds = ZarrSparseDataset(batch_size=4096, chunk_size=32, preload_nchunks=256).add_anndatas(
        [ad.AnnData(X=ad.io.sparse_dataset(zarr.open(p)["X"]), obs=ad.io.read_elem(
            zarr.open(p)["obs"])) for p in paths],
        obs_keys="cell_type",
    )
    for x, labels in ds:  # x: torch.sparse_csr, labels: numpy array of obs["cell_type"]
        ...
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _frameworks
from ._sources import Source, dataset_source, source_of
from .loader import Loader

Keys = Union[str, None, Sequence[Optional[str]]]


def _per_adata(keys: Keys, n: int, what: str) -> List[Optional[str]]:
    if keys is None or isinstance(keys, str):
        return [keys] * n
    keys = list(keys)
    if len(keys) != n:
        raise ValueError(f"{len(keys)} {what} for {n} anndatas")
    return keys


class _LabelledLoader(Loader):
    """A `Loader` whose batches are ``(X, labels | None)`` (plus ``index`` with
    ``return_index``), labels taken per dataset from one obs column, as annbatch 0.0.x."""

    _sparse: bool

    def __init__(self, *, batch_size: int = 1, chunk_size: int = 512,
                 preload_nchunks: int = 32, shuffle: bool = True, return_index: bool = False,
                 drop_last: bool = False, preload_to_gpu: bool = False, **kwargs: Any):
        super().__init__(batch_size=batch_size, chunk_size=chunk_size,
                         preload_nchunks=preload_nchunks, shuffle=shuffle,
                         return_index=return_index, drop_last=drop_last,
                         preload_to_gpu=preload_to_gpu, **kwargs)
        self._label_values: Optional[np.ndarray] = None

    def add_anndatas(self, adatas: Sequence[Any], layer_keys: Keys = None,
                     obs_keys: Keys = None) -> "_LabelledLoader":
        """Appends AnnData; ``obs_keys`` names each one's label column (one name for all, or
        one per AnnData)."""
        adatas = list(adatas)
        if not adatas:
            raise ValueError("Number of anndatas must be at least 1")
        if any(k is not None for k in _per_adata(layer_keys, len(adatas), "layer_keys")):
            raise ValueError("layer_keys: annbatch_rs loads X; write the layer as X first")
        sources = []
        for adata, key in zip(adatas, _per_adata(obs_keys, len(adatas), "obs_keys")):
            source = source_of(adata)
            source.obs = None
            if key is not None:
                source.labels = np.asarray(adata.obs[key].to_numpy())
            sources.append(source)
        return self._add_labelled(sources)

    def add_anndata(self, adata: Any, layer_key: Optional[str] = None,
                    obs_key: Optional[str] = None) -> "_LabelledLoader":
        """Appends one AnnData, its labels from ``obs[obs_key]``."""
        return self.add_anndatas([adata], [layer_key], [obs_key])

    def add_datasets(self, datasets: Sequence[Any], obs: Optional[Sequence[Any]] = None,
                     var: Any = None) -> "_LabelledLoader":
        """Appends X arrays (zarr-backed or in memory) with optional label arrays."""
        datasets = list(datasets)
        obs = list(obs) if obs is not None else [None] * len(datasets)
        if len(obs) != len(datasets):
            raise ValueError(f"{len(obs)} label arrays for {len(datasets)} datasets")
        sources = []
        for dataset, labels in zip(datasets, obs):
            source = dataset_source(dataset)
            source.labels = None if labels is None else np.asarray(labels)
            sources.append(source)
        return self._add_labelled(sources)

    def add_dataset(self, dataset: Any, obs: Any = None, var: Any = None) -> "_LabelledLoader":
        """Appends one X with an optional label array."""
        return self.add_datasets([dataset], None if obs is None else [obs])

    def _add_labelled(self, sources: List[Source]) -> "_LabelledLoader":
        labelled = [s.labels is not None for s in self._sources + sources]
        if any(labelled) and not all(labelled):
            raise ValueError(
                "datasets with labels and datasets without cannot be mixed in one loader")
        self._add(sources)
        self._label_values = (np.concatenate([s.labels for s in self._sources])
                              if all(labelled) else None)
        return self

    def _check(self, sources: List[Source], collection: Any) -> None:
        if collection.is_sparse != self._sparse:
            kind, other = ("sparse", "ZarrDenseDataset") if self._sparse else (
                "dense", "ZarrSparseDataset")
            raise TypeError(f"{type(self).__name__} reads {kind} X: use {other} for this data")
        if all(s.labels is not None for s in sources):
            n = sum(len(s.labels) for s in sources)
            if n != collection.n_obs:
                raise ValueError(f"{n} labels for {collection.n_obs} rows")

    def _needs_index(self) -> bool:
        return self._label_values is not None

    def _batch(self, raw: Any) -> Tuple[Any, ...]:
        # annbatch 0.0.x yields torch tensors: X as made, the index as int64.
        index = None if raw["index"] is None else _frameworks.torch_vector(raw["index"])
        labels = None
        if self._label_values is not None and index is not None:
            labels = self._label_values[index.numpy()]
        out: Tuple[Any, ...] = (_frameworks.torch_tensor(raw["X"], self._device), labels)
        if self._params["return_index"]:
            out += (index,)
        return out


class ZarrSparseDataset(_LabelledLoader):
    """annbatch 0.0.x's sparse loader: a `Loader` over CSR X yielding ``(X, labels, [index])``
    (``shuffle=True`` by default, as it was)."""

    _sparse = True


class ZarrDenseDataset(_LabelledLoader):
    """annbatch 0.0.x's dense loader: a `Loader` over dense X yielding ``(X, labels, [index])``."""

    _sparse = False
