"""annbatch's samplers, as settings for the Rust samplers: pass one as
``Loader(batch_sampler=...)``.

- `SequentialSampler`: chunks in order, rows in order.
- `RandomSampler`: random contiguous chunks, rows shuffled in memory within each fetch.
- `DistributedSampler`: wraps either, one disjoint shard per rank (``dist_info="torch"`` reads
  ``torch.distributed``; or a callable returning ``(rank, world_size)``).
- `ClassSampler` / `WeightedClassSampler`: annbatch's class samplers, with its semantics (one
  class per batch / batches mixing classes by weight; every run of a class at least
  ``chunk_size`` rows), run in Python.
- `MixedClassSampler`: ours, run in Rust: class-balanced (or weighted) draws whose fetches mix
  classes, taking runs shorter than ``chunk_size`` too (collections not sorted by class).

All are `annbatch_rs.abc.Sampler` instances. Randomness comes from ``seed`` (or one draw from an
annbatch-style ``rng``) and the loader's epoch, so runs are reproducible across threads, workers
and ranks. Settings only the Python implementation has (``mask``, ``replacement``,
``num_samples`` of the chunk samplers) and subclasses overriding ``_sample`` run in Python:
their requests are drawn in a background thread and read by the Rust pipeline.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _frameworks, _native
from ._class_samplers import ClassSampler, WeightedClassSampler
from .abc import Sampler
from .abc.sampler import split_rows
from .types import LoadRequest

__all__ = [
    "ClassSampler",
    "DistributedSampler",
    "MixedClassSampler",
    "RandomSampler",
    "SequentialSampler",
    "WeightedClassSampler",
]


def _check(**values: Any) -> None:
    """The native loader's checks of these settings (one wording, in Rust)."""
    _native.check_options(**values)


