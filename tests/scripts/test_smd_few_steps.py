"""scripts/figures/smd_few_steps.py end to end at its QUICK budget (slow): every method trains and is swept over T,
and the exact mixture kernel reaches the data floor even with one step (the script's built-in oracle)."""

import pytest

from ._scripts import run_quick


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
