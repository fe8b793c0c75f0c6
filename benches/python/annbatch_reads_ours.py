"""Interoperability check: annbatch 0.3.1 reads a collection `annbatch convert` wrote.

    annbatch-reference run benches/python/annbatch_reads_ours.py COLLECTION

Opens it with annbatch's `DatasetCollection` + `Loader.use_collection` (default
`load_all_aligned`: X and all of obs), streams one shuffled epoch and checks that every row
arrives exactly once, with its obs, and equals the row anndata reads from the dataset.
"""

import sys
import warnings

warnings.filterwarnings("ignore")

import anndata as ad
import numpy as np
import zarr
from annbatch import DatasetCollection, Loader

path = sys.argv[1]
collection = DatasetCollection(zarr.open(path, mode="r"))
loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=8, shuffle=True,
                return_index=True, to="torch", preload_to_gpu=False)
loader.use_collection(collection)
parts = [ad.read_zarr(f"{path}/{name}") for name in collection._dataset_keys]
whole = ad.concat(parts, join="outer")
x = whole.X.tocsr()
seen = np.zeros(whole.n_obs, dtype=int)
n_batches = 0
for batch in loader:
    index = np.asarray(batch["index"])
    got = batch["X"].to_dense().numpy()
    np.testing.assert_array_equal(got, x[index].toarray())
    obs = batch["obs"]
    assert list(obs["src_path"].astype(str)) == list(whole.obs["src_path"].iloc[index].astype(str))
    seen[index] += 1
    n_batches += 1
assert (seen == 1).all(), "every row exactly once"
print(f"annbatch {__import__('annbatch').__version__} read {path}: {whole.n_obs} rows x "
      f"{whole.n_vars} genes in {n_batches} batches, every row once and equal to anndata's: OK")
