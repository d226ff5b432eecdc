"""The normalizing-flow reproductions (scripts/figures/smooth_flows_torus.py, snf_double_well.py, mixflows.py): their
oracles (fast, tiny) and a QUICK run of each end to end (slow)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import Banana, StandardNormal, TiltedDoubleWell
from genflow.flows import MixFlow, UncorrectedHamiltonianMap

from ._scripts import load_figure, run_quick

QUICK_TIMEOUT_S = 1200


def test_snf_exact_free_energy_and_estimators():
    snf = load_figure("snf_double_well")
    edges = np.linspace(-2.5, 2.5, 51)
    probs, df, log_z = snf.exact_profile(TiltedDoubleWell(), edges)
    # Laplace's method around the two minima gives Delta F ~ 1.69 and log Z ~ 10.3 (plus x2's log sqrt(2 pi)).
    assert abs(df - 1.6906) < 1e-3 and 0.999 < probs.sum() <= 1.0
    g = np.linspace(-6, 6, 200001)
    z1 = np.sum(np.exp(-(g**4 - 6 * g**2 - 0.5 * g))) * (g[1] - g[0])
    assert abs(log_z - (math.log(z1) + 0.5 * math.log(2 * math.pi))) < 1e-6
    # Exact bin probabilities as "samples" weights: zero profile error, Delta F from the halves.
    centres = 0.5 * (edges[1:] + edges[:-1])
    f = snf.profile(centres, probs, edges)
    assert snf.profile_rmse(f + 3.0, f, 6.0) < 1e-12
    assert abs(snf.delta_f(centres, probs) - df) < 0.01  # 0 is a bin edge; only the mass beyond ±2.5 is lost


def test_mixflow_marginal_density_with_one_map_is_the_reference():
    """q_1(x, rho, u) = q0(x) m(rho): the Monte Carlo marginal is exact for any momentum draws."""
    mix = load_figure("mixflows")
    flow = MixFlow(UncorrectedHamiltonianMap(Banana(dim=2, sigma=2.0), 2, 0.1, 3), 1)
    x = jax.random.normal(jax.random.key(0), (5, 2))
    log_q = mix.marginal_log_density(flow, x, jax.random.key(1), 3)
    np.testing.assert_allclose(log_q, StandardNormal((2,)).log_prob(x), rtol=1e-5)


@pytest.mark.slow  # trains four tiny torus flows (two with force matching): 8.4 min measured on 2 cores at load ~15
def test_smooth_flows_torus_quick(tmp_path):
    numbers = run_quick("smooth_flows_torus", tmp_path, QUICK_TIMEOUT_S)
    rows = numbers["results"]
    assert [(r["flow"], r["force_weight"] > 0) for r in rows] == [
        ("spline", False),
        ("spline", True),
        ("smooth", False),
        ("smooth", True),
    ]
    assert all(r["nll"] > numbers["target_entropy"] - 4 * r["nll_se"] for r in rows)  # the entropy is the floor
    smooth_jump = max(r["max_force_jump_on_slice"] for r in rows if r["flow"] == "smooth")
    spline_jump = max(r["max_force_jump_on_slice"] for r in rows if r["flow"] == "spline")
    assert smooth_jump < spline_jump  # spline forces jump at knots; smooth ones do not
    for name in ("densities.png", "forces.png", "force_slice.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow  # trains RNVP and RNVP + MC on two seeds, 40 steps each: 4.1 min measured at load ~15
def test_snf_double_well_quick(tmp_path):
    numbers = run_quick("snf_double_well", tmp_path, QUICK_TIMEOUT_S)
    assert abs(numbers["exact"]["delta_f"] - 1.6906) < 1e-3
    for name in ("RNVP", "RNVP + MC"):
        rows = numbers["per_seed"][name]
        assert len(rows) == 2 and all(0 < r["ess_fraction"] <= 1 for r in rows)
        # Reweighting is consistent: its bias is smaller than the plain one even for tiny flows.
        assert np.mean([abs(r["bias_reweighted"]) for r in rows]) < np.mean([abs(r["bias_plain"]) for r in rows])
    for name in ("free_energy.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow  # tunes, evaluates and runs HMC on three targets with tiny N: 2.4 min measured at load ~15
def test_mixflows_quick(tmp_path):
    numbers = run_quick("mixflows", tmp_path, QUICK_TIMEOUT_S)
    assert set(numbers["results"]) == {"banana", "cross", "funnel"}
    for r in numbers["results"].values():
        # Targets are normalised: ELBO <= log Z = 0 up to Monte Carlo error.
        assert all(e["elbo"] < 4 * e["se"] for e in r["elbo_vs_n"])
        assert [e["n"] for e in r["roundtrip"]] == [5, 20]
        assert r["energy_distance"]["exact_vs_exact"] >= 0
    for name in ("elbo_vs_n.png", "densities.png", "roundtrip.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert jnp.isfinite(numbers["seconds"]["total"])
