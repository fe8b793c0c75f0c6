"""Time to first batch from Python, after import (annbatch_rs and pandas): opening the
collection, building the Loader, and the first batch of a shuffled epoch (torch sparse CSR),
each timed; one process per run.

    .venv/bin/python benches/python/first_batch.py COLLECTION [--runs 5]
        [--batch-size 4096 --chunk-size 32 --preload-nchunks 256]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def once(a) -> dict:
    # Imported before the clock starts: annbatch_rs, and pandas, which it imports on first use
    # (~0.4-0.6 s, once per process; a training script has usually imported it already).
    import pandas  # noqa: F401
    from annbatch_rs import DatasetCollection, Loader

    t0 = time.perf_counter()
    collection = DatasetCollection(a.collection)
    t1 = time.perf_counter()
    loader = Loader(batch_size=a.batch_size, chunk_size=a.chunk_size,
                    preload_nchunks=a.preload_nchunks, shuffle=True, to="torch",
                    seed=1).use_collection(collection)
    t2 = time.perf_counter()
    batches = iter(loader)
    batch = next(batches)
    t3 = time.perf_counter()
    # Closed after the clock: stopping the epoch early waits for the fetch being decoded.
    batches.close()
    assert batch["X"].shape[0] == a.batch_size
    return {"open_s": t1 - t0, "build_s": t2 - t1, "first_batch_s": t3 - t2, "total_s": t3 - t0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("collection")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload-nchunks", type=int, default=256)
    p.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.once:
        print(json.dumps(once(a)))
        return
    runs = []
    for _ in range(a.runs):
        out = subprocess.run([sys.executable, *sys.argv, "--once"], capture_output=True,
                             text=True, check=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    for key in ("open_s", "build_s", "first_batch_s", "total_s"):
        v = sorted(r[key] for r in runs)
        low, mid, high = v[0] * 1e3, statistics.median(v) * 1e3, v[-1] * 1e3
        print(f"{key:>14}: {low:.0f} / {mid:.0f} / {high:.0f} ms (min / median / max)")


if __name__ == "__main__":
    main()
