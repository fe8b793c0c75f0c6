"""Training straight from .h5ad files, no conversion: values as anndata reads them, genes of
different files joined as ``anndata.concat(join="outer")`` joins them, the same seed the same
batches, DataLoader workers, ranks and ``state_dict`` as for collections, and bad inputs."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ad = pytest.importorskip("anndata")
sp = pytest.importorskip("scipy.sparse")
from annbatch_rs import AnnbatchError, Loader
from annbatch_rs.samplers import DistributedSampler, RandomSampler

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
DIRECT = DATA / "h5ad_direct"
FILES = [DIRECT / "contiguous.h5ad", DIRECT / "gzip_shuffle.h5ad", DATA / "pbmc68k_raw_csr.h5ad"]
SETTINGS = dict(batch_size=32, chunk_size=8, preload_nchunks=8)


def loader(**kw):
    settings = dict(SETTINGS, to=None, return_index=True, shuffle=True, seed=4)
    settings.update(kw)
    join = settings.pop("var_join", "same")
    files = settings.pop("files", FILES)
    return Loader(var_join=join, **settings).add_adatas([str(f) for f in files])


def indices(batches) -> list:
    return [i for b in batches for i in b["index"].tolist()]


def concat(files, join="inner"):
    adatas = [ad.read_h5ad(f) for f in files]
    return ad.concat(adatas, join=join) if join != "inner" else ad.concat(adatas)


def test_rows_and_obs_equal_anndata_reading_the_files():
    want = concat(FILES)
    seen = []
    for b in loader(obs_keys=["cell_type"]):
        index = b["index"]
        np.testing.assert_array_equal(b["X"].toarray(), want.X[index].toarray())
        assert list(b["obs"]["cell_type"].astype(str)) == list(
            want.obs["cell_type"].iloc[index].astype(str))
        seen.extend(index.tolist())
    assert sorted(seen) == list(range(want.n_obs))


def test_torch_batches_of_h5ad_files():
    want = concat(FILES[:1])
    b = next(iter(loader(to="torch", files=FILES[:1])))
    assert b["X"].layout == torch.sparse_csr
    np.testing.assert_array_equal(b["X"].to_dense().numpy(),
                                  want.X[b["index"]].toarray())


def test_genes_of_different_files_join_as_anndata_concat_outer():
    files = [DIRECT / "genes_a.h5ad", DIRECT / "genes_b.h5ad"]
    with pytest.raises(AnnbatchError, match="var_join"):
        len(loader(files=files))
    want = concat(files, join="outer")
    ds = loader(files=files, var_join="outer")
    # The same genes in the same order as anndata's outer join.
    assert ds.n_var == want.n_vars
    for b in ds:
        got = b["X"]
        assert list(b["var"].index) == list(want.var_names)
        np.testing.assert_array_equal(got.toarray(), want.X[b["index"]].toarray())
    subset = list(want.var_names[100:300:3])
    sub = loader(files=files, var_join=subset)
    assert sub.n_var == len(subset)
    cols = [list(want.var_names).index(g) for g in sorted(subset, key=list(want.var_names).index)]
    for b in sub:
        np.testing.assert_array_equal(b["X"].toarray(), want.X[b["index"]][:, cols].toarray())


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_same_seed_same_batches_and_workers_share_the_epoch(context):
    first = indices(loader())
    assert first == indices(loader())
    assert first != indices(loader(seed=5))
    ds = loader()
    if context == "fork":
        next(iter(ds))  # the parent's files and threads exist before the fork
        ds.set_epoch(0)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                     multiprocessing_context=context)
    assert sorted(indices(dl)) == list(range(240 + 240 + 700))


def test_state_dict_resumes_an_h5ad_epoch_exactly():
    full = indices(loader(seed=9))
    ds = loader(seed=9)
    it = iter(ds)
    head = [next(it) for _ in range(5)]
    state = ds.state_dict()
    resumed = loader(seed=9)
    resumed.load_state_dict(state)
    assert indices(head) + indices(resumed) == full


def test_ranks_take_disjoint_shards_of_the_files():
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(RandomSampler(**SETTINGS, seed=3),
                                     dist_info=lambda r=rank: (r, 2))
        ds = Loader(to=None, return_index=True, batch_sampler=sampler).add_adatas(
            [str(f) for f in FILES])
        seen.append(set(indices(ds)))
    assert not seen[0] & seen[1]
    assert len(seen[0]) == len(seen[1])


def test_a_backed_anndata_is_read_from_its_file():
    backed = ad.read_h5ad(FILES[1], backed="r")
    ds = Loader(to=None, return_index=True, **SETTINGS).add_adata(backed)
    want = ad.read_h5ad(FILES[1])
    for b in ds:
        np.testing.assert_array_equal(b["X"].toarray(), want.X[b["index"]].toarray())


def test_a_csc_h5ad_says_how_to_make_it_csr():
    with pytest.raises(AnnbatchError, match="tocsr"):
        len(Loader(to=None, **SETTINGS).add_adatas([str(DATA / "lossless_csc.h5ad")]))


def test_a_bad_var_join_is_refused():
    with pytest.raises(ValueError, match="var_join"):
        Loader(to=None, var_join="inner")


def test_h5ad_files_and_zarr_stores_mix_and_join():
    zarr_store = DATA / "pbmc68k_raw_csr.v2.zarr"
    h5ad = DIRECT / "genes_b.h5ad"
    want = ad.concat([ad.read_zarr(zarr_store), ad.read_h5ad(h5ad)], join="outer")
    ds = Loader(to=None, return_index=True, var_join="outer", **SETTINGS).use_collection(
        [str(zarr_store), str(h5ad)])
    assert ds.n_obs == want.n_obs and ds.n_var == want.n_vars
    seen = 0
    for b in ds:
        np.testing.assert_array_equal(b["X"].toarray(), want.X[b["index"]].toarray())
        seen += len(b["index"])
    assert seen == want.n_obs


def test_hundreds_of_files_open_past_a_low_soft_limit(tmp_path):
    import resource
    import shutil
    import subprocess
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-file limit is {hard}")
    files = []
    for i in range(300):
        files.append(tmp_path / f"f{i}.h5ad")
        shutil.copy(DIRECT / "genes_a.h5ad", files[-1])
    def run(limits: str):
        script = (
            "import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, {limits})\n"
            "from annbatch_rs import Loader\n"
            "l = Loader(to=None, batch_size=64, chunk_size=8, preload_nchunks=8, shuffle=True)"
            ".add_adatas(sys.argv[1:])\n"
            "print(sum(b['X'].shape[0] for b in l))\n")
        return subprocess.run([sys.executable, "-c", script, *map(str, files)],
                              capture_output=True, text=True, timeout=300)

    # A low soft limit is raised to the hard one.
    out = run("(256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == str(300 * 120)
    # Past a hard limit: an error naming the file and the cause, not a wrong one.
    out = run("(200, 200)")
    assert out.returncode != 0
    assert "Too many open files" in out.stderr and ".h5ad" in out.stderr, out.stderr[-2000:]
