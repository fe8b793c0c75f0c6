"""Type stubs of the Rust extension `annbatch_rs._native` (see src/python.rs)."""

from os import PathLike
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union, final

__all__ = [
    "AnnbatchError",
    "Array",
    "Batches",
    "CONVERT_DEFAULTS",
    "Collection",
    "DEFAULTS",
    "Loader",
    "__version__",
    "_panic",
    "check_options",
    "class_requests",
    "convert",
    "obs_frames",
]

__version__: str
DEFAULTS: Dict[str, int]  # annbatch's batch_size, chunk_size, preload_nchunks
CONVERT_DEFAULTS: Dict[str, Any]  # the converter's (ConvertOptions::default())

class AnnbatchError(Exception):
    """Bad data or a failure inside annbatch-rs."""

@final
class Array:
    """A batch array in the loader's pooled host memory (or on its CUDA device), handed over once
    through DLPack."""

    def __dlpack__(
        self,
        *,
        stream: Optional[int] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...
    @property
    def shape(self) -> List[int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def consumed(self) -> bool: ...

@final
class Batches(Iterator[Dict[str, Any]]):
    def __iter__(self) -> "Batches": ...
    def __next__(self) -> Dict[str, Any]: ...
    def delivered(self) -> int: ...
    def close(self) -> None: ...

_Source = Union[str, PathLike[str], Dict[str, Any]]

@final
class Collection:
    def __new__(cls, sources: Union[_Source, List[_Source]],
                join: Union[str, Sequence[str], None] = None) -> "Collection": ...
    @property
    def n_obs(self) -> int: ...
    @property
    def n_var(self) -> int: ...
    @property
    def is_sparse(self) -> bool: ...
    def obs_frames(
        self, columns: Optional[List[str]] = None
    ) -> List[Tuple[List[str], List[Tuple[str, str, Any, Any]]]]: ...
    def x_dtypes(self) -> List[str]: ...
    def var_names(self) -> List[str]: ...
    def dataset_names(self) -> List[str]: ...
    @property
    def is_preshuffled(self) -> bool: ...

@final
class Loader:
    def __new__(
        cls,
        collection: Collection,
        *,
        batch_size: int = ...,
        chunk_size: int = ...,
        preload_nchunks: int = ...,
        shuffle: bool = False,
        drop_last: bool = False,
        return_index: bool = False,
        seed: Optional[int] = None,
        obs_keys: Optional[List[str]] = None,
        layer_keys: Optional[List[str]] = None,
        obsm_keys: Optional[List[str]] = None,
        num_threads: Optional[int] = None,
        prefetch: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        equal_batches: bool = True,
        class_codes: Optional[List[int]] = None,
        n_categories: int = 0,
        class_weights: Optional[List[float]] = None,
        num_samples: Optional[int] = None,
        batch_sampler: Any = None,
        elastic: bool = False,
        resume: Optional[Tuple[int, List[Tuple[int, int]]]] = None,
        cuda_device: Optional[int] = None,
    ) -> "Loader": ...
    def __len__(self) -> int: ...
    def stats(self) -> Dict[str, float]: ...
    def elastic_state(self, epoch: int, batches: int) -> List[Tuple[int, int]]: ...
    def epoch(self, epoch: int, skip: int = 0) -> Batches: ...

def convert(
    output: Union[str, PathLike[str]],
    adata_paths: List[Union[str, PathLike[str]]],
    *,
    n_obs_per_chunk: Optional[int] = None,
    shard_size: Union[int, str, None] = None,
    dataset_size: Union[int, str, None] = None,
    shuffle_chunk_size: Optional[int] = None,
    shuffle: Optional[bool] = None,
    seed: Optional[int] = None,
    var_subset: Optional[List[str]] = None,
    groupby: Optional[List[str]] = None,
    quiet: bool = True,
    allow_disjoint_var: bool = False,
    compressor: Optional[str] = None,
    merge: Optional[str] = None,
    layer: Optional[str] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    src_paths: Optional[List[str]] = None,
) -> Dict[str, Any]: ...
def obs_frames(
    path: Union[str, PathLike[str]], columns: Optional[List[str]] = None
) -> List[Tuple[List[str], List[Tuple[str, str, Any, Any]]]]: ...
def class_requests(
    codes: List[int],
    n_categories: int,
    *,
    batch_size: int,
    chunk_size: int,
    preload_nchunks: int,
    class_weights: Optional[List[float]] = None,
    num_samples: Optional[int] = None,
    drop_last: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> List[Tuple[List[Tuple[int, int]], List[List[int]]]]: ...
def check_options(
    *,
    batch_size: Optional[int] = None,
    chunk_size: Optional[int] = None,
    preload_nchunks: Optional[int] = None,
    num_threads: Optional[int] = None,
    prefetch: Optional[int] = None,
    num_samples: Optional[int] = None,
) -> None: ...
def _panic(message: str) -> None: ...
