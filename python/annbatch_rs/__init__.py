"""annbatch-rs: annbatch's Loader and DatasetCollection, in Rust, handing PyTorch the loader's
tensors without a copy.

Switch from annbatch by changing the import::

    from annbatch_rs import DatasetCollection, Loader

    DatasetCollection("collection.zarr").add_adatas(["a.h5ad", "b.h5ad"], shuffle=True)
    loader = Loader(batch_size=4096, chunk_size=32, preload_nchunks=256, shuffle=True)
    loader.use_collection(DatasetCollection("collection.zarr"))
    for batch in loader:
        x = batch["X"]  # torch.sparse_csr [4096, n_var], the loader's own memory

IMPORTANT: the native module is compiled against one torch version (2.11); importing it with
another raises ImportError instead of crashing.
"""

import torch  # first: the native module needs libtorch_python, which torch loads

_BUILT_FOR = "2.11"


def _check_torch() -> None:
    installed = torch.__version__.split("+")[0]
    if ".".join(installed.split(".")[:2]) != _BUILT_FOR:
        raise ImportError(
            f"annbatch_rs was built against torch {_BUILT_FOR}.x, but torch {torch.__version__} "
            f"is installed; install torch {_BUILT_FOR}.x (pip install 'torch=={_BUILT_FOR}.*') "
            "or a build of annbatch_rs for your torch"
        )


_check_torch()

from . import _native, abc, samplers, types  # noqa: E402
from ._native import AnnbatchError  # noqa: E402
from .collection import DatasetCollection, create_anndata_collection  # noqa: E402
from .compat import ZarrDenseDataset, ZarrSparseDataset  # noqa: E402
from .loader import Loader  # noqa: E402
from .sharded import write_sharded  # noqa: E402


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


# libtorch keeps its ABI within a minor release: any 2.11.x runs a module built against 2.11.0.
if _minor(_native.TORCH_VERSION) != _minor(torch.__version__):
    raise ImportError(
        f"annbatch_rs was compiled against torch {_native.TORCH_VERSION} but torch "
        f"{torch.__version__} is installed; install torch {_minor(_native.TORCH_VERSION)}.x"
    )

__version__ = _native.__version__
__all__ = [
    "AnnbatchError",
    "samplers",
    "DatasetCollection",
    "Loader",
    "ZarrDenseDataset",
    "ZarrSparseDataset",
    "abc",
    "create_anndata_collection",
    "types",
    "write_sharded",
]
