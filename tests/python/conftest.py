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
    """Runs a command, failing the test with its output when it fails."""
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result
