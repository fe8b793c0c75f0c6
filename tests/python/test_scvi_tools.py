"""scvi-tools' AnnbatchDataModule over an annbatch_rs Loader (examples/scvi_tools.py).

Runs where scvi-tools (>= 1.5, Python >= 3.12) and annbatch (whose samplers scvi-tools imports
for its train / validation split) are installed; skipped otherwise, as in CI.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("scvi")
pytest.importorskip("annbatch")
pytest.importorskip("lightning")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "scvi_tools.py"


def _example():
    spec = importlib.util.spec_from_file_location("scvi_tools_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scvi_trains_on_a_counts_layer(tmp_path):
    model, dm, latent = _example().main(str(tmp_path))
    assert dm.n_obs == 1024 and dm.n_vars == 60 and dm.n_batch == 2  # 2 x 2 batches of 256
    assert latent.shape == (1024, model.module.n_latent)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    # The train / validation split ran through samplers' masks on copies of the loader.
    assert (dm.n_train, dm.n_val) == (896, 128)
    assert "elbo_validation" in model.history
