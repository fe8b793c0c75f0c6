"""Streams one shuffled epoch of a collection with the installed annbatch_rs, for each ``to``
given, and checks every row against a reference dense X (an ``.npz`` holding ``x``).

    python user_env_epoch.py COLLECTION REFERENCE.npz torch none jax

Run by ``./run test`` in environments with the newest torch, torch 2.11 and no torch at all.
"""

import importlib.util
import sys

import annbatch_rs
import numpy as np
from annbatch_rs import Loader


def main() -> None:
    collection, reference, *kinds = sys.argv[1:]
    want = np.load(reference)["x"]
    torch = importlib.util.find_spec("torch") is not None
    for to in kinds:
        params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, shuffle=True, seed=3,
                      return_index=True, to=None if to == "none" else to)
        rows = 0
        for batch in Loader(**params).use_collection(collection):
            x, index = batch["X"], batch["index"]
            got = x.to_dense().numpy() if to == "torch" else (
                np.asarray(x.todense()) if to == "jax" else x.toarray())
            assert np.array_equal(got, want[index]), f"to={to}: rows differ"
            rows += len(index)
        assert rows == len(want), (to, rows)
        version = __import__("torch").__version__ if torch else "none"
        print(f"annbatch_rs {annbatch_rs.__version__}: to={to} streamed {rows} rows, all equal "
              f"(torch {version}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
