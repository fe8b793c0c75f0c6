"""`Sampler`: annbatch's interface for custom samplers.

A subclass implements ``batch_size``, ``shuffle``, ``n_batches(n_obs)``, ``validate(n_obs)``
and ``_sample(n_obs)``, a generator of `~annbatch_rs.types.LoadRequest`. Given to
``Loader(batch_sampler=...)``, its requests are drawn ahead in a background thread (holding the
GIL only while drawing) and read, decoded and assembled by the Rust pipeline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Iterator, List, Optional

import numpy as np

if TYPE_CHECKING:
    from ..types import LoadRequest


def split_rows(indices: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """``indices`` cut into consecutive batches of ``batch_size`` (the last may be smaller)."""
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


class Sampler(ABC):
    """Base class of samplers: which rows are read together, and how they become batches."""

    _mask: slice = slice(0, None)
    _rng: Optional[np.random.Generator] = None

    @property
    def mask(self) -> slice:
        """The rows this sampler draws from (a slice of the loader's rows)."""
        return self._mask

    @mask.setter
    def mask(self, value: slice) -> None:
        self._mask = value

    @property
    def rng(self) -> Optional[np.random.Generator]:
        """The random number generator of this sampler."""
        return self._rng

    @rng.setter
    def rng(self, value: Optional[np.random.Generator]) -> None:
        self._rng = value

    @property
    @abstractmethod
    def batch_size(self) -> Optional[int]:
        """Rows per batch; used when a request carries no ``splits``."""

    @property
    @abstractmethod
    def shuffle(self) -> bool:
        """Whether rows are shuffled in memory when a request carries no ``splits``."""

    @abstractmethod
    def n_batches(self, n_obs: int) -> int:
        """Batches per epoch over ``n_obs`` rows."""

    @abstractmethod
    def validate(self, n_obs: int) -> None:
        """Raises ``ValueError`` when the sampler cannot run over ``n_obs`` rows."""

    @abstractmethod
    def _sample(self, n_obs: int) -> Iterator["LoadRequest"]:
        """The load requests of one epoch."""

    def sample(self, n_obs: int) -> Iterator["LoadRequest"]:
        """`validate`, then the requests of `_sample`, each given ``splits`` if it has none."""
        self.validate(n_obs)
        requests = self._sample(n_obs)
        try:
            for request in requests:
                if "splits" not in request:
                    if self.batch_size is None or self.shuffle is None:
                        raise ValueError(
                            "batch_size and shuffle must be set when a LoadRequest has no splits")
                    reqs = request["requests"]
                    n = (len(reqs) if isinstance(reqs, np.ndarray)
                         else sum(s.stop - s.start for s in reqs))
                    rng = self._rng if self._rng is not None else np.random.default_rng()
                    order = rng.permutation(n) if self.shuffle else np.arange(n)
                    request["splits"] = split_rows(order, self.batch_size)
                yield request
        finally:
            close = getattr(requests, "close", None)
            if close is not None:
                close()