def _seed_of(rng: Optional[np.random.Generator], seed: Optional[int]) -> int:
    """The Rust sampler's seed: ``seed``, or one draw from ``rng`` (see `Loader`)."""
    if rng is not None and seed is not None:
        raise ValueError("give rng or seed, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return int(rng.integers(2**63))
    return 0 if seed is None else int(seed)


def _rng_of(rng: Any) -> Any:
    """``rng``, or for an integer (annbatch's deprecated form) a generator seeded with it, with
    annbatch's FutureWarning pointing at the code that built the sampler."""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        warnings.warn(f"Passing a seed as rng is deprecated; pass np.random.default_rng({rng!r})"
                      " instead", FutureWarning, stacklevel=4)
        return np.random.default_rng(int(rng))
    return rng


def _mask_of(mask: Optional[slice]) -> slice:
    if mask is None:
        return slice(0, None)
    if not isinstance(mask, slice):
        raise ValueError(f"mask must be a slice, got {mask!r}")
    if mask.step not in (None, 1):
        raise ValueError(f"mask.step must be 1, but got {mask.step}")
    if (mask.start or 0) < 0:
        raise ValueError(f"mask.start must be >= 0, but got {mask.start}")
    if mask.stop is not None and mask.stop <= (mask.start or 0):
        raise ValueError(f"mask.start must be < mask.stop, got {mask!r}")
    return slice(mask.start or 0, mask.stop)


class _ChunkSampler(Sampler):
    """Contiguous chunks of ``chunk_size`` rows, ``preload_nchunks`` per fetch, cut into batches.

    Runs in Rust (its own seeded streams) unless it needs what only the Python implementation
    here has: a ``mask``, ``replacement`` or ``num_samples``, or a subclass overriding
    ``_sample``; then the Rust pipeline reads the requests this class draws."""

    def __init__(self, chunk_size: int, preload_nchunks: int, batch_size: int, *,
                 shuffle: bool, drop_last: bool = False, mask: Optional[slice] = None,
                 replacement: bool = False, num_samples: Optional[int] = None,
                 rng: Optional[np.random.Generator] = None, seed: Optional[int] = None):
        _check(chunk_size=chunk_size, preload_nchunks=preload_nchunks, batch_size=batch_size)
        if num_samples is not None:
            _check(num_samples=num_samples)
        self.chunk_size, self.preload_nchunks = int(chunk_size), int(preload_nchunks)
        self._batch_size, self._shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.replacement, self.num_samples = replacement, num_samples
        self._mask = _mask_of(mask)
        self._rng = rng = _rng_of(rng)
        self.seed = _seed_of(rng, seed)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def shuffle(self) -> bool:
        return self._shuffle

    @property
    def mask(self) -> slice:
        return self._mask

    @mask.setter
    def mask(self, value: Optional[slice]) -> None:
        self._mask = _mask_of(value)

    def _span(self, n_obs: int) -> Tuple[int, int]:
        start = self._mask.start or 0
        stop = n_obs if self._mask.stop is None else self._mask.stop
        if stop > n_obs:
            raise ValueError(f"mask.stop ({stop}) exceeds loader n_obs ({n_obs}): the sampler's "
                             "range must be within the loader's rows")
        if start >= stop:
            raise ValueError(f"mask.start must be < mask.stop: {self._mask!r} selects no row "
                             f"of {n_obs}")
        return start, stop

    def _epoch_rows(self, n_obs: int) -> int:
        start, stop = self._span(n_obs)
        return self.num_samples or (stop - start)

    def n_batches(self, n_obs: int) -> int:
        rows = self._epoch_rows(n_obs)
        return rows // self._batch_size if self.drop_last else -(-rows // self._batch_size)

    def validate(self, n_obs: int) -> None:
        start, stop = self._span(n_obs)
        rows = self._epoch_rows(n_obs)
        if self.replacement and stop - start < self.chunk_size and rows > stop - start:
            raise ValueError(
                f"Observation range ({stop - start}) is smaller than chunk_size "
                f"({self.chunk_size}) with num_samples ({rows}) exceeding that range: reduce "
                "chunk_size, widen the mask, or set num_samples <= the range")
        if not self.replacement and rows > stop - start:
            raise ValueError(
                f"num_samples ({rows}) cannot exceed the observation range ({stop - start}).")

    def _python_only(self) -> bool:
        return (self._mask != slice(0, None) or self.replacement or self.num_samples is not None
                or type(self)._sample is not _ChunkSampler._sample)

    def _settings(self) -> Optional[Dict[str, Any]]:
        if self._python_only():
            return None
        return dict(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                    batch_size=self._batch_size, drop_last=self.drop_last,
                    shuffle=self._shuffle, seed=self.seed)

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def _chunks(self, n_obs: int) -> List[slice]:
        start, stop = self._span(n_obs)
        rng = self._generator()
        if self.replacement:
            n, rest = divmod(self._epoch_rows(n_obs), self.chunk_size)
            width = min(self.chunk_size, stop - start)
            firsts = rng.integers(start, stop - width + 1, size=n)
            chunks = [slice(int(a), int(a) + width) for a in firsts]
            if rest and not self.drop_last:
                a = int(rng.integers(start, stop - rest + 1))
                chunks.append(slice(a, a + rest))
            return chunks
        bounds = list(range(start, stop, self.chunk_size))
        chunks = [slice(a, min(a + self.chunk_size, stop)) for a in bounds]
        if self._shuffle:
            # The short last chunk stays last, so that only the epoch's last fetch is short.
            full = chunks[:-1] if chunks[-1].stop - chunks[-1].start < self.chunk_size else chunks
            order = rng.permutation(len(full))
            chunks = [full[i] for i in order] + chunks[len(full):]
        return chunks

    def _sample(self, n_obs: int) -> Iterator[LoadRequest]:
        chunks = self._chunks(n_obs)
        left = self.n_batches(n_obs)
        rng = self._generator()
        # In a DataLoader worker: every worker's copy drew the same chunks (same generator
        # state), and each reads its own contiguous share of them, so together they cover the
        # epoch once.
        info = _frameworks.worker_info()
        if info is not None and info.num_workers > 1:
            share = np.array_split(np.arange(len(chunks)), info.num_workers)[info.id]
            chunks = [chunks[i] for i in share]
            left = left // info.num_workers + (info.id < left % info.num_workers)
        for k in range(0, len(chunks), self.preload_nchunks):
            if left <= 0:
                return
            fetch = chunks[k : k + self.preload_nchunks]
            rows = sum(c.stop - c.start for c in fetch)
            order = rng.permutation(rows) if self._shuffle else np.arange(rows)
            if self.drop_last:
                order = order[: rows - rows % self._batch_size]
            splits = split_rows(order, self._batch_size)[:left]
            if not splits:
                return
            left -= len(splits)
            yield {"requests": fetch, "splits": splits}


class SequentialSampler(_ChunkSampler):
    """Chunks of ``chunk_size`` rows in order, ``preload_nchunks`` per fetch, rows in order."""

    def __init__(self, chunk_size: int, preload_nchunks: int, batch_size: int, *,
                 drop_last: bool = False, mask: Optional[slice] = None):
        super().__init__(chunk_size, preload_nchunks, batch_size, shuffle=False,
                         drop_last=drop_last, mask=mask)


class RandomSampler(_ChunkSampler):
    """Random contiguous chunks of ``chunk_size`` rows, ``preload_nchunks`` per fetch, rows
    shuffled in memory; every row once per epoch (or ``num_samples`` rows, drawn with
    ``replacement`` if asked). ``rng`` (annbatch's) or ``seed`` fixes the draws."""

    def __init__(self, chunk_size: int, preload_nchunks: int, batch_size: int, *,
                 replacement: bool = False, num_samples: Optional[int] = None,
                 drop_last: bool = False, mask: Optional[slice] = None,
                 rng: Optional[np.random.Generator] = None, seed: Optional[int] = None):
        super().__init__(chunk_size, preload_nchunks, batch_size, shuffle=True,
                         drop_last=drop_last, mask=mask, replacement=replacement,
                         num_samples=num_samples, rng=rng, seed=seed)


class DistributedSampler(Sampler):
    """annbatch's sharding for distributed training: rank ``r`` of ``w`` draws from its own
    contiguous rows, ``[r * n, (r + 1) * n)`` with ``n = n_obs // w`` (rounded down to whole
    batches with ``enforce_equal_batches``, so every rank yields the same number of batches),
    through a copy of ``sampler`` whose ``mask`` is moved onto that shard for each pass.

    ``dist_info``: ``"torch"`` (``torch.distributed``), ``"jax"`` (``jax.process_index()`` /
    ``process_count()``) or a callable returning ``(rank, world_size)``; read once, here.
    """

    def __init__(self, sampler: Sampler, *,
                 dist_info: Union[str, Callable[[], Tuple[int, int]]] = "torch",
                 enforce_equal_batches: bool = True):
        if not isinstance(sampler, Sampler):
            raise TypeError(f"DistributedSampler wraps a Sampler, got {type(sampler).__name__}")
        if isinstance(sampler, MixedClassSampler):
            raise NotImplementedError(
                "DistributedSampler(MixedClassSampler): give the MixedClassSampler to the Loader "
                "itself; under torch.distributed each rank then draws its own share of "
                "num_samples")
        self._rank, self._world_size = _dist_info(dist_info)
        self.enforce_equal_batches = enforce_equal_batches
        # A copy: its mask is moved onto this rank's shard while a pass runs.
        self.sampler = copy.deepcopy(sampler)
        self.sampler.mask = slice(0, None)
        # Ranks draw independently.
        if isinstance(self.sampler, _ChunkSampler):
            self.sampler.seed = int(np.random.default_rng(
                [self.sampler.seed, self._rank]).integers(2**63))
            self.sampler._rng = None
        elif isinstance(self.sampler.rng, np.random.Generator):
            root = int(self.sampler.rng.integers(np.iinfo(np.int64).max))
            self.sampler.rng = np.random.default_rng([self._rank, root])

    @property
    def batch_size(self) -> Optional[int]:
        return self.sampler.batch_size

    @property
    def shuffle(self) -> bool:
        return self.sampler.shuffle

    def rank_and_world_size(self) -> Tuple[int, int]:
        return self._rank, self._world_size

    def _shard(self, n_obs: int) -> slice:
        rank, world = self._rank, self._world_size
        if world < 1:
            raise ValueError(f"invalid parameter world_size = {world}: must be at least 1")
        if not 0 <= rank < world:
            raise ValueError(f"invalid parameter rank = {rank}: must be in 0..{world}")
        per_rank = n_obs // world
        if self.enforce_equal_batches and self.sampler.batch_size:
            per_rank -= per_rank % self.sampler.batch_size
        if per_rank == 0:
            raise ValueError(
                f"{n_obs} rows cannot be shared by {world} ranks"
                + (f" in whole batches of {self.sampler.batch_size}"
                   if self.enforce_equal_batches else ""))
        return slice(rank * per_rank, (rank + 1) * per_rank)

    def n_batches(self, n_obs: int) -> int:
        """Batches of this rank's shard; the wrapped sampler's mask is left as it is (a pass
        may be running on it)."""
        shard = self._shard(n_obs)
        inner = copy.copy(self.sampler)
        if hasattr(inner, "_mask"):
            inner._mask = slice(0, None)
        return inner.n_batches(shard.stop - shard.start)

    def validate(self, n_obs: int) -> None:
        self._shard(n_obs)
        self.sampler.validate(n_obs)

    def _sample(self, n_obs: int) -> Iterator[LoadRequest]:
        self.sampler.mask = self._shard(n_obs)
        try:
            yield from self.sampler.sample(n_obs)
        finally:
            self.sampler.mask = slice(0, None)


def _dist_info(dist_info: Any) -> Tuple[int, int]:
    if callable(dist_info):
        rank, world = dist_info()
        return int(rank), int(world)
    if dist_info == "torch":
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "torch.distributed is not initialized: initialize it (init_process_group) "
                "before creating a DistributedSampler with dist_info='torch', or pass "
                "dist_info=lambda: (rank, world_size)")
        return dist.get_rank(), dist.get_world_size()
    if dist_info == "jax":
        import jax

        if not getattr(jax.distributed, "is_initialized", lambda: True)():
            raise RuntimeError(
                "JAX distributed is not initialized: call jax.distributed.initialize() before "
                "creating a DistributedSampler with dist_info='jax'")
        return jax.process_index(), jax.process_count()
    raise ValueError(f"Unknown dist_info {dist_info!r}. Supported backends: ['jax', 'torch']")


