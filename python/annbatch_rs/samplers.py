"""annbatch's samplers, as settings for the Rust samplers: pass one as
``Loader(batch_sampler=...)``.

- `SequentialSampler`: chunks in order, rows in order.
- `RandomSampler`: random contiguous chunks, rows shuffled in memory within each fetch.
- `DistributedSampler`: wraps either, one disjoint shard per rank (``dist_info="torch"`` reads
  ``torch.distributed``; or a callable returning ``(rank, world_size)``).
- `ClassSampler` / `WeightedClassSampler`: class-balanced (or weighted) batches from a
  categorical; batches mix classes (annbatch's give one class per batch).

Randomness comes from ``seed`` (and the loader's epoch), not a numpy Generator, so runs are
reproducible across threads, workers and ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

__all__ = [
    "ClassSampler",
    "DistributedSampler",
    "RandomSampler",
    "SequentialSampler",
    "WeightedClassSampler",
]


def _check(**values: Any) -> None:
    """The native loader's checks of these settings (one wording, in Rust)."""
    _native.check_options(**values)


def _no_mask(mask: Any) -> None:
    if mask is not None:
        raise NotImplementedError("mask: convert the rows you want into their own collection")


@dataclass
class SequentialSampler:
    """Chunks of ``chunk_size`` rows in order, ``preload_nchunks`` per fetch, in order."""

    chunk_size: int
    preload_nchunks: int
    batch_size: int
    drop_last: bool = False
    mask: Any = None

    def __post_init__(self) -> None:
        _check(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                  batch_size=self.batch_size)
        _no_mask(self.mask)

    def _settings(self) -> Dict[str, Any]:
        return dict(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                    batch_size=self.batch_size, drop_last=self.drop_last, shuffle=False)


@dataclass
class RandomSampler:
    """Random contiguous chunks of ``chunk_size`` rows, ``preload_nchunks`` per fetch, rows
    shuffled in memory; every row once per epoch."""

    chunk_size: int
    preload_nchunks: int
    batch_size: int
    drop_last: bool = False
    seed: int = 0
    replacement: bool = False
    num_samples: Optional[int] = None
    mask: Any = None

    def __post_init__(self) -> None:
        _check(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                  batch_size=self.batch_size)
        _no_mask(self.mask)
        if self.replacement or self.num_samples is not None:
            raise NotImplementedError(
                "replacement / num_samples: use ClassSampler (with replacement) instead")

    def _settings(self) -> Dict[str, Any]:
        return dict(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                    batch_size=self.batch_size, drop_last=self.drop_last, shuffle=True,
                    seed=self.seed)


@dataclass
class DistributedSampler:
    """One disjoint shard of ``sampler``'s epoch per rank; with ``enforce_equal_batches`` every
    rank gets the same number of batches (a few rows may be left out)."""

    sampler: Union[SequentialSampler, RandomSampler]
    dist_info: Union[str, Callable[[], Tuple[int, int]]] = "torch"
    enforce_equal_batches: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sampler, (SequentialSampler, RandomSampler)):
            raise TypeError("DistributedSampler wraps a SequentialSampler or a RandomSampler")
        if not callable(self.dist_info) and self.dist_info != "torch":
            raise ValueError(f"dist_info {self.dist_info!r}: expected 'torch' or a callable")

    def rank_and_world_size(self) -> Tuple[int, int]:
        if callable(self.dist_info):
            return tuple(self.dist_info())  # type: ignore[return-value]
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _settings(self) -> Dict[str, Any]:
        rank, world = self.rank_and_world_size()
        return dict(self.sampler._settings(), rank=rank, world_size=world,
                    equal_batches=self.enforce_equal_batches)


@dataclass
class ClassSampler:
    """Batches drawn by class from ``classes`` (a ``pandas.Categorical`` over the collection's
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
    seed: int = 0
    mask: Any = None
    _codes: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import pandas as pd

        _check(chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
                  batch_size=self.batch_size)
        _no_mask(self.mask)
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

    def _settings(self) -> Dict[str, Any]:
        return dict(
            chunk_size=self.chunk_size, preload_nchunks=self.preload_nchunks,
            batch_size=self.batch_size, drop_last=self.drop_last, shuffle=True, seed=self.seed,
            class_codes=self._codes.tolist(), n_categories=len(self.classes.categories),
            class_weights=None if self.class_weights is None else
            [float(w) for w in self.class_weights],
            num_samples=self.num_samples,
        )


def WeightedClassSampler(chunk_size: int, preload_nchunks: int, batch_size: int, *,
                         classes: Any, class_weights: Sequence[float], **kwargs: Any
                         ) -> ClassSampler:
    """annbatch's name for a `ClassSampler` with ``class_weights``."""
    return ClassSampler(chunk_size, preload_nchunks, batch_size, classes=classes,
                        class_weights=class_weights, **kwargs)
