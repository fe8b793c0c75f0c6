"""annbatch's types: what a sampler yields (`LoadRequest`), what the loader yields
(`LoaderOutput`), and what `Loader.dataset_type` names where anndata / zarr are not installed
(`CSRDataset`, `DenseArray`)."""

from __future__ import annotations

from typing import Any, List, Optional, TypedDict, Union

import numpy as np

__all__ = ["CSRDataset", "DenseArray", "LoadRequest", "LoaderOutput"]


class _Requests(TypedDict):
    requests: Union[List[slice], np.ndarray]


# `splits` may be absent (total=False), as annbatch's NotRequired (Python 3.11+) says.
class LoadRequest(_Requests, total=False):
    """One fetch, as annbatch defines it.

    requests
        Rows to read: a list of slices (global row ranges, read in this order) or an integer
        array of global row ids.
    splits
        The batches: positions among the fetched rows (numbered in ``requests`` order). When
        absent, ``Sampler.sample`` cuts the rows into ``batch_size`` batches (shuffled when the
        sampler's ``shuffle`` is set).
    """

    splits: List[np.ndarray]


class LoaderOutput(TypedDict):
    """One batch: ``X`` (scipy CSR / numpy, torch or jax by the loader's ``to``), its ``obs``
    rows, the collection's ``var``, and the rows' global ``index`` (with ``return_index``)."""

    X: Any
    obs: Optional[Any]
    var: Optional[Any]
    index: Optional[np.ndarray]


class CSRDataset:
    """`Loader.dataset_type` of a CSR X where anndata is not installed (``anndata.abc.CSRDataset``
    otherwise). A marker: never instantiated."""


class DenseArray:
    """`Loader.dataset_type` of a dense X where zarr is not installed (``zarr.Array`` otherwise).
    A marker: never instantiated."""
