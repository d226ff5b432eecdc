"""scripts/figures/limited_samples.py: its pieces (fast) and a QUICK run end to end (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data._binary_gmm import BinaryGMMSamples
from genflow.nn._dae import TimeTabulatedDAE

from ._scripts import load_figure, run_quick

ls = load_figure("limited_samples")


def test_mean_error_is_zero_for_a_perfect_mean_and_debiases():
    mu = jnp.ones(6)
    x = jnp.stack([mu, -mu, mu, -mu])  # sign-aligned, every point is mu
    mean_error = jax.jit(ls.mean_error)
    err, raw = mean_error(x, mu)
    assert float(raw) == 0.0 and float(err) == 0.0
    # Symmetric spread around +-mu: mu_hat = mu exactly, and the correction is minus the sampling variance.
    e = jnp.eye(6)[0]
    err, raw = mean_error(jnp.stack([mu + e, -(mu - e), mu - e, -(mu + e)]), mu)
    assert float(raw) == 0.0
    np.testing.assert_allclose(float(err), -(4 * 1.0 / 3 / 4 / 6), rtol=1e-6)  # -sum|y - mu_hat|^2/(N-1)/N/d


@pytest.mark.parametrize("activation", [jnp.sign, jnp.tanh])
def test_gram_form_of_the_risk_matches_the_network(activation):
    net = TimeTabulatedDAE(8, 6, activation, key=jax.random.key(0))
    x0 = jax.random.normal(jax.random.key(1), (5, 8))
    x1 = jax.random.normal(jax.random.key(2), (5, 8)) + 1.0

    @jax.jit
    def both(m):
        risks = [lambda m, f=f: jnp.sum(f(m, x0, x1, 0.1)) for f in (ls.dae_risk_per_time, ls.dae_risk_direct)]
        return [f(m, x0, x1, 0.1) for f in (ls.dae_risk_per_time, ls.dae_risk_direct)], [jax.grad(r)(m) for r in risks]

    (fast, direct), (g_fast, g_direct) = both(net)
    np.testing.assert_allclose(fast, direct, rtol=1e-5)
    np.testing.assert_allclose(g_fast.w, g_direct.w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g_fast.c, g_direct.c, rtol=1e-4, atol=1e-3)


def test_tiny_training_lowers_every_per_time_risk():
    cfg = ls.settings(quick=True) | {"num_times": 4, "train_steps": 60}
    x1 = jax.random.normal(jax.random.key(3), (8, 16)) * 0.5 + 1.0

    @jax.jit
    def before_and_after(key):
        # train_dae's own split: the same initial table and the same paired base draws.
        k_net, k_x0 = jax.random.split(key)
        init = TimeTabulatedDAE(16, 4, key=k_net)
        before = ls.dae_risk_per_time(init, jax.random.normal(k_x0, (8, 16)), x1, 0.0) / (8 * 16)
        return before, *ls.train_dae(key, x1, cfg)

    before, net, after = before_and_after(jax.random.key(4))
    assert net.w.shape == (4, 16)
    assert bool(jnp.all(after < before))


def test_fit_slope_recovers_a_power_law():
    ns = [8, 16, 32, 64]
    fit = ls.fit_slope(ns, [3.0 / n for n in ns])
    assert abs(fit["slope"] + 1) < 1e-12 and fit["slope_stderr"] < 1e-10


def test_binary_gmm_samples_are_fixed_and_centred_on_plus_minus_mu():
    data = BinaryGMMSamples(dim=64, num_examples=200, sigma=0.5, seed=3)
    assert data.event_shape == (64,) and data.num_examples == 200
    np.testing.assert_array_equal(data.array, BinaryGMMSamples(64, 200, 0.5, seed=3).array)
    aligned = np.sign(np.asarray(data.array) @ np.ones(64))[:, None] * np.asarray(data.array)
    np.testing.assert_allclose(aligned.mean(0), np.ones(64), atol=5 * 0.5 / np.sqrt(200))
    np.testing.assert_allclose(aligned.std(0).mean(), 0.5, rtol=0.05)
    batch = data.sample(jax.random.key(0), 7)
    assert batch.shape == (7, 64) and bool(jnp.all(jnp.any(jnp.all(batch[:, None] == data.array[None], -1), -1)))
    with pytest.raises(ValueError, match="num_examples=0"):
        BinaryGMMSamples(64, 0)


@pytest.mark.slow  # trains 3 x 2 table DAEs and samples them: about a minute on 2 CPU cores
def test_quick_run_writes_a_negative_slope(tmp_path):
    numbers = run_quick("limited_samples", tmp_path, 600)
    quick = ls.settings(quick=True)  # configs/debug/limited_samples.yaml
    assert numbers["config"]["quick"] is True
    assert [r["n"] for r in numbers["results"]] == list(quick["ns"])
    assert all(len(r["error"]) == quick["num_seeds"] for r in numbers["results"])
    assert numbers["fit_log_error_vs_log_n"]["slope"] < 0
    assert numbers["wall_seconds"] > 0
    for name in ("error_vs_n.png", "dae_parameters.png"):
        assert (tmp_path / name).stat().st_size > 0
