"""`PythonRequests`: a Python sampler's load requests, handed to the Rust pipeline.

The native loader calls ``validate``, ``n_batches`` and ``encoded`` on a background thread;
``encoded`` turns each `LoadRequest` into three byte strings of int64s (row ranges as
``start, stop`` pairs, split sizes, split positions end to end), so no Python object per row
crosses into Rust.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional, Tuple

import numpy as np


def _ranges(requests: Any) -> np.ndarray:
    """``(start, stop)`` pairs of a request's rows: slices as given (a list, or an object array
    as annbatch's samplers make), an integer array as its runs of consecutive ids."""
    if isinstance(requests, np.ndarray) and requests.dtype != object:
        if not np.issubdtype(requests.dtype, np.integer):
            raise TypeError(f"LoadRequest.requests: integer array expected, got {requests.dtype}")
        ids = requests.astype(np.int64, copy=False).ravel()
        if ids.size == 0:
            return np.empty((0, 2), dtype=np.int64)
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        starts = ids[np.concatenate(([0], breaks))]
        stops = ids[np.concatenate((breaks - 1, [ids.size - 1]))] + 1
        return np.stack([starts, stops], axis=1)
    pairs = []
    for s in requests:
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise TypeError(f"LoadRequest.requests: slices with step 1 expected, got {s!r}")
        start = 0 if s.start is None else s.start
        if not (_is_int(start) and _is_int(s.stop)):
            # A float bound would be truncated to other rows than the sampler meant.
            raise TypeError(f"LoadRequest.requests: integer slice bounds expected, got {s!r}")
        pairs.append((start, s.stop))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positions(split: Any) -> np.ndarray:
    """A split as int64 positions; floats (which would be truncated) and other kinds refused."""
    a = np.asarray(split)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"LoadRequest.splits: integer positions expected, got {a.dtype} "
                        f"({a.ravel()[:3]!r}...)")
    return a.astype(np.int64, copy=False).ravel()


def encode(request: Any) -> Tuple[bytes, bytes, bytes]:
    """A `LoadRequest` as the native loader reads it."""
    if not isinstance(request, dict) or "requests" not in request or "splits" not in request:
        raise TypeError(
            f"a LoadRequest (dict with 'requests' and 'splits') expected, got {request!r}")
    splits = [_positions(s) for s in request["splits"]]
    sizes = np.fromiter((s.size for s in splits), dtype=np.int64, count=len(splits))
    rows = np.concatenate(splits) if splits else np.empty(0, dtype=np.int64)
    little = np.dtype("<i8")
    return (_ranges(request["requests"]).astype(little).tobytes(),
            sizes.astype(little).tobytes(), rows.astype(little).tobytes())


# Set on a loader's producer thread while it runs a Python sampler's code.
_IN_SAMPLER = threading.local()


def in_sampler() -> bool:
    """Whether this thread is running a sampler for a loader (which must not start another
    loader's epoch: each would start its threads, and a sampler that does so per request
    piles up thousands)."""
    return getattr(_IN_SAMPLER, "active", False)


class PythonRequests:
    """What the native loader needs of a sampler object with annbatch's interface."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.batch_size: Optional[int] = getattr(sampler, "batch_size", None)

    def validate(self, n_obs: int) -> None:
        self.sampler.validate(n_obs)
        self.n_batches(n_obs)  # a bad count fails here, where errors reach the caller

    def n_batches(self, n_obs: int) -> int:
        n = self.sampler.n_batches(n_obs)
        # len(loader) and the epoch's end rest on it: a wrong type or size is refused, not cast.
        if not _is_int(n):
            raise TypeError(f"{type(self.sampler).__name__}.n_batches returned {n!r}: an "
                            "integer is expected")
        if not 0 <= n <= 2**53:
            raise ValueError(f"{type(self.sampler).__name__}.n_batches returned {n}: expected "
                             "0 <= n_batches <= 2**53")
        return int(n)

    def encoded(self, n_obs: int) -> Iterator[Tuple[bytes, bytes, bytes]]:
        requests = iter(self.sampler.sample(n_obs))
        while True:
            _IN_SAMPLER.active = True
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                _IN_SAMPLER.active = False
            yield encode(request)
