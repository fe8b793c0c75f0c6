"""Time annbatch_rs's Python Loader on a collection: our Python half of the side-by-side benchmark.

    .venv/bin/python benches/python/annbatch_rs_loader.py COLLECTION \
        --batch-size 4096 --chunk-size 32 --preload-nchunks 256 --repeats 3

The same measurement as annbatch_loader.py (one full shuffled epoch per repeat, torch sparse CSR
batches, X only: the same ``load_x``), through the installed annbatch_rs wheel; prints one JSON
object. With ``--layer-keys`` / ``--obsm-keys`` the batches also carry those layers / obsm
entries (the collection is then read without ``load_x``; obs: the ``src_path`` codes only).
"""

import argparse
import json
import statistics
import time

import anndata as ad
from annbatch_rs import DatasetCollection, Loader


def load_x(group):
    return ad.AnnData(X=ad.io.sparse_dataset(group["X"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("collection")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    # Given (even empty), the collection is read as it is, with src_path codes as obs: the
    # baseline with no keys and the run with keys then differ only by what rides along.
    p.add_argument("--layer-keys", nargs="*")
    p.add_argument("--obsm-keys", nargs="*")
    p.add_argument("--seed", type=int, default=0)
    # The native loader built (and its batch memory paged in) before the clock starts, as
    # `bench_loader --only loader` times it: the epoch alone (python_vs_rust.sh).
    p.add_argument("--built", action="store_true")
    a = p.parse_args()
    aligned = a.layer_keys is not None or a.obsm_keys is not None
    collection = DatasetCollection(a.collection)
    rates, firsts = [], []
    for rep in range(a.repeats):
        if aligned:
            loader = Loader(to="torch", batch_size=a.batch_size, chunk_size=a.chunk_size,
                            preload_nchunks=a.preload_nchunks, shuffle=True, seed=a.seed + rep,
                            obs_keys=["src_path"], obs_as="tensors", layer_keys=a.layer_keys,
                            obsm_keys=a.obsm_keys).use_collection(collection)
        else:
            loader = Loader(to="torch", batch_size=a.batch_size, chunk_size=a.chunk_size,
                            preload_nchunks=a.preload_nchunks, shuffle=True, seed=a.seed + rep,
                            ).use_collection(collection, load_adata=load_x)
        if a.built:
            loader._native(loader._shard())
        t = time.perf_counter()
        cells, first = 0, None
        for batch in loader:
            if first is None:
                first = time.perf_counter() - t
            cells += batch["X"].shape[0]
        rates.append(cells / (time.perf_counter() - t))
        firsts.append(first)
    print(json.dumps({"tool": "annbatch-rs (python)", "batch_size": a.batch_size,
                      "chunk_size": a.chunk_size, "preload_nchunks": a.preload_nchunks,
                      "cells_per_s": statistics.median(rates),
                      "first_batch_s": statistics.median(firsts), "cells": cells,
                      "layer_keys": a.layer_keys, "obsm_keys": a.obsm_keys}))


if __name__ == "__main__":
    main()
