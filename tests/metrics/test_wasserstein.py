"""Exact and sliced W2 against translations, 1D sorted-sample formulas and hand-computed quantiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.metrics import sliced_w2, w2_exact


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def test_identical_sets_give_zero():
    x = jnp.asarray(_normal(0, (50, 3)), jnp.float32)
    assert w2_exact(x, x) == 0.0
    assert float(sliced_w2(jax.random.key(1), x, x)) == 0.0


def test_exact_translation(x64):
    # For y = x + c every coupling costs mean|x_i - x_s(i)|^2 + |c|^2, so the identity is optimal: W2 = |c|.
    x = _normal(2, (40, 3))
    c = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(w2_exact(x, x + c), np.linalg.norm(c), rtol=1e-12)
    np.testing.assert_allclose(w2_exact(x, x + c, squared=True), c @ c, rtol=1e-12)


def test_exact_1d_equals_sorted_rms(x64):
    x, y = _normal(3, (60,)), 2.0 * _normal(4, (60,)) + 1.0
    expected = np.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    np.testing.assert_allclose(w2_exact(x, y), expected, rtol=1e-12)


def test_unequal_sizes_hand_computed(x64):
    # Quantile functions of {0, 1, 2} and {0, 3} differ by 0, 1, -2, -1 on cells of lengths 1/3, 1/6, 1/6,
    # 1/3 of [0, 1], so W2^2 = 1/6 + 4/6 + 1/3 = 7/6.
    x, y = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([[0.0], [3.0]])
    np.testing.assert_allclose(w2_exact(x, y, squared=True), 7 / 6, rtol=1e-12)
    np.testing.assert_allclose(sliced_w2(jax.random.key(0), x, y, squared=True), 7 / 6, rtol=1e-12)


@pytest.mark.parametrize(("n", "m"), [(30, 30), (30, 17), (8, 50)])
def test_sliced_1d_equals_exact(x64, n, m):
    # In 1D every direction is +-1, so the sliced distance is the exact one, for any sizes.
    x, y = _normal(5, (n, 1)), 0.5 + 1.5 * _normal(6, (m, 1))
    np.testing.assert_allclose(sliced_w2(jax.random.key(0), x, y, num_projections=4), w2_exact(x, y), rtol=1e-10)


def test_weights(x64):
    x, y = np.zeros((1, 2)), np.array([[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(w2_exact(x, y, b=[1.0, 3.0], squared=True), 0.75, rtol=1e-12)


def test_same_measure_with_repeated_points(x64):
    x = _normal(7, (20, 2))
    y = np.concatenate([x, x[::-1]])
    assert w2_exact(x, y) < 1e-10
    assert float(sliced_w2(jax.random.key(0), x, y)) < 1e-10


def test_sliced_translation_expectation(x64):
    # Per direction the 1D W2^2 is exactly (theta.c)^2, and E (theta.c)^2 = |c|^2 / d. With d = 3,
    # (theta.c)^2 / |c|^2 ~ Beta(1/2, 1) has relative std 0.894, so 20000 directions give a relative standard
    # error of 0.63%; the tolerance of 3% is ~4.7 standard errors.
    x = _normal(8, (64, 3))
    c = np.array([1.0, -2.0, 0.5])
    sw2_sq = sliced_w2(jax.random.key(9), x, x + c, num_projections=20_000, squared=True)
    np.testing.assert_allclose(sw2_sq, c @ c / 3, rtol=0.03)


@pytest.mark.parametrize(("n", "m"), [(40, 40), (40, 25)])
def test_sliced_below_exact(x64, n, m):
    # Projections are 1-Lipschitz, so each sliced term, hence their mean, is at most W2^2.
    x, y = _normal(10, (n, 4)), _normal(11, (m, 4)) + 1.0
    assert float(sliced_w2(jax.random.key(12), x, y, num_projections=256)) <= w2_exact(x, y) + 1e-12


def test_images_are_flattened():
    x, y = _normal(13, (16, 1, 4, 4)), _normal(14, (24, 1, 4, 4))
    key = jax.random.key(15)
    flat = lambda z: z.reshape(z.shape[0], -1)
    np.testing.assert_allclose(sliced_w2(key, x, y, 32), sliced_w2(key, flat(x), flat(y), 32), rtol=1e-6)
    np.testing.assert_allclose(w2_exact(x, y), w2_exact(flat(x), flat(y)), rtol=1e-12)


def test_exact_gaussian_samples_converge_to_mean_gap():
    # W2 between N(m1, I) and N(m2, I) is |m1 - m2| = 3; with n = 500 points in 2D the empirical W2 is
    # biased upwards by the sampling noise (each empirical measure is O(n^{-1/2}) away from its law in 2D,
    # up to a log factor), i.e. by well under 0.5 here.
    x, y = _normal(16, (500, 2)), _normal(17, (500, 2)) + np.array([3.0, 0.0])
    assert abs(w2_exact(x, y) - 3.0) < 0.5
