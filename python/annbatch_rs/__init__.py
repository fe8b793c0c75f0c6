"""annbatch-rs: annbatch's Loader and DatasetCollection, in Rust, handing PyTorch (or numpy,
scipy, jax) the loader's memory without a copy.

Switch from annbatch by changing the import::

    from annbatch_rs import DatasetCollection, Loader

    DatasetCollection("collection.zarr").add_adatas(["a.h5ad", "b.h5ad"], shuffle=True)
    loader = Loader(batch_size=4096, chunk_size=32, preload_nchunks=256, shuffle=True)
    loader.use_collection(DatasetCollection("collection.zarr"))
    for batch in loader:
        x = batch["X"]  # scipy CSR [4096, n_var] over the loader's memory (to="torch": torch)

The native module links no framework: batches cross as DLPack arrays, so it works beside any
torch >= 2.0 (``to="torch"``), or without torch for numpy / scipy (``to=None``) and jax.
"""

from . import (
    _frameworks,  # noqa: F401  (first: refuses a numpy without from_dlpack)
    _native,
    abc,
    io,
    samplers,
    types,
    utils,
)
from ._errors import VarMismatchError
from ._native import AnnbatchError
from .collection import DatasetCollection, create_anndata_collection
from .compat import ZarrDenseDataset, ZarrSparseDataset
from .loader import Loader
from .sharded import write_sharded

__version__ = _native.__version__
__all__ = [
    "AnnbatchError",
    "VarMismatchError",
    "samplers",
    "DatasetCollection",
    "Loader",
    "ZarrDenseDataset",
    "ZarrSparseDataset",
    "abc",
    "io",
    "utils",
    "create_anndata_collection",
    "types",
    "write_sharded",
]
