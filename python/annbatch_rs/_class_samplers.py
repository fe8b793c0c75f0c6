"""annbatch's class samplers, with annbatch's semantics: `ClassSampler` (every batch from one
class) and `WeightedClassSampler` (batches mixing classes in proportion to their weights).

Both read one class per chunk: a chunk is ``chunk_size`` contiguous rows inside one run of a
class (so every run of a drawable class must be at least ``chunk_size`` long), its start drawn
uniformly among all the class's possible starts. Sampling is with replacement, ``num_samples``
rows per pass. They run in Python (the requests are small) and the Rust pipeline reads what they
request. `MixedClassSampler` (in `samplers`) is our own Rust-run class sampler, which accepts
short runs and mixes classes inside every fetch.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _frameworks
from .abc import Sampler
from .types import LoadRequest


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be greater than 1, got {value}")
    return int(value)


def _check_sizes(chunk_size: int, preload_nchunks: int, batch_size: int) -> None:
    window = chunk_size * preload_nchunks
    if batch_size > window:
        raise ValueError(
            f"batch_size cannot exceed chunk_size * preload_nchunks: got batch_size={batch_size}, "
            f"at most {window}")
    if window % batch_size:
        raise ValueError(
            f"chunk_size * preload_nchunks must be divisible by batch_size: {window} % "
            f"{batch_size} = {window % batch_size}")


def _resolve_mask(mask: Optional[slice], n_obs: int) -> Tuple[int, int]:
    """``mask`` as ``(start, stop)`` inside ``0..n_obs``."""
    if mask is None:
        return 0, n_obs
    if not isinstance(mask, slice):
        raise ValueError(f"mask must be a slice, got {mask!r}")
    if mask.step not in (None, 1):
        raise ValueError(f"mask.step must be 1, but got {mask.step}")
    start = 0 if mask.start is None else int(mask.start)
    stop = n_obs if mask.stop is None else int(mask.stop)
    if start < 0:
        raise ValueError(f"mask.start must be >= 0, but got {start}")
    if stop > n_obs:
        raise ValueError(f"mask.stop ({stop}) exceeds loader n_obs ({n_obs}): the sampler's "
                         "range must be within the loader's rows")
    if start >= stop:
        raise ValueError(f"mask.start must be < mask.stop: got start {start}, stop {stop}")
    return start, stop


def _resolve_rng(rng: Any, seed: Optional[int]) -> np.random.Generator:
    if rng is not None and seed is not None:
        raise ValueError("give rng or seed, not both")
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        warnings.warn(f"Passing a seed as rng is deprecated; pass np.random.default_rng({rng!r})"
                      " instead", FutureWarning, stacklevel=3)
        return np.random.default_rng(int(rng))
    if rng is None:
        return np.random.default_rng(seed)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


class _Runs:
    """The runs of drawable classes inside a mask, and a uniform draw of chunk starts by class.

    A class is drawable where its weight is positive and it has a run inside the mask. Chunk
    starts of one class are numbered across its runs (a run of ``n`` rows has
    ``n - chunk_size + 1``), so a start drawn uniformly weights each run by its length."""

    def __init__(self, codes: np.ndarray, labels: Sequence[Any], weights: np.ndarray,
                 chunk_size: int, start: int, stop: int):
        window = codes[start:stop]
        edges = np.concatenate(([0], np.flatnonzero(np.diff(window)) + 1, [window.size]))
        run_class = window[edges[:-1]]
        run_start = edges[:-1] + start
        run_len = np.diff(edges)
        keep = weights[run_class] > 0
        run_class, run_start, run_len = run_class[keep], run_start[keep], run_len[keep]
        if run_class.size == 0:
            raise ValueError(
                f"No class with positive weight is present in the range [{start}, {stop}): "
                "its weights would sum to zero")
        short = run_len < chunk_size
        if short.any():
            names = [labels[c] for c in np.unique(run_class[short])]
            raise ValueError(
                f"Every contiguous run of a class must be at least chunk_size ({chunk_size}) "
                f"rows long, but {int(short.sum())} run(s) are shorter (classes {names}). "
                "Sort the collection by the class (convert with groupby), lower chunk_size, or "
                "exclude these classes with a zero weight")
        order = np.argsort(run_class, kind="stable")
        self.run_class, self.run_start = run_class[order], run_start[order]
        n_starts = run_len[order] - chunk_size + 1
        # Starts numbered before each run, over the class-sorted runs.
        self.starts_before = np.cumsum(n_starts) - n_starts
        self.classes, first_run, runs_per_class = np.unique(
            self.run_class, return_index=True, return_counts=True)
        last_run = first_run + runs_per_class - 1
        self.first_start = self.starts_before[first_run]
        self.n_starts = self.starts_before[last_run] + n_starts[last_run] - self.first_start
        w = weights[self.classes]
        self.probabilities = w / w.sum()
        self.chunk_size = chunk_size

    def chunks(self, classes: np.ndarray, rng: np.random.Generator) -> List[slice]:
        """One chunk of each class in ``classes`` (codes among `self.classes`)."""
        position = np.searchsorted(self.classes, classes)
        start_in_class = self.first_start[position] + rng.integers(self.n_starts[position])
        run = np.searchsorted(self.starts_before, start_in_class, side="right") - 1
        starts = self.run_start[run] + (start_in_class - self.starts_before[run])
        return [slice(int(s), int(s) + self.chunk_size) for s in starts]


class ClassSampler(Sampler):
    """Class-coherent batches, drawn with replacement: every batch comes from one class.

    A class ``c`` is drawn with probability proportional to ``class_weights`` (uniform when
    not given; a non-positive weight excludes the class) once per ``lcm(chunk_size,
    batch_size)`` rows, the span where chunk and batch edges meet, and every chunk of that span
    is read from ``c``: a uniformly drawn start among all of ``c``'s ``chunk_size``-row windows
    inside its runs. Rows are shuffled within each batch. A pass is ``num_samples`` rows
    (``n_batches`` = ``ceil(num_samples / batch_size)``, or floor with ``drop_last``).

    Every run of a drawable class must be at least ``chunk_size`` rows (convert with
    ``groupby`` on the class column); the error names the classes whose runs are shorter.
    ``mask`` restricts the draw to a row range (weights renormalised over the classes in it; it
    cannot move while a pass runs). ``rng`` (or our ``seed``) fixes the draws. Not for several
    DataLoader workers; under `DistributedSampler` each rank draws from its own shard.

    ``classes``: a ``pandas.Categorical`` with one entry per loader row, no missing values,
    e.g. ``collection.obs(columns=["cell_type"])["cell_type"].values``.
    """

    def __init__(self, chunk_size: int, preload_nchunks: int, batch_size: int, *,
                 classes: Any, num_samples: int, class_weights: Optional[Any] = None,
                 mask: Optional[slice] = None, drop_last: bool = False,
                 rng: Optional[np.random.Generator] = None, seed: Optional[int] = None):
        import pandas as pd

        num_samples = _positive("num_samples", num_samples)
        if not isinstance(classes, pd.Categorical):
            raise TypeError(
                f"classes must be a pandas.Categorical, got {type(classes).__name__}")
        codes = np.asarray(classes.codes, dtype=np.int64)
        if (codes < 0).any():
            raise ValueError(
                "classes contains NA values (codes == -1): remove them before sampling")
        self._chunk_size = _positive("chunk_size", chunk_size)
        self._preload_nchunks = _positive("preload_nchunks", preload_nchunks)
        self._batch_size = _positive("batch_size", batch_size)
        _check_sizes(self._chunk_size, self._preload_nchunks, self._batch_size)
        self._labels = list(classes.categories)
        self._weights = self._weights_of(class_weights, len(self._labels))
        self._codes = codes
        self._num_samples = num_samples
        self._drop_last = bool(drop_last)
        self._rng = _resolve_rng(rng, seed)
        self._open_passes = 0
        self._mask = slice(*_resolve_mask(mask, codes.size))
        self._runs = self._runs_of(self._mask)

    @staticmethod
    def _weights_of(class_weights: Any, n_classes: int) -> np.ndarray:
        import pandas as pd

        if class_weights is None:
            return np.ones(n_classes)
        if isinstance(class_weights, pd.Series):
            raise TypeError(
                "class_weights must be an array, not a pandas Series (it would be read by "
                "position, not by its index): pass class_weights.reindex(classes.categories)"
                ".to_numpy()")
        weights = np.array(class_weights, dtype=float)
        if weights.shape != (n_classes,):
            raise ValueError(
                f"class_weights must have one weight per class in classes.categories: "
                f"expected shape ({n_classes},), got {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("class_weights must be finite")
        if not (weights > 0).any():
            raise ValueError("class_weights must have at least one positive weight")
        return weights

    def _runs_of(self, mask: slice) -> _Runs:
        return _Runs(self._codes, self._labels, self._weights, self._chunk_size,
                     mask.start, mask.stop)

    # -- annbatch's sampler interface ----------------------------------------------------
    @property
    def mask(self) -> slice:
        return self._mask

    @mask.setter
    def mask(self, value: Optional[slice]) -> None:
        mask = slice(*_resolve_mask(value, self._codes.size))
        if mask != self._mask and self._open_passes > 0:
            raise ValueError(
                f"mask cannot move to {mask} while a pass is being iterated (its chunks are "
                "drawn when it starts): finish or close the iterator first")
        runs = self._runs_of(mask)  # errors surface on assignment
        self._mask, self._runs = mask, runs

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def shuffle(self) -> bool:
        return True

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def preload_nchunks(self) -> int:
        return self._preload_nchunks

    @property
    def num_samples(self) -> int:
        return self._num_samples

    @property
    def drop_last(self) -> bool:
        return self._drop_last

    def n_batches(self, n_obs: int) -> int:
        """Batches per pass: set by ``num_samples``, whatever ``n_obs``."""
        del n_obs
        if self._drop_last:
            return self._num_samples // self._batch_size
        return math.ceil(self._num_samples / self._batch_size)

    def validate(self, n_obs: int) -> None:
        if n_obs != self._codes.size:
            raise ValueError(
                f"classes length ({self._codes.size}) does not match loader n_obs ({n_obs}): "
                "the classes must describe exactly the loader's rows")

    def _sample(self, n_obs: int) -> Iterator[LoadRequest]:
        info = _frameworks.worker_info()
        if info is not None and info.num_workers > 1:
            raise NotImplementedError(
                f"Multiple workers are not supported with {type(self).__name__}: use "
                "num_workers=0 (the Rust pipeline reads in parallel already)")
        return self._pass()

    def _pass(self) -> Iterator[LoadRequest]:
        self._open_passes += 1
        try:
            yield from self._requests()
        finally:
            self._open_passes -= 1

    # -- the draw ------------------------------------------------------------------------
    def _chunks(self, classes_per_chunk: np.ndarray) -> List[slice]:
        """The pass's chunks, one per entry of ``classes_per_chunk``, the last cut to what
        ``num_samples`` leaves."""
        chunks = self._runs.chunks(classes_per_chunk, self._rng)
        rest = self._num_samples % self._chunk_size
        if rest:
            chunks[-1] = slice(chunks[-1].start, chunks[-1].start + rest)
        return chunks

    def _n_chunks(self) -> int:
        return -(-self._num_samples // self._chunk_size)

    def _windows(self, chunks: List[slice]) -> Iterator[Tuple[List[slice], int]]:
        for i in range(0, len(chunks), self._preload_nchunks):
            window = chunks[i:i + self._preload_nchunks]
            yield window, sum(s.stop - s.start for s in window)

    def _cut(self, rows: np.ndarray) -> List[np.ndarray]:
        splits = [rows[i:i + self._batch_size] for i in range(0, rows.size, self._batch_size)]
        if self._drop_last and splits and splits[-1].size < self._batch_size:
            splits.pop()
        return splits

    def _requests(self) -> Iterator[LoadRequest]:
        n_chunks = self._n_chunks()
        # Chunk and batch edges meet every lcm(chunk_size, batch_size) rows: one class per
        # such group of chunks keeps every batch inside one class.
        group = self._batch_size // math.gcd(self._chunk_size, self._batch_size)
        n_groups = -(-n_chunks // group)
        drawn = self._rng.choice(self._runs.classes, size=n_groups, p=self._runs.probabilities)
        chunks = self._chunks(np.repeat(drawn, group)[:n_chunks])
        for window, n_rows in self._windows(chunks):
            splits = self._cut(np.arange(n_rows))
            if not splits:
                continue
            for split in splits:
                self._rng.shuffle(split)
            yield {"requests": window, "splits": splits}


class WeightedClassSampler(ClassSampler):
    """Batches whose class composition follows ``class_weights``: chunks are drawn as
    `ClassSampler` draws them, one class each (drawn per chunk), and the rows of a whole
    preload window are shuffled together before they are cut into batches, so batches mix
    classes. ``class_weights`` may be omitted (uniform), as in annbatch."""

    def _requests(self) -> Iterator[LoadRequest]:
        n_chunks = self._n_chunks()
        drawn = self._rng.choice(self._runs.classes, size=n_chunks, p=self._runs.probabilities)
        chunks = self._chunks(drawn)
        for window, n_rows in self._windows(chunks):
            splits = self._cut(self._rng.permutation(n_rows))
            if splits:
                yield {"requests": window, "splits": splits}
