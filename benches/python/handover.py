"""The per-batch cost of handing a native batch to a framework: DLPack export plus
``torch.sparse_csr_tensor`` (``to="torch"``), ``np.from_dlpack`` plus scipy CSR (``to=None``).

    .venv/bin/python benches/python/handover.py COLLECTION [--batch-size 4096 ...]

Reads one shuffled epoch through the native loader and times, batch by batch, only the step
that turns its arrays into the framework's objects; prints min / median / max microseconds.
"""

import argparse
import statistics
import time

from annbatch_rs import DatasetCollection, Loader, _frameworks


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("collection")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    a = p.parse_args()
    for to, make in (("torch", _frameworks.torch_tensor), ("none", _frameworks.scipy_or_numpy)):
        ds = Loader(batch_size=a.batch_size, chunk_size=a.chunk_size,
                    preload_nchunks=a.preload_nchunks, shuffle=True)
        ds.use_collection(DatasetCollection(a.collection))
        costs = []
        for raw in ds._native(ds._shard()).epoch(0):
            t = time.perf_counter()
            make(raw["X"])
            costs.append((time.perf_counter() - t) * 1e6)
        print(f"to={to}: {len(costs)} batches, hand-over us min {min(costs):.0f} "
              f"median {statistics.median(costs):.0f} max {max(costs):.0f}")


if __name__ == "__main__":
    main()
