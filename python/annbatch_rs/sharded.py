"""`write_sharded`: one AnnData written as annbatch writes a dataset (sharded zarr v3)."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Union

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(size: str) -> int:
    """``"1GB"``, ``"512MiB"``, ``"64kb"``: binary units, as annbatch parses them."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", size.lower())
    if m is None:
        raise ValueError(f"size {size!r}: expected a number of rows or a size like '1GB'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _rows_per_shard(shard_size: Union[int, str], n_obs: int, n_bytes: int) -> int:
    """Rows per shard: ``shard_size`` rows, or as many rows as fit its byte size."""
    if isinstance(shard_size, int):
        return max(1, shard_size)
    per_row = n_bytes / max(n_obs, 1)
    return max(1, int(_bytes(shard_size) / per_row)) if per_row > 0 else 1


def write_sharded(group: Any, adata: Any, *, n_obs_per_chunk: int = 64,
                  shard_size: Union[int, str] = "1GB",
                  compressors: Optional[Iterable[Any]] = None,
                  key: Optional[str] = None) -> None:
    """Writes ``adata`` into the zarr v3 ``group`` (at ``key``, or its root) as annbatch's
    ``write_sharded`` does: ``X``, ``layers`` and ``obsm`` sharded along rows
    (``n_obs_per_chunk`` rows per inner chunk, scaled by the mean nnz per row for sparse
    matrices; ``shard_size`` rows, or bytes, per shard), other elements as anndata writes them.
    ``compressors``: zarr codecs for those arrays (default blosc lz4, clevel 3, byte shuffle).
    """
    import anndata as ad
    import scipy.sparse as sp
    import zarr

    if n_obs_per_chunk < 1:
        raise ValueError(f"n_obs_per_chunk must be at least 1, got {n_obs_per_chunk}")
    if compressors is None:
        compressors = (zarr.codecs.BloscCodec(cname="lz4", clevel=3, shuffle="shuffle"),)
    compressors = tuple(compressors)

    def row_aligned(store: Any, name: str) -> bool:
        return name == "X" or any(p in store.name for p in ("layers", "obsm", "obsp"))

    def callback(write, store, name, elem, dataset_kwargs, *, iospec):
        kwargs = dict(dataset_kwargs)
        n_obs = elem.shape[0] if hasattr(elem, "shape") else 0
        if iospec.encoding_type == "array" and row_aligned(store, name):
            if n_obs == 0:
                raise ValueError(f"cannot write the sharded array {name!r} with 0 rows")
            chunk = min(n_obs_per_chunk, n_obs)
            shard = min(_rows_per_shard(shard_size, n_obs, elem.nbytes), n_obs)
            shard = max(chunk, shard - shard % chunk)
            rest = tuple(elem.shape[1:])
            kwargs.update(chunks=(chunk, *rest), shards=(shard, *rest), compressors=compressors)
        elif iospec.encoding_type in ("csr_matrix", "csc_matrix"):
            if n_obs == 0:
                raise ValueError(f"cannot write the sharded sparse matrix {name!r} with 0 rows")
            m = elem if sp.issparse(elem) else elem.to_memory()
            per_row = m.nnz / n_obs
            n_bytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
            chunk = max(1, int(n_obs_per_chunk * per_row))
            shard = max(1, int(_rows_per_shard(shard_size, n_obs, n_bytes) * per_row))
            if m.nnz > 0:
                chunk, shard = min(chunk, m.nnz), min(shard, m.nnz)
            shard = max(chunk, shard - shard % chunk)
            kwargs.update(chunks=(chunk,), shards=(shard,), compressors=compressors)
        write(store, name, elem, dataset_kwargs=kwargs)

    settings = dict(write_csr_csc_indices_with_min_possible_dtype=True)
    if hasattr(ad.settings, "allow_write_nullable_strings"):  # anndata < 0.13 asks to opt in
        settings["allow_write_nullable_strings"] = True
    with ad.settings.override(**settings):
        ad.experimental.write_dispatched(group, "/" if key is None else key, adata,
                                         callback=callback)
    zarr.consolidate_metadata(group.store)
