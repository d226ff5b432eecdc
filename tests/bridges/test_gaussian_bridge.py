"""The closed-form Gaussian Schrödinger bridge against its oracles (Bunne et al., AISTATS 2023; float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.bridges import GaussianBridge, monge_map_matrix

from ._gaussian import gaussian_bridge, spd


def test_identity_eps_one_gives_golden_ratio_conjugate(x64):
    d = 3
    gb = GaussianBridge(np.zeros(d), np.eye(d), np.zeros(d), np.eye(d), 1.0)
    c = (np.sqrt(5.0) - 1.0) / 2.0
    np.testing.assert_allclose(gb.cross_cov(), c * np.eye(d), atol=1e-14)


@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_joint_precision_off_diagonal_is_minus_identity_over_eps(x64, eps):
    gb = gaussian_bridge(eps=eps)
    prec = np.linalg.inv(np.asarray(gb.joint_cov()))
    d = gb.dim
    np.testing.assert_allclose(prec[:d, d:], -np.eye(d) / eps, atol=1e-9 * max(1.0, 1 / eps))
    np.testing.assert_allclose(prec[d:, :d], -np.eye(d) / eps, atol=1e-9 * max(1.0, 1 / eps))


def test_eps_to_zero_gives_the_monge_map(x64):
    rng = np.random.default_rng(1)
    A, B = spd(rng, 4), spd(rng, 4, 3.0)
    gb = GaussianBridge(np.zeros(4), A, np.ones(4), B, 1e-9)
    s = gb.conditional_map()
    np.testing.assert_allclose(s, monge_map_matrix(jnp.asarray(A), jnp.asarray(B)), atol=1e-7)
    # The Monge map pushes A onto B.
    m = np.asarray(monge_map_matrix(jnp.asarray(A), jnp.asarray(B)))
    np.testing.assert_allclose(m @ A @ m.T, B, atol=1e-10)
    # And the conditional covariance vanishes.
    np.testing.assert_allclose(gb.conditional(np.zeros(4))[1], 0.0, atol=1e-8)


def test_conditional_covariance_equals_schur_complement(x64):
    gb = gaussian_bridge(d=4, eps=0.3)
    c = np.asarray(gb.cross_cov())
    A, B = np.asarray(gb.A), np.asarray(gb.B)
    mean, cov = gb.conditional(np.asarray(gb.a) + 1.0)
    np.testing.assert_allclose(cov, B - c.T @ np.linalg.solve(A, c), atol=1e-12)
    np.testing.assert_allclose(mean, np.asarray(gb.b) + c.T @ np.linalg.solve(A, np.ones(4)), atol=1e-12)


def test_marginals_match_the_endpoints_and_the_brownian_bridge(x64):
    gb = gaussian_bridge()
    for t, (m, s) in ((0.0, (gb.a, gb.A)), (1.0, (gb.b, gb.B))):
        mean, cov = gb.marginal(t)
        np.testing.assert_allclose(mean, m, atol=1e-14)
        np.testing.assert_allclose(cov, s, atol=1e-12)
    # Monte Carlo of the definition x_t = (1-t) x0 + t x1 + sqrt(eps t (1-t)) xi.
    t = 0.3
    k1, k2 = jax.random.split(jax.random.key(0))
    x0, x1 = gb.sample_plan(k1, 200_000)
    xt = (1 - t) * x0 + t * x1 + jnp.sqrt(gb.eps * t * (1 - t)) * jax.random.normal(k2, x0.shape)
    mean, cov = gb.marginal(t)
    np.testing.assert_allclose(np.cov(np.asarray(xt).T), cov, atol=0.03)
    np.testing.assert_allclose(np.mean(np.asarray(xt), 0), mean, atol=0.02)


@pytest.mark.parametrize("t", [0.0, 0.25, 0.6, 0.95])
def test_drift_solves_the_lyapunov_equation(x64, t):
    gb = gaussian_bridge(d=3, eps=0.5)
    m, _ = gb.drift_matrix(t)
    cov = np.asarray(gb.marginal(t)[1])
    h = 1e-5
    dcov = (np.asarray(gb.marginal(t + h)[1]) - np.asarray(gb.marginal(t - h)[1])) / (2 * h)
    m = np.asarray(m)
    np.testing.assert_allclose(dcov, m @ cov + cov @ m.T + gb.eps * np.eye(3), atol=1e-7)
    # The mean moves at constant speed b - a: g(t, mu_t) = b - a.
    mu = gb.marginal(t)[0]
    np.testing.assert_allclose(gb.drift(t, mu), np.asarray(gb.b - gb.a), atol=1e-12)


def test_bad_eps_and_shapes_raise():
    with pytest.raises(ValueError, match="eps=0.0 is invalid"):
        GaussianBridge(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), 0.0)
    with pytest.raises(ValueError, match="B has shape"):
        GaussianBridge(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3), 1.0)
