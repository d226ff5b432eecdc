"""The bridge reproductions (scripts/figures/eot_benchmark.py, gaussian_bridge.py): the Gaussian script's error
metric against its oracle (fast, tiny) and a QUICK run of each end to end with every method (slow)."""

import math

import numpy as np
import pytest

from genflow.bridges import GaussianBridge

from ._scripts import load_figure, run_quick

QUICK_TIMEOUT_S = 1500


def test_gaussian_bridge_error_is_small_for_the_exact_sampler_and_large_for_a_shifted_one():
    gb_script = load_figure("gaussian_bridge")
    gb = GaussianBridge(np.zeros(2), np.eye(2), np.ones(2), 2.0 * np.eye(2), 1.0)
    exact = gb_script.conditional_error(gb.sample_conditional, gb, n_in=10, n_s=2000)
    # A mean shifted by 1 in each of 2 coordinates adds BW = |shift|^2 / 2 = 1, i.e. 100 / (tr B / 2) = 50 %.
    shifted = gb_script.conditional_error(lambda k, x: gb.sample_conditional(k, x) + 1.0, gb, n_in=10, n_s=2000)
    assert exact < 1.0
    assert abs(shifted - exact - 50.0) < 5.0


@pytest.mark.slow  # trains LightSB, SB-CFM and DSBM on two settings: minutes on 2 shared CPU cores
def test_eot_benchmark_quick_runs_every_method(tmp_path):
    result = run_quick("eot_benchmark", tmp_path, QUICK_TIMEOUT_S)
    assert (tmp_path / "cbw_uvp.png").exists()
    assert result["budget"]["dims"] == [2, 16] and result["paper_lightsb_cbw_uvp"]["1.0"][0] == 0.05
    assert [(r["eps"], r["dim"]) for r in result["rows"]] == [(1.0, 2), (1.0, 16)]
    for row in result["rows"]:
        assert 0 <= row["floor_exact_sampler"] < 1.0
        for method in ("lightsb", "sb_cfm", "dsbm"):
            assert math.isfinite(row[method]["cbw_uvp"]) and row[method]["train_s"] > 0
    # Even 500 steps of LightSB solve the 2D pair well (the trivial independent plan scores far higher).
    assert result["rows"][0]["lightsb"]["cbw_uvp"] < 10.0


@pytest.mark.slow  # two DSBM runs of four short stages and one bridge matching run at D = 2
def test_eot_benchmark_dsbm_curve_quick(tmp_path):
    result = run_quick("eot_benchmark", tmp_path, QUICK_TIMEOUT_S, "--part", "dsbm_curve", result="dsbm_curve.json")
    assert (tmp_path / "dsbm_curve.png").exists() and not (tmp_path / "numbers.json").exists()
    (run,) = result["runs"]
    assert (run["eps"], run["dim"]) == (1.0, 2)
    for name in ("dsbm", "dsbm_ot_init"):
        assert [c["stage"] for c in run[name]] == [2, 4] and [c["steps"] for c in run[name]] == [200, 400]
        assert all(math.isfinite(c["cbw_uvp"]) and c["train_s"] > 0 for c in run[name])
    # On the true plan, bridge matching at D = 2 is near the metric's floor (the independent plan is far above).
    assert run["bridge_matching_true_plan"]["cbw_uvp"] < 10.0


@pytest.mark.slow  # trains four methods at D = 2 and 8: minutes on 2 shared CPU cores
def test_gaussian_bridge_quick_runs_every_method(tmp_path):
    result = run_quick("gaussian_bridge", tmp_path, QUICK_TIMEOUT_S)
    assert (tmp_path / "error_vs_dim.png").exists()
    assert [r["dim"] for r in result["rows"]] == [2, 8]
    for row in result["rows"]:
        assert row["floor_exact_sampler"] < 1.0
        for method in ("lightsb", "lightsb_m", "sb_cfm", "dsbm"):
            assert math.isfinite(row[method]["cond_error_pct"]) and row[method]["train_s"] > 0
    d2 = result["rows"][0]
    assert d2["lightsb"]["cond_error_pct"] < 2.0 and d2["lightsb"]["cov_max_err"] < 0.1
