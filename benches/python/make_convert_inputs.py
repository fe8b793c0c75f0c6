"""Writes the conversion benchmark's inputs: N .h5ad files of CELLS cells x 20k genes with
~1.5k non-zeros per cell (float32 counts, a categorical `cell_type`), written by anndata.

    python benches/python/make_convert_inputs.py OUT_DIR [N_FILES=2] [CELLS=50000]
"""

import pathlib
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

N_VAR, NNZ_PER_ROW, BLOCK = 20_000, 1_500, 1_000


def make(path: pathlib.Path, cells: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, cells, BLOCK):
        rows = min(BLOCK, cells - start)
        mask = rng.random((rows, N_VAR), dtype=np.float32) < NNZ_PER_ROW / N_VAR
        block = sp.csr_matrix(mask, dtype=np.float32)
        block.data = (rng.poisson(2.0, block.nnz) + 1).astype(np.float32)
        blocks.append(block)
    x = sp.vstack(blocks, format="csr")
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["B", "T", "NK", "Mono"], cells))},
        index=[f"f{seed}_c{i}" for i in range(cells)],
    )
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(N_VAR)])
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(path)
    print(f"{path}: {cells} x {N_VAR}, {x.nnz / cells:.0f} nnz/row")


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    n_files = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    cells = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        path = out / f"input_{i}.h5ad"
        if not path.exists():
            make(path, cells, i)
