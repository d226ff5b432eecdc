"""scripts/figures/interpolants_couplings.py: a QUICK run end to end (slow), and its corrupted-input view (fast)."""

import json

import jax
import numpy as np
import pytest

from experiments.compose import compose

from ._scripts import load_figure

ic = load_figure("interpolants_couplings")


def test_coupled_pairs_are_cheaper_to_transport_than_independent_ones():
    # The spec's bound: the coupled pair cost is d sigma^2-like, the independent one 2 E|x1|^2 + d.
    from genflow.data import Digits

    x1 = Digits(split="test").images
    base = jax.random.normal(jax.random.key(0), x1.shape)
    for task in ic.TASKS:
        cost = {}
        for coupled in (True, False):
            x0, _, cond = ic.make_coupling(task, coupled)(jax.random.key(1), base, x1)
            cost[coupled] = float(np.mean(np.sum((np.asarray(x1) - np.asarray(x0)) ** 2, axis=(1, 2, 3))))
        assert cost[True] < 0.6 * cost[False], (task, cost)
    _, _, cond = ic.make_coupling("inpainting", True)(jax.random.key(2), base, x1)
    view = ic.corrupted_view("inpainting", None, np.asarray(cond))
    # Known pixels show the digit, missing ones are blank.
    missing = np.asarray(cond[:, :1]) == 0
    assert view.shape == x1.shape and np.all(view[missing] == 0)
    np.testing.assert_array_equal(view[~missing], np.asarray(x1)[~missing])


@pytest.mark.slow
def test_quick_run_writes_figures_and_numbers(tmp_path):
    results = ic.main(["--quick", "--out", str(tmp_path)])
    quick = compose(ic.EXPERIMENT, quick=True)  # configs/debug/interpolants_couplings.yaml
    saved = json.loads((tmp_path / "numbers.json").read_text())
    for task in ic.TASKS:
        assert (tmp_path / f"grid_{task}.png").exists()
        for kind in ("coupled", "independent"):
            sweep = saved[task][kind]["sweep"]
            assert [s["nfe"] for s in sweep] == [2 * s for s in quick.figure.heun_steps]
            assert all(np.isfinite(s["mse_to_truth"]) for s in sweep)
        assert saved[task]["coupled"]["pair_cost"] < saved[task]["independent"]["pair_cost"]
    assert (tmp_path / "quality_vs_nfe.png").exists() and results["settings"] == ic.settings(quick)
