"""Bures–Wasserstein distance and BW2-UVP against closed forms."""

import jax.numpy as jnp
import numpy as np

from genflow.metrics import bures_wasserstein_sq, bw_uvp, bw_uvp_samples, sample_mean_cov, sqrtm_psd


def _spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _exact_moment_samples(rng, mean, cov, n):
    """Samples whose sample mean and unbiased sample covariance equal ``mean`` and ``cov`` exactly."""
    z = rng.standard_normal((n, mean.shape[0]))
    z = z - z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T))).T
    return mean + z @ np.linalg.cholesky(cov).T


def test_sqrtm(x64):
    c = _spd(np.random.default_rng(0), 5)
    s = np.asarray(sqrtm_psd(c))
    np.testing.assert_allclose(s @ s, c, atol=1e-12)
    np.testing.assert_allclose(s, s.T, atol=1e-14)


def test_commuting_covariances_closed_form(x64):
    rng = np.random.default_rng(1)
    s1, s2 = np.array([0.5, 1.0, 4.0, 2.0]), np.array([1.5, 0.2, 1.0, 2.0])
    m1, m2 = rng.standard_normal(4), rng.standard_normal(4)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    np.testing.assert_allclose(bures_wasserstein_sq(m1, np.diag(s1), m2, np.diag(s2)), expected, rtol=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    c1, c2 = q @ np.diag(s1) @ q.T, q @ np.diag(s2) @ q.T
    np.testing.assert_allclose(bures_wasserstein_sq(m1, c1, m2, c2), expected, rtol=1e-10)


def test_general_covariances_symmetric_and_against_eigenvalues_of_product(x64):
    # tr (C1^{1/2} C2 C1^{1/2})^{1/2} = sum_i sqrt(lambda_i(C1 C2)): an independent, non-symmetric route.
    rng = np.random.default_rng(2)
    c1, c2 = _spd(rng, 4), _spd(rng, 4)
    m1, m2 = np.zeros(4), np.ones(4)
    cross = np.sum(np.sqrt(np.linalg.eigvals(c1 @ c2).real))
    expected = 4.0 + np.trace(c1) + np.trace(c2) - 2 * cross
    np.testing.assert_allclose(bures_wasserstein_sq(m1, c1, m2, c2), expected, rtol=1e-10)
    np.testing.assert_allclose(bures_wasserstein_sq(m2, c2, m1, c1), expected, rtol=1e-10)


def test_identical_gaussians_give_zero(x64):
    c, m = _spd(np.random.default_rng(3), 4), np.arange(4.0)
    np.testing.assert_allclose(bures_wasserstein_sq(m, c, m, c), 0.0, atol=1e-12)


def test_1d(x64):
    bw = bures_wasserstein_sq(jnp.array([1.0]), jnp.array([[4.0]]), jnp.array([-1.0]), jnp.array([[9.0]]))
    np.testing.assert_allclose(bw, 2.0**2 + (2.0 - 3.0) ** 2, rtol=1e-12)


def test_bw_uvp_exact_moments(x64):
    # With sample moments equal to the target's, BW2-UVP is 0, and a shift c gives 100 (|c|^2 / 2) / (tr C / 2).
    rng = np.random.default_rng(4)
    mean, cov = np.array([1.0, -2.0, 0.0, 3.0]), _spd(rng, 4)
    x = _exact_moment_samples(rng, mean, cov, 500)
    mean_hat, cov_hat = sample_mean_cov(x)
    np.testing.assert_allclose(mean_hat, mean, atol=1e-12)
    np.testing.assert_allclose(cov_hat, cov, atol=1e-12)
    np.testing.assert_allclose(bw_uvp(x, mean, cov), 0.0, atol=1e-8)
    c = np.array([0.3, 0.0, -0.4, 1.0])
    expected = 100 * (0.5 * c @ c) / (0.5 * np.trace(cov))
    np.testing.assert_allclose(bw_uvp(x + c, mean, cov), expected, rtol=1e-10)
    np.testing.assert_allclose(bw_uvp_samples(x + c, x), expected, rtol=1e-10)


def test_bw_uvp_statistical(x64):
    # With n exact samples E BW^2 ~ (tr C + O(d) tr C / 2) / n, so UVP ~ 100 (1 + d/4) / n ~ 0.01 here;
    # the shift's cross term 2 c.(m_hat - m) has std ~ 2 |c| sqrt(lambda_max / n), about 0.6% of |c|^2.
    rng = np.random.default_rng(5)
    mean, cov = np.zeros(4), _spd(rng, 4)
    x = mean + rng.standard_normal((20_000, 4)) @ np.linalg.cholesky(cov).T
    assert float(bw_uvp(x, mean, cov)) < 1.0
    c = np.array([1.0, -1.0, 0.5, 0.0])
    expected = 100 * (0.5 * c @ c) / (0.5 * np.trace(cov))
    np.testing.assert_allclose(bw_uvp(x + c, mean, cov), expected, rtol=0.05)


def test_bw_uvp_of_the_trivial_map_to_the_mean_is_100(x64):
    # Korotin et al. 2021 / Gushchin et al. 2023 normalise by Var/2 with the cost |x - y|^2 / 2: a constant map to
    # the target mean explains none of the variance and scores exactly 100.
    rng = np.random.default_rng(6)
    mean, cov = np.array([1.0, -1.0, 2.0]), _spd(rng, 3)
    x = np.tile(mean, (10, 1))
    np.testing.assert_allclose(bw_uvp(x, mean, cov), 100.0, rtol=1e-10)
