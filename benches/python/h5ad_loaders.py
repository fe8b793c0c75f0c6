"""One epoch of a loader reading `.h5ad` files as they are (or a collection), timed: our half
and scDataset's way of the "Without converting" benchmark (`h5ad_side_by_side.sh`).

    .venv/bin/python benches/python/h5ad_loaders.py TOOL PATH [PATH ...] \
        --batch-size 4096 --chunk-size 32 --preload-nchunks 256

TOOL:
- ``rs-h5ad``: annbatch_rs's Loader on the files (``add_adatas``), read by file offset;
  with ``ANNBATCH_H5AD_LIBRARY_READS=1`` in the environment, through the HDF5 library.
- ``rs-collection``: annbatch_rs's Loader on a collection (``use_collection``).
- ``scdataset``: scDataset's block sampling over anndata's backed mode, written out here
  (scDataset 0.2's ``BlockShuffling`` + ``fetch_factor``): the epoch's rows cut into blocks of
  ``chunk_size`` contiguous rows, blocks shuffled, ``preload_nchunks`` blocks fetched at a time
  with one sorted fancy index into the backed X (``adata.X[sorted_rows]``, as its
  ``fetch_callback`` does), the fetch shuffled in memory and cut into batches, each a torch
  sparse CSR tensor. One backed AnnData per file; a fetch reads each file's share.

Prints one JSON object: cells/s of the epoch, time to the first batch (from the start of the
epoch), time to open the inputs (before it), cells.
"""

import argparse
import json
import time

import annbatch_rs
import anndata as ad
import numpy as np
import torch


def rs(paths, a, collection):
    loader = annbatch_rs.Loader(to="torch", batch_size=a.batch_size, chunk_size=a.chunk_size,
                    preload_nchunks=a.preload_nchunks, shuffle=True, seed=a.seed)
    return loader.use_collection(paths[0]) if collection else loader.add_adatas(paths)


def csr_tensor(x):
    return torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                   torch.from_numpy(x.indices.astype(np.int64)),
                                   torch.from_numpy(x.data), size=x.shape)


def open_backed(paths):
    return [ad.read_h5ad(p, backed="r") for p in paths]


def scdataset(files, a):
    import scipy.sparse as sp

    offsets = np.cumsum([0] + [f.n_obs for f in files])
    n = int(offsets[-1])
    rng = np.random.default_rng(a.seed)
    starts = np.arange(0, n, a.chunk_size)
    rng.shuffle(starts)
    for i in range(0, len(starts), a.preload_nchunks):
        rows = np.concatenate([np.arange(s, min(s + a.chunk_size, n))
                               for s in starts[i:i + a.preload_nchunks]])
        rows.sort()
        parts = []
        for f, lo, hi in zip(files, offsets[:-1], offsets[1:]):
            mine = rows[(rows >= lo) & (rows < hi)] - lo
            if len(mine):
                parts.append(f.X[mine])
        x = sp.vstack(parts, format="csr")
        order = rng.permutation(x.shape[0])
        x = x[order]
        for b in range(0, x.shape[0], a.batch_size):
            yield {"X": csr_tensor(x[b:b + a.batch_size])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tool", choices=["rs-h5ad", "rs-collection", "scdataset"])
    p.add_argument("paths", nargs="+")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    # The inputs opened (files, obs, var, indptr) before the clock starts, as annbatch_loader.py
    # opens its collection; the opening is reported on its own.
    t = time.perf_counter()
    if a.tool == "scdataset":
        files = open_backed(a.paths)
    else:
        loader = rs(a.paths, a, a.tool == "rs-collection")
    opened = time.perf_counter() - t
    t = time.perf_counter()
    batches = scdataset(files, a) if a.tool == "scdataset" else loader
    cells, first = 0, None
    for batch in batches:
        if first is None:
            first = time.perf_counter() - t
        cells += batch["X"].shape[0]
    rate = cells / (time.perf_counter() - t)
    print(json.dumps({"tool": a.tool, "batch_size": a.batch_size, "chunk_size": a.chunk_size,
                      "preload_nchunks": a.preload_nchunks, "cells_per_s": rate,
                      "first_batch_s": first, "open_s": opened, "cells": cells}))


if __name__ == "__main__":
    main()
