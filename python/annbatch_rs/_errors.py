"""Exceptions with more than one base, raised by the native module."""

from ._native import AnnbatchError


class VarMismatchError(AnnbatchError, ValueError):
    """Datasets whose var (names or count) differ: an `AnnbatchError`, and the `ValueError`
    annbatch raises there ("All datasets must have identical var DataFrames")."""


__all__ = ["VarMismatchError"]
