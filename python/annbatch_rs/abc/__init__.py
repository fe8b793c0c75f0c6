"""annbatch's abstract interfaces: subclass `Sampler` for a custom sampler."""

from .sampler import Sampler

__all__ = ["Sampler"]
