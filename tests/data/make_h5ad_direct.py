"""Writes ``tests/data/h5ad_direct/``: `.h5ad` files in every storage layout the loader reads
straight from (run from the repository root with the venv's anndata; never in CI):

    .venv/bin/python tests/data/make_h5ad_direct.py

From the first 240 cells of ``pbmc68k_raw_csr.h5ad`` (real 10x PBMC counts):

- ``contiguous.h5ad``: CSR ``X`` in contiguous datasets (h5py's default; anndata 0.12 chunks
  sparse arrays), ``layers["counts"]`` (int32 CSR, chunked as anndata writes it),
  ``obsm["X_pca"]`` (dense 2-D, contiguous).
- ``gzip_shuffle.h5ad``: ``X/data`` and ``X/indices`` chunked with shuffle + gzip + Fletcher32
  (h5py filters, as written by ``write_h5ad(compression="gzip")`` plus shuffle and checksums).
- ``dense.h5ad``: a dense float32 ``X`` (contiguous) of 120 cells.
- ``genes_a.h5ad`` / ``genes_b.h5ad``: 120 cells each with different gene sets (the first 500
  genes; genes 300..765 in reverse order), for joined ``var`` spaces.
- ``duplicate_var.h5ad``: a gene name twice (cannot be joined by name).
- ``bad_index.h5ad``: 20 cells whose ``X/indices`` (contiguous) hold a column index of
  ``n_var``, one past the last gene.
"""

import pathlib
import warnings

warnings.filterwarnings("ignore")
ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "h5ad_direct"

import anndata as ad  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

OUT.mkdir(exist_ok=True)
ad.settings.allow_write_nullable_strings = True
src = ad.read_h5ad(ROOT / "tests" / "data" / "pbmc68k_raw_csr.h5ad")[:240].copy()
src.X = sp.csr_matrix(src.X, dtype=np.float32)
src.X.sort_indices()

a = src.copy()
a.layers["counts"] = sp.csr_matrix(np.round(a.X.toarray()).astype(np.int32))
a.obsm["X_pca"] = np.random.default_rng(0).normal(size=(a.n_obs, 8)).astype(np.float32)
a.write_h5ad(OUT / "contiguous.h5ad")
# anndata chunks sparse arrays itself: rewritten without chunks, as older writers and h5py do.
with h5py.File(OUT / "contiguous.h5ad", "r+") as f:
    for name in ("data", "indices"):
        values = f["X"][name][...]
        del f["X"][name]
        f["X"].create_dataset(name, data=values)

b = src.copy()
b.write_h5ad(OUT / "gzip_shuffle.h5ad")
with h5py.File(OUT / "gzip_shuffle.h5ad", "r+") as f:
    for name in ("data", "indices"):
        values = f["X"][name][...]
        del f["X"][name]
        f["X"].create_dataset(name, data=values, chunks=(4096,), compression="gzip",
                              shuffle=True, fletcher32=True)

d = src[:120].copy()
d.X = d.X.toarray()
d.write_h5ad(OUT / "dense.h5ad")

ga = src[:120, :500].copy()
ga.write_h5ad(OUT / "genes_a.h5ad")
gb = src[120:, 300:][:, ::-1].copy()
gb.X = sp.csr_matrix(gb.X)
gb.X.sort_indices()
gb.write_h5ad(OUT / "genes_b.h5ad")

dup = src[:20].copy()
names = list(dup.var_names)
names[1] = names[0]
dup.var_names = names
dup.write_h5ad(OUT / "duplicate_var.h5ad")

bad = src[:20].copy()
bad.write_h5ad(OUT / "bad_index.h5ad")
with h5py.File(OUT / "bad_index.h5ad", "r+") as f:
    indices = f["X"]["indices"][...]
    indices[7] = bad.n_vars  # one past the last gene
    del f["X"]["indices"]
    f["X"].create_dataset("indices", data=indices)

for p in sorted(OUT.glob("*.h5ad")):
    with h5py.File(p) as f:
        x = f["X"]
        ds = x["data"] if isinstance(x, h5py.Group) else x
        print(p.name, ds.shape, ds.chunks, ds.compression, ds.shuffle, ds.fletcher32)
