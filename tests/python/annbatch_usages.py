"""annbatch 0.3.1's documented usages, written once against a module ``ab`` that is either
``annbatch`` or ``annbatch_rs`` (the only change a user makes is the import).

tests/data/make_annbatch_usages.py runs them with annbatch (in ../shared/tools/annbatch-reference)
and records what they yield in tests/data/reference/annbatch_usages.json;
tests/python/test_annbatch_parity.py runs them with annbatch_rs and compares. Each usage returns
what a user would look at: a loader to iterate, or a plain value. ``COMPARE`` says how its
output must match: ``exact`` (same batches in the same order), ``multiset`` (shuffled: the same
rows over the epoch, the same batch sizes and types), ``counts`` (with replacement or dropped
rows: the same batch sizes and types), ``value`` (equal values).
"""

from __future__ import annotations

import pathlib
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import zarr

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
COLLECTION = DATA / "annbatch_collection.zarr"  # 700 PBMC cells, 3 datasets, by annbatch
DENSE = DATA / "annbatch_dense_collection.zarr"
LAYERED = DATA / "annbatch_layers_collection.zarr"  # X normalised, layers["counts"]
H5AD = DATA / "pbmc68k_raw_csr.h5ad"
SMALL = dict(batch_size=64, chunk_size=16, preload_nchunks=4)

USAGES = {}
COMPARE = {}


def usage(compare):
    def register(f):
        USAGES[f.__name__], COMPARE[f.__name__] = f, compare
        return f
    return register


# -- README ------------------------------------------------------------------------------
@usage("value")
def readme_preprocessing(ab, tmp):
    halves = []
    whole = ad.read_h5ad(H5AD)
    for i, rows in enumerate([slice(0, 350), slice(350, 700)]):
        with _writable():
            whole[rows].write_h5ad(tmp / f"file{i}.h5ad")
        halves.append(str(tmp / f"file{i}.h5ad"))
    collection = ab.DatasetCollection(str(tmp / "collection.zarr"))
    collection.add_adatas(adata_paths=halves, shuffle=True)
    return collection_contents(tmp / "collection.zarr")


@usage("exact")
def readme_loading_custom_load_func(ab, tmp):
    def custom_load_func(g):
        return ad.AnnData(X=ad.io.sparse_dataset(g["layers"]["counts"]),
                          obs=ad.io.read_elem(g["obs"])[["cell_type", "n_counts"]])

    collection = ab.DatasetCollection(str(LAYERED))
    with ad.settings.override(remove_unused_categories=False):
        ds = ab.Loader(batch_size=64, chunk_size=16, preload_nchunks=8, to="torch")
        ds = ds.use_collection(collection, load_adata=custom_load_func)
    return ds


# -- Loader docstring and parameters -------------------------------------------------------
@usage("exact")
def loader_add_adata_in_memory(ab, tmp):
    my_anndata = ad.read_h5ad(H5AD)
    return ab.Loader(batch_size=64, chunk_size=16, preload_nchunks=8).add_adata(my_anndata)


@usage("exact")
def loader_add_adata_backed(ab, tmp):
    g = zarr.open_group(COLLECTION / "dataset_1", mode="r")
    adata = ad.AnnData(X=ad.io.sparse_dataset(g["X"]), obs=ad.io.read_elem(g["obs"]))
    return ab.Loader(**SMALL, return_index=True).add_adata(adata)


@usage("exact")
def use_collection_default_obs(ab, tmp):
    return ab.Loader(**SMALL, return_index=True).use_collection(ab.DatasetCollection(COLLECTION))


@usage("exact")
def to_torch(ab, tmp):
    return ab.Loader(**SMALL, to="torch").use_collection(ab.DatasetCollection(COLLECTION))


@usage("exact")
def dense_collection(ab, tmp):
    return ab.Loader(**SMALL, return_index=True).use_collection(ab.DatasetCollection(DENSE))


@usage("multiset")
def shuffle_with_rng(ab, tmp):
    return ab.Loader(**SMALL, shuffle=True, return_index=True,
                     rng=np.random.default_rng(0)).use_collection(ab.DatasetCollection(COLLECTION))


@usage("counts")
def shuffle_drop_last(ab, tmp):
    return ab.Loader(batch_size=48, chunk_size=16, preload_nchunks=6, shuffle=True,
                     drop_last=True).use_collection(ab.DatasetCollection(COLLECTION))


@usage("exact")
def add_datasets_with_obs_and_var(ab, tmp):
    groups = [zarr.open_group(COLLECTION / f"dataset_{i}", mode="r") for i in range(3)]
    return ab.Loader(**SMALL, return_index=True).add_datasets(
        [ad.io.sparse_dataset(g["X"]) for g in groups],
        obs=[ad.io.read_elem(g["obs"])[["cell_type"]] for g in groups],
        var=[ad.io.read_elem(g["var"]) for g in groups])


