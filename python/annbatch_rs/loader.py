"""`Loader`: annbatch's Loader over the Rust pipeline; a `torch.utils.data.IterableDataset`
when torch is installed, a plain iterable without it."""

from __future__ import annotations

import json
import os
import warnings
from importlib.util import find_spec
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Union

import numpy as np

from . import _frameworks, _native, types
from ._sources import LazyObs, Source, dataset_source, source_of
from .collection import DatasetCollection, _path_of

# Native loaders inherited through fork(): their worker threads did not survive the fork, so
# they are never used or dropped in the child (dropping would wait for threads that are gone).
_INHERITED: List[Any] = []


def _iterable_dataset() -> type:
    """torch's ``IterableDataset`` when torch is installed (so that ``DataLoader`` takes the
    loader), else ``object``: annbatch_rs needs no torch for numpy / scipy / jax batches."""
    if find_spec("torch") is None:
        return object
    import torch.utils.data

    return torch.utils.data.IterableDataset


def _cuda_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device
        return False


def _current_cuda(to: Optional[str]) -> int:
    """The CUDA device ``"cuda"`` means: the framework's current one (torch's, or cupy's)."""
    if to == "torch":
        import torch

        return int(torch.cuda.current_device())
    import cupy as cp

    return int(cp.cuda.runtime.getDevice())


