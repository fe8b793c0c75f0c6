"""Conversion keeps layers and obsm (issue 17): every input's `layers[k]` and dense
`obsm[k]`, rows shuffled with X, read back equal by anndata per obs name; what is left out is
named in the report."""

import pathlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from annbatch_rs import DatasetCollection

H5AD = pathlib.Path(__file__).resolve().parents[1] / "data" / "pbmc68k_raw_csr.h5ad"


def _rich(tmp_path, name, rows, genes=None, dense_layer=False, extra_obsm=False):
    """A slice of the PBMC file with layers['counts'], a second layer, obsm and uns."""
    src = ad.read_h5ad(H5AD)[rows]
    if genes is not None:
        src = src[:, genes]
    counts = sp.csr_matrix(src.X, dtype=np.float32)
    a = ad.AnnData(X=sp.csr_matrix(counts.multiply(1e4 / np.maximum(counts.sum(1), 1)),
                                   dtype=np.float32),
                   obs=pd.DataFrame({"cell_type": src.obs["cell_type"].astype(str)},
                                    index=src.obs_names.astype(object)),
                   var=pd.DataFrame(index=src.var_names.astype(object)))
    a.obs_names, a.var_names = list(src.obs_names), list(src.var_names)  # plain strings
    a.layers["counts"] = counts
    a.layers["binary"] = (counts > 0).astype(np.float32).toarray() if dense_layer else \
        sp.csr_matrix((counts > 0).astype(np.float32))
    rng = np.random.default_rng(len(name))
    a.obsm["X_pca"] = rng.normal(size=(a.n_obs, 5)).astype(np.float32)
    if extra_obsm:
        a.obsm["X_umap"] = rng.normal(size=(a.n_obs, 2)).astype(np.float32)
    a.uns["note"] = name
    path = tmp_path / f"{name}.h5ad"
    a.write_h5ad(path)
    return path, a


def _back(path, names):
    keys = sorted((p.name for p in path.iterdir() if p.name.startswith("dataset_")),
                  key=lambda k: int(k.split("_")[1]))
    whole = ad.concat([ad.read_zarr(path / k) for k in keys], merge="first")
    return whole[names]


def test_layers_and_obsm_survive_a_shuffled_conversion(tmp_path):
    one, a = _rich(tmp_path, "one", slice(0, 400), extra_obsm=True)
    two, b = _rich(tmp_path, "two", slice(400, 700), dense_layer=True)
    out = tmp_path / "c.zarr"
    c = DatasetCollection(out).add_adatas([one, two], dataset_size=250, shuffle_chunk_size=20,
                                          rng=np.random.default_rng(0))
    source = ad.concat([a, b])
    back = _back(out, source.obs_names)
    assert sorted(back.layers) == ["binary", "counts"] and list(back.obsm) == ["X_pca"]
    assert (back.X != source.X).nnz == 0
    assert (back.layers["counts"] != source.layers["counts"]).nnz == 0
    binary = sp.csr_matrix(back.layers["binary"])
    assert (binary != sp.csr_matrix(source.layers["binary"])).nnz == 0
    np.testing.assert_array_equal(back.obsm["X_pca"], source.obsm["X_pca"])
    notes = " ".join(c.last_report["notes"])
    assert "obsm/X_umap left out" in notes and "uns left out" in notes
    # Shuffled: the layers moved with X (checked per obs name above), and the file order is not
    # the input order.
    first = ad.read_zarr(out / "dataset_0")
    assert list(first.obs_names[:20]) != list(source.obs_names[:20])


def test_layers_follow_the_var_outer_join(tmp_path):
    genes = ad.read_h5ad(H5AD).var_names
    one, a = _rich(tmp_path, "one", slice(0, 300), genes=genes[:500])
    two, b = _rich(tmp_path, "two", slice(300, 600), genes=genes[200:])
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([one, two], rng=np.random.default_rng(1))
    source = ad.concat([a, b], join="outer")
    back = _back(out, source.obs_names)
    back = back[:, source.var_names]
    assert (back.layers["counts"] != sp.csr_matrix(source.layers["counts"])).nnz == 0


