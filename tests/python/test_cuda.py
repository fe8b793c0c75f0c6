"""Batches on CUDA from Python: skipped without a GPU (run on the GPU machine). CUDA batches
equal CPU batches bit for bit, are placed on the asked device, and a model trained while
loading sees every batch intact."""

import pathlib

import pytest

torch = pytest.importorskip("torch")
from annbatch_rs import DatasetCollection, Loader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

COLLECTION = pathlib.Path(__file__).resolve().parents[1] / "data" / "annbatch_collection.zarr"


def loader(**kwargs) -> Loader:
    params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, shuffle=True, seed=7,
                  return_index=True, obs_keys=["cell_type"], obs_as="tensors")
    params.update(kwargs)
    return Loader(to="torch", **params).use_collection(DatasetCollection(COLLECTION))


def parts(batch: dict) -> list:
    x = batch["X"]
    return [t.cpu() for t in (x.crow_indices(), x.col_indices(), x.values(), batch["index"])]


def test_cuda_batches_equal_cpu_batches_bit_for_bit():
    on_cpu = list(loader())
    on_gpu = list(loader(device="cuda"))
    assert len(on_gpu) == len(on_cpu)
    for g, c in zip(on_gpu, on_cpu):
        assert g["X"].is_cuda and g["X"].layout == torch.sparse_csr
        for a, b in zip(parts(g), parts(c)):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_cuda_batches_are_on_the_asked_device():
    batch = next(iter(loader(device="cuda:0")))
    assert all(t.is_cuda and t.device.index == 0 for t in parts(batch))


def test_training_while_loading_sees_every_batch_intact():
    def checksum(batch):
        x = batch["X"]
        return (float(x.col_indices().double().sum()), float(x.values().double().sum()),
                x.shape[0])

    expected = [checksum(b) for epoch in range(3) for b in _epoch(loader(), epoch)]
    model = torch.nn.Linear(765, 8).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    ds = loader(device="cuda")
    for epoch in range(3):
        for batch in _epoch(ds, epoch):
            loss = torch.nn.functional.cross_entropy(
                model(batch["X"].to_dense()), batch["obs"]["cell_type"] % 8)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen.append(checksum(batch))
    assert seen == expected


def _epoch(ds: Loader, epoch: int):
    ds.set_epoch(epoch)
    return iter(ds)
