"""Gaussian and GaussianMixture against scipy, autodiff and their exact moments."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from genflow.distributions import Gaussian, GaussianMixture, autodiff_score


def _run(fn, *args):
    """Run ``fn`` under one jit: op-by-op dispatch of the same code is many times slower."""
    return eqx.filter_jit(fn)(*args)


def _random_spd(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return a @ np.swapaxes(a, -1, -2) + 0.3 * np.eye(d)


def _mixture_params(seed=0, k=3, d=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, size=k), 2.0 * rng.normal(size=(k, d)), _random_spd(rng, k, d)


def _scipy_log_prob(weights, means, covs, x):
    w = weights / weights.sum()
    terms = [np.log(wk) + multivariate_normal(m, c).logpdf(x) for wk, m, c in zip(w, means, covs, strict=True)]
    return logsumexp(np.stack(terms, axis=-1), axis=-1)


def test_mixture_log_prob_matches_scipy(x64):
    weights, means, covs = _mixture_params()
    gmm = GaussianMixture(weights, means, covs)
    x = np.random.default_rng(1).normal(size=(5, 4, 3)) * 3
    got = _run(lambda d, x: d.log_prob(x), gmm, jnp.asarray(x))
    assert got.shape == (5, 4)
    np.testing.assert_allclose(np.asarray(got), _scipy_log_prob(weights, means, covs, x), rtol=0, atol=1e-10)


def test_mixture_log_prob_far_tail_is_finite(x64):
    gmm = GaussianMixture(*_mixture_params())
    lp = _run(lambda d, x: d.log_prob(x), gmm, jnp.full((3,), 1e3))
    assert lp.shape == () and np.isfinite(lp) and lp < -1e4


def test_gaussian_matches_scipy(x64):
    _, means, covs = _mixture_params(seed=2, k=1, d=4)
    dist = Gaussian(means[0], covs[0])
    x = np.random.default_rng(3).normal(size=(7, 4))
    log_prob, score = _run(lambda d, x: (d.log_prob(x), d.score(x)), dist, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(log_prob), multivariate_normal(means[0], covs[0]).logpdf(x), atol=1e-10)
    np.testing.assert_allclose(np.asarray(score), -np.linalg.solve(covs[0], (x - means[0]).T).T, atol=1e-10)


@pytest.mark.parametrize(
    "make", [lambda: GaussianMixture(*_mixture_params()), lambda: Gaussian([1.0, -1.0], [[2.0, 0.6], [0.6, 0.5]])]
)
def test_score_matches_autodiff(x64, make):
    dist = make()
    d = dist.event_shape[0]
    x = jnp.asarray(np.random.default_rng(4).normal(size=(6, 2, d)) * 2)
    score, autodiff = _run(lambda d, x: (d.score(x), autodiff_score(d, x)), dist, x)
    np.testing.assert_allclose(np.asarray(score), np.asarray(autodiff), rtol=1e-10, atol=1e-10)


def test_integrates_to_one_on_grid(x64):
    gmm = GaussianMixture(
        [0.2, 0.5, 0.3], [[-2.0, 0.0], [1.0, 1.0], [0.5, -2.0]], _random_spd(np.random.default_rng(5), 3, 2)
    )
    h = 0.025
    g = jnp.arange(-12.0, 12.0, h)
    xx = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), axis=-1)
    total = _run(lambda d, x: jnp.sum(jnp.exp(d.log_prob(x))) * h**2, gmm, xx)
    assert abs(float(total) - 1.0) < 1e-8


def test_mixture_moments_are_exact_against_monte_carlo():
    weights, means, covs = _mixture_params(seed=6)
    gmm = GaussianMixture(weights, means, covs)
    n = 200_000
    x = np.asarray(_run(lambda d, k: d.sample(k, n), gmm, jax.random.key(0)), dtype=np.float64)
    assert x.shape == (n, 3)
    mean, cov = np.asarray(gmm.mean), np.asarray(gmm.covariance)
    # 4 Monte Carlo standard errors, with the standard errors estimated from the same samples.
    se_mean = x.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * se_mean)
    centred = x - x.mean(axis=0)
    products = centred[:, :, None] * centred[:, None, :]
    se_cov = products.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(products.mean(axis=0) - cov) < 4 * se_cov + 1e-6)


def test_moments_closed_form(x64):
    weights, means, covs = _mixture_params(seed=7)
    gmm = GaussianMixture(weights, means, covs)
    w = weights / weights.sum()
    mean = w @ means
    second = sum(wk * (c + np.outer(m, m)) for wk, m, c in zip(w, means, covs, strict=True))
    np.testing.assert_allclose(np.asarray(gmm.mean), mean, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gmm.covariance), second - np.outer(mean, mean), atol=1e-12)


def test_isotropic_and_responsibilities(x64):
    gmm = GaussianMixture.isotropic([1, 3], [[0.0, 0.0], [3.0, 0.0]], [0.5, 2.0])
    np.testing.assert_allclose(np.asarray(gmm.weights), [0.25, 0.75])
    np.testing.assert_allclose(np.asarray(gmm.covs[1]), 4.0 * np.eye(2))
    resp = _run(lambda d, x: d.responsibilities(x), gmm, jnp.zeros((4, 2)))
    assert resp.shape == (4, 2)
    np.testing.assert_allclose(np.asarray(resp.sum(-1)), 1.0, atol=1e-12)


def test_noised_is_the_convolution(x64):
    gmm = GaussianMixture(*_mixture_params(seed=8))
    alpha, sigma = 0.6, 0.8
    noised = jax.jit(lambda a, s: gmm.noised(a, s))(alpha, sigma)
    np.testing.assert_allclose(np.asarray(noised.mean), alpha * np.asarray(gmm.mean), atol=1e-12)
    expected = alpha**2 * np.asarray(gmm.covariance) + sigma**2 * np.eye(3)
    np.testing.assert_allclose(np.asarray(noised.covariance), expected, atol=1e-12)
    single = Gaussian([1.0, 2.0], [[1.0, 0.2], [0.2, 0.5]]).noised(alpha, sigma)
    np.testing.assert_allclose(
        np.asarray(single.cov), alpha**2 * np.array([[1.0, 0.2], [0.2, 0.5]]) + sigma**2 * np.eye(2)
    )


def test_gaussian_sample_moments():
    cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    x = _run(lambda d, k: d.sample(k, 100_000), Gaussian([1.0, -1.0], cov), jax.random.key(1))
    x = np.asarray(x, dtype=np.float64)
    np.testing.assert_allclose(x.mean(0), [1.0, -1.0], atol=4 * np.sqrt(2.0 / 100_000))
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.03)


def test_jit_same_key_same_samples_without_retracing():
    gmm = GaussianMixture(*_mixture_params(seed=9))

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(dist, key):
        return dist.sample(key, 64), dist.log_prob(dist.sample(key, 64)), dist.score(jnp.zeros((64, 3)))

    a, b = draw(gmm, jax.random.key(0)), draw(gmm, jax.random.key(0))
    c = draw(gmm, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.allclose(np.asarray(a[0]), np.asarray(c[0]))
    assert all(np.all(np.isfinite(np.asarray(t))) for t in a)


def test_constructor_accepts_lists_and_rejects_bad_shapes():
    gmm = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    assert gmm.event_shape == (2,) and gmm.num_components == 1
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="Gaussian"):
        Gaussian([0.0, 0.0], [[1.0]])