class Loader(_iterable_dataset()):  # type: ignore[misc]
    """Shuffled minibatches of an annbatch collection, in the loader's memory (no copy on the
    host), as torch tensors, numpy / scipy, cupy or jax arrays.

    Parameters (annbatch's names and defaults)
    ------------------------------------------
    batch_size
        Rows per batch (1).
    chunk_size
        Rows per contiguous read (512).
    preload_nchunks
        Chunks per fetch (32); the fetched rows are shuffled in memory.
    shuffle
        Shuffle chunks and rows (False).
    drop_last
        Drop the last incomplete batch (False).
    return_index
        Add the global row ids as ``batch["index"]`` (False).
    rng
        A ``numpy.random.Generator`` (annbatch's way to seed): one draw from it becomes
        ``seed`` (``int(rng.integers(2**63))``), so the same generator state gives the same
        epochs. Give ``rng`` or ``seed``, not both.
    seed
        With the epoch number, fixes the batches whatever the threads or workers (0).
    obs_keys
        obs columns to yield in ``batch["obs"]`` (a name or a list of names).
    layer_keys
        ``layers`` entries to yield beside ``X`` in ``batch["layers"]`` (a name or a list):
        the same rows, sparse CSR or dense as stored, float32 values (e.g. ``"counts"``).
    obsm_keys
        ``obsm`` entries to yield beside ``X`` in ``batch["obsm"]`` (a name or a list): the
        same rows, dense ``[rows, d]`` float32 (e.g. ``"X_pca"``).
    obs_as
        ``"pandas"`` (a DataFrame of the ``obs_keys`` columns indexed by obs names, every
        column's dtype and values as anndata reads them) or ``"tensors"`` (one array per
        column: int64 category codes; int64 for integers; float64 for float64 and nullable
        integers, NaN where missing; float32 for float32, float16 and bool).
    device
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the batches are placed (host batches are
        copied there by torch for ``to="torch"``, by cupy for ``to=None``).
    preload_to_gpu
        annbatch's switch for GPU batches; here it means ``device="cuda"`` (default: whether
        cupy is installed and a CUDA device visible, as annbatch's default is cupy being
        installed).
    to
        ``None`` (annbatch's default): ``scipy.sparse.csr_matrix`` / ``numpy.ndarray`` over the
        loader's memory (cupy / cupyx on the GPU); ``"torch"``: torch tensors, zero-copy;
        ``"jax"``: JAX arrays through DLPack.
    elastic
        One global batch order per ``(seed, epoch)``, the same whatever the number of ranks
        and DataLoader workers; each takes a contiguous run of it, and a `state_dict` saved on
        N ranks resumes on M (its ``remaining`` global batches are split afresh: nothing lost
        or repeated). Default False: annbatch's sharding (``n_obs // world_size`` rows each).

    Collections may live in object storage: ``use_collection("s3://bucket/c.zarr")`` or
    ``"https://host/c.zarr"``, with credentials and endpoint from the AWS environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...) and the knobs ``ANNBATCH_REMOTE_*``.

    Each batch is ``{"X": ..., "obs": DataFrame | dict | None, "var": DataFrame | None,
    "index": numpy.ndarray | None}``, plus ``"layers"`` / ``"obsm"`` dicts when
    ``layer_keys`` / ``obsm_keys`` are given; ``X`` is sparse CSR (int32 indices, float32
    values) or dense, as ``to`` says, and so is each entry of ``layers`` / ``obsm``. Layers
    and obsm entries are read from data on disk (a collection, zarr stores and groups, backed
    AnnData).
    ``obs`` holds the ``obs_keys`` columns; without ``obs_keys``, AnnData objects given to
    `add_adata(s)` with obs columns yield their obs rows (a DataFrame slice), as annbatch does.

    var_join
        How datasets with different genes become one ``var`` space: ``"same"`` (default,
        annbatch's rule: they must agree), ``"outer"`` (the sorted union, missing genes are
        zeros: ``anndata.concat(join="outer")``, as `DatasetCollection.add_adatas` joins) or a
        list of var names (that union cut to them, as ``var_subset``). Layers follow ``X``.

    Data: one collection (`use_collection`), or any number of AnnData (`add_adata(s)`) and
    arrays (`add_dataset(s)`) read as one concatenation: paths of ``.h5ad`` files (read as
    they are, no conversion: see the README's "Without converting"), paths and zarr groups on
    disk, backed AnnData, AnnData whose X is a zarr-backed ``CSRDataset`` / ``zarr.Array``,
    and in-memory scipy CSR matrices / numpy arrays (copied once into the loader as float32).
    All share ``var`` unless ``var_join`` joins them.

    Iterating the loader directly is the fast path. In a ``DataLoader(loader, batch_size=None,
    num_workers=N)`` each worker streams a disjoint share and their union is the epoch; under
    ``torch.distributed`` each rank gets a disjoint shard with the same number of batches.
    """

    def __init__(
        self,
        *,
        batch_size: Optional[int] = None,
        chunk_size: Optional[int] = None,
        preload_nchunks: Optional[int] = None,
        shuffle: Optional[bool] = None,
        drop_last: Optional[bool] = None,
        return_index: bool = False,
        batch_sampler: Any = None,
        rng: Optional[np.random.Generator] = None,
        seed: Optional[int] = None,
        obs_keys: Union[str, Sequence[str], None] = None,
        layer_keys: Union[str, Sequence[str], None] = None,
        obsm_keys: Union[str, Sequence[str], None] = None,
        obs_as: str = "pandas",
        device: str = "cpu",
        num_threads: Optional[int] = None,
        prefetch: Optional[int] = None,
        preload_to_gpu: Optional[bool] = None,
        to: Optional[Literal["torch", "jax"]] = None,
        elastic: bool = False,
        var_join: Union[str, Sequence[str]] = "same",
    ):
        super().__init__()
        if batch_sampler is not None:
            given = {k: v for k, v in dict(batch_size=batch_size, chunk_size=chunk_size,
                     preload_nchunks=preload_nchunks, shuffle=shuffle,
                     drop_last=drop_last, rng=rng, seed=seed).items() if v is not None}
            if given:
                raise ValueError(
                    f"Cannot specify {', '.join(given)} when providing a custom sampler. "
                    "These parameters are controlled by the sampler.")
            _check_sampler(batch_sampler)
        if rng is not None and seed is not None:
            raise ValueError("give rng or seed, not both")
        if rng is not None:
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
            seed = int(rng.integers(2**63))
        if to not in (None, "torch", "jax"):
            raise ValueError(f"to={to!r}: expected None, 'torch' or 'jax'")
        for pkg in ("torch", "jax"):
            if to == pkg and not find_spec(pkg):
                raise ImportError(f"Could not find {pkg} dependency. Try `pip install {pkg}`.")
        if to == "torch":
            _frameworks.torch_module()  # an ImportError naming the minimum, now
        # The output framework imported now, not inside the first epoch, where its import
        # (scipy ~50 ms) held up the consumer and, through the bounded channel, the loader.
        _frameworks.import_output(to)
        if device != "cpu" and device != "cuda" and not str(device).startswith("cuda:"):
            raise ValueError(f"device {device!r}: expected \"cpu\", \"cuda\" or \"cuda:N\"")
        if preload_to_gpu is None:
            preload_to_gpu = find_spec("cupy") is not None and _cuda_available()
        if obs_as not in ("pandas", "tensors"):
            raise ValueError(f"obs_as={obs_as!r}: expected 'pandas' or 'tensors'")
        if isinstance(obs_keys, str):
            obs_keys = [obs_keys]
        layer_keys = [layer_keys] if isinstance(layer_keys, str) else list(layer_keys or [])
        obsm_keys = [obsm_keys] if isinstance(obsm_keys, str) else list(obsm_keys or [])
        self._params: Dict[str, Any] = dict(
            batch_size=_native.DEFAULTS["batch_size"] if batch_size is None else batch_size,
            chunk_size=_native.DEFAULTS["chunk_size"] if chunk_size is None else chunk_size,
            preload_nchunks=(_native.DEFAULTS["preload_nchunks"] if preload_nchunks is None
                             else preload_nchunks),
            shuffle=bool(shuffle),
            drop_last=bool(drop_last),
            return_index=return_index,
            seed=0 if seed is None else seed,
            obs_keys=list(obs_keys) if obs_keys else None,
            layer_keys=layer_keys,
            obsm_keys=obsm_keys,
            num_threads=num_threads,
            prefetch=prefetch,
            elastic=bool(elastic),
        )
        self._to = to
        # preload_to_gpu moves torch / numpy batches (cupy) to the GPU; jax places its own.
        gpu = preload_to_gpu and device == "cpu" and to != "jax"
        self._device = "cuda" if gpu else device
        if self._device != "cpu":
            self._check_device()
            # The prefetch thread copies X, layers and obsm to the device (its own stream,
            # DLPack's stream protocol); obs values and row ids are moved as they are used.
            self._params["cuda_device"] = (int(self._device.split(":")[1])
                                           if ":" in self._device else _current_cuda(to))
        self._preload_to_gpu = bool(preload_to_gpu)
        if batch_sampler is None:
            from .samplers import RandomSampler, SequentialSampler

            core = {k: self._params[k] for k in ("chunk_size", "preload_nchunks", "batch_size",
                                                 "drop_last")}
            batch_sampler = (RandomSampler(**core, seed=self._params["seed"])
                             if self._params["shuffle"] else SequentialSampler(**core))
        self._sampler = batch_sampler
        # The native checks, now (annbatch refuses bad settings at construction too).
        _native.check_options(
            **{k: self._params[k] for k in ("batch_size", "chunk_size", "preload_nchunks",
                                             "num_threads", "prefetch")})
        self._obs_as = obs_as
        if isinstance(var_join, str):
            if var_join not in ("same", "outer"):
                raise ValueError(
                    f"var_join={var_join!r}: expected 'same', 'outer' or a list of var names")
            self._var_join: Any = var_join
        else:
            self._var_join = [str(v) for v in var_join]
        self._sources: List[Source] = []
        self._collection_added = False
        self._frame: Any = None  # the sources' obs frames, concatenated on first use
        self._var: Any = None  # the var DataFrame, made on first use
        self._collection: Any = None  # the native Collection, shared by every shard's loader
        self._natives: Dict[tuple, Any] = {}
        self._pid = os.getpid()
        self._epoch = 0
        self._skip = 0
        self._delivered = 0
        self._started = False  # whether a pass of `_epoch` has begun
        self._open_iters = 0  # passes begun and not finished or closed
        self._x_tail: Optional[tuple] = None  # a dense X's dimensions past the second
        # An elastic epoch resumed from a state saved on any world size: (epoch, remaining).
        self._resume: Optional[tuple] = None

    # -- data ---------------------------------------------------------------------------
    def _warn_unyielded(self, elements: Any) -> None:
        """annbatch's FutureWarning, once per element, for the ``layers`` / ``obsm`` entries
        the data holds that batches will not carry (not in ``layer_keys`` / ``obsm_keys``)."""
        wanted = ({f"layers/{k}" for k in self._params["layer_keys"]}
                  | {f"obsm/{k}" for k in self._params["obsm_keys"]})
        for element in dict.fromkeys(elements):
            if element in wanted:
                continue
            group, key = element.split("/", 1)
            warnings.warn(
                f"Only `X`, `obs`, and `var` are kept, with the layers and obsm entries asked "
                f"for: {element} is not yielded (pass {group}_keys=[{key!r}] to get it in "
                "every batch)", FutureWarning, stacklevel=3)

    def _aligned(self, layer_keys: Any, obsm_keys: Any) -> None:
        """Sets ``layer_keys`` / ``obsm_keys`` given to a data method (the shape of annbatch's
        pending ``add_adata(..., obsm_keys=...)``); they must agree with earlier ones."""
        for name, keys in (("layer_keys", layer_keys), ("obsm_keys", obsm_keys)):
            if keys is None:
                continue
            keys = [keys] if isinstance(keys, str) else list(keys)
            if self._params[name] and self._params[name] != keys:
                raise ValueError(
                    f"{name}={keys!r} differs from the loader's {self._params[name]!r}")
            self._params[name] = keys
            self._natives.clear()

    def use_collection(self, collection: Any, *, load_adata: Any = None,
                       layer_keys: Any = None, obsm_keys: Any = None) -> "Loader":
        """Loads from a collection: a `DatasetCollection` (ours or annbatch's), a path, or a
        zarr group; or from ``.h5ad`` files as they are (a path or a list of paths, read as
        `add_adatas` reads them). Only once per loader, as annbatch.

        Without ``load_adata`` (or with annbatch's ``load_all_aligned``) batches carry ``X``
        and, unless ``obs_keys`` is given, every obs column as a DataFrame indexed by
        obs_names (read once, when the first batch is made). ``load_adata`` is annbatch's
        custom loading: it is called with each dataset group (a ``zarr.Group``) and returns an
        AnnData; its ``X`` (any backed CSR / dense element, e.g. ``g["layers"]["counts"]``),
        ``obs`` (the columns yielded) and ``var`` are used as `add_adatas` uses them; layers
        and obsm entries (``layer_keys`` / ``obsm_keys``, here or on the loader) are read from
        the dataset group."""
        self._aligned(layer_keys, obsm_keys)
        if self._collection_added:
            raise RuntimeError(
                "You should not add multiple collections: one was already added to this "
                "loader, and collections are shuffled independently; convert them into one")
        files = (list(collection) if isinstance(collection, (list, tuple))
                 else [collection] if _is_hdf5(collection) else None)
        if files is not None:
            # .h5ad files (and AnnData stores) read as they are: see add_adatas.
            if load_adata is not None:
                raise ValueError("load_adata applies to the dataset groups of a zarr "
                                 "collection, not to .h5ad files")
            self.add_adatas(files)
            self._collection_added = True
            return self
        if isinstance(collection, DatasetCollection):
            path = collection.path
        else:
            group = getattr(collection, "_group", None)  # annbatch's DatasetCollection
            path = _path_of(group if group is not None else collection)
        ours = DatasetCollection._at(path)
        if os.path.isdir(ours.path) and ours.is_empty and not _is_anndata_store(ours.path):
            raise ValueError("DatasetCollection is empty")
        if load_adata is None or getattr(load_adata, "__name__", "") == "load_all_aligned":
            sources = [Source(ours.path, obs=LazyObs(ours.path))]
            if os.path.isdir(ours.path):  # in object storage: no listing round trips here
                keys = ours._dataset_keys
                self._warn_unyielded(_aligned_on_disk(
                    os.path.join(ours.path, keys[0]) if keys else ours.path))
        else:
            groups = list(ours if not ours.is_empty else [_root(ours)])
            adatas = [load_adata(g) for g in groups]
            self._warn_unyielded(e for a in adatas for e in _aligned_of(a))
            sources = [source_of(a, self._params["obs_keys"]) for a in adatas]
            for source, group in zip(sources, groups):
                # Layers and obsm (layer_keys / obsm_keys) come from the dataset group.
                if isinstance(source.native, dict) and source.native.get("format") == "zarr":
                    source.native["group"] = (getattr(group, "path", "") or "").strip("/")
        self._add(sources)
        self._collection_added = True
        return self

    def add_adata(self, adata: Any, *, layer_keys: Any = None,
                  obsm_keys: Any = None) -> "Loader":
        """Appends one AnnData: a path, a zarr group, or an ``anndata.AnnData`` whose X is on
        disk (zarr) or in memory (scipy CSR / numpy). ``layer_keys`` / ``obsm_keys`` as on
        the loader (layers and obsm are read from data on disk)."""
        self._aligned(layer_keys, obsm_keys)
        self._warn_unyielded(_aligned_of(adata))
        return self._add([source_of(adata, self._params["obs_keys"])])

    def add_adatas(self, adatas: Sequence[Any], *, layer_keys: Any = None,
                   obsm_keys: Any = None) -> "Loader":
        """Appends AnnData (see `add_adata`), read in order as one concatenation."""
        self._aligned(layer_keys, obsm_keys)
        adatas = list(adatas)
        if not adatas:
            raise ValueError("Number of adatas must be at least 1")
        self._warn_unyielded(e for a in adatas for e in _aligned_of(a))
        return self._add([source_of(a, self._params["obs_keys"]) for a in adatas])

    def add_dataset(self, dataset: Any, obs: Any = None, var: Any = None) -> "Loader":
        """Appends one X (a zarr ``CSRDataset`` / ``zarr.Array``, a scipy CSR matrix or a numpy
        array) with optional obs and var DataFrames."""
        return self._add([dataset_source(dataset, obs, var, self._params["obs_keys"])])

    def add_datasets(self, datasets: Sequence[Any], obs: Optional[Sequence[Any]] = None,
                     var: Optional[Sequence[Any]] = None) -> "Loader":
        """Appends several X (see `add_dataset`)."""
        datasets = list(datasets)
        obs = list(obs) if obs is not None else [None] * len(datasets)
        var = list(var) if var is not None else [None] * len(datasets)
        if not len(datasets) == len(obs) == len(var):
            raise ValueError("datasets, obs and var must have the same length")
        return self._add([dataset_source(d, o, v, self._params["obs_keys"])
                          for d, o, v in zip(datasets, obs, var)])

    def _add(self, sources: List[Source]) -> "Loader":
        if self._open_iters > 0:
            # A pass was sized on the rows it started with.
            raise RuntimeError("Cannot add datasets while the loader is being iterated. "
                               "Finish or close the iterator first.")
        every = self._sources + sources
        with_obs = [s.obs is not None for s in every]
        if any(with_obs) and not all(with_obs):
            raise ValueError(
                "datasets with obs columns and datasets without cannot be mixed in one loader")
        tails = {s.tail for s in every}
        if len(tails) > 1:
            raise ValueError("datasets whose X rows have different shapes: "
                             f"{sorted(map(str, tails))}")
        # Checks var (or joins it) and X now.
        collection = _native.Collection([s.native for s in every], join=self._var_join)
        self._check(every, collection)
        # annbatch's warning when datasets of another X dtype join (once: when the mix
        # begins); its batches promote, ours hold float32 whatever the stored dtypes.
        before = _x_dtypes(self._sources, self._collection)
        dtypes = _x_dtypes(every, collection)
        if len(set(dtypes)) > 1 and len(set(before)) <= 1:
            other = next(d for d in dtypes if d != dtypes[0])
            warnings.warn(
                f"Adding dataset with dtype {other!r} that differs from the existing dataset "
                f"dtype(s) (first dataset: {dtypes[0]!r}): batches hold float32 values "
                "whatever the stored dtype", UserWarning, stacklevel=3)
        self._after_fork()
        self._sources, self._frame, self._collection = every, None, collection
        self._x_tail = next(iter(tails))
        self._var = None
        self._natives.clear()
        return self

    def _check(self, sources: List[Source], collection: Any) -> None:
        """Subclasses refuse data here, before it is added."""

    def _after_fork(self) -> None:
        """In a forked child, sets the parent's native loaders aside (their threads are gone)."""
        if os.getpid() != self._pid:
            _INHERITED.append(self._natives)
            self._natives, self._collection, self._pid = {}, None, os.getpid()

    def _native_collection(self) -> Any:
        self._after_fork()
        if not self._sources:
            raise RuntimeError("no data: call use_collection(...) or add_adata(...) first")
        if self._collection is None:
            self._collection = _native.Collection([s.native for s in self._sources],
                                                  join=self._var_join)
        return self._collection

    def __getstate__(self) -> Dict[str, Any]:
        # DataLoader workers (spawn) get the sources and reopen them; natives stay here.
        state = dict(self.__dict__)
        state.update(_natives={}, _collection=None, _frame=None, _var=None, _open_iters=0)
        return state

    # -- sizes --------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Rows over every dataset added."""
        return self._native_collection().n_obs

    @property
    def n_var(self) -> int:
        """Variables (columns of X), shared by every dataset."""
        return self._native_collection().n_var

    def __len__(self) -> int:
        return len(self._native(self._shard()))

    # -- epochs and state ---------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration streams (it seeds the shuffle). The epoch a loaded
        state (`load_state_dict`) stands in, not yet begun, keeps its position: PyTorch
        Lightning sets the epoch after restoring a mid-epoch checkpoint."""
        if int(epoch) == self._epoch and not self._started and self._delivered == 0:
            return
        self._epoch, self._skip, self._delivered, self._started = int(epoch), 0, 0, False

    def state_dict(self) -> Dict[str, Any]:
        """Where the current epoch stands; `load_state_dict` resumes exactly there.

        With ``elastic=True`` it also holds ``remaining``: the epoch's global batches that no
        rank has delivered yet (ranks in lockstep, as under DDP), which `load_state_dict`
        resumes on any number of ranks."""
        state: Dict[str, Any] = {"epoch": self._epoch, "batches": self._skip + self._delivered}
        if self._params["elastic"]:
            native = self._native(self._shard())
            state["remaining"] = [list(r) for r in native.elastic_state(
                state["epoch"], state["batches"])]
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "remaining" in state:
            if not self._params["elastic"]:
                raise ValueError("an elastic state (with 'remaining') needs Loader(elastic=True)")
            self._epoch, self._skip, self._delivered = int(state["epoch"]), 0, 0
            self._resume = (self._epoch, [(int(a), int(b)) for a, b in state["remaining"]])
            self._natives.clear()
            self._started = False
            return
        self._epoch, self._skip = int(state["epoch"]), int(state["batches"])
        self._delivered, self._started = 0, False

    # -- iteration ----------------------------------------------------------------------
    def _shard(self) -> tuple:
        rank, world = 0, 1
        from .samplers import DistributedSampler

        if isinstance(self._sampler, DistributedSampler):
            pass  # the sampler shards by rank itself (and by DataLoader worker, in Python)
        elif _frameworks.torch_distributed() is not None:
            dist = _frameworks.torch_distributed()
            rank, world = dist.get_rank(), dist.get_world_size()
        info = _frameworks.worker_info()
        if info is not None:
            rank, world = rank * info.num_workers + info.id, world * info.num_workers
        return rank, world

    def _yields_frames(self) -> bool:
        return not self._params["obs_keys"] and bool(self._sources) and all(
            s.obs is not None for s in self._sources)

    def _native(self, shard: tuple) -> Any:
        collection = self._native_collection()
        if shard not in self._natives:
            rank, world = shard
            distributed = _frameworks.torch_distributed() is not None
            # DataLoader workers share an epoch: together they cover every row. Ranks of a
            # distributed job need equal batch counts.
            params = dict(self._params, rank=rank, world_size=world, equal_batches=distributed)
            if _frameworks.worker_info() is not None:
                # A DataLoader worker's CUDA tensors reach the main process through torch's
                # IPC, which shares only memory of torch's own allocator: copy there with torch.
                params.pop("cuda_device", None)
            if self._resume is not None:
                params["resume"] = self._resume
            # Frames of obs rows are taken by the batches' global row ids.
            params["return_index"] = params["return_index"] or self._needs_index()
            settings = _native_settings(self._sampler)
            if settings is None and self._params["elastic"]:
                raise ValueError("elastic=True applies to the chunked samplers "
                                 "(RandomSampler, SequentialSampler), not to a Python sampler")
            if settings is None:
                # A sampler in Python: it shards for workers itself (annbatch's samplers read
                # torch's worker info), the Rust side reads what it requests.
                from ._sampling import PythonRequests

                params.update(rank=0, world_size=1, equal_batches=False,
                              batch_sampler=PythonRequests(self._sampler))
            else:
                params.update(settings)
            native = _native.Loader(collection, **params)
            if params["elastic"] and distributed and self._resume is None:
                _warn_undelivered(native, world)
            self._natives[shard] = native
        return self._natives[shard]

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        from ._sampling import in_sampler

        if in_sampler():
            raise RuntimeError("a batch_sampler's sample() iterates a Loader: a sampler decides "
                               "rows from the data it is given (n_obs, obs), it cannot read "
                               "batches of a loader while one runs it")
        shard = self._shard()
        frame = (self._yields_frames() or self._keys_from_frames()) and self._frame is None
        if frame and shard not in self._natives:
            native = self._native_beside_frame(shard)
        else:
            native = self._native(shard)
        if self._started:
            # An earlier pass of this epoch began (and was left, or ran out without the
            # generator being resumed): a new pass is the next epoch, as annbatch's advancing
            # rng gives. set_epoch / load_state_dict choose the epoch instead.
            self._next_epoch(self._epoch)
        self._started = True
        epoch, skip = self._epoch, self._skip
        self._delivered = 0
        batches = native.epoch(epoch, skip)
        total = len(native) if self._resume is None else None
        if frame:
            # Built while the loader's threads read the first batches, not after them.
            self._obs_frame()
        self._open_iters += 1
        try:
            for raw in batches:
                self._delivered += 1
                batch = self._batch(raw)
                if total is not None and skip + self._delivered >= total:
                    # The epoch's last batch: from now on the loop is at the next epoch
                    # (state_dict says so; a loop that stops after len(loader) batches, as
                    # Lightning's, gets a new order next time).
                    self._next_epoch(epoch)
                yield batch
        finally:
            self._open_iters -= 1
            batches.close()
        if self._epoch == epoch:
            self._next_epoch(epoch)

    def _next_epoch(self, epoch: int) -> None:
        """Moves to the epoch after ``epoch``, from its first batch."""
        self._epoch, self._skip, self._delivered, self._started = epoch + 1, 0, 0, False
        if self._resume is not None:
            self._resume = None
            self._natives.clear()

    def stats(self) -> Dict[str, float]:
        """Where this process's loading time went, summed over its epochs (and shards):
        ``cells``, ``batches``, ``seconds``, ``cells_per_second``, the loader's
        ``read_seconds`` (reading + decoding), ``assemble_seconds`` and ``consumer_seconds``
        (waiting for your training step), ``starved_seconds`` (your loop waiting for the
        loader), and ``split_fetches`` (fetches built in several groups to stay within the
        memory bound, ``ANNBATCH_MEMORY_LIMIT``). A slow or stalled loader also logs to the
        ``annbatch`` logger at DEBUG level."""
        total: Dict[str, float] = {}
        for native in self._natives.values():
            for key, value in native.stats().items():
                total[key] = total.get(key, 0) + value
        if total.get("seconds"):
            total["cells_per_second"] = total["cells"] / total["seconds"]
        return total

    def _keys_from_frames(self) -> bool:
        """Whether ``obs_keys`` come as pandas columns cut from the datasets' obs frames:
        every column's dtype and values as anndata reads them (the native arrays are the
        tensors' form: float32 / float64 / int64)."""
        return (bool(self._params["obs_keys"]) and self._obs_as == "pandas"
                and bool(self._sources) and all(s.obs is not None for s in self._sources))

    def _needs_index(self) -> bool:
        return self._yields_frames() or self._keys_from_frames()

    def _native_beside_frame(self, shard: tuple) -> Any:
        """The native loader of ``shard``, built on a thread (its batch memory paged in, the GIL
        released) while this one builds the obs frame; the thread ends before this returns, so
        none is left for a DataLoader fork to copy."""
        import threading

        self._native_collection()  # opened once, here, before the two share it
        built: Dict[str, Any] = {}

        def build() -> None:
            try:
                built["native"] = self._native(shard)
            except BaseException as e:  # raised again below, in the caller's thread
                built["error"] = e

        thread = threading.Thread(target=build, name="annbatch-build", daemon=True)
        thread.start()
        try:
            self._obs_frame()
        finally:
            thread.join()
        if "error" in built:
            raise built["error"]
        return built["native"]

    def _obs_frame(self) -> Any:
        """Every dataset's obs rows in one frame (False for obs without columns); with
        ``obs_keys`` (as pandas), just those columns."""
        if self._frame is None:
            import pandas as pd

            frames = self._key_frames() if self._keys_from_frames() else (self._obs or [])
            self._frame = (pd.concat(frames) if any(len(f.columns) for f in frames)
                           else False)
        return self._frame

    def _key_frames(self) -> List[Any]:
        """Each dataset's ``obs_keys`` columns, as anndata reads them."""
        from .collection import obs_frames

        keys = list(self._params["obs_keys"])
        opened = self._native_collection() if len(self._sources) == 1 else None
        frames: List[Any] = []
        for s in self._sources:
            if isinstance(s.obs, LazyObs):
                frames.extend(obs_frames(s.obs.path, keys, opened=opened))
            else:
                frames.append(s.obs[keys])
        return frames

    def _rows(self, index: np.ndarray) -> Any:
        """The obs frame rows of global row ids ``index`` (None for obs without columns)."""
        frame = self._obs_frame()
        if frame is False:
            return None
        return frame.iloc[index]

    def _check_device(self) -> None:
        """A CUDA device needs torch (``to="torch"``) or cupy (``to=None``) to copy to it; the
        device itself is checked as the first batch is placed."""
        need = "cupy" if self._to is None else self._to
        if self._to == "jax":
            raise ValueError("device applies to to='torch' and to=None (cupy); jax places "
                             "arrays itself (jax.device_put)")
        if find_spec(need) is None:
            raise ImportError(f"Could not find {need}: device={self._device!r} with "
                              f"to={self._to!r} needs it")
        if need == "torch":
            import torch

            index = int(self._device.split(":")[1]) if ":" in self._device else 0
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                from ._native import AnnbatchError

                raise AnnbatchError(
                    f"device {self._device} unavailable: torch sees "
                    f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} "
                    "CUDA device(s)")

    def _batch(self, raw: Dict[str, Any]) -> Dict[str, Any]:
        obs = None
        index = None
        if raw["index"] is not None:
            index = _frameworks.numpy_array(raw["index"])
        if self._keys_from_frames() and index is not None:
            obs = self._rows(index)
        elif self._params["obs_keys"]:
            if self._obs_as == "tensors":
                obs = {name: self._vector(values) for name, values in raw["obs"].items()}
            else:
                import pandas as pd

                columns = {}
                for name, values in raw["obs"].items():
                    cats = raw["categories"].get(name)
                    values = _frameworks.numpy_array(values)
                    if cats is not None:
                        columns[name] = pd.Categorical.from_codes(values, cats)
                    else:
                        columns[name] = values
                obs = pd.DataFrame(columns)
        elif self._yields_frames():
            obs = self._rows(index)
        x = self._output(raw["X"])
        if self._x_tail is not None:  # a dense X of more dimensions: rows get them back
            x = x.reshape((x.shape[0], *self._x_tail))
        out = {"X": x, "obs": obs, "var": self.var,
               "index": index if self._params["return_index"] else None}
        # Only when asked for: annbatch 0.3.1's batches have exactly the four keys above.
        for group, keys in (("layers", "layer_keys"), ("obsm", "obsm_keys")):
            if self._params[keys]:
                out[group] = {k: self._output(v) for k, v in raw[group].items()}
        return out

    def _vector(self, a: Any) -> Any:
        """A 1-d native array (obs values or codes) as ``to`` asks."""
        if self._to == "torch":
            return _frameworks.torch_vector(a, self._device)
        if self._to == "jax":
            import jax.numpy as jnp

            return jnp.from_dlpack(_frameworks.numpy_array(a))
        return _frameworks.numpy_array(a)

    def _output(self, matrix: Any) -> Any:
        """A native matrix as ``to`` asks: torch, scipy / numpy (cupy on the GPU) or jax."""
        if self._to == "torch":
            return _frameworks.torch_tensor(matrix, self._device)
        if self._to == "jax":
            return _frameworks.jax_array(matrix)
        if self._device != "cpu":
            return _frameworks.cupy_array(matrix, self._device)
        return _frameworks.scipy_or_numpy(matrix)

    @property
    def sampler(self) -> "_EpochSetter":
        """What PyTorch Lightning calls ``set_epoch`` on as each epoch starts (it looks for a
        loader's ``sampler``): this loader's `set_epoch`. So a fit resumed from a checkpoint
        taken at an epoch's end streams the next epoch's order, not epoch 0's again."""
        return _EpochSetter(self)

    # -- annbatch's attributes ------------------------------------------------------------
    @property
    def batch_sampler(self) -> Any:
        """The sampler: the one given, or the `SequentialSampler` / `RandomSampler` built from
        the loader's settings."""
        return self._sampler

    # annbatch's private names that integrations use: scvi-tools' AnnbatchDataModule reads
    # ``_batch_sampler`` and ``_obs`` and swaps ``_batch_sampler`` on a ``copy.copy`` of the
    # loader to split train / validation with samplers' ``mask``.
    @property
    def _batch_sampler(self) -> Any:
        return self._sampler

    @_batch_sampler.setter
    def _batch_sampler(self, sampler: Any) -> None:
        _check_sampler(sampler)
        self._sampler = sampler
        self._natives = {}  # a new dict: a copy.copy of this loader must not share them

    @property
    def _obs(self) -> Optional[List[Any]]:
        """Each dataset's obs DataFrame (annbatch's ``Loader._obs``), None without obs."""
        if not self._sources or not self._yields_frames():
            return None
        # One collection alone: its datasets are those of the loader's open collection.
        opened = self._native_collection() if len(self._sources) == 1 else None
        frames: List[Any] = []
        for s in self._sources:
            frames.extend(s.obs.frames(opened) if isinstance(s.obs, LazyObs) else [s.obs])
        return frames

    @property
    def var(self) -> Any:
        """The variables as a DataFrame indexed by var names: the ``var`` given with the data,
        or the var names of a collection; None when datasets came without var (as annbatch)."""
        if not self._sources:
            return None
        if self._var is None:
            import pandas as pd

            given = next((s.var for s in self._sources if s.var is not None), None)
            if given is None and not any(isinstance(s.native, str) for s in self._sources):
                return None  # datasets added without var, as annbatch
            self._var = (given if given is not None else
                         pd.DataFrame(index=pd.Index(self._native_collection().var_names())))
        return self._var

    @property
    def dataset_type(self) -> type:
        """The kind of on-disk X: ``anndata.abc.CSRDataset`` for sparse or ``zarr.Array`` for
        dense (`types.CSRDataset` / `types.DenseArray` where those are not installed)."""
        if not self._sources:
            raise IndexError("no datasets added yet")
        sparse = self._native_collection().is_sparse
        try:
            if sparse:
                import anndata

                return anndata.abc.CSRDataset
            import zarr

            return zarr.Array
        except ImportError:
            return types.CSRDataset if sparse else types.DenseArray

    def __repr__(self) -> str:
        paths = [s.native if isinstance(s.native, str) else "<in memory>" for s in self._sources]
        return f"Loader({paths!r}, {self._params})"


