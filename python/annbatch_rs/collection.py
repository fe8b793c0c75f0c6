"""`DatasetCollection`: a shuffled, sharded zarr collection in annbatch's format."""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Union

from . import _native

PathLike = Union[str, "os.PathLike[str]"]


def _path_of(adata) -> str:
    """A path for an input: a path, a zarr group on disk, or an AnnData backed by a file."""
    if isinstance(adata, (str, os.PathLike)):
        return os.fspath(adata)
    store = getattr(adata, "store", None)  # zarr.Group
    root = getattr(store, "root", None) or getattr(store, "path", None)
    if root is not None:
        sub = getattr(adata, "path", "") or ""
        return os.path.join(os.fspath(root), sub)
    filename = getattr(adata, "filename", None)  # backed AnnData
    if filename is not None:
        return os.fspath(filename)
    raise TypeError(
        f"cannot read {type(adata).__name__}: pass a path, a zarr group on disk or a backed "
        "AnnData (in-memory objects: write them with anndata first)"
    )


class DatasetCollection:
    """A collection of ``dataset_N`` AnnData groups at ``path`` (annbatch's format).

    Parameters
    ----------
    path
        The collection's directory (``.zarr`` recommended); it need not exist yet.
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(_path_of(path))

    @property
    def is_empty(self) -> bool:
        """Whether there is no collection at ``path`` yet."""
        return not os.path.exists(os.path.join(self.path, "zarr.json"))

    def obs(self, columns: Optional[Sequence[str]] = None):
        """The obs columns (all if ``columns`` is None) over the whole collection, as a pandas
        DataFrame; categoricals keep their categories (unified across datasets)."""
        import pandas as pd

        if columns is None:
            import json

            first = os.path.join(self.path, "dataset_0", "obs", "zarr.json")
            with open(first) as f:
                columns = json.load(f)["attributes"]["column-order"]
        data = {}
        for name in columns:
            values, categories = _native.obs_column(self.path, name)
            data[name] = (
                pd.Categorical.from_codes(values, categories) if categories is not None else values
            )
        return pd.DataFrame(data)

    def add_adatas(
        self,
        adata_paths: Iterable,
        *,
        n_obs_per_chunk: Optional[int] = None,
        shard_size: Union[int, str, None] = None,
        dataset_size: Union[int, str, None] = None,
        shuffle_chunk_size: Optional[int] = None,
        shuffle: Optional[bool] = None,
        seed: Optional[int] = None,
        var_subset: Optional[Sequence[str]] = None,
        groupby: Union[str, Sequence[str], None] = None,
        quiet: bool = True,
        allow_disjoint_var: bool = False,
    ) -> "DatasetCollection":
        """Converts ``adata_paths`` (``.h5ad`` / zarr AnnData) into this collection, or
        appends them to it; annbatch's ``add_adatas`` with its parameters and defaults.
        Parameters left at ``None`` take the converter's defaults (``_native.CONVERT_DEFAULTS``:
        64 rows per inner chunk, 1GB shards, 20GB datasets, shuffle chunks of 1000 rows,
        shuffled). An appended input that shares no variable with the collection is refused
        unless ``allow_disjoint_var`` (annbatch-rs only).

        Returns
        -------
        self, for chaining.
        """
        paths = [_path_of(p) for p in adata_paths]
        if isinstance(groupby, str):
            groupby = [groupby]
        self.last_report = _native.convert(
            self.path,
            paths,
            n_obs_per_chunk=n_obs_per_chunk,
            shard_size=shard_size,
            dataset_size=dataset_size,
            shuffle_chunk_size=shuffle_chunk_size,
            shuffle=shuffle,
            seed=seed,
            var_subset=list(var_subset) if var_subset is not None else None,
            groupby=list(groupby) if groupby else None,
            quiet=quiet,
            allow_disjoint_var=allow_disjoint_var,
        )
        return self

    def __repr__(self) -> str:
        return f"DatasetCollection({self.path!r})"


def create_anndata_collection(
    adata_paths: Iterable, output_path: PathLike, *, shuffle: bool = True, **kwargs
) -> DatasetCollection:
    """The seed documents' name for ``DatasetCollection(output_path).add_adatas(...)``."""
    return DatasetCollection(output_path).add_adatas(adata_paths, shuffle=shuffle, **kwargs)
