"""Shared fixtures: the `annbatch` binary and the test data directory."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def annbatch_bin() -> pathlib.Path:
    """The command-line tool, built with the `hdf5` feature (`./run test` builds it)."""
    path = pathlib.Path(os.environ.get("ANNBATCH_BIN", ROOT / "target" / "release" / "annbatch"))
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    return DATA


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command, failing the test with its output when it fails. After an
    `annbatch convert`, every dataset of its output is opened with anndata."""
    cmd = [str(c) for c in cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    if len(cmd) > 1 and cmd[1] == "convert":
        flag = next(i for i, c in enumerate(cmd) if c in ("-o", "--output"))
        output = cmd[flag + 1]
        if "://" not in output:
            open_with_anndata(pathlib.Path(kwargs.get("cwd", ".")) / output)
    return result


def open_with_anndata(collection) -> None:
    """Reads every dataset of `collection` whole with anndata (X, layers, obs, var, obsm, varm,
    varp, uns, raw): what the converter writes must open there, whatever its inputs held."""
    import anndata as ad

    datasets = sorted(pathlib.Path(collection).glob("dataset_*"))
    assert datasets, f"{collection}: no dataset_N"
    for dataset in datasets:
        adata = ad.read_zarr(dataset)
        assert adata.n_obs > 0, dataset
        if adata.raw is not None:
            assert adata.raw.X.shape == (adata.n_obs, adata.raw.var.shape[0]), dataset


@pytest.fixture(autouse=True)
def converted_collections_open_in_anndata(monkeypatch):
    """Every `DatasetCollection.add_adatas` of a test is followed by `open_with_anndata`."""
    try:
        from annbatch_rs import DatasetCollection
    except ImportError:
        yield
        return
    add_adatas = DatasetCollection.add_adatas

    def checked(self, *args, **kwargs):
        out = add_adatas(self, *args, **kwargs)
        if "://" not in self.path:
            open_with_anndata(self.path)
        return out

    monkeypatch.setattr(DatasetCollection, "add_adatas", checked)
    yield
