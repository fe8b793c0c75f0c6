"""Write the reference values the Rust tests compare our reader against.

Run with the project venv (anndata installed):  .venv/bin/python tests/data/make_reference.py
Reads the source .h5ad files with anndata (h5py), never with our code, and writes plain
little-endian binaries + text files under tests/data/reference/<stem>/:
  obs_names.txt, var_names.txt            one name per line
  indptr.i64, indices.i32, data.f32       X as CSR (rows as stored in the h5ad)
  dense.f32                               X as dense row-major (dense sources)
  obs_<column>.txt                        categorical/string obs columns, one value per line
  obs_<column>.f64                        numeric obs columns
  rowstats.f64                            per row: nnz, sum, sum of (column + 1) * value
                                          (instead of the full matrix, for the larger file)
"""
import pathlib
import numpy as np
import scipy.sparse as sp
import anndata as ad

HERE = pathlib.Path(__file__).parent
OUT = HERE / "reference"


def write_lines(path, values):
    path.write_text("".join(f"{v}\n" for v in values))


def dump(stem, adata, dense, stats_only=False):
    out = OUT / stem
    out.mkdir(parents=True, exist_ok=True)
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    write_lines(out / "obs_names.txt", adata.obs_names)
    write_lines(out / "var_names.txt", adata.var_names)
    if stats_only:
        X = sp.csr_matrix(adata.X).astype(np.float64)
        cols = X.copy()
        cols.data = (X.indices + 1) * X.data
        stats = np.stack([np.diff(X.indptr), np.asarray(X.sum(1)).ravel(), np.asarray(cols.sum(1)).ravel()], 1)
        stats.astype("<f8").tofile(out / "rowstats.f64")
    elif dense:
        np.asarray(adata.X, dtype="<f4").tofile(out / "dense.f32")
    else:
        X = sp.csr_matrix(adata.X)
        X.indptr.astype("<i8").tofile(out / "indptr.i64")
        X.indices.astype("<i4").tofile(out / "indices.i32")
        X.data.astype("<f4").tofile(out / "data.f32")
    for name, col in adata.obs.items():
        if col.dtype.kind in "fiub":
            np.asarray(col, dtype="<f8").tofile(out / f"obs_{name}.f64")
        else:
            write_lines(out / f"obs_{name}.txt", col.astype(str))
    print(stem, adata.shape, "dense" if dense else f"nnz {sp.csr_matrix(adata.X).nnz}")


dump("pbmc68k_raw_csr", ad.read_h5ad(HERE / "pbmc68k_raw_csr.h5ad"), dense=False)
pb = ad.read_h5ad(HERE / "10x_pbmc68k_reduced.h5ad")
dump("pbmc68k_dense", ad.AnnData(X=np.asarray(pb.X, dtype=np.float32), obs=pb.obs[["bulk_labels"]].copy(), var=pb.var[[]].copy()), dense=True)
og = ad.read_h5ad(HERE / "oligodendroglioma.h5ad")
dump("oligodendroglioma", og, dense=False, stats_only=True)
