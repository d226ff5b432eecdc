"""scripts/figures/smd_few_steps.py: its runs are the experiment smd_few_steps with each method's and data set's
overrides (fast), and a QUICK run end to end (slow): every method trains and is swept over T, and the exact mixture
kernel reaches the data floor even with one step (the script's built-in oracle)."""

import numpy as np
import pytest

from experiments._common import build_data

from ._scripts import load_figure, run_quick

sfs = load_figure("smd_few_steps")


def test_data_config_is_the_scripts_grid():
    data, target = build_data(sfs.run_config("smd_regression", "gmm")), sfs.grid_oracle().mixture
    np.testing.assert_allclose(data.weights, target.weights, rtol=1e-6)
    np.testing.assert_array_equal(data.means, target.means)
    np.testing.assert_array_equal(data.covs, target.covs)


def test_runs_have_the_published_settings():
    # Li, van Breugel, van der Schaar, ICLR 2024, Fig. 2 and 3 in spirit: the settings of the published figures.
    smd = dict(eta_dim=8, latent_dim=32, latent_width=128, latent_depth=2)
    gmm = dict(train_steps=3000, batch=256, seeds=2, num_samples=1000, width=128, depth=3, emb=64, lr=2e-3)
    digits = dict(train_steps=1500, batch=128, seeds=2, num_samples=360, width=256, depth=3, emb=64, lr=1e-3)
    for dataset, want in (("gmm", gmm), ("digits", digits)):
        assert sfs.settings(sfs.run_config("ddpm", dataset)) == want
        for method in ("smd_regression", "smd_mixture", "smd_eta0"):
            assert sfs.settings(sfs.run_config(method, dataset)) == want | smd
    ddpm = sfs.run_config("ddpm", "digits")
    assert (ddpm.model._target_, ddpm.net._target_, ddpm.data.flatten) == (
        "genflow.diffusion.DiffusionModel", "genflow.nn.MLP", True)  # fmt: skip
    assert sfs.run_config("smd_mixture", "gmm").model.objective.num_latent_draws == 8
    assert sfs.run_config("smd_eta0", "gmm").model.latent._target_ == "genflow.smd.ZeroLatent"
    quick = sfs.settings(sfs.run_config("smd_mixture", "digits", quick=True))
    assert quick == dict(train_steps=20, batch=16, seeds=1, num_samples=32, width=16, depth=1, emb=8, lr=1e-3,
                         eta_dim=2, latent_dim=4, latent_width=8, latent_depth=1)  # fmt: skip
    assert sfs.run_config("smd_mixture", "gmm", quick=True).model.objective.num_latent_draws == 2


@pytest.mark.slow  # trains four models on the grid GMM and four on digits: about 80 s on 2 cores
def test_smd_few_steps_quick_writes_its_figures_and_the_oracle_is_at_the_floor(tmp_path):
    numbers = run_quick("smd_few_steps", tmp_path, timeout=900)
    for png in ("quality_vs_steps.png", "samples_2d.png", "samples_digits.png"):
        assert (tmp_path / png).exists(), png
    gmm = numbers["gmm"]
    assert set(gmm["energy"]) == {"ddpm", "smd_regression", "smd_mixture", "smd_eta0", "oracle"}
    # Exact reverse kernel, one step: within sampling noise of two data sets (measured 0.045 against 0.062).
    assert gmm["energy"]["oracle"]["mean"][0] < 2 * gmm["floor"]
    assert gmm["per_seed"]["oracle"][0]["1"]["on_mode"] > 0.99
