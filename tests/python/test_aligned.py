"""Batches carry layers and obsm entries beside X (issue 17): ``Loader(layer_keys=...,
obsm_keys=...)`` yields ``batch["layers"]`` / ``batch["obsm"]``, the same rows as ``X`` in every
output type, checked against anndata's own reading of the annbatch-written collection."""

import pathlib

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from annbatch_rs import AnnbatchError, Loader

COLLECTION = (pathlib.Path(__file__).resolve().parents[1] / "data"
              / "annbatch_lossless_collection.zarr")


@pytest.fixture(scope="module")
def adata():
    """The collection's datasets read by anndata, concatenated in order (global rows)."""
    parts = [ad.read_zarr(COLLECTION / f"dataset_{i}") for i in range(2)]
    return ad.concat(parts, merge="same")


def _dense(x):
    if isinstance(x, torch.Tensor):
        return x.to_dense().numpy() if x.layout == torch.sparse_csr else x.numpy()
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@pytest.mark.parametrize("to", [None, "torch"])
def test_layers_and_obsm_are_the_rows_of_x(adata, to):
    loader = Loader(batch_size=32, chunk_size=16, preload_nchunks=4, shuffle=True, seed=5,
                    return_index=True, layer_keys=["counts", "scaled"],
                    obsm_keys=["X_pca", "X_umap", "peaks"], to=to).use_collection(COLLECTION)
    seen = []
    for batch in loader:
        index = np.asarray(batch["index"])
        seen.extend(index)
        assert set(batch["layers"]) == {"counts", "scaled"}
        assert set(batch["obsm"]) == {"X_pca", "X_umap", "peaks"}
        np.testing.assert_array_equal(_dense(batch["X"]), _dense(adata.X[index]))
        for key, values in batch["layers"].items():
            want = _dense(adata.layers[key][index])
            np.testing.assert_array_equal(_dense(values), want.astype(np.float32))
        for key, values in batch["obsm"].items():
            want = _dense(adata.obsm[key][index]).astype(np.float32)
            got = _dense(values)
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        if to is None:
            assert sp.issparse(batch["layers"]["counts"])
            assert isinstance(batch["obsm"]["X_pca"], np.ndarray)
    assert sorted(seen) == list(range(adata.n_obs))


def test_batches_keep_annbatch_keys_without_them():
    loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4).use_collection(COLLECTION)
    assert set(next(iter(loader))) == {"X", "obs", "var", "index"}


def test_a_single_name_and_missing_keys():
    loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4, layer_keys="counts",
                    obsm_keys="X_pca").use_collection(COLLECTION)
    batch = next(iter(loader))
    assert list(batch["layers"]) == ["counts"] and list(batch["obsm"]) == ["X_pca"]
    loader = Loader(batch_size=64, chunk_size=16, preload_nchunks=4,
                    obsm_keys="nope").use_collection(COLLECTION)
    with pytest.raises(AnnbatchError, match="obsm/nope"):
        next(iter(loader))


def test_load_adata_results_carry_their_groups_layers(adata):
    """A layer as X through annbatch's load_adata, with obsm read from the same group; and the
    keys given to use_collection (annbatch's pending shape) rather than to the loader."""

    def counts_as_x(group):
        return ad.AnnData(X=ad.io.sparse_dataset(group["layers"]["counts"]),
                          obs=ad.io.read_elem(group["obs"]), var=ad.io.read_elem(group["var"]))

    loader = Loader(batch_size=32, chunk_size=16, preload_nchunks=4, shuffle=True, seed=2,
                    return_index=True, to="torch")
    loader.use_collection(COLLECTION, load_adata=counts_as_x, obsm_keys="X_pca")
    seen = 0
    for batch in loader:
        index = np.asarray(batch["index"])
        np.testing.assert_array_equal(_dense(batch["X"]),
                                      _dense(adata.layers["counts"][index]).astype(np.float32))
        np.testing.assert_array_equal(_dense(batch["obsm"]["X_pca"]), adata.obsm["X_pca"][index])
        seen += len(index)
    assert seen == adata.n_obs
    with pytest.raises(ValueError, match="obsm_keys"):
        Loader(batch_size=32, chunk_size=16, preload_nchunks=4,
               obsm_keys="X_umap").use_collection(COLLECTION, obsm_keys="X_pca")


def test_keys_given_to_add_adatas(adata):
    """annbatch's pending shape on add_adatas: dataset groups added by path carry their layers."""
    paths = [COLLECTION / f"dataset_{i}" for i in range(2)]
    loader = Loader(batch_size=50, chunk_size=25, preload_nchunks=2, return_index=True)
    loader.add_adatas(paths, layer_keys="counts", obsm_keys=["X_umap"])
    seen = 0
    for batch in loader:
        index = np.asarray(batch["index"])
        np.testing.assert_array_equal(_dense(batch["layers"]["counts"]),
                                      _dense(adata.layers["counts"][index]).astype(np.float32))
        np.testing.assert_array_equal(batch["obsm"]["X_umap"],
                                      adata.obsm["X_umap"][index].astype(np.float32))
        seen += len(index)
    assert seen == adata.n_obs


@pytest.mark.parametrize("to", [None, "torch"])
def test_an_nd_obsm_entry_keeps_its_trailing_shape(tmp_path, to):
    from annbatch_rs import DatasetCollection

    rng = np.random.default_rng(0)
    n = 96
    cube = rng.normal(size=(n, 3, 2)).astype(np.float32)
    a = ad.AnnData(X=sp.random(n, 8, density=0.3, format="csr", dtype=np.float32,
                               random_state=1),
                   obsm={"cube": cube})
    a.obs_names = [f"c{i}" for i in range(n)]
    a.write_zarr(tmp_path / "in.zarr")
    out = DatasetCollection(tmp_path / "c.zarr").add_adatas(
        [tmp_path / "in.zarr"], n_obs_per_chunk=8, shuffle_chunk_size=16, seed=2)
    loader = Loader(batch_size=16, chunk_size=8, preload_nchunks=2, shuffle=True, seed=1,
                    return_index=True, obsm_keys=["cube"], to=to).use_collection(out)
    back = ad.read_zarr(tmp_path / "c.zarr" / "dataset_0")
    by_name = dict(zip(back.obs_names, back.obsm["cube"]))
    rows = 0
    for batch in loader:
        got = np.asarray(batch["obsm"]["cube"])
        assert got.shape == (len(batch["index"]), 3, 2)
        names = back.obs_names[np.asarray(batch["index"])]
        np.testing.assert_array_equal(got, np.stack([by_name[k] for k in names]))
        rows += got.shape[0]
    assert rows == n
