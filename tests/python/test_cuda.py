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
    # The row ids are numpy (as annbatch gives them), the rest torch.
    index = torch.as_tensor(batch["index"])
    return [t.cpu() for t in (x.crow_indices(), x.col_indices(), x.values(), index)]


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
    x = batch["X"]
    assert all(t.is_cuda and t.device.index == 0
               for t in (x, x.crow_indices(), x.col_indices(), x.values(),
                         batch["obs"]["cell_type"]))


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


def native_batches(**kwargs):
    params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    params.update(kwargs)
    ds = Loader(**params).use_collection(DatasetCollection(COLLECTION))
    return ds._native(ds._shard()).epoch(0)


def test_the_extension_hands_out_device_memory_torch_views_without_a_copy():
    host = list(native_batches())
    on_gpu = list(native_batches(cuda_device=0))
    assert len(on_gpu) == len(host)
    side = torch.cuda.Stream()
    for g, h in zip(on_gpu, host):
        _, shape, indptr, indices, data = g["X"]
        assert data.__dlpack_device__() == (2, 0)
        assert h["X"][4].__dlpack_device__() == (1, 0)
        # Another stream than the default: the protocol makes it wait for the copy.
        with torch.cuda.stream(side):
            values = torch.from_dlpack(data)
            col = torch.from_dlpack(indices)
        assert values.is_cuda and values.data_ptr() == data.address
        crow = torch.from_dlpack(indptr)
        torch.cuda.synchronize()
        assert torch.equal(values.cpu(), torch.from_dlpack(h["X"][4]))
        assert torch.equal(col.cpu(), torch.from_dlpack(h["X"][3]))
        assert torch.equal(crow.cpu(), torch.from_dlpack(h["X"][2]))
        # obs values and row ids stay in host memory.
        assert g["index"].__dlpack_device__() == (1, 0)


def test_stream_zero_is_refused_for_device_memory():
    batch = next(iter(native_batches(cuda_device=0)))
    data = batch["X"][4]
    with pytest.raises(ValueError, match="ambiguous"):
        data.__dlpack__(stream=0)
    assert not data.consumed


def test_cupy_takes_the_device_memory_when_installed():
    cp = pytest.importorskip("cupy")
    batches = list(Loader(batch_size=64, chunk_size=16, preload_nchunks=4, device="cuda")
                   .use_collection(DatasetCollection(COLLECTION)))
    host = list(Loader(batch_size=64, chunk_size=16, preload_nchunks=4)
                .use_collection(DatasetCollection(COLLECTION)))
    for g, h in zip(batches, host):
        assert isinstance(g["X"].data, cp.ndarray)
        assert (cp.asnumpy(g["X"].toarray()) == h["X"].toarray()).all()


def test_dataloader_workers_hand_cuda_batches_to_the_main_process():
    # Workers copy with torch (its IPC shares only its own allocator's memory); the main
    # process gets CUDA batches holding the same rows as a CPU run.
    ds = loader(device="cuda")
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                     multiprocessing_context="spawn")
    got = sorted(int(i) for b in dl for i in b["index"].cpu())
    want = sorted(int(i) for b in loader() for i in b["index"])
    assert got == want
