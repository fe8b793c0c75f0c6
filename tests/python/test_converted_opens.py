"""Every collection the converter writes opens in anndata, whatever the inputs' optional parts
hold: damaged or unusual elements are left out with a note naming them, or refused with an
error naming the entry, never written so that anndata cannot read the result.

The inputs are written by anndata, then damaged with h5py / zarr; `run` opens every output
with anndata (conftest.open_with_anndata)."""

import pathlib

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from conftest import run

N_OBS, N_VAR = 60, 12


def base_adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    a = ad.AnnData(sp.random(N_OBS, N_VAR, density=0.3, format="csr", dtype=np.float32,
                             random_state=0))
    a.obs_names = [f"cell{i}" for i in range(N_OBS)]
    a.var_names = [f"gene{i}" for i in range(N_VAR)]
    a.obs["label"] = [f"type{i % 4}" for i in range(N_OBS)]
    a.varm["PCs"] = rng.normal(size=(N_VAR, 3))
    a.varp["dense"] = rng.normal(size=(N_VAR, N_VAR))
    a.varp["conn"] = sp.random(N_VAR, N_VAR, density=0.3, format="csr", random_state=1)
    a.uns["names"] = np.array(["alpha", "beta"], dtype=object)
    a.raw = a.copy()
    return a


def write_h5ad(path: pathlib.Path) -> pathlib.Path:
    base_adata().write_h5ad(path)
    return path


def write_zarr(path: pathlib.Path) -> pathlib.Path:
    base_adata().write_zarr(path)
    return path


def convert(annbatch_bin, src, out, *extra):
    """`annbatch convert`; the output is opened with anndata by `run`."""
    return run([annbatch_bin, "convert", "-q", src, "-o", out, *extra])


def replace_h5(f: h5py.File, path: str, data) -> None:
    attrs = dict(f[path].attrs)
    del f[path]
    f[path] = data
    f[path].attrs.update(attrs)


def set_h5_string(f: h5py.File, path: str, index: int, raw: bytes) -> None:
    """Writes `raw` (any bytes) into entry `index` of the string array `path`."""
    values = [v if isinstance(v, bytes) else v.encode() for v in f[path][()]]
    values[index] = raw
    attrs = dict(f[path].attrs)
    del f[path]
    ds = f.create_dataset(path, shape=(len(values),), dtype=h5py.string_dtype("utf-8"))
    for i, v in enumerate(values):
        ds[i] = v
    ds.attrs.update(attrs)


def set_zarr_string(store: pathlib.Path, path: str, index: int, raw: bytes) -> None:
    """Rewrites the string array `path` uncompressed, then puts `raw` into entry `index`'s
    bytes (same length as the old entry) in its chunk file."""
    group = zarr.open_group(store, mode="r+")
    values = list(group[path][:])
    assert len(raw) == len(values[index].encode())
    attrs = dict(group[path].attrs)
    del group[path]
    array = group.create_array(path, shape=(len(values),), dtype=str, compressors=None,
                               chunks=(len(values),))
    array[:] = np.array(values, dtype=object)
    array.attrs.update(attrs)
    chunk = next(p for p in (store / path).rglob("*")
                 if p.is_file() and p.name != "zarr.json" and not p.name.startswith("."))
    data = chunk.read_bytes()
    # vlen-utf8: each entry is its little-endian u32 length, then its bytes.
    old = values[index].encode()
    prefix = len(old).to_bytes(4, "little")
    assert data.count(prefix + old) == 1
    chunk.write_bytes(data.replace(prefix + old, prefix + raw))