def _warn_undelivered(native: Any, shards: int) -> None:
    """Says how many global batches an elastic epoch leaves out: ranks get equal batch
    counts (so DDP's collectives stay in step), the last ``total mod shards`` global batches
    of the epoch (the partial last one among them, when ``drop_last=False``) go to none."""
    left = sum(stop - start for start, stop in native.elastic_state(0, len(native)))
    if left:
        warnings.warn(
            f"elastic sharding over {shards} ranks/workers gives each {len(native)} batches: "
            f"the last {left} global batch(es) of every epoch are not delivered (equal batch "
            "counts keep DDP in step; a batch count that divides by the ranks delivers every "
            "row)", UserWarning, stacklevel=3)


class _EpochSetter:
    """`Loader.sampler`: forwards ``set_epoch`` to its loader."""

    def __init__(self, loader: "Loader"):
        self._loader = loader

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)


def _x_dtypes(sources: List[Source], collection: Any) -> List[str]:
    """Each dataset's X dtype as given: the native collection's, except for in-memory arrays,
    which it holds as float32 (their own dtype is recorded in the native dict)."""
    if collection is None:
        return []
    given = [s.native.get("x_dtype") if isinstance(s.native, dict) else None for s in sources]
    if all(g is None for g in given):
        return list(collection.x_dtypes())
    out: List[str] = []
    for source, dtype in zip(sources, given):
        out.extend([dtype] if dtype is not None
                   else _native.Collection([source.native]).x_dtypes())
    return out


