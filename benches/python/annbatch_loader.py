"""Time annbatch's Loader on a collection: the Python half of the side-by-side benchmark.

Run with the annbatch reference interpreter (annbatch needs Python >= 3.12):
    ../shared/tools/annbatch-reference run benches/python/annbatch_loader.py COLLECTION \
        --batch-size 4096 --chunk-size 32 --preload-nchunks 256 --repeats 3
Prints one JSON object: median cells/s over the repeats (one full shuffled epoch each), the
first-batch latency, and the settings. Batches are torch sparse CSR tensors (``to="torch"``),
X only, as our side measures.
"""

import argparse
import json
import statistics
import time
import warnings

warnings.filterwarnings("ignore")

import anndata as ad
import numpy as np
import zarr

zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
from annbatch import DatasetCollection, Loader


def load_x(group):
    return ad.AnnData(X=ad.io.sparse_dataset(group["X"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("collection")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    collection = DatasetCollection(zarr.open(a.collection, mode="r"))
    rates, firsts = [], []
    for rep in range(a.repeats):
        loader = Loader(
            batch_size=a.batch_size,
            chunk_size=a.chunk_size,
            preload_nchunks=a.preload_nchunks,
            shuffle=True,
            to="torch",
            rng=np.random.default_rng(rep),
        ).use_collection(collection, load_adata=load_x)
        t = time.perf_counter()
        cells, first = 0, None
        for batch in loader:
            if first is None:
                first = time.perf_counter() - t
            cells += batch["X"].shape[0]
        rates.append(cells / (time.perf_counter() - t))
        firsts.append(first)
    print(json.dumps({"tool": "annbatch", "batch_size": a.batch_size, "chunk_size": a.chunk_size,
                      "preload_nchunks": a.preload_nchunks, "cells_per_s": statistics.median(rates),
                      "first_batch_s": statistics.median(firsts), "cells": cells}))


if __name__ == "__main__":
    main()
