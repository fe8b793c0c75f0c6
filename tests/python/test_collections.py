"""annbatch's collection usages: `DatasetCollection` construction, iteration, `obs()`, empty
groups, `add_adatas` parameters, and `use_collection(load_adata=...)` (a layer as X, chosen obs
columns)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr
from annbatch_rs import DatasetCollection, Loader

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
COLLECTION = DATA / "annbatch_collection.zarr"  # written by annbatch 0.3.1
H5AD = DATA / "pbmc68k_raw_csr.h5ad"
SMALL = dict(chunk_size=10, preload_nchunks=8, batch_size=16)


def _reference_obs(path):
    """annbatch's obs(): each dataset's obs read by anndata, concatenated."""
    root = zarr.open_group(path, mode="r")
    keys = sorted((k for k in root.group_keys() if k.startswith("dataset_")),
                  key=lambda k: int(k.split("_")[1]))
    return pd.concat([ad.io.read_elem(root[k]["obs"]) for k in keys])


def test_obs_keeps_types_and_index():
    obs = DatasetCollection(COLLECTION).obs()
    reference = _reference_obs(COLLECTION)
    pd.testing.assert_frame_equal(obs, reference, check_names=False, check_index_type=False)
    assert obs["n_counts"].dtype == np.float32  # was strings ('249') before
    assert list(DatasetCollection(COLLECTION).obs(["n_counts", "nope"]).columns) == ["n_counts"]
    assert DatasetCollection(COLLECTION).obs([]).shape == (0, 0)


def test_iterates_dataset_groups():
    groups = list(DatasetCollection(COLLECTION))
    assert [g.basename for g in groups] == ["dataset_0", "dataset_1", "dataset_2"]
    assert all(isinstance(g, zarr.Group) for g in groups)


def test_empty_group_is_empty_and_can_be_filled(tmp_path):
    path = tmp_path / "c.zarr"
    zarr.open_group(path, mode="a")  # what annbatch's DatasetCollection(path) leaves
    c = DatasetCollection(path)
    assert c.is_empty and list(c) == [] and c.obs().shape == (0, 0)
    with pytest.raises(ValueError, match="empty"):
        Loader(**SMALL).use_collection(c)
    c.add_adatas([H5AD], dataset_size=300, shuffle_chunk_size=50,
                  rng=np.random.default_rng(0))
    assert not c.is_empty and len(list(c)) == 3
    again = DatasetCollection(tmp_path / "d.zarr").add_adatas(
        [H5AD], dataset_size=300, shuffle_chunk_size=50, rng=np.random.default_rng(0))
    assert again.last_report["seed"] == c.last_report["seed"]  # rng seeds deterministically


def test_modes_and_refusals(tmp_path):
    with pytest.raises(FileNotFoundError):
        DatasetCollection(tmp_path / "none.zarr", mode="r")
    with pytest.raises(ValueError, match="read-only"):
        DatasetCollection(COLLECTION, mode="r").add_adatas([H5AD])
    with pytest.raises(NotImplementedError, match="zarr"):
        DatasetCollection(tmp_path / "h", is_collection_h5ad=True)
    with pytest.warns(UserWarning, match=".zarr"):
        DatasetCollection(tmp_path / "no_suffix")
    target = DatasetCollection(tmp_path / "t.zarr")
    for kwargs, match in [(dict(zarr_compressor=(zarr.codecs.ZstdCodec(level=5),)), "Zstd")]:
        with pytest.raises(NotImplementedError, match=match):
            target.add_adatas([H5AD], **kwargs)
    assert target.is_empty


@pytest.mark.parametrize("codecs, name", [((zarr.codecs.ZstdCodec(level=0),), "zstd"),
                                          ((), None)])
def test_zarr_compressor_is_written(tmp_path, codecs, name):
    path = tmp_path / "c.zarr"
    DatasetCollection(path).add_adatas([H5AD], zarr_compressor=codecs)
    inner = zarr.open_group(path)["dataset_0/X/data"].metadata.codecs[0].codecs
    assert [type(c).__name__ for c in inner[1:]] == (["ZstdCodec"] if name else [])
    back = ad.read_zarr(path / "dataset_0")
    assert back.X.nnz == ad.read_h5ad(H5AD).X.nnz


@pytest.fixture
def layered(tmp_path):
    """A collection whose dataset has X (normalised), layers["counts"] and three obs columns."""
    rng = np.random.default_rng(0)
    n, g = 60, 9
    counts = sp.random(n, g, density=0.4, format="csr", dtype=np.float32, random_state=1)
    counts.data = np.round(counts.data * 20) + 1
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.multiply(1 / (counts.sum(1) + 1)), dtype=np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["B", "T", "NK"], n)),
                          "batch": rng.integers(0, 3, n),
                          "score": rng.random(n).astype(np.float32)},
                         index=[f"cell{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"gene{i}" for i in range(g)]))
    adata.layers["counts"] = counts
    root = zarr.open_group(tmp_path / "layered.zarr", mode="w")
    root.attrs.update({"encoding-type": "annbatch-preshuffled", "encoding-version": "0.1.0"})
    ad.io.write_elem(root, "dataset_0", adata)
    return DatasetCollection(tmp_path / "layered.zarr"), adata


def test_default_obs_is_every_column(layered):
    collection, adata = layered
    loader = Loader(**SMALL, return_index=True).use_collection(collection)
    seen = 0
    for batch in loader:
        assert isinstance(batch["X"], sp.csr_matrix)
        pd.testing.assert_frame_equal(batch["obs"], adata.obs.iloc[batch["index"]])
        seen += batch["X"].shape[0]
    assert seen == adata.n_obs


def test_load_adata_takes_a_layer_and_obs_columns(layered):
    collection, adata = layered

    def counts_and_labels(g):
        return ad.AnnData(X=ad.io.sparse_dataset(g["layers"]["counts"]),
                          obs=ad.io.read_elem(g["obs"])[["cell_type", "batch"]],
                          var=ad.io.read_elem(g["var"]))

    loader = Loader(**SMALL, shuffle=True, return_index=True).use_collection(
        collection, load_adata=counts_and_labels)
    seen = []
    for batch in loader:
        rows = batch["index"]
        assert (batch["X"] != adata.layers["counts"][rows]).nnz == 0  # the layer, not X
        assert list(batch["obs"].columns) == ["cell_type", "batch"]
        assert list(batch["obs"].index) == list(adata.obs_names[rows])
        seen.extend(rows)
    assert sorted(seen) == list(range(adata.n_obs))
    # The same through obs_keys (tensors from Rust): the function's obs columns are used.
    fast = Loader(**SMALL, obs_keys="cell_type", return_index=True).use_collection(
        collection, load_adata=counts_and_labels)
    batch = next(iter(fast))
    assert list(batch["obs"]["cell_type"]) == list(adata.obs["cell_type"].iloc[batch["index"]])


def test_add_dataset_of_a_layer(layered):
    collection, adata = layered
    group = next(iter(collection))
    loader = Loader(**SMALL).add_dataset(ad.io.sparse_dataset(group["layers"]["counts"]))
    batch = next(iter(loader))
    assert (batch["X"] != adata.layers["counts"][:16]).nnz == 0


def test_an_element_that_is_not_a_matrix_is_refused(layered):
    collection, _ = layered

    def obs_as_x(g):
        return ad.AnnData(X=g["obs"]["batch"], obs=pd.DataFrame(index=range(60)))

    with pytest.raises((TypeError, ValueError)):
        Loader(**SMALL).use_collection(collection, load_adata=obs_as_x)


def test_string_label_loads_as_codes(tmp_path):
    """A label that is categorical in one input and strings in the other is joined as strings,
    and the converter says so: as a pandas obs key it stays strings (as anndata reads it), as
    arrays it is factorized into codes."""
    parts = []
    # anndata writes strings as categoricals unless every value is distinct.
    for i, labels in enumerate([pd.Categorical(["T", "B", "T"]), np.array(["NK", "B", "Q"],
                                                                             dtype=object)]):
        a = ad.AnnData(X=sp.csr_matrix(np.eye(3, 4, dtype=np.float32)),
                       obs=pd.DataFrame({"label": labels}, index=[f"{i}-{j}" for j in range(3)]),
                       var=pd.DataFrame(index=list("abcd")))
        a.write_h5ad(tmp_path / f"in{i}.h5ad")
        parts.append(tmp_path / f"in{i}.h5ad")
    c = DatasetCollection(tmp_path / "c.zarr").add_adatas(parts, shuffle=False)
    assert any("label" in note and "codes" in note for note in c.last_report["notes"])
    settings = dict(batch_size=2, chunk_size=2, preload_nchunks=3, obs_keys=["label"],
                    return_index=True)
    got = pd.concat([b["obs"] for b in Loader(**settings).use_collection(c)])
    assert list(got["label"]) == ["T", "B", "T", "NK", "B", "Q"]
    assert got["label"].dtype == ad.read_zarr(tmp_path / "c.zarr" / "dataset_0").obs["label"].dtype
    codes = np.concatenate([b["obs"]["label"] for b in
                            Loader(**settings, obs_as="tensors").use_collection(c)])
    # Codes of the sorted distinct values B, NK, Q, T.
    assert list(codes) == [3, 0, 3, 1, 0, 2]


def test_numeric_obs_joins_stay_numeric(tmp_path):
    """anndata.concat(join="outer") keeps numbers numbers: float + nullable int, bool + float,
    and an append of a nullable-int column onto a float column with NaN."""
    def write(name, obs):
        n = len(obs)
        a = ad.AnnData(X=sp.csr_matrix(np.ones((n, 2), dtype=np.float32)),
                       obs=obs.set_axis([f"{name}{j}" for j in range(n)]),
                       var=pd.DataFrame(index=["a", "b"]))
        a.write_h5ad(tmp_path / f"{name}.h5ad")
        return tmp_path / f"{name}.h5ad"

    first = write("f", pd.DataFrame({"x": [0.5, np.nan], "flag": [1.5, 2.5],
                                     "w": np.array([1, 2], dtype=np.float32)}))
    second = write("s", pd.DataFrame({"x": pd.array([3, None], dtype="Int64"),
                                      "flag": [True, False]}))
    c = DatasetCollection(tmp_path / "c.zarr").add_adatas([first, second], shuffle=False)
    obs = c.obs()
    assert obs["x"].dtype == np.float64 and obs["flag"].dtype == np.float64
    np.testing.assert_array_equal(obs["x"].to_numpy(), [0.5, np.nan, 3.0, np.nan])
    np.testing.assert_array_equal(obs["flag"].to_numpy(), [1.5, 2.5, 1.0, 0.0])
    assert obs["w"].dtype == np.float32  # float32 stays float32, NaN where missing
    np.testing.assert_array_equal(obs["w"].to_numpy(), [1, 2, np.nan, np.nan])
    third = write("t", pd.DataFrame({"x": pd.array([7, None], dtype="Int64")}))
    c.add_adatas([third])
    assert c.obs()["x"].dtype.kind == "f"
    back = ad.read_zarr(tmp_path / "c.zarr" / "dataset_0")
    assert back.obs["x"].dtype.kind == "f"  # anndata reads what we wrote


def test_add_adatas_runs_load_adata(tmp_path):
    """annbatch's docstring example: a function keeping X, two obs columns and var."""
    def read_lazy_x_and_obs_only(path):
        adata = ad.experimental.read_lazy(path)
        return ad.AnnData(X=adata.X, obs=adata.obs.to_memory()[["cell_type", "n_counts"]],
                          var=adata.var.to_memory())

    c = DatasetCollection(tmp_path / "c.zarr").add_adatas(
        [H5AD], load_adata=read_lazy_x_and_obs_only, rng=np.random.default_rng(0))
    obs = c.obs()
    assert list(obs.columns) == ["cell_type", "n_counts", "src_path"]
    assert set(obs["src_path"].astype(str)) == {str(H5AD)}  # the input, not a scratch copy
    source = ad.read_h5ad(H5AD)
    back = ad.concat([ad.read_zarr(tmp_path / "c.zarr" / k) for k in c._dataset_keys])
    back = back[source.obs_names]
    assert (back.X != source.X).nnz == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".annbatch-load-")]