def _is_hdf5(path: Any) -> bool:
    """Whether ``path`` is a local file that starts as HDF5 does (an ``.h5ad``)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except (OSError, TypeError):
        return False


def _aligned_of(adata: Any) -> List[str]:
    """The ``layers/…`` and ``obsm/…`` entries of an AnnData (none for a path or group)."""
    return ([f"layers/{k}" for k in getattr(adata, "layers", {}) or {}]
            + [f"obsm/{k}" for k in getattr(adata, "obsm", {}) or {}])


def _aligned_on_disk(dataset: str) -> List[str]:
    """The ``layers/…`` and ``obsm/…`` entries of the AnnData store at ``dataset`` (a local
    directory; none for a URL)."""
    found = []
    for group in ("layers", "obsm"):
        try:
            names = sorted(os.listdir(os.path.join(dataset, group)))
        except OSError:
            continue
        found += [f"{group}/{n}" for n in names
                  if os.path.isfile(os.path.join(dataset, group, n, "zarr.json"))
                  or os.path.isfile(os.path.join(dataset, group, n, ".zattrs"))]
    return found


def _check_sampler(sampler: Any) -> None:
    """A sampler the loader can run: ours, a subclass, or any object with annbatch's sampler
    interface (annbatch's own samplers included)."""
    from .abc import Sampler

    if isinstance(sampler, Sampler):
        return
    if not all(callable(getattr(sampler, name, None))
               for name in ("sample", "validate", "n_batches")):
        raise TypeError(
            f"batch_sampler must be an annbatch_rs.abc.Sampler (the built-in samplers or a "
            f"subclass) or have annbatch's sampler interface (sample, validate, n_batches), got "
            f"{type(sampler).__name__}")


def _native_settings(sampler: Any) -> Optional[Dict[str, Any]]:
    """The Rust sampler's settings for a built-in sampler the Rust side can run as it is; None
    for a sampler in Python (custom, a subclass overriding ``_sample``, or settings only the
    Python implementation has, such as a ``mask``)."""
    settings = getattr(sampler, "_settings", None)
    if settings is None:
        return None
    return settings()


def _is_anndata_store(path: str) -> bool:
    """Whether ``path`` is one AnnData store (zarr v3 or v2), which loads as one dataset."""
    for meta in ("zarr.json", ".zattrs"):
        try:
            with open(os.path.join(path, meta)) as f:
                attrs = json.load(f)
        except (FileNotFoundError, ValueError):
            continue
        attrs = attrs.get("attributes", {}) if meta == "zarr.json" else attrs
        if attrs.get("encoding-type") == "anndata":
            return True
    return False


def _root(collection: DatasetCollection) -> Any:
    import zarr

    return zarr.open_group(collection.path, mode="r")
