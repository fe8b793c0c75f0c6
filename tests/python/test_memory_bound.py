"""ANNBATCH_MEMORY_LIMIT bounds what a loader holds: a fetch larger than its share is built in
groups of batches (the same batches, in the same order), a batch that cannot fit is refused
with a MemoryError naming the limit, and the process's memory stays near the bound."""

import json
import subprocess
import sys

import numpy as np
import pytest

ad = pytest.importorskip("anndata")
sp = pytest.importorskip("scipy.sparse")
from annbatch_rs import DatasetCollection

# 2048 rows of 4096 stored values: 64 MiB of values and indices; one fetch (32 × 64 rows) is
# the whole collection, a batch of 64 rows 2 MiB.
SETTINGS = dict(batch_size=64, chunk_size=32, preload_nchunks=64, shuffle=True, seed=4,
                return_index=True, prefetch=2)
LIMIT = 48 << 20

# The peak RSS of this process (VmHWM; ru_maxrss would carry pytest's over the exec).
CHILD = r"""
import json, sys
import numpy as np
from annbatch_rs import DatasetCollection, Loader
def peak_kib():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1])
path, settings = sys.argv[1], json.loads(sys.argv[2])
loader = Loader(**settings).use_collection(DatasetCollection(path))
before = peak_kib()
index, total = [], 0.0
try:
    for batch in loader:
        index.extend(np.asarray(batch["index"]).tolist())
        total += float(batch["X"].sum())
except MemoryError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
grew = peak_kib() - before
print(json.dumps({"index": index, "total": total, "grew_kib": grew,
                  "split": loader.stats()["split_fetches"]}))
"""


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_obs, n_var = 2048, 4096
    x = sp.csr_matrix(rng.random((n_obs, n_var), dtype=np.float32) + 1)
    root = tmp_path_factory.mktemp("bound")
    ad.AnnData(X=x).write_zarr(root / "in.zarr")
    DatasetCollection(root / "c.zarr").add_adatas([root / "in.zarr"], shuffle=False)
    return root / "c.zarr"


def epoch(path, limit=None, **changes) -> dict:
    env = dict(__import__("os").environ)
    env.pop("ANNBATCH_MEMORY_LIMIT", None)
    if limit is not None:
        env["ANNBATCH_MEMORY_LIMIT"] = str(limit)
    settings = dict(SETTINGS, **changes)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(settings)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_fetch_over_the_limit_is_built_in_groups_within_it(collection):
    free = epoch(collection)
    bound = epoch(collection, LIMIT)
    assert bound["index"] == free["index"] and sorted(free["index"]) == list(range(2048))
    assert bound["total"] == free["total"]
    assert free["split"] == 0 and bound["split"] >= 1
    # The whole fetch (64 MiB) is never held: what the epoch added stays under the limit.
    assert free["grew_kib"] > 64 << 10, free["grew_kib"]
    assert bound["grew_kib"] < LIMIT >> 10, bound["grew_kib"]


def test_a_batch_that_cannot_fit_is_a_memory_error_naming_the_limit(collection):
    # 1024-row batches hold 32 MiB: more than any share of 48 MiB.
    got = epoch(collection, LIMIT, batch_size=1024)
    assert "1024 rows" in got["error"] and "ANNBATCH_MEMORY_LIMIT" in got["error"], got
