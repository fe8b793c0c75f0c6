"""Writes the format benchmark's real-data input: CELLS cells drawn with replacement from the
real count matrix of tests/data/oligodendroglioma.h5ad (184 cells x 9,450 genes, 4,186 non-zeros
per cell), each drawn cell thinned by keeping every non-zero with probability 0.7, so that no
two cells are copies (identical rows would compress unlike real data). Gene sets, values and
sparsity patterns stay the real ones.

    python benches/python/make_bootstrap_input.py OUT.h5ad [CELLS=40000] [SEED=0]
"""

import pathlib
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SOURCE = pathlib.Path(__file__).resolve().parents[2] / "tests/data/oligodendroglioma.h5ad"
KEEP = 0.7


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    cells = int(sys.argv[2]) if len(sys.argv) > 2 else 40_000
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    src = ad.read_h5ad(SOURCE)
    x = sp.csr_matrix(src.X, dtype=np.float32)
    picks = rng.integers(0, x.shape[0], cells)
    indptr, indices, data = [0], [], []
    for row in picks:
        a, b = x.indptr[row], x.indptr[row + 1]
        keep = rng.random(b - a) < KEEP
        indices.append(x.indices[a:b][keep])
        data.append(x.data[a:b][keep])
        indptr.append(indptr[-1] + int(keep.sum()))
    m = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.array(indptr)),
                      shape=(cells, x.shape[1]))
    obs = pd.DataFrame({"cell_type": pd.Categorical(src.obs["cell_type"].to_numpy()[picks])},
                       index=[f"c{i}" for i in range(cells)])
    ad.AnnData(X=m, obs=obs, var=pd.DataFrame(index=src.var_names)).write_h5ad(out)
    print(f"{out}: {cells} x {m.shape[1]}, {m.nnz / cells:.0f} nnz/row")


if __name__ == "__main__":
    main()