@usage("exact")
def add_dataset_of_a_layer(ab, tmp):
    g = zarr.open_group(LAYERED / "dataset_0", mode="r")
    return ab.Loader(**SMALL).add_dataset(ad.io.sparse_dataset(g["layers"]["counts"]))


@usage("value")
def loader_attributes(ab, tmp):
    loader = ab.Loader(**SMALL).use_collection(ab.DatasetCollection(COLLECTION))
    return {"n_obs": loader.n_obs, "len": len(loader), "var": list(loader.var.index[:5]),
            "n_var": len(loader.var), "dataset_type": loader.dataset_type.__name__,
            "batch_sampler": type(loader.batch_sampler).__name__}


@usage("value")
def to_jax_without_jax(ab, tmp):
    try:
        import jax  # noqa: F401
        return "jax installed"
    except ImportError:
        pass
    try:
        ab.Loader(**SMALL, to="jax")
    except ImportError as e:
        return type(e).__name__
    return "no error"


# -- samplers ---------------------------------------------------------------------------
@usage("exact")
def sequential_sampler_object(ab, tmp):
    sampler = ab.samplers.SequentialSampler(chunk_size=16, preload_nchunks=4, batch_size=64)
    return ab.Loader(batch_sampler=sampler, return_index=True).use_collection(
        ab.DatasetCollection(COLLECTION))


@usage("multiset")
def random_sampler_with_mask(ab, tmp):
    sampler = ab.samplers.RandomSampler(chunk_size=16, preload_nchunks=4, batch_size=32,
                                        mask=slice(100, 500), rng=np.random.default_rng(1))
    return ab.Loader(batch_sampler=sampler, return_index=True).use_collection(
        ab.DatasetCollection(COLLECTION))


@usage("counts")
def random_sampler_with_replacement(ab, tmp):
    sampler = ab.samplers.RandomSampler(chunk_size=16, preload_nchunks=4, batch_size=32,
                                        replacement=True, num_samples=320,
                                        rng=np.random.default_rng(2))
    return ab.Loader(batch_sampler=sampler).use_collection(ab.DatasetCollection(COLLECTION))


@usage("value")
def distributed_sampler_shards(ab, tmp):
    out = []
    for rank in range(2):
        sampler = ab.samplers.RandomSampler(chunk_size=16, preload_nchunks=4, batch_size=32,
                                            rng=np.random.default_rng(3))
        dist = ab.samplers.DistributedSampler(sampler, dist_info=lambda r=rank: (r, 2))
        loader = ab.Loader(batch_sampler=dist, return_index=True).use_collection(
            ab.DatasetCollection(COLLECTION))
        batches = list(loader)
        out.append({"batches": len(batches), "len": len(loader),
                    "rows": int(sum(b["X"].shape[0] for b in batches)),
                    "index": sorted(int(i) for b in batches for i in b["index"])})
    return {"ranks": [{k: v for k, v in r.items() if k != "index"} for r in out],
            "disjoint": not set(out[0]["index"]) & set(out[1]["index"])}


@usage("exact")
def custom_sampler_subclass(ab, tmp):
    class EveryOtherChunk(ab.abc.Sampler):
        def __init__(self):
            self._batch_size, self._shuffle = 40, False

        @property
        def batch_size(self):
            return self._batch_size

        @property
        def shuffle(self):
            return self._shuffle

        def n_batches(self, n_obs):
            return 5

        def validate(self, n_obs):
            if n_obs < 400:
                raise ValueError("needs 400 rows")

        def _sample(self, n_obs):
            for start in range(0, 400, 80):
                yield {"requests": [slice(start, start + 20), slice(start + 40, start + 60)],
                       "splits": [np.arange(40)[::-1]]}

    return ab.Loader(batch_sampler=EveryOtherChunk(), return_index=True).use_collection(
        ab.DatasetCollection(COLLECTION))


@usage("exact")
def sequential_sampler_overriding_sample(ab, tmp):
    class FirstFetchOnly(ab.samplers.SequentialSampler):
        def _sample(self, n_obs):
            yield next(iter(super()._sample(n_obs)))

    sampler = FirstFetchOnly(chunk_size=16, preload_nchunks=4, batch_size=32)
    return ab.Loader(batch_sampler=sampler, return_index=True).use_collection(
        ab.DatasetCollection(COLLECTION))


@usage("value")
def sampler_sample_preview(ab, tmp):
    sampler = ab.samplers.SequentialSampler(chunk_size=100, preload_nchunks=2, batch_size=50)
    out = []
    for request in sampler.sample(450):
        out.append({"requests": [[s.start, s.stop] for s in request["requests"]],
                    "splits": [np.asarray(s).tolist() for s in request["splits"]]})
    return out


