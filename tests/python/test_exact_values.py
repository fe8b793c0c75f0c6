"""Layers and obsm entries keep every stored value and the dtype `anndata.concat` gives them:
int64 / uint64 values past 2^53 are not rounded (they were staged as float64), and inputs of
different dtypes join as numpy promotes them."""

import os

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import run

N_OBS, N_VAR = 40, 8


def write(path, dtype, base, kind):
    """An input whose layer `L` and obsm `E` hold `base + i` (row-major) in `dtype`."""
    x = sp.random(N_OBS, N_VAR, density=0.5, format="csr", dtype=np.float32, random_state=0)
    a = ad.AnnData(x)
    a.obs_names = [f"{path.name}-{i}" for i in range(N_OBS)]
    a.var_names = [f"g{i}" for i in range(N_VAR)]
    offsets = np.arange(N_OBS * N_VAR, dtype=object).reshape(N_OBS, N_VAR)
    if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).bits == 8:
        offsets = offsets % 100  # within the type's range
    values = np.array(offsets + base).astype(dtype)
    a.layers["L"] = {"csr": sp.csr_matrix, "csc": sp.csc_matrix}.get(kind, np.asarray)(values)
    a.obsm["E"] = values[:, :3].copy()
    if path.suffix == ".h5ad":
        a.write_h5ad(path)
    else:
        a.write_zarr(path)
    return a


def collection(out):
    datasets = sorted(d for d in os.listdir(out) if d.startswith("dataset_"))
    return ad.concat([ad.read_zarr(out / d) for d in datasets])


def dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


CASES = {
    "int64 past 2^53": [(np.int64, 2**62 + 1, "csr", ".h5ad"),
                        (np.int64, -(2**62) - 3, "dense", ".zarr")],
    "uint64 past 2^63": [(np.uint64, 2**63 + 5, "csr", ".h5ad"),
                         (np.uint64, 2**64 - 1000, "dense", ".zarr")],
    "int64 alone": [(np.int64, 2**60 + 7, "csr", ".zarr")],
    "uint8 + int16": [(np.uint8, 0, "csr", ".h5ad"), (np.int16, -300, "dense", ".zarr")],
    "int64 + uint64": [(np.int64, -5, "csr", ".h5ad"), (np.uint64, 3, "csr", ".zarr")],
    "int8 + float32": [(np.int8, -100, "dense", ".h5ad"), (np.float32, 0.5, "dense", ".zarr")],
    "uint32 + int8": [(np.uint32, 2**31, "csr", ".zarr"), (np.int8, -100, "csr", ".h5ad")],
}


@pytest.mark.parametrize("case", CASES)
def test_values_and_dtypes_are_anndata_concats(tmp_path, annbatch_bin, case):
    inputs, paths = [], []
    for i, (dtype, base, kind, suffix) in enumerate(CASES[case]):
        paths.append(tmp_path / f"in{i}{suffix}")
        inputs.append(write(paths[-1], dtype, base, kind))
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", *paths, "-o", out])
    want = ad.concat(inputs)
    got = collection(out)[want.obs_names]
    for name, w, g in [("layer", want.layers["L"], got.layers["L"]),
                       ("obsm", want.obsm["E"], got.obsm["E"])]:
        assert dense(g).dtype == dense(w).dtype, (name, dense(g).dtype, dense(w).dtype)
        np.testing.assert_array_equal(dense(g), dense(w), err_msg=name)