def test_concurrent_load_adata_appends_name_their_inputs(tmp_path):
    """Appends with load_adata from several processes at once: all land, and every src_path
    names a user's input (the scratch copy's name used to be replaced after the conversion,
    outside its lock, so a concurrent append could keep it)."""
    import subprocess

    inputs = []
    for i in range(4):
        a = ad.AnnData(sp.random(50, 20, density=0.3, format="csr", dtype=np.float32,
                                 random_state=i))
        a.obs_names = [f"f{i}-c{j}" for j in range(50)]
        a.var_names = [f"g{j}" for j in range(20)]
        inputs.append(tmp_path / f"in{i}.h5ad")
        a.write_h5ad(inputs[-1])
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([inputs[0]], load_adata=ad.read_h5ad, progress=False)
    code = ("import sys, anndata as ad; from annbatch_rs import DatasetCollection; "
            "DatasetCollection(sys.argv[1]).add_adatas([sys.argv[2]], "
            "load_adata=ad.read_h5ad, progress=False)")
    appends = [subprocess.Popen([sys.executable, "-c", code, str(out), str(p)],
                                stderr=subprocess.PIPE, text=True) for p in inputs[1:]]
    for process in appends:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    obs = DatasetCollection(out).obs()
    assert len(obs) == 200
    assert set(obs["src_path"].astype(str)) == {str(p) for p in inputs}