def test_a_clean_input_keeps_varm_varp_dense_and_sparse(tmp_path, annbatch_bin):
    """Point 36.6 as well: a sparse `varp` of a single input is copied."""
    src = write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.zarr"
    convert(annbatch_bin, src, out)
    got = ad.read_zarr(out / "dataset_0")
    want = ad.read_h5ad(src)
    order = [list(got.var_names).index(v) for v in want.var_names]
    assert order == list(range(N_VAR))
    np.testing.assert_array_equal(got.varm["PCs"], want.varm["PCs"])
    np.testing.assert_array_equal(got.varp["dense"], want.varp["dense"])
    assert sp.issparse(got.varp["conn"]) and got.varp["conn"].format == "csr"
    np.testing.assert_array_equal(got.varp["conn"].toarray(), want.varp["conn"].toarray())
    assert list(got.uns["names"]) == ["alpha", "beta"]


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_varm_and_varp_that_do_not_fit_the_variables_are_left_out(tmp_path, annbatch_bin, kind):
    if kind == "h5ad":
        src = write_h5ad(tmp_path / "in.h5ad")
        with h5py.File(src, "r+") as f:
            replace_h5(f, "varm/PCs", f["varm/PCs"][: N_VAR - 1])
            replace_h5(f, "varp/dense", f["varp/dense"][:, : N_VAR - 2])
            f["varp/conn"].attrs["shape"] = np.array([N_VAR + 1, N_VAR + 1])
    else:
        src = write_zarr(tmp_path / "in.zarr")
        group = zarr.open_group(src, mode="r+")
        for path, keep in [("varm/PCs", np.s_[: N_VAR - 1]), ("varp/dense", np.s_[:, :N_VAR - 2])]:
            values, attrs = group[path][keep], dict(group[path].attrs)
            del group[path]
            group.create_array(path, data=values).attrs.update(attrs)
        group["varp/conn"].attrs["shape"] = [N_VAR + 1, N_VAR + 1]
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    for key, shape in [("varm/PCs", [N_VAR - 1, 3]), ("varp/dense", [N_VAR, N_VAR - 2])]:
        assert f"{key} left out: shape {shape} does not fit the {N_VAR} variables" in result.stderr
    assert "varp/conn left out" in result.stderr
    got = ad.read_zarr(out / "dataset_0")
    assert "PCs" not in got.varm and set(got.varp) == set()