def test_a_csc_int64_layer_past_2_53_is_refused_not_rounded(tmp_path, annbatch_bin):
    import subprocess

    src = tmp_path / "in.h5ad"
    write(src, np.int64, 2**60 + 1, "csc")
    out = tmp_path / "out.zarr"
    result = subprocess.run([str(annbatch_bin), "convert", "-q", str(src), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "write it as CSR" in result.stderr and "layers/L" in result.stderr
    assert not out.exists()


def test_a_csc_int64_layer_below_2_53_is_exact(tmp_path, annbatch_bin):
    src = tmp_path / "in.h5ad"
    a = write(src, np.int64, 2**52, "csc")
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", src, "-o", out])
    got = collection(out)[a.obs_names]
    assert dense(got.layers["L"]).dtype == np.int64
    np.testing.assert_array_equal(dense(got.layers["L"]), dense(a.layers["L"]))


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_float16_is_kept_and_loads_as_float32(tmp_path, annbatch_bin, suffix):
    """annbatch keeps float16 layers and obsm; so does the converter (dense: scipy has no
    sparse float16), and batches hand them out as float32. A float16 obs column becomes
    float32 (exact); a float16 uns array stays float16."""
    from annbatch_rs import Loader

    rng = np.random.default_rng(3)
    a = ad.AnnData(sp.random(N_OBS, N_VAR, density=0.5, format="csr", dtype=np.float32,
                             random_state=1))
    a.obs_names = [f"c{i}" for i in range(N_OBS)]
    a.var_names = [f"g{i}" for i in range(N_VAR)]
    half = (rng.normal(size=(N_OBS, N_VAR)) * 100).astype(np.float16)
    half[0, 0] = np.float16(65504)  # float16's largest
    half[1, 1] = np.float16(6e-8)  # a subnormal
    a.layers["h"] = half
    a.obsm["e"] = half[:, :3].copy()
    a.obs["f"] = half[:, 2].copy()
    a.uns["u"] = np.array([1.5, 2.25], dtype=np.float16)
    src = tmp_path / f"in{suffix}"
    a.write_h5ad(src) if suffix == ".h5ad" else a.write_zarr(src)
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", src, "-o", out])
    got = collection(out)[a.obs_names]
    assert got.layers["h"].dtype == np.float16 and got.obsm["e"].dtype == np.float16
    np.testing.assert_array_equal(got.layers["h"], half)
    np.testing.assert_array_equal(got.obsm["e"], half[:, :3])
    np.testing.assert_array_equal(got.obs["f"].to_numpy(), half[:, 2].astype(np.float32))
    uns = ad.read_zarr(out / "dataset_0").uns["u"]
    assert uns.dtype == np.float16 and list(uns) == [1.5, 2.25]

    order = np.concatenate([ad.read_zarr(out / d).obs_names
                            for d in sorted(os.listdir(out)) if d.startswith("dataset_")])
    rows = {name: i for i, name in enumerate(a.obs_names)}
    loader = Loader(batch_size=8, chunk_size=4, preload_nchunks=4, shuffle=True, seed=1,
                    return_index=True, layer_keys=["h"], obsm_keys=["e"], obs_keys=["f"],
                    to=None).use_collection(out)
    seen = 0
    for batch in loader:
        index = [rows[order[i]] for i in np.asarray(batch["index"])]
        layer = dense(batch["layers"]["h"])
        assert layer.dtype == np.float32
        np.testing.assert_array_equal(layer, half[index].astype(np.float32))
        np.testing.assert_array_equal(batch["obsm"]["e"], half[index, :3].astype(np.float32))
        np.testing.assert_array_equal(np.asarray(batch["obs"]["f"], dtype=np.float32),
                                      half[index, 2].astype(np.float32))
        seen += len(index)
    assert seen == N_OBS


def test_a_sparse_float16_layer_is_stored_as_float32(tmp_path, annbatch_bin):
    """scipy has no sparse float16, so anndata could not read one: float32, exact."""
    import h5py

    src = tmp_path / "in.h5ad"
    a = write(src, np.float32, 0.25, "csr")
    with h5py.File(src, "r+") as f:
        data = f["layers/L/data"][()]
        del f["layers/L/data"]
        f["layers/L/data"] = data.astype(np.float16)
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", src, "-o", out])
    got = collection(out)[a.obs_names].layers["L"]
    assert sp.issparse(got) and got.dtype == np.float32
    np.testing.assert_array_equal(dense(got),
                                  dense(a.layers["L"]).astype(np.float16).astype(np.float32))


def obs_input(path, k):
    """An input whose obs columns need their exact dtype: integers past float32's 2^24 and
    float64's 2^53, uint64 past 2^63, float64, nullable Int64, integer and float categories."""
    a = ad.AnnData(sp.random(N_OBS, N_VAR, density=0.5, format="csr", dtype=np.float32,
                             random_state=k))
    a.obs_names = [f"{path.name}-{i}" for i in range(N_OBS)]
    a.var_names = [f"g{i}" for i in range(N_VAR)]
    i = np.arange(N_OBS)
    a.obs["i32"] = (16_778_701 + i + k).astype(np.int32)
    a.obs["i64"] = (2**62 + 1 + i * 3 + k).astype(np.int64)
    a.obs["u32"] = (2**32 - 1 - i - k).astype(np.uint32)
    a.obs["u64"] = np.array([2**64 - 1 - j - k for j in range(N_OBS)], dtype=np.uint64)
    a.obs["u8"] = (i % 200 + k).astype(np.uint8)
    a.obs["f64"] = 0.1 + i / 3 + k
    nullable = pd.array(2**60 + i + k, dtype="Int64")
    nullable[::5] = pd.NA
    a.obs["nullable"] = nullable
    a.obs["int_cat"] = pd.Categorical((i % 3) * 10**12, categories=[0, 10**12, 2 * 10**12])
    a.obs["float_cat"] = pd.Categorical((i % 2) * 0.1 + 0.2, categories=[0.2, 0.1 + 0.2])
    if path.suffix == ".h5ad":
        a.write_h5ad(path)
    else:
        a.write_zarr(path)
    return a


pd = pytest.importorskip("pandas")
EXACT = ["i32", "i64", "u32", "u64", "u8", "f64", "nullable", "int_cat", "float_cat"]


def test_obs_columns_keep_their_dtype_and_values(tmp_path, annbatch_bin):
    inputs = [obs_input(tmp_path / "a.h5ad", 0), obs_input(tmp_path / "b.zarr", 1)]
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", tmp_path / "a.h5ad", tmp_path / "b.zarr", "-o", out])
    want = ad.concat(inputs).obs
    got = collection(out).obs.loc[want.index]
    for name in EXACT:
        assert got[name].dtype == want[name].dtype, (name, got[name].dtype, want[name].dtype)
        pd.testing.assert_series_equal(got[name], want[name], check_names=False)

    from annbatch_rs import Loader

    order = np.concatenate([ad.read_zarr(out / d).obs_names
                            for d in sorted(os.listdir(out)) if d.startswith("dataset_")])
    settings = dict(batch_size=16, chunk_size=8, preload_nchunks=4, shuffle=True, seed=2,
                    return_index=True, obs_keys=EXACT, to=None)
    for batch in Loader(**settings).use_collection(out):
        names = order[np.asarray(batch["index"])]
        frame = batch["obs"]
        for name in EXACT:
            assert frame[name].dtype == want[name].dtype, (name, frame[name].dtype)
            np.testing.assert_array_equal(frame[name].to_numpy(),
                                          want.loc[names, name].to_numpy(), err_msg=name)
    # As arrays: integers int64 exactly, float64 and nullable integers float64 (NaN missing).
    batch = next(iter(Loader(**settings, obs_as="tensors").use_collection(out)))
    names = order[np.asarray(batch["index"])]
    for name, dtype in [("i32", np.int64), ("i64", np.int64), ("u32", np.int64),
                        ("u8", np.int64), ("f64", np.float64), ("nullable", np.float64)]:
        values = np.asarray(batch["obs"][name])
        assert values.dtype == dtype, (name, values.dtype)
        column = want.loc[names, name]
        expected = (column.to_numpy(dtype=dtype, na_value=np.nan) if name == "nullable"
                    else column.to_numpy(dtype=dtype))
        np.testing.assert_array_equal(values, expected, err_msg=name)


def test_negative_zero_keeps_its_sign_when_genes_are_reordered(tmp_path, annbatch_bin):
    """Dense layers of inputs whose genes come in other orders are rewritten column by column:
    -0.0 stays -0.0 (bit for bit), as anndata.concat keeps it."""
    inputs, paths = [], []
    for k, genes in enumerate([["g0", "g1", "g2"], ["g2", "g0", "g1"]]):
        values = np.arange(N_OBS * 3, dtype=np.float32).reshape(N_OBS, 3) - 40
        values[::3, k] = -0.0
        a = ad.AnnData(sp.csr_matrix(np.abs(values) + 1))
        a.obs_names = [f"{k}-{i}" for i in range(N_OBS)]
        a.var_names = genes
        a.layers["d"] = values
        paths.append(tmp_path / f"in{k}.zarr")
        a.write_zarr(paths[-1])
        inputs.append(a)
    out = tmp_path / "out.zarr"
    run([annbatch_bin, "convert", "-q", *paths, "-o", out])
    want = ad.concat(inputs)
    got = collection(out)[want.obs_names][:, want.var_names]
    w, g = dense(want.layers["d"]), dense(got.layers["d"])
    np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))
    assert np.signbit(g).sum() == np.signbit(w).sum() > 0