@pytest.mark.parametrize("zarr_input", [False, True])
def test_one_input_keeps_its_layers_whatever_the_format(tmp_path, zarr_input):
    path, a = _rich(tmp_path, "one", slice(0, 200))
    if zarr_input:
        a.write_zarr(tmp_path / "one.zarr")
        path = tmp_path / "one.zarr"
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([path], rng=np.random.default_rng(2))
    back = _back(out, a.obs_names)
    assert (back.layers["counts"] != a.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(back.obsm["X_pca"], a.obsm["X_pca"])


def test_a_layer_becomes_x_and_x_a_layer(tmp_path):
    path, a = _rich(tmp_path, "one", slice(0, 300))
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([path], layer="counts", rng=np.random.default_rng(3))
    back = _back(out, a.obs_names)
    assert (back.X != a.layers["counts"]).nnz == 0
    assert (back.layers["X"] != a.X).nnz == 0 and "counts" not in back.layers
    # Appending more files the same way: their counts become X too.
    more, b = _rich(tmp_path, "more", slice(300, 500))
    DatasetCollection(out).add_adatas([more], layer="counts")
    back = _back(out, b.obs_names)
    assert (back.X != b.layers["counts"]).nnz == 0
    with pytest.raises(Exception, match='layers: missing element "nope"'):
        DatasetCollection(tmp_path / "d.zarr").add_adatas([path], layer="nope")


@pytest.mark.parametrize("chunked_too", [False, True])
def test_an_obsm_claiming_a_huge_width_is_an_error_not_an_abort(tmp_path, chunked_too):
    """A damaged obsm shape must not size an allocation: the converter refuses it by name."""
    import json

    from annbatch_rs import AnnbatchError

    a = ad.AnnData(X=sp.random(40, 6, density=0.5, format="csr", dtype=np.float32,
                               random_state=0))
    a.obsm["X_pca"] = np.ones((40, 5), dtype=np.float32)
    with ad.settings.override(zarr_write_format=3):
        a.write_zarr(tmp_path / "in.zarr")
    meta = tmp_path / "in.zarr" / "obsm" / "X_pca" / "zarr.json"
    m = json.loads(meta.read_text())
    m["shape"] = [40, 10**13]
    if chunked_too:
        m["chunk_grid"]["configuration"]["chunk_shape"] = [40, 10**13]
    meta.write_text(json.dumps(m))
    target = DatasetCollection(tmp_path / "c.zarr")
    if chunked_too:  # refused when opened: the entry is left out, by name
        target.add_adatas([tmp_path / "in.zarr"])
        assert any("obsm/X_pca left out" in n and "memory" in n
                   for n in target.last_report["notes"])
    else:  # refused before the dataset is staged
        with pytest.raises(AnnbatchError, match="more than the [0-9]+ bytes it may take"):
            target.add_adatas([tmp_path / "in.zarr"])
        assert target.is_empty


LOSSLESS = pathlib.Path(__file__).resolve().parents[1] / "data" / "lossless.h5ad"
REFERENCE = (pathlib.Path(__file__).resolve().parents[1] / "data" / "reference"
             / "annbatch_lossless.json")


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _same_tree(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b)
        for k in a:
            _same_tree(a[k], b[k])
    else:
        np.testing.assert_array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def test_the_scvi_layout_converts_losslessly(tmp_path):
    """Every element of an anndata-written file comes back equal, per obs name, in its dtype:
    X, int32 counts, a dense layer, float32 / float64 / sparse obsm, var columns, nested uns,
    raw; and the collection holds what annbatch 0.3.1 keeps of the same file."""
    import json

    source = ad.read_h5ad(LOSSLESS)
    out = tmp_path / "c.zarr"
    c = DatasetCollection(out).add_adatas([LOSSLESS], dataset_size=120, shuffle_chunk_size=10,
                                          rng=np.random.default_rng(4))
    assert not [n for n in c.last_report["notes"] if "left out" in n], c.last_report["notes"]
    back = _back(out, source.obs_names)
    np.testing.assert_array_equal(_dense(back.X), _dense(source.X))
    for key, want in source.layers.items():
        got = back.layers[key]
        assert got.dtype == want.dtype and sp.issparse(got) == sp.issparse(want), key
        np.testing.assert_array_equal(_dense(got), _dense(want))
    for key, want in source.obsm.items():
        got = back.obsm[key]
        assert got.dtype == want.dtype and sp.issparse(got) == sp.issparse(want), key
        np.testing.assert_array_equal(_dense(got), _dense(want))
    assert list(back.var_names) == list(source.var_names)
    for column in source.var.columns:
        assert list(back.var[column]) == list(source.var[column]), column
    first = ad.read_zarr(out / "dataset_0")
    _same_tree(first.uns, source.uns)
    assert back.raw is not None
    assert list(back.raw.var_names) == list(source.raw.var_names)
    np.testing.assert_array_equal(_dense(back.raw.X), _dense(source.raw.X))
    # What annbatch keeps of the same file, we keep.
    kept = json.loads(REFERENCE.read_text())["read_back"]
    assert sorted(first.layers) == sorted(k for k in kept["layers"] if k != "null")
    assert sorted(first.obsm) == sorted(kept["obsm"])
    assert list(first.var.columns) == kept["var_columns"]
    assert sorted(first.uns) == kept["uns"] and (first.raw is not None) == kept["raw"]
    for key, dtype in kept["obsm"].items():
        assert str(first.obsm[key].dtype) == dtype
    assert str(first.layers["counts"].dtype) == kept["layers"]["counts"]


def test_uns_of_several_inputs_follows_merge(tmp_path):
    source = ad.read_h5ad(LOSSLESS)
    halves = []
    for i, rows in enumerate((slice(0, 150), slice(150, 300))):
        part = source[rows].copy()
        part.uns["part"] = i
        halves.append(tmp_path / f"half{i}.h5ad")
        with ad.settings.override(allow_write_nullable_strings=True):
            part.write_h5ad(halves[-1])
    plain = DatasetCollection(tmp_path / "plain.zarr").add_adatas(halves)
    assert ad.read_zarr(tmp_path / "plain.zarr" / "dataset_0").uns == {}
    assert any(n.startswith("uns left out") for n in plain.last_report["notes"])
    DatasetCollection(tmp_path / "same.zarr").add_adatas(halves, merge="same")
    same = ad.read_zarr(tmp_path / "same.zarr" / "dataset_0").uns
    # "part" differs between the halves (so may the colors anndata trims to each half's
    # categories); what they share stays.
    assert {"params", "title"} <= set(same) and "part" not in same
    DatasetCollection(tmp_path / "first.zarr").add_adatas(halves, merge="first")
    assert ad.read_zarr(tmp_path / "first.zarr" / "dataset_0").uns["part"] == 0
    # Both halves have raw: it is concatenated with X's rows.
    back = _back(tmp_path / "plain.zarr", source.obs_names)
    np.testing.assert_array_equal(_dense(back.raw.X), _dense(source.raw.X))


def test_a_converted_collection_streams_its_layers(tmp_path):
    from annbatch_rs import Loader

    source = ad.read_h5ad(LOSSLESS)
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([LOSSLESS], rng=np.random.default_rng(2))
    names = ad.concat([ad.read_zarr(p) for p in sorted(out.glob("dataset_*"))]).obs_names
    loader = Loader(batch_size=50, chunk_size=10, preload_nchunks=5, shuffle=True,
                    return_index=True, layer_keys="counts", obsm_keys="X_umap")
    for batch in loader.use_collection(out):
        rows = source[names[batch["index"]]]
        np.testing.assert_array_equal(batch["layers"]["counts"].toarray(),
                                      _dense(rows.layers["counts"]).astype(np.float32))
        np.testing.assert_array_equal(batch["obsm"]["X_umap"],
                                      rows.obsm["X_umap"].astype(np.float32))


@pytest.mark.parametrize("as_zarr", [False, True])
def test_csc_inputs_are_transposed(tmp_path, as_zarr):
    """X and layers["counts"] stored as CSC (h5ad, or zarr written by anndata) convert to the
    same rows as the CSR file, with a note of the transposition's cost."""
    csc = LOSSLESS.with_name("lossless_csc.h5ad")
    if as_zarr:
        adata = ad.read_h5ad(csc)
        assert sp.isspmatrix_csc(adata.X) or isinstance(adata.X, sp.csc_array)
        csc = tmp_path / "csc.zarr"
        with ad.settings.override(allow_write_nullable_strings=True):
            adata.write_zarr(csc)
    out = tmp_path / "c.zarr"
    c = DatasetCollection(out).add_adatas([csc], rng=np.random.default_rng(3))
    notes = " ".join(c.last_report["notes"])
    assert "X is CSC" in notes and "layers/counts is CSC" in notes
    source = ad.read_h5ad(LOSSLESS)
    back = _back(out, source.obs_names)
    np.testing.assert_array_equal(_dense(back.X), _dense(source.X))
    assert back.layers["counts"].dtype == np.int32
    np.testing.assert_array_equal(_dense(back.layers["counts"]), _dense(source.layers["counts"]))


def test_varm_and_varp_of_one_input_are_copied(tmp_path):
    source = ad.read_h5ad(LOSSLESS)
    source.varm["PCs"] = np.random.default_rng(0).standard_normal((source.n_vars, 5))
    source.varp["corr"] = np.eye(source.n_vars, dtype=np.float32)
    source.obsp["distances"] = sp.eye(source.n_obs, format="csr")
    path = tmp_path / "in.h5ad"
    with ad.settings.override(allow_write_nullable_strings=True):
        source.write_h5ad(path)
    c = DatasetCollection(tmp_path / "c.zarr").add_adatas([path], dataset_size=150,
                                                        shuffle_chunk_size=10)
    assert [n for n in c.last_report["notes"] if "left out" in n] == [
        n for n in c.last_report["notes"] if n.startswith("obsp left out")]
    for d in ("dataset_0", "dataset_1"):
        back = ad.read_zarr(tmp_path / "c.zarr" / d)
        np.testing.assert_array_equal(back.varm["PCs"], source.varm["PCs"])
        assert back.varm["PCs"].dtype == np.float64
        np.testing.assert_array_equal(back.varp["corr"], source.varp["corr"])
    # Several inputs: varm is left out by name.
    c = DatasetCollection(tmp_path / "two.zarr").add_adatas([path, path])
    assert any(n.startswith("varm left out") for n in c.last_report["notes"])


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_an_nd_obsm_entry_keeps_its_shape(tmp_path, fmt):
    source = ad.read_h5ad(LOSSLESS)
    source.obsm["spots"] = np.arange(source.n_obs * 12, dtype=np.float32).reshape(-1, 3, 4)
    path = tmp_path / f"in.{fmt}"
    with ad.settings.override(allow_write_nullable_strings=True):
        source.write_h5ad(path) if fmt == "h5ad" else source.write_zarr(path)
    out = tmp_path / "c.zarr"
    c = DatasetCollection(out).add_adatas([path], dataset_size=100, shuffle_chunk_size=10)
    assert not [n for n in c.last_report["notes"] if "spots" in n]
    back = _back(out, source.obs_names)
    assert back.obsm["spots"].shape == (source.n_obs, 3, 4)
    np.testing.assert_array_equal(back.obsm["spots"], source.obsm["spots"])