def _with_var(tmp_path, name, genes, symbols):
    a = ad.AnnData(X=sp.random(30, len(genes), density=0.3, format="csr", dtype=np.float32,
                               random_state=0),
                   obs=pd.DataFrame({"ct": pd.Categorical(["a"] * 30)},
                                    index=[f"{name}{i}" for i in range(30)]),
                   var=pd.DataFrame({"gene_symbol": symbols, "hv": [True] * len(genes)},
                                    index=genes))
    a.write_h5ad(tmp_path / f"{name}.h5ad")
    return tmp_path / f"{name}.h5ad"


@pytest.mark.parametrize("merge", [None, "same", "unique", "first", "only"])
def test_var_columns_merge_as_anndata_concat(tmp_path, merge):
    """Inputs with genes g1-g3 and g2-g4: var columns as `anndata.concat(join="outer",
    merge=...)` gives them (each input's column reindexed to every gene, so `first` takes the
    first input's column whole and `unique` drops a column that one input lacks a gene of);
    annbatch 0.3.1 gives the same (probed with anndata 0.13.4)."""
    one = _with_var(tmp_path, "one", ["g1", "g2", "g3"], ["A", "B", "C"])
    two = _with_var(tmp_path, "two", ["g2", "g3", "g4"], ["B", "C", "D"])
    out = tmp_path / "c.zarr"
    DatasetCollection(out).add_adatas([one, two], merge=merge, rng=np.random.default_rng(0))
    var = ad.read_zarr(out / "dataset_0").var
    want = ad.concat([ad.read_h5ad(one), ad.read_h5ad(two)], join="outer", merge=merge).var
    assert list(var.columns) == list(want.columns) and list(var.index) == list(want.index)
    for name in want.columns:
        assert var[name].isna().tolist() == want[name].isna().tolist(), name
        assert var[name].dropna().tolist() == want[name].dropna().tolist(), name


def test_one_input_keeps_its_var_columns_and_appends_keep_them(tmp_path):
    one = _with_var(tmp_path, "one", ["g1", "g2", "g3"], ["A", "B", "C"])
    out = tmp_path / "c.zarr"
    c = DatasetCollection(out).add_adatas([one], rng=np.random.default_rng(0))
    var = ad.read_zarr(out / "dataset_0").var
    assert var["gene_symbol"].tolist() == ["A", "B", "C"] and var["hv"].all()
    c.add_adatas([_with_var(tmp_path, "two", ["g2", "g3", "g4"], ["x", "y", "z"])])
    for key in c._dataset_keys:
        assert ad.read_zarr(out / key).var["gene_symbol"].tolist() == ["A", "B", "C"]
    with pytest.raises(ValueError, match="merge"):
        DatasetCollection(tmp_path / "d.zarr").add_adatas([one], merge="most")
