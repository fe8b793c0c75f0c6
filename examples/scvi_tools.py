"""Train scvi-tools' SCVI from an annbatch_rs Loader, through scvi-tools' AnnbatchDataModule.

    python examples/scvi_tools.py [WORKDIR]

scvi-tools (>= 1.5) wraps an annbatch ``Loader`` in ``scvi.dataloaders.AnnbatchDataModule``;
an ``annbatch_rs.Loader`` goes in its place. The model trains on raw counts from
``layers["counts"]`` (the scvi-tools convention: ``X`` normalised, counts in a layer), chosen
with annbatch's ``load_adata``, and reads its batch and label keys from ``batch["obs"]``.
scvi-tools itself imports annbatch's samplers to split train / validation, so annbatch must be
installed beside annbatch_rs; the reading and decoding is annbatch_rs'.
"""

import os
import sys
import tempfile

import anndata as ad
import numpy as np
import scipy.sparse as sp
import scvi
import zarr
from annbatch_rs import DatasetCollection, Loader
from scvi.dataloaders import AnnbatchDataModule

CHUNK_SIZE, PRELOAD_NCHUNKS = 32, 8


def write_collection(path):
    """Two synthetic datasets (scvi's synthetic_iid) as a collection whose datasets hold
    normalised ``X`` and the counts in ``layers["counts"]``."""
    root = zarr.open_group(path, mode="w")
    root.attrs.update({"encoding-type": "annbatch-preshuffled", "encoding-version": "0.1.0"})
    for i in range(2):
        adata = scvi.data.synthetic_iid(batch_size=256, n_genes=60, n_batches=2, n_labels=3)
        counts = sp.csr_matrix(adata.X, dtype=np.float32)
        adata.layers["counts"] = counts
        adata.X = sp.csr_matrix(counts.multiply(1 / np.maximum(counts.sum(1), 1)),
                                dtype=np.float32)
        adata.obs_names = [f"d{i}-{name}" for name in adata.obs_names]
        adata.obs = adata.obs[["batch", "labels"]]
        adata.uns = {}
        ad.io.write_elem(root, f"dataset_{i}", adata)
    return DatasetCollection(path)


def counts_and_keys(group):
    """annbatch's load_adata: train on the counts layer; keep the two obs columns needed."""
    return ad.AnnData(X=ad.io.sparse_dataset(group["layers"]["counts"]),
                      obs=ad.io.read_elem(group["obs"])[["batch", "labels"]],
                      var=ad.io.read_elem(group["var"]))


def main(workdir):
    collection = write_collection(os.path.join(workdir, "collection.zarr"))
    loader = Loader(batch_size=128, chunk_size=CHUNK_SIZE, preload_nchunks=PRELOAD_NCHUNKS,
                    to="torch", preload_to_gpu=False)
    loader.use_collection(collection, load_adata=counts_and_keys)
    dm = AnnbatchDataModule(loader, batch_key="batch", label_key="labels",
                            chunk_size=CHUNK_SIZE, preload_nchunks=PRELOAD_NCHUNKS,
                            preload_to_gpu=False, var_names=list(loader.var.index))
    model = scvi.model.SCVI(registry=dm.registry)
    model.train(max_epochs=2, datamodule=dm, train_size=0.875, batch_size=128,
                accelerator="cpu", check_val_every_n_epoch=1)
    latent = model.get_latent_representation(dataloader=dm.inference_dataloader())
    print(f"trained SCVI: {dm.n_obs} cells, {dm.n_vars} genes, {dm.n_batch} batches, "
          f"elbo_train {float(model.history['elbo_train'].iloc[-1, 0]):.1f}, "
          f"latent {latent.shape}")
    return model, dm, latent


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
