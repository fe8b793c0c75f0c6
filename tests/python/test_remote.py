"""Collections in object storage from Python: an S3 server on 127.0.0.1 (s3s-fs, built by
`./run test`), batches equal to local ones, and elastic epochs under torchrun — each rank
streaming its run from the server, a state saved on 2 ranks resumed on 3."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from annbatch_rs import Loader

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "tests" / "data" / "annbatch_collection.zarr"
S3S_FS = pathlib.Path(os.environ.get(
    "ANNBATCH_S3S_FS", pathlib.Path.home() / ".cache/annbatch-rs/s3s-fs/bin/s3s-fs"))
URL = "s3://cells/annbatch_collection.zarr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """s3s-fs serving a copy of the test collection; the AWS environment pointing at it."""
    assert S3S_FS.exists(), f"{S3S_FS} is missing: `./run test` builds it"
    root = tmp_path_factory.mktemp("s3")
    shutil.copytree(COLLECTION, root / "cells" / COLLECTION.name)
    port = free_port()
    server = subprocess.Popen(
        [str(S3S_FS), "--host", "127.0.0.1", "--port", str(port), "--access-key", "py",
         "--secret-key", "py-secret", str(root)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline and server.poll() is None, "s3s-fs did not start"
            time.sleep(0.05)
    env = {"AWS_ACCESS_KEY_ID": "py", "AWS_SECRET_ACCESS_KEY": "py-secret",
           "AWS_REGION": "us-east-1", "ANNBATCH_REMOTE_ENDPOINT": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.kill()
    server.wait()


def epoch(source, **kwargs):
    loader = Loader(to="torch", batch_size=64, chunk_size=16, preload_nchunks=4, shuffle=True,
                    seed=5, return_index=True, obs_keys=["cell_type"], **kwargs)
    return list(loader.use_collection(source))


def test_s3_batches_equal_local_batches(s3):
    here, there = epoch(str(COLLECTION)), epoch(URL)
    assert len(here) == len(there) == 11
    for a, b in zip(here, there):
        assert (a["index"] == b["index"]).all()
        assert torch.equal(a["X"].to_dense(), b["X"].to_dense())
        assert list(a["obs"]["cell_type"]) == list(b["obs"]["cell_type"])


def test_a_missing_collection_is_a_clear_error(s3):
    with pytest.raises(Exception, match="not found|missing|no zarr group"):
        epoch("s3://cells/nothing-here.zarr")


def torchrun(n: int, out: pathlib.Path, take: int, env: dict, state=None) -> list:
    out.mkdir(parents=True, exist_ok=True)
    worker = pathlib.Path(__file__).with_name("elastic_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
           f"--master_port={free_port()}", str(worker), URL, str(out), str(take)]
    if state is not None:
        cmd.append(str(state))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, **env))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


def test_torchrun_ranks_stream_disjoint_runs_of_one_global_order_and_resume_2_to_3(s3, tmp_path):
    one = torchrun(1, tmp_path / "one", -1, s3)[0]
    two = torchrun(2, tmp_path / "two", -1, s3)
    three = torchrun(3, tmp_path / "three", -1, s3)
    for runs in (two, three):
        # Equal runs per rank (DDP), in the global order; at most world_size - 1 batches left.
        assert len({len(r) for r in runs}) == 1
        joined = [b for r in runs for b in r]
        assert joined == one[:len(joined)] and len(one) - len(joined) < len(runs)
        rows = [i for b in joined for i in b]
        assert len(rows) == len(set(rows))
    # Two ranks deliver 4 batches each and save; three ranks resume from that state.
    before = torchrun(2, tmp_path / "before", 4, s3)
    state = tmp_path / "before" / "state.json"
    assert "remaining" in json.loads(state.read_text())
    after = torchrun(3, tmp_path / "after", -1, s3, state)
    delivered = [b for r in before for b in r] + [b for r in after for b in r]
    rows = [i for b in delivered for i in b]
    assert len(rows) == len(set(rows)), "a row delivered twice"
    assert all(b in one for b in delivered), "a batch outside the global order"
    assert len(one) - len(delivered) < 3


def test_a_collection_converted_into_s3_reads_as_the_local_one(s3, tmp_path, monkeypatch):
    from annbatch_rs import DatasetCollection

    source = ROOT / "tests" / "data" / "pbmc68k_raw_csr.v3.zarr"
    monkeypatch.setenv("ANNBATCH_STAGING_DIR", str(tmp_path / "staging"))
    url = "s3://cells/converted.zarr"
    there = DatasetCollection(url)
    assert there.is_empty and there._dataset_keys == []
    there.add_adatas([source], seed=3, quiet=True)
    assert "uploaded" in " ".join(there.last_report["notes"])
    assert list((tmp_path / "staging").iterdir()) == []
    here = DatasetCollection(tmp_path / "local.zarr").add_adatas([source], seed=3, quiet=True)
    assert not there.is_empty
    assert there._dataset_keys == here._dataset_keys
    assert there.obs().equals(here.obs())
    assert DatasetCollection(url, mode="r")._dataset_keys == here._dataset_keys
    a, b = epoch(str(here.path)), epoch(url)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x["index"] == y["index"]).all()
        assert torch.equal(x["X"].to_dense(), y["X"].to_dense())
    # Nothing is appended in object storage, and a missing collection is not one.
    with pytest.raises(Exception, match="new prefix"):
        there.add_adatas([source], seed=4, quiet=True)
    with pytest.raises(FileNotFoundError):
        DatasetCollection("s3://cells/absent.zarr", mode="r")
    with pytest.raises(NotImplementedError):
        next(iter(there))
