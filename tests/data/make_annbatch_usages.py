"""Records what annbatch 0.3.1 gives for each usage of tests/python/annbatch_usages.py, into
tests/data/reference/annbatch_usages.json (and writes the fixture annbatch_layers_collection.zarr
first). Run from the repository root with the original annbatch, never in CI:

    ../shared/tools/annbatch-reference run tests/data/make_annbatch_usages.py
"""

import json
import pathlib
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import anndata as ad  # noqa: E402
import annbatch  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import zarr  # noqa: E402

zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
import annbatch_usages as usages  # noqa: E402


def layered_fixture(tmp):
    """annbatch's collection of the PBMC file with normalised X and layers["counts"]."""
    adata = ad.read_h5ad(usages.H5AD)
    counts = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = counts
    adata.X = sp.csr_matrix(counts.multiply(1e4 / np.maximum(counts.sum(1), 1)),
                            dtype=np.float32)
    adata.write_h5ad(tmp / "layered.h5ad")
    out = zarr.open_group(usages.LAYERED, mode="w")
    annbatch.DatasetCollection(out).add_adatas(
        adata_paths=[str(tmp / "layered.h5ad")], shuffle=True, dataset_size=400,
        n_obs_per_chunk=16, shard_size=128, shuffle_chunk_size=50, rng=np.random.default_rng(11))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        layered_fixture(tmp)
        recorded = {"annbatch": annbatch.__version__, "anndata": ad.__version__,
                    "zarr": zarr.__version__, "usages": {}}
        for name in usages.USAGES:
            work = tmp / name
            work.mkdir()
            recorded["usages"][name] = usages.record(name, annbatch, work)
            outcome = recorded["usages"][name]
            print(name, "error: " + outcome["error"] if "error" in outcome else "ok")
    path = ROOT / "tests" / "data" / "reference" / "annbatch_usages.json"
    path.write_text(json.dumps(recorded, indent=None, separators=(",", ":")))
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
