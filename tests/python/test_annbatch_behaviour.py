"""Behaviour annbatch 0.3.1's own test suite relies on (issue 37): index names as anndata reads
them, its warnings, writable dataset groups, a chunk_size past the data, its error wording."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr
from annbatch_rs import DatasetCollection, Loader
from annbatch_rs.samplers import RandomSampler
from conftest import run


def adata(n_obs=40, n_var=12, *, obs_name=None, var_name=None, seed=0, dtype=np.float32):
    a = ad.AnnData(sp.random(n_obs, n_var, density=0.4, format="csr", dtype=dtype,
                             random_state=seed))
    a.obs_names = pd.Index([f"s{seed}-c{i}" for i in range(n_obs)], name=obs_name)
    a.var_names = pd.Index([f"g{i}" for i in range(n_var)], name=var_name)
    return a


@pytest.mark.parametrize("obs_name, var_name", [(None, None), ("cell", "gene_ids")])
def test_index_names_are_kept_as_anndata_reads_them(tmp_path, annbatch_bin, obs_name,
                                                    var_name):
    src = tmp_path / "in.h5ad"
    adata(obs_name=obs_name, var_name=var_name).write_h5ad(src)
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", src, "-o", out])
    got = ad.read_zarr(out / "dataset_0")
    assert got.obs.index.name == obs_name and got.var.index.name == var_name
    # An append keeps the collection's names, whatever the new input's.
    other = tmp_path / "other.h5ad"
    adata(obs_name="x", var_name="y", seed=1).write_h5ad(other)
    run([annbatch_bin, "convert", "-q", other, "-o", out])
    for dataset in sorted(out.glob("dataset_*")):
        got = ad.read_zarr(dataset)
        assert got.obs.index.name == obs_name and got.var.index.name == var_name


def test_inputs_naming_their_index_differently_give_an_unnamed_one(tmp_path, annbatch_bin):
    paths = []
    for i, name in enumerate(["a", "b"]):
        paths.append(tmp_path / f"in{i}.h5ad")
        adata(var_name=name, obs_name="same", seed=i).write_h5ad(paths[-1])
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", *paths, "-o", out])
    got = ad.read_zarr(out / "dataset_0")
    assert got.var.index.name is None and got.obs.index.name == "same"


def test_unyielded_layers_and_obsm_warn_once_each(tmp_path):
    x = np.random.default_rng(0).random((40, 10)).astype("f4")
    with_obsm = ad.AnnData(x.copy(), obsm={"pca": np.zeros((40, 5), dtype="f4")})
    with_layer = ad.AnnData(x.copy(), layers={"counts": x.copy()})
    loader = Loader(chunk_size=10, preload_nchunks=4, batch_size=10, to=None)
    with pytest.warns(FutureWarning) as record:
        loader.add_adatas([with_obsm, with_layer, with_obsm.copy()])
    messages = [str(w.message) for w in record if issubclass(w.category, FutureWarning)]
    assert len(messages) == 2 and all("Only `X`, `obs`, and `var` are kept" in m
                                      for m in messages)
    assert record[0].filename == __file__
    # Asked for, it is yielded and not warned about.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        Loader(chunk_size=10, preload_nchunks=4, batch_size=10, to=None,
               obsm_keys=["pca"]).add_adata(with_obsm)


def test_a_collection_with_layers_warns_on_use_collection(tmp_path):
    a = adata()
    a.layers["counts"] = a.X.copy()
    a.write_h5ad(tmp_path / "a.h5ad")
    collection = DatasetCollection(tmp_path / "c.zarr").add_adatas([tmp_path / "a.h5ad"],
                                                                   shuffle=False)
    with pytest.warns(FutureWarning, match="layers/counts is not yielded"):
        Loader(chunk_size=10, preload_nchunks=4, batch_size=10).use_collection(collection)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        Loader(chunk_size=10, preload_nchunks=4, batch_size=10,
               layer_keys=["counts"]).use_collection(collection)


def test_datasets_of_other_dtypes_warn_as_annbatch(tmp_path):
    for name, dtype in [("a.zarr", np.float32), ("b.zarr", np.float64)]:
        adata(dtype=dtype, seed=len(name)).write_zarr(tmp_path / name)
    loader = Loader(chunk_size=10, preload_nchunks=4, batch_size=10, to=None)
    loader.add_adata(str(tmp_path / "a.zarr"))
    with pytest.warns(UserWarning, match="Adding dataset with dtype 'float64'"):
        loader.add_adata(str(tmp_path / "b.zarr"))
    assert all(b["X"].dtype == np.float32 for b in loader)


def test_collection_groups_are_writable_unless_read_only(tmp_path):
    adata().write_h5ad(tmp_path / "a.h5ad")
    collection = DatasetCollection(tmp_path / "c.zarr").add_adatas([tmp_path / "a.h5ad"],
                                                                   shuffle=False)
    first = next(iter(collection))
    first.attrs["note"] = "written through the group"
    assert zarr.open_group(tmp_path / "c.zarr" / "dataset_0", mode="r").attrs["note"]
    with pytest.raises(ValueError):
        next(iter(DatasetCollection(tmp_path / "c.zarr", mode="r"))).attrs["x"] = 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_chunk_size_past_the_data_reads_every_row(shuffle):
    loader = Loader(batch_size=32, chunk_size=512, preload_nchunks=4, shuffle=shuffle,
                    return_index=True, to=None).add_adata(adata(n_obs=200))
    rows = [i for b in loader for i in np.asarray(b["index"])]
    assert len(loader) == 7 and sorted(rows) == list(range(200))


@pytest.mark.parametrize("mask, match", [
    (slice(0, 100, 2), "mask.step must be 1, but got 2"),
    (slice(-1, 100), "mask.start must be >= 0"),
    (slice(50, 50), "mask.start must be < mask.stop"),
])
def test_mask_errors_read_as_annbatchs(mask, match):
    with pytest.raises(ValueError, match=match):
        RandomSampler(10, 2, 10, mask=mask)


def test_add_adatas_shows_progress_off_a_terminal_and_logs(tmp_path, data_dir, capfd, caplog):
    """tqdm's auto bar where stderr is no terminal (a log file, Jupyter); off with
    progress=False; start, notes and end logged at INFO either way."""
    import logging

    src = data_dir / "pbmc68k_raw_csr.h5ad"
    with caplog.at_level(logging.INFO, logger="annbatch_rs"):
        DatasetCollection(tmp_path / "a.zarr").add_adatas([src], dataset_size=300,
                                                        shuffle_chunk_size=100)
    err = capfd.readouterr().err
    logged = [r.getMessage() for r in caplog.records if r.name == "annbatch_rs"]
    try:
        import tqdm  # noqa: F401
    except ImportError:  # then the progress is log lines
        assert any("700 of 700 cells read (100%)" in m for m in logged)
    else:
        assert "add_adatas dataset_" in err and "700/700" in err
    assert any("converting 1 input(s)" in m for m in logged)
    assert any("wrote 700 cells x 765 genes" in m for m in logged)
    caplog.clear()
    DatasetCollection(tmp_path / "b.zarr").add_adatas([src], progress=False)
    assert "add_adatas" not in capfd.readouterr().err


@pytest.mark.parametrize("on_disk", [True, False])
@pytest.mark.parametrize("to", [None, "torch"])
def test_a_dense_x_of_more_dimensions_is_yielded_in_its_shape(tmp_path, on_disk, to):
    """annbatch's test_3d: an N-d dense X (here an obsm entry given as the dataset) streams
    with its rows' shape; var (of other length) does not name its columns."""
    if to == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    cube = rng.random((60, 2, 4, 3)).astype(np.float32)
    var = pd.DataFrame(index=[f"g{i}" for i in range(10)])
    if on_disk:
        group = zarr.open_group(tmp_path / "cube.zarr", mode="w")
        group.create_array("cube", data=cube, chunks=(16, 2, 4, 3))
        dataset = zarr.open_group(tmp_path / "cube.zarr", mode="r")["cube"]
    else:
        dataset = cube
    loader = Loader(chunk_size=10, preload_nchunks=4, batch_size=20, shuffle=True,
                    return_index=True, to=to)
    loader.add_datasets([dataset, dataset], var=[var, var])
    rows, index = [], []
    for batch in loader:
        x = batch["X"]
        x = x.numpy() if to == "torch" else np.asarray(x)
        assert x.shape[1:] == (2, 4, 3)
        rows.append(x)
        index.append(np.asarray(batch["index"]))
    got = np.concatenate(rows)[np.argsort(np.concatenate(index))]
    np.testing.assert_array_equal(got, np.concatenate([cube, cube]))