@dataclass
class MixedClassSampler:
    """Ours, run in Rust (annbatch's `ClassSampler` gives one class per batch): batches drawn by
    class from ``classes`` (a ``pandas.Categorical`` over the collection's
    rows, e.g. ``collection.obs(columns=["cell_type"])["cell_type"].values``), with replacement,
    ``num_samples`` rows per epoch, classes balanced or weighted by ``class_weights``.

    Chunks never cross a class boundary: convert with ``groupby`` on the class column for fast
    reads."""

    chunk_size: int
    preload_nchunks: int
    batch_size: int
    classes: Any = None
    num_samples: Optional[int] = None
    class_weights: Optional[Sequence[float]] = None
    drop_last: bool = False
    seed: Optional[int] = None
    mask: Any = None
    rng: Optional[np.random.Generator] = None
    _codes: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import pandas as pd

        _check(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                  batch_size=self.batch_size)
        self.mask = _mask_of(self.mask)
        self.seed = _seed_of(self.rng, self.seed)
        if not isinstance(self.classes, pd.Categorical):
            raise TypeError(
                f"classes must be a pandas.Categorical, got {type(self.classes).__name__}")
        if self.num_samples is not None:
            _check(num_samples=self.num_samples)
        if self.class_weights is not None:
            weights = np.asarray(self.class_weights, dtype=float)
            if weights.shape != (len(self.classes.categories),) or (weights < 0).any():
                raise ValueError(
                    f"class_weights: {len(self.classes.categories)} non-negative weights expected")
        self._codes = np.asarray(self.classes.codes, dtype=np.int64)

    def _drawable(self) -> Tuple[np.ndarray, Optional[int]]:
        """The codes with rows outside ``mask`` missing (never drawn), and the epoch's rows."""
        start = self.mask.start or 0
        stop = len(self._codes) if self.mask.stop is None else min(self.mask.stop,
                                                                   len(self._codes))
        if start >= stop:
            raise ValueError(f"mask {self.mask!r} selects no row of {len(self._codes)}")
        if (start, stop) == (0, len(self._codes)):
            return self._codes, self.num_samples
        codes = np.full_like(self._codes, -1)
        codes[start:stop] = self._codes[start:stop]
        return codes, self.num_samples if self.num_samples is not None else stop - start

    def _settings(self) -> Dict[str, Any]:
        codes, num_samples = self._drawable()
        return dict(
            chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
            batch_size=self.batch_size, drop_last=self.drop_last, shuffle=True, seed=self.seed,
            class_codes=codes.tolist(), n_categories=len(self.classes.categories),
            class_weights=None if self.class_weights is None else
            [float(w) for w in self.class_weights],
            num_samples=num_samples,
        )

    def sample(self, n_obs: int) -> Iterator[LoadRequest]:
        """The load requests of the first epoch, as the Rust sampler draws them (annbatch's
        preview of a sampler's requests)."""
        if n_obs != len(self._codes):
            raise ValueError(f"classes has {len(self._codes)} rows, the data {n_obs}")
        codes, num_samples = self._drawable()
        weights = None if self.class_weights is None else [float(w) for w in self.class_weights]
        for ranges, splits in _native.class_requests(
                codes.tolist(), len(self.classes.categories), batch_size=self.batch_size,
                chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                class_weights=weights, num_samples=num_samples, drop_last=self.drop_last,
                seed=self.seed):
            yield {"requests": [slice(a, b) for a, b in ranges],
                   "splits": [np.asarray(s, dtype=np.int64) for s in splits]}


# Samplers the Rust side runs from their settings alone: Samplers for isinstance checks.
Sampler.register(MixedClassSampler)
