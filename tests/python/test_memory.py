"""Batch memory is reused once Python dropped a batch, never while any view of it lives, and
never after torch moved it to shared memory for a DataLoader worker's queue."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ad = pytest.importorskip("anndata")
sp = pytest.importorskip("scipy.sparse")
from annbatch_rs import Loader

# 512-row batches of ~200 values a row: their arrays (~400 KB) come from the storage pool.
X = sp.random(16384, 3000, density=200 / 3000, format="csr", dtype=np.float32, random_state=7)
SETTINGS = dict(batch_size=512, chunk_size=256, preload_nchunks=4, shuffle=True, seed=3,
                return_index=True)


def loader() -> Loader:
    return Loader(to="torch", **SETTINGS).add_adata(ad.AnnData(X=X))


def assert_rows(batch: dict) -> None:
    x, want = batch["X"], X[np.asarray(batch["index"])]
    assert np.array_equal(x.crow_indices().numpy(), want.indptr)
    assert np.array_equal(x.col_indices().numpy(), want.indices)
    assert np.array_equal(x.values().numpy(), want.data)


def test_dropped_batches_are_reused_and_held_ones_stay_intact():
    kept, kept_values, addresses = [], [], set()
    for i, batch in enumerate(loader()):
        assert_rows(batch)
        addresses.add(batch["X"].values().data_ptr())
        if i % 3 == 0:
            kept.append(batch)
        elif i % 4 == 0:
            kept_values.append((batch["X"].values(), X[np.asarray(batch["index"])].data))
    assert len(kept) + len(kept_values) == 16
    for batch in kept:
        assert_rows(batch)
    for values, want in kept_values:
        assert np.array_equal(values.numpy(), want)
    assert len(addresses) < 32, "dropped batches' memory is written again"


def test_batches_sent_by_dataloader_workers_stay_intact():
    # torch moves each batch to shared memory in place to send it: that memory is never reused.
    dl = torch.utils.data.DataLoader(loader(), batch_size=None, num_workers=2,
                                     multiprocessing_context="spawn")
    batches = list(dl)
    assert len(batches) == 32
    for batch in batches:
        assert_rows(batch)
