"""annbatch's `annbatch.utils` helpers for ``load_adata``: `load_all_aligned` (the default:
``X``, ``obs``, ``var`` and the ``obsm`` / ``layers`` entries a store can back) and
`split_given_size`. Given to ``Loader.use_collection(load_adata=load_all_aligned)`` it is the
same as no ``load_adata``: the Rust pipeline reads the collection itself."""

from __future__ import annotations

from typing import Any, List

import numpy as np


def split_given_size(a: np.ndarray, size: int, *, copy: bool = False) -> List[np.ndarray]:
    """``a`` cut into consecutive pieces of ``size`` (the last may be shorter); views of ``a``
    unless ``copy``."""
    pieces = [a[i:i + size] for i in range(0, len(a), size)]
    return [p.copy() for p in pieces] if copy else pieces


def _read_backed(elem: Any) -> Any:
    """A zarr dense array as it is, a CSR group as anndata's backed sparse dataset."""
    import anndata as ad
    import zarr

    encoding = elem.attrs.get("encoding-type")
    if encoding == "array" and isinstance(elem, zarr.Array):
        return elem
    if encoding == "csr_matrix" and isinstance(elem, zarr.Group):
        return ad.io.sparse_dataset(elem)
    raise TypeError(f"Unrecognized encoding type {encoding} for {elem.name}")


def load_all_aligned(g: Any) -> Any:
    """An AnnData backed by the dataset group ``g``: ``X``, ``obs``, ``var`` index, and every
    dense or CSR entry of ``obsm`` and ``layers``."""
    import anndata as ad
    import pandas as pd

    var = g["var"]
    aligned = {
        group: {k: _read_backed(v) for k, v in g[group].members()
                if v.attrs.get("encoding-type") in {"csr_matrix", "array"}}
        for group in ("obsm", "layers") if group in g
    }
    return ad.AnnData(
        X=_read_backed(g["X"]),
        obs=ad.io.read_elem(g["obs"]),
        var=pd.DataFrame(index=pd.Index(ad.io.read_elem(var[var.attrs.get("_index")]))),
        **aligned,
    )


__all__ = ["load_all_aligned", "split_given_size"]