def test_a_sparse_matrix_whose_arrays_do_not_form_one_is_left_out(tmp_path, annbatch_bin):
    src = write_h5ad(tmp_path / "in.h5ad")
    with h5py.File(src, "r+") as f:
        indices = f["varp/conn/indices"][()]
        indices[0] = N_VAR + 5
        replace_h5(f, "varp/conn/indices", indices)
        replace_h5(f, "uns/names", np.array([b"x"], dtype=object).astype(h5py.string_dtype()))
        # A sparse uns entry whose indptr does not end at its number of values.
        grp = f["uns"].create_group("bad_sparse")
        grp.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
                          "shape": np.array([2, 2])})
        grp["data"] = np.ones(3)
        grp["indices"] = np.array([0, 1, 0])
        grp["indptr"] = np.array([0, 1, 2])
        good = f["uns"].create_group("good_sparse")
        good.attrs.update({"encoding-type": "csc_matrix", "encoding-version": "0.1.0",
                           "shape": np.array([3, 2])})
        good["data"] = np.array([1.5, 2.5], dtype=np.float32)
        good["indices"] = np.array([2, 0], dtype=np.int32)
        good["indptr"] = np.array([0, 1, 2], dtype=np.int32)
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    assert "varp/conn left out (" in result.stderr and f"not below {N_VAR}" in result.stderr
    assert "uns/bad_sparse left out (" in result.stderr
    got = ad.read_zarr(out / "dataset_0")
    assert "conn" not in got.varp and "bad_sparse" not in got.uns
    csc = got.uns["good_sparse"]
    assert sp.issparse(csc) and csc.format == "csc"
    np.testing.assert_array_equal(csc.toarray(), [[0, 2.5], [0, 0], [1.5, 0]])


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_an_uns_string_that_is_not_utf8_is_left_out_with_a_note(tmp_path, annbatch_bin, kind):
    if kind == "h5ad":
        src = write_h5ad(tmp_path / "in.h5ad")
        with h5py.File(src, "r+") as f:
            set_h5_string(f, "uns/names", 1, b"b\xffta")
    else:
        src = write_zarr(tmp_path / "in.zarr")
        set_zarr_string(src, "uns/names", 1, b"b\xffta")
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    assert "uns/names left out" in result.stderr
    assert "entry 1 is not valid UTF-8" in result.stderr
    got = ad.read_zarr(out / "dataset_0")
    assert "names" not in got.uns
    assert got.n_obs == N_OBS


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
@pytest.mark.parametrize("element", ["var/_index", "obs/_index"])
def test_names_that_are_not_utf8_are_an_error_naming_the_entry(tmp_path, annbatch_bin, kind,
                                                                element):
    if kind == "h5ad":
        src = write_h5ad(tmp_path / "in.h5ad")
        with h5py.File(src, "r+") as f:
            set_h5_string(f, element, 3, b"\xffene3" if element[0] == "v" else b"\xffell3")
    else:
        src = write_zarr(tmp_path / "in.zarr")
        set_zarr_string(src, element, 3, b"\xffene3" if element[0] == "v" else b"\xffell3")
    out = tmp_path / "out.zarr"
    result = __import__("subprocess").run(
        [str(annbatch_bin), "convert", "-q", str(src), "-o", str(out)],
        capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"{element}: entry 3 is not valid UTF-8" in result.stderr
    assert str(src.name) in result.stderr
    assert "panicked" not in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.zarr.annbatch-*"))


def test_an_obs_column_that_is_not_utf8_is_an_error(tmp_path, annbatch_bin):
    src = write_h5ad(tmp_path / "in.h5ad")
    with h5py.File(src, "r+") as f:
        set_h5_string(f, "obs/label/categories", 2, b"typ\xff2")
    out = tmp_path / "out.zarr"
    result = __import__("subprocess").run(
        [str(annbatch_bin), "convert", "-q", str(src), "-o", str(out)],
        capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "obs/label/categories: entry 2 is not valid UTF-8" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("drop", ["raw/var", "raw/X"])
def test_a_raw_missing_a_part_is_left_out_with_a_note(tmp_path, annbatch_bin, drop):
    src = write_h5ad(tmp_path / "in.h5ad")
    with h5py.File(src, "r+") as f:
        del f[drop]
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    assert f"raw left out: {src} has a raw without {drop}" in result.stderr
    assert ad.read_zarr(out / "dataset_0").raw is None


def test_raw_none_written_by_anndata_is_no_note(tmp_path, annbatch_bin):
    a = base_adata()
    a.raw = None
    a.write_zarr(tmp_path / "in.zarr")
    result = convert(annbatch_bin, tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert "raw left out" not in result.stderr


def test_an_empty_hdf5_dataspace_in_uns_is_left_out_with_a_note(tmp_path, annbatch_bin):
    src = write_h5ad(tmp_path / "in.h5ad")
    with h5py.File(src, "r+") as f:
        f["uns"].create_dataset("empty", data=h5py.Empty("f"))
        f["uns/empty"].attrs["encoding-type"] = "numeric-scalar"
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    assert "uns/empty left out" in result.stderr and "empty HDF5 dataspace" in result.stderr
    uns = ad.read_zarr(out / "dataset_0").uns
    assert "empty" not in uns and list(uns["names"]) == ["alpha", "beta"]


def test_a_lost_indptr_chunk_is_reported_never_an_emptied_matrix(tmp_path, annbatch_bin):
    """zarr reads a missing chunk as zeros: row pointers that end before the values do are
    refused (a layer left out with a note; X an error), never copied as an empty matrix."""
    a = base_adata()
    a.layers["counts"] = a.X.copy()
    src = tmp_path / "in.zarr"
    a.write_zarr(src)
    chunks = [p for p in (src / "layers" / "counts" / "indptr").rglob("*")
              if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.unlink()
    out = tmp_path / "out.zarr"
    result = convert(annbatch_bin, src, out)
    assert "layers/counts" in result.stderr and "indptr" in result.stderr, result.stderr
    assert "counts" not in ad.read_zarr(out / "dataset_0").layers
    for chunk in [p for p in (src / "X" / "indptr").rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"]:
        chunk.unlink()
    import subprocess

    failed = subprocess.run([str(annbatch_bin), "convert", "-q", str(src), "-o",
                             str(tmp_path / "x.zarr")], capture_output=True, text=True)
    assert failed.returncode == 1 and "indptr" in failed.stderr, failed.stderr
    assert not (tmp_path / "x.zarr").exists()