# -- collections --------------------------------------------------------------------------
@usage("value")
def collection_obs_columns(ab, tmp):
    obs = ab.DatasetCollection(COLLECTION).obs(columns=["cell_type", "n_counts"])
    return frame(obs)


@usage("value")
def collection_obs_for_class_sampler(ab, tmp):
    classes = ab.DatasetCollection(COLLECTION).obs(columns=["cell_type"])["cell_type"].values
    return {"type": type(classes).__name__, "categories": [str(c) for c in classes.categories],
            "codes": np.asarray(classes.codes).tolist()}


@usage("value")
def collection_iteration_and_emptiness(ab, tmp):
    zarr.open_group(tmp / "empty.zarr", mode="a")
    empty = ab.DatasetCollection(str(tmp / "empty.zarr"))
    return {"groups": [g.basename for g in ab.DatasetCollection(COLLECTION)],
            "is_empty": ab.DatasetCollection(COLLECTION).is_empty,
            "empty_is_empty": empty.is_empty, "empty_obs": list(empty.obs().shape)}


@usage("value")
def write_sharded_then_read(ab, tmp):
    adata = ad.read_h5ad(H5AD)
    group = zarr.open_group(tmp / "sharded.zarr", mode="w")
    ab.write_sharded(group, adata, n_obs_per_chunk=32, shard_size=256)
    back = ad.read_zarr(tmp / "sharded.zarr")
    x = group["X"]["data"]
    return {"shape": list(back.shape), "equal": bool((back.X != adata.X).nnz == 0),
            "obs": list(back.obs.columns), "sharded": x.shards is not None}


# -- outputs: what tests/data/make_annbatch_usages.py records -----------------------------
def _writable():
    """anndata < 0.13 writes pandas' string arrays (its own reading makes them) only when asked."""
    if hasattr(ad.settings, "allow_write_nullable_strings"):
        return ad.settings.override(allow_write_nullable_strings=True)
    return ad.settings.override()


def collection_contents(path):
    """A collection's rows by obs name: row sums and obs values (its order is random)."""
    root = zarr.open_group(path, mode="r")
    keys = sorted((k for k in root.group_keys() if k.startswith("dataset_")),
                  key=lambda k: int(k.split("_")[1]))
    parts = [ad.read_zarr(path / k) for k in keys]
    whole = ad.concat(parts)
    order = np.argsort(whole.obs_names.to_numpy())
    sums = np.asarray(whole.X.sum(1)).ravel()
    return {"n_obs": whole.n_obs, "n_var": whole.n_vars, "var": list(whole.var_names[:5]),
            "obs_names": whole.obs_names[order].tolist(),
            "row_sum": np.round(sums[order], 3).tolist(),
            "cell_type": whole.obs["cell_type"].astype(str).to_numpy()[order].tolist()}


def _dtype(dtype):
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    return "str" if dtype.kind == "O" or isinstance(dtype, pd.StringDtype) else str(dtype)


def frame(df):
    return {"columns": list(df.columns), "dtypes": [_dtype(t) for t in df.dtypes],
            "index": [str(i) for i in df.index],
            "values": {c: df[c].astype(str).tolist() for c in df.columns}}


def _x(x):
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        tag = f"torch.{str(x.layout).split('.')[-1]}"
        dense = x.to_dense().numpy() if x.layout != __import__("torch").strided else x.numpy()
        nnz = None if x.layout == __import__("torch").strided else \
            np.diff(x.crow_indices().numpy()).tolist()
    elif mod == "scipy":
        tag, dense, nnz = f"scipy.{type(x).__name__}", x.toarray(), np.diff(x.indptr).tolist()
    else:
        tag, dense, nnz = f"{mod}.{type(x).__name__}", np.asarray(x), None
    return {"type": tag, "dtype": str(dense.dtype), "shape": list(x.shape),
            "row_sum": np.round(dense.sum(1).astype(float), 3).tolist(), "row_nnz": nnz}


def batches(loader):
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in loader:
            index = b.get("index")
            out.append({"keys": sorted(b.keys()), "X": _x(b["X"]),
                        "obs": None if b.get("obs") is None else frame(b["obs"]),
                        "var": None if b.get("var") is None else len(b["var"]),
                        "index": None if index is None else np.asarray(index).tolist()})
    return out


def record(name, ab, tmp):
    """What usage ``name`` gives with module ``ab``: its batches, its value, or its error."""
    try:
        result = USAGES[name](ab, tmp)
    except Exception as e:  # recorded and compared
        return {"error": type(e).__name__, "message": str(e)[:200]}
    if hasattr(result, "use_collection"):
        return {"batches": batches(result)}
    return {"value": result}
