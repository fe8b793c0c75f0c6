"""What annbatch users pass to a Loader: several stores, zarr-backed AnnData, in-memory scipy CSR
and numpy X, obs frames, the ZarrSparseDataset / ZarrDenseDataset names, and their errors."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ad = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")
zarr = pytest.importorskip("zarr")
from annbatch_rs import (
    AnnbatchError,
    DatasetCollection,
    Loader,
    ZarrDenseDataset,
    ZarrSparseDataset,
)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
COLLECTION = DATA / "annbatch_collection.zarr"
DATASETS = [COLLECTION / f"dataset_{i}" for i in range(3)]
SETTINGS = dict(batch_size=10, chunk_size=5, preload_nchunks=4)


def adata(n_obs: int = 100, n_var: int = 20, seed: int = 0, dense: bool = False) -> "ad.AnnData":
    x = sp.random(n_obs, n_var, density=0.2, format="csr", dtype=np.float32, random_state=seed)
    obs = pd.DataFrame(
        {"ct": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n_obs) % 3]),
         "size": np.arange(n_obs, dtype=np.float64) + 1000 * seed},
        index=[f"s{seed}-{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_var)])
    return ad.AnnData(X=x.toarray() if dense else x, obs=obs, var=var)


def dense_rows(x: torch.Tensor) -> np.ndarray:
    return (x.to_dense() if x.layout == torch.sparse_csr else x).numpy()


@pytest.mark.parametrize("dense", [False, True])
def test_in_memory_adatas_stream_as_one_with_their_obs(dense):
    parts = [adata(seed=0, dense=dense), adata(n_obs=37, seed=1, dense=dense)]
    whole = ad.concat(parts)
    expected = whole.X if dense else whole.X.toarray()
    loader = Loader(to="torch", shuffle=True, seed=4, return_index=True,
                    **SETTINGS).add_adatas(parts)
    assert (loader.n_obs, loader.n_var, len(loader)) == (137, 20, 14)
    seen = []
    for batch in loader:
        index = batch["index"]
        assert batch["X"].layout == (torch.strided if dense else torch.sparse_csr)
        np.testing.assert_array_equal(dense_rows(batch["X"]), expected[index])
        # annbatch yields the AnnData's obs rows, categoricals kept.
        pd.testing.assert_frame_equal(batch["obs"], whole.obs.iloc[index])
        seen.extend(index.tolist())
    assert sorted(seen) == list(range(137))


def test_in_memory_obs_keys_come_from_rust_as_tensors():
    loader = Loader(to="torch", obs_keys=["ct", "size"], obs_as="tensors", return_index=True,
                    **SETTINGS)
    a = adata()
    batch = next(iter(loader.add_adata(a)))
    index = batch["index"]
    codes = a.obs["ct"].cat.codes.to_numpy()
    np.testing.assert_array_equal(batch["obs"]["ct"].numpy(), codes[index])
    np.testing.assert_array_equal(batch["obs"]["size"].numpy(), a.obs["size"].to_numpy()[index])


def test_several_stores_in_one_loader_equal_the_collection():
    kwargs = dict(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True)
    whole = Loader(to="torch", **kwargs).use_collection(DatasetCollection(COLLECTION))
    stores = Loader(to="torch", **kwargs).add_adatas([str(p) for p in DATASETS])
    assert stores.n_obs == whole.n_obs == 700
    for a, b in zip(whole, stores):
        assert np.array_equal(a["index"], b["index"])
        assert torch.equal(a["X"].to_dense(), b["X"].to_dense())
    # A store on disk and an in-memory AnnData with the same var, in one loader.
    memory = ad.read_zarr(DATASETS[2])
    mixed = Loader(to="torch", **kwargs).add_adata(str(DATASETS[0])).add_adata(
        ad.AnnData(X=memory.X, var=memory.var))
    assert mixed.n_obs == ad.read_zarr(DATASETS[0]).n_obs + memory.n_obs
    assert sum(b["X"].shape[0] for b in mixed) == mixed.n_obs


def test_zarr_backed_adata_as_the_seed_documents_write_it():
    """ZarrSparseDataset(...).add_anndatas([...], obs_keys=...) yields (X, labels)."""
    adatas = [
        ad.AnnData(
            X=ad.io.sparse_dataset(zarr.open(p)["X"]),
            obs=ad.io.read_elem(zarr.open(p)["obs"]),
        )
        for p in DATASETS
    ]
    ds = ZarrSparseDataset(batch_size=64, chunk_size=16, preload_nchunks=4, return_index=True
                           ).add_anndatas(adatas, obs_keys="cell_type")
    truth = ad.concat([ad.read_zarr(p) for p in DATASETS])
    labels = truth.obs["cell_type"].to_numpy()
    rows = []
    for x, y, index in ds:
        index = index.numpy()
        np.testing.assert_array_equal(y, labels[index])
        np.testing.assert_array_equal(x.to_dense().numpy(), truth.X[index].toarray())
        rows.extend(index.tolist())
    assert sorted(rows) == list(range(700))


def test_dense_dataset_and_labels_per_dataset():
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    ds = ZarrDenseDataset(batch_size=5, chunk_size=5, preload_nchunks=2, shuffle=False)
    ds.add_datasets([x[:10], x[10:]], obs=[np.zeros(10), np.ones(10)])
    batches = list(ds)
    assert [b[0].shape for b in batches] == [(5, 3)] * 4
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), [0] * 10 + [1] * 10)
    with pytest.raises(TypeError, match="ZarrDenseDataset"):
        ZarrSparseDataset().add_dataset(x)
    with pytest.raises(TypeError, match="ZarrSparseDataset"):
        ZarrDenseDataset().add_dataset(sp.csr_matrix(x))


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(AnnbatchError, match="var"):
        Loader(to="torch", **SETTINGS).add_adatas([adata(), adata(n_var=21)])
    named, renamed = adata(), adata()
    renamed.var_names = [f"h{j}" for j in range(20)]
    with pytest.raises(AnnbatchError, match="var name"):
        Loader(to="torch", **SETTINGS).add_adatas([named, renamed])
    with pytest.raises(AnnbatchError, match="sparse vs dense"):
        Loader(to="torch", **SETTINGS).add_adatas([adata(), adata(dense=True)])
    with pytest.raises(ValueError, match="mixed"):
        Loader(to="torch", **SETTINGS).add_adata(adata()).add_adata(ad.AnnData(X=adata().X,
               var=adata().var))
    with pytest.raises(TypeError, match="tocsr"):
        Loader(to="torch", **SETTINGS).add_dataset(sp.csc_matrix(adata().X))
    with pytest.raises(TypeError, match="cannot load"):
        Loader(to="torch", **SETTINGS).add_dataset([[1.0, 2.0]])
    broken = adata().X.copy()
    broken.indptr[5] = broken.indptr[6] + 1  # not monotone
    with pytest.raises(AnnbatchError, match="indptr"):
        Loader(to="torch", **SETTINGS).add_dataset(broken)
    out_of_range = adata().X.copy()
    out_of_range.indices[0] = 99
    with pytest.raises(AnnbatchError, match="column index 99"):
        Loader(to="torch", **SETTINGS).add_dataset(out_of_range)
    with pytest.raises(KeyError, match="nope"):
        Loader(to="torch", obs_keys=["nope"], **SETTINGS).add_adata(adata())
    h5ad = tmp_path / "a.h5ad"
    adata().write_h5ad(h5ad)
    # A backed .h5ad is read from its file, as it is.
    backed = Loader(to="torch", **SETTINGS).add_adata(ad.read_h5ad(h5ad, backed="r"))
    assert backed.n_obs == adata().n_obs
    with pytest.raises(ValueError, match="at least 1"):
        Loader(to="torch", **SETTINGS).add_adatas([])
    with pytest.raises(RuntimeError, match="already"):
        Loader(to="torch", **SETTINGS).use_collection(COLLECTION).use_collection(COLLECTION)


def test_in_memory_loader_in_spawned_workers():
    loader = Loader(to="torch", shuffle=True, return_index=True, **SETTINGS).add_adata(adata())
    assert loader.n_obs == 100  # natives exist before pickling
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2,
                                     multiprocessing_context="spawn")
    seen = [i for b in dl for i in b["index"].tolist()]
    assert sorted(seen) == list(range(100))


def test_dense_zarr_backed_x_uses_its_store():
    stores = sorted((DATA / "annbatch_dense_collection.zarr").glob("dataset_*"))
    adatas = [ad.AnnData(X=zarr.open(p)["X"]) for p in stores]
    truth = np.concatenate([zarr.open(p)["X"][:] for p in stores])
    ds = ZarrDenseDataset(batch_size=10, chunk_size=10, preload_nchunks=1, shuffle=False,
                          return_index=True).add_anndatas(adatas)
    for x, labels, index in ds:
        assert labels is None and x.layout == torch.strided
        np.testing.assert_array_equal(x.numpy(), truth[index.numpy()])
    assert ds.n_obs == len(truth)
