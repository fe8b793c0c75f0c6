"""Each pass over the Loader is a new epoch, as annbatch's advancing rng gives, however the
loop ends: run out, stopped after len(loader) batches (PyTorch Lightning, itertools.islice) or
broken early; state_dict says where the loop really is; set_epoch / load_state_dict choose."""

import itertools
import pathlib

import pytest

torch = pytest.importorskip("torch")
from annbatch_rs import DatasetCollection, Loader

COLLECTION = pathlib.Path(__file__).resolve().parents[1] / "data" / "annbatch_collection.zarr"


def loader(**kwargs) -> Loader:
    params = dict(batch_size=64, chunk_size=16, preload_nchunks=4, shuffle=True, seed=2,
                  return_index=True)
    params.update(kwargs)
    return Loader(to="torch", **params).use_collection(DatasetCollection(COLLECTION))


def order(batches) -> list:
    return [i for b in batches for i in b["index"].tolist()]


def test_a_loop_that_stops_after_len_batches_gets_a_new_order_each_epoch():
    ds = loader()
    orders = []
    for expected_epoch in range(3):
        orders.append(order(itertools.islice(ds, len(ds))))
        # The last batch was handed out: the loop is at the next epoch's start.
        assert ds.state_dict() == {"epoch": expected_epoch + 1, "batches": 0}
    assert len({tuple(o) for o in orders}) == 3
    assert all(sorted(o) == list(range(700)) for o in orders)
    # The same seed and epoch give the same order again.
    ds.set_epoch(1)
    assert order(ds) == orders[1]


def test_a_loop_broken_early_moves_on_and_a_saved_state_resumes():
    ds = loader()
    it = iter(ds)
    first = [next(it) for _ in range(3)]
    state = ds.state_dict()
    assert state == {"epoch": 0, "batches": 3}
    del it
    # A new pass is a new epoch (as annbatch), not epoch 0 again.
    assert order(itertools.islice(ds, 2)) != order(first[:2])
    # The saved state resumes exactly where it was.
    again = loader()
    again.load_state_dict(state)
    rest = order(again)
    full = loader()
    assert order(first) + rest == order(full)


def test_lightning_fit_sees_three_different_orders():
    lightning = pytest.importorskip("lightning")
    ds = loader(batch_size=100, chunk_size=50, preload_nchunks=2)
    seen = []

    class Model(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(765, 2)

        def training_step(self, batch, _):
            seen.append((self.current_epoch, batch["index"].tolist()))
            return self.layer(batch["X"].to_dense()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    trainer = lightning.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                accelerator="cpu", devices=1)
    trainer.fit(Model(), train_dataloaders=torch.utils.data.DataLoader(ds, batch_size=None))
    orders = [[i for e, idx in seen if e == epoch for i in idx] for epoch in range(3)]
    assert all(sorted(o) == list(range(700)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3, "every epoch in a new order"


def _fit(ds, **trainer_args) -> list:
    """The index batches a Lightning fit over ``ds`` (given as the iterable itself) sees."""
    lightning = pytest.importorskip("lightning")
    ckpt_path = trainer_args.pop("ckpt_path", None)
    seen = []

    class Model(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(765, 2)

        def training_step(self, batch, _):
            seen.append(batch["index"].tolist())
            return self.layer(batch["X"].to_dense()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    trainer = lightning.Trainer(logger=False, enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu", devices=1,
                                **trainer_args)
    trainer.fit(Model(), train_dataloaders=ds, ckpt_path=ckpt_path)
    return seen


@pytest.mark.parametrize("stop", ["epoch_end", "mid_epoch"])
def test_a_lightning_checkpoint_resumes_where_the_fit_was(tmp_path, stop):
    """Stopped at an epoch's end (Lightning sets the epoch through ``loader.sampler``) or in
    the middle of one (it restores ``state_dict``), the resumed fit sees exactly the batches
    an uninterrupted one does."""
    lightning = pytest.importorskip("lightning")
    settings = dict(batch_size=100, chunk_size=50, preload_nchunks=2)  # 7 batches an epoch
    full = _fit(loader(**settings), max_epochs=3, enable_checkpointing=False)
    checkpoint = lightning.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    limit = dict(max_epochs=2) if stop == "epoch_end" else dict(max_steps=10)
    first = _fit(loader(**settings), callbacks=[checkpoint], **limit)
    rest = _fit(loader(**settings), max_epochs=3, enable_checkpointing=False,
                ckpt_path=str(tmp_path / "last.ckpt"))
    assert len(first) == (14 if stop == "epoch_end" else 10)
    assert first + rest == full


class _FakeRanks:
    """torch.distributed as a rank of `world` sees it (rank 0)."""

    def __init__(self, world):
        self.world = world

    def get_rank(self):
        return 0

    def get_world_size(self):
        return self.world


@pytest.mark.parametrize("batch_size, world, left", [(32, 3, 1), (32, 2, 0), (100, 7, 0)])
def test_elastic_ranks_say_which_global_batches_no_rank_gets(monkeypatch, batch_size, world,
                                                            left):
    """700 rows: 22 global batches of 32 (the last partial) over 3 ranks give 7 each and leave
    one to none; equal batch counts keep DDP in step, and the loader says so."""
    import warnings

    from annbatch_rs import loader as loader_module

    monkeypatch.setattr(loader_module._frameworks, "torch_distributed",
                        lambda: _FakeRanks(world))
    loader = Loader(batch_size=batch_size, chunk_size=batch_size, preload_nchunks=1,
                    shuffle=True, seed=3, elastic=True).use_collection(COLLECTION)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    said = [w for w in caught if "not delivered" in str(w.message)]
    total = -(-700 // batch_size)
    assert len(batches) == total // world
    if left:
        assert len(said) == 1 and f"the last {left} global batch" in str(said[0].message)
    else:
        assert not said
