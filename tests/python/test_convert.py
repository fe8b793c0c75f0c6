"""`annbatch convert` output, read back by Python anndata: every dataset opens with
`anndata.read_zarr` and its rows equal the source rows (outer-joined var, zero-filled)."""

import json
import pathlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import run

INPUTS = ["pbmc68k_raw_csr.h5ad", "oligodendroglioma.h5ad", "10x_pbmc68k_reduced.h5ad"]


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def reference(paths: list) -> ad.AnnData:
    """What the collection must hold: anndata's outer concat with zeros for missing genes."""
    adatas = [ad.read_h5ad(p) for p in paths]
    for a, p in zip(adatas, paths):
        a.obs["src_path"] = pd.Categorical([str(p)] * a.n_obs)
    ref = ad.concat(adatas, join="outer", fill_value=0)
    ref.obs_names_make_unique()
    return ref


def datasets(collection: pathlib.Path) -> list:
    root = json.loads((collection / "zarr.json").read_text())
    assert root["attributes"]["encoding-type"] == "annbatch-preshuffled"
    assert root["attributes"]["encoding-version"] == "0.1.0"
    names = sorted(
        (p.name for p in collection.iterdir() if p.name.startswith("dataset_")),
        key=lambda n: int(n.split("_")[1]),
    )
    return [ad.read_zarr(collection / n) for n in names]


def test_convert_rows_equal_anndata_concat(tmp_path, annbatch_bin, data_dir):
    paths = [data_dir / p for p in INPUTS]
    out = tmp_path / "collection.zarr"
    run([annbatch_bin, "convert", *paths, "-o", out, "--dataset-size", "500",
         "--shuffle-chunk-size", "100", "--seed", "3", "--quiet"])
    ref = reference(paths)
    parts = datasets(out)
    assert len(parts) == 4
    seen = []
    for part in parts:
        assert sp.issparse(part.X) and part.X.dtype == np.float32
        assert part.X.indices.dtype == np.uint16  # 9660 genes: the smallest unsigned type
        assert list(part.var_names) == sorted(ref.var_names)
        for key in ["obsm", "varm", "obsp", "varp", "layers"]:
            assert len(getattr(part, key)) == 0
        expected = ref[part.obs_names, part.var_names]
        np.testing.assert_array_equal(dense(part.X), dense(expected.X).astype(np.float32))
        assert list(part.obs["src_path"].astype(str)) == list(expected.obs["src_path"].astype(str))
        for column in ["cell_type", "bulk_labels", "louvain"]:
            got = part.obs[column]
            assert isinstance(got.dtype, pd.CategoricalDtype)
            want = expected.obs[column].astype(object).where(expected.obs[column].notna(), None)
            assert list(got.astype(object).where(got.notna(), None)) == list(want)
        np.testing.assert_allclose(
            part.obs["n_genes"].to_numpy(dtype=float),
            expected.obs["n_genes"].to_numpy(dtype=float),
        )
        seen.extend(part.obs_names)
    assert sorted(seen) == sorted(ref.obs_names)
    # Shuffled: not in input order.
    assert seen != list(ref.obs_names)


def test_convert_without_shuffle_keeps_order_and_dense_x(tmp_path, annbatch_bin, data_dir):
    src = data_dir / "10x_pbmc68k_reduced.h5ad"
    out = tmp_path / "dense.zarr"
    run([annbatch_bin, "convert", src, "-o", out, "--no-shuffle", "--dataset-size", "300",
         "--shuffle-chunk-size", "100", "--n-obs-per-chunk", "16", "--quiet"])
    parts = datasets(out)
    whole = ad.concat(parts)
    ref = ad.read_h5ad(src)
    assert not sp.issparse(parts[0].X)
    assert list(whole.obs_names) == list(ref.obs_names)
    np.testing.assert_array_equal(np.asarray(whole.X), ref.X)


def test_convert_groupby_var_subset_and_append(tmp_path, annbatch_bin, data_dir):
    first = data_dir / "pbmc68k_raw_csr.h5ad"
    genes = list(ad.read_h5ad(first).var_names[::3])
    subset = tmp_path / "genes.txt"
    subset.write_text("\n".join(genes))
    out = tmp_path / "grouped.zarr"
    run([annbatch_bin, "convert", first, "-o", out, "--dataset-size", "350",
         "--shuffle-chunk-size", "50", "--groupby", "cell_type", "--var-subset", subset,
         "--seed", "1", "--quiet"])
    parts = datasets(out)
    for part in parts:
        assert list(part.var_names) == genes
        codes = part.obs["cell_type"].cat.codes.to_numpy()
        assert (np.diff(codes) >= 0).all(), "sorted by cell_type within each dataset"
    # Append the sparse oligodendroglioma file: its genes are cut to the collection's var.
    second = data_dir / "oligodendroglioma.h5ad"
    run([annbatch_bin, "convert", second, "-o", out, "--shuffle-chunk-size", "50",
         "--seed", "2", "--quiet"])
    parts = datasets(out)
    whole = ad.concat(parts, join="outer")
    assert whole.n_obs == 700 + 184
    oligo = ad.read_h5ad(second)
    got = whole[whole.obs["src_path"] == str(second)]
    assert sorted(got.obs_names) == sorted(oligo.obs_names)
    want = oligo[got.obs_names].X
    present = [g for g in genes if g in set(oligo.var_names)]
    # Genes of the collection absent from the new file are zeros.
    expected = pd.DataFrame(dense(want), columns=oligo.var_names).reindex(
        columns=genes, fill_value=0.0)
    np.testing.assert_array_equal(dense(got.X), expected.to_numpy(dtype=np.float32))
    assert len(present) < len(genes)


@pytest.mark.parametrize("bad", ["file", "store"])
def test_convert_refuses_an_output_that_is_not_a_collection(tmp_path, annbatch_bin, data_dir, bad):
    out = tmp_path / "taken"
    if bad == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("precious")
    result = __import__("subprocess").run(
        [str(annbatch_bin), "convert", str(data_dir / "pbmc68k_raw_csr.h5ad"), "-o", str(out)],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "not a collection" in result.stderr or "a file" in result.stderr
    assert (out.read_text() if bad == "file" else (out / "notes.txt").read_text()) == "precious"
