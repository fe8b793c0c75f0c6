"""Writes the lossless-conversion fixtures (run from the repository root with the original
annbatch, never in CI):

    ../shared/tools/annbatch-reference run tests/data/make_lossless_fixture.py

- ``lossless.h5ad`` (anndata): 300 cells of ``pbmc68k_raw_csr.h5ad`` in the scvi-tools layout,
  normalised float32 CSR ``X``, integer counts in ``layers["counts"]`` (int32 CSR), a dense
  ``layers["scaled"]`` (float32), ``obsm["X_pca"]`` (float32, 50-d), ``obsm["X_umap"]``
  (float64, 2-d), a sparse ``obsm["peaks"]`` (CSR), var columns, nested ``uns`` and ``raw``.
- ``lossless_csc.h5ad``: the same AnnData with ``X`` and ``layers["counts"]`` as CSC.
- ``annbatch_lossless_collection.zarr``: what annbatch 0.3.1 ``add_adatas`` writes from
  ``lossless.h5ad`` (two datasets), and ``reference/annbatch_lossless.json``: which elements it
  kept, with their encodings and dtypes.
"""

import json
import pathlib
import shutil
import warnings

warnings.filterwarnings("ignore")
ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

import anndata as ad  # noqa: E402
import annbatch  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import zarr  # noqa: E402

zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})


def lossless_adata() -> ad.AnnData:
    src = ad.read_h5ad(DATA / "pbmc68k_raw_csr.h5ad")[:300].copy()
    rng = np.random.default_rng(7)
    counts = sp.csr_matrix(src.X).astype(np.int32)
    totals = np.maximum(np.asarray(counts.sum(1)).ravel(), 1)
    x = sp.csr_matrix(counts.multiply(1e4 / totals[:, None]), dtype=np.float32)
    adata = ad.AnnData(X=x, obs=src.obs.copy(), var=src.var.copy())
    adata.layers["counts"] = counts
    dense = np.log1p(x[:, :40].toarray())
    adata.layers["scaled"] = np.zeros(adata.shape, dtype=np.float32)
    adata.layers["scaled"][:, :40] = dense
    adata.obsm["X_pca"] = (x @ rng.standard_normal((x.shape[1], 50))).astype(np.float32)
    adata.obsm["X_umap"] = rng.standard_normal((adata.n_obs, 2))
    adata.obsm["peaks"] = sp.random(adata.n_obs, 20, density=0.2, format="csr",
                                    dtype=np.float32, random_state=3)
    adata.var["gene_symbol"] = [f"sym_{g}" for g in adata.var_names]
    adata.var["highly_variable"] = rng.random(adata.n_vars) < 0.3
    adata.var["means"] = np.asarray(x.mean(0)).ravel().astype(np.float64)
    adata.uns["title"] = "lossless fixture"
    adata.uns["params"] = {"n_pcs": 50, "seed": 7, "method": "svd"}
    adata.uns["cell_type_colors"] = np.array(["#1f77b4", "#ff7f0e", "#2ca02c"], dtype=object)
    adata.raw = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), var=adata.var[[]])
    return adata


def kept(group: zarr.Group) -> dict:
    """The elements of one dataset group: encodings, dtypes, keys."""
    out = {}
    for name, node in group.members(max_depth=None):
        attrs = dict(node.attrs)
        entry = {"encoding": attrs.get("encoding-type", "")}
        if isinstance(node, zarr.Array):
            entry["dtype"] = str(node.dtype)
            entry["shape"] = list(node.shape)
        out[name] = entry
    return dict(sorted(out.items()))


def main():
    adata = lossless_adata()
    adata.write_h5ad(DATA / "lossless.h5ad")
    csc = adata.copy()
    csc.X = sp.csc_matrix(csc.X)
    csc.layers["counts"] = sp.csc_matrix(csc.layers["counts"])
    csc.write_h5ad(DATA / "lossless_csc.h5ad")
    out_path = DATA / "annbatch_lossless_collection.zarr"
    shutil.rmtree(out_path, ignore_errors=True)
    annbatch.DatasetCollection(zarr.open_group(out_path, mode="w")).add_adatas(
        adata_paths=[str(DATA / "lossless.h5ad")], shuffle=True, dataset_size=200,
        n_obs_per_chunk=16, shard_size=64, shuffle_chunk_size=50,
        rng=np.random.default_rng(5))
    root = zarr.open_group(out_path, mode="r")
    recorded = {"annbatch": annbatch.__version__, "anndata": ad.__version__,
                "dataset_0": kept(root["dataset_0"])}
    back = ad.read_zarr(out_path / "dataset_0")
    recorded["read_back"] = {
        "layers": {k: str(v.dtype) for k, v in back.layers.items()},
        "obsm": {k: str(v.dtype) for k, v in back.obsm.items()},
        "var_columns": list(back.var.columns),
        "uns": sorted(back.uns),
        "raw": back.raw is not None,
    }
    path = DATA / "reference" / "annbatch_lossless.json"
    path.write_text(json.dumps(recorded, indent=1, default=str))
    print(json.dumps(recorded["read_back"], indent=1))


if __name__ == "__main__":
    main()
