"""MMD and energy distance against closed forms and brute-force double sums."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.metrics import energy_distance, mmd

BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _brute_force(x, y, k, unbiased):
    """Double sums written out pair by pair, the definitions of the U- and V-statistics."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def within(z):
        pairs = [(i, j) for i, j in itertools.product(range(len(z)), repeat=2) if not (unbiased and i == j)]
        return np.mean([k(z[i], z[j]) for i, j in pairs])

    cross = np.mean([k(a, b) for a in x for b in y])
    return within(x), within(y), cross


def _rbf(a, b):
    return sum(np.exp(-np.sum((a - b) ** 2) / (2 * h**2)) for h in BANDWIDTHS)


def _dist(a, b):
    return np.sqrt(np.sum((a - b) ** 2))


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def test_identical_sets_give_exactly_zero():
    x = jnp.asarray(_normal(0, (64, 3)), jnp.float32)
    y = jnp.array(x, copy=True)
    assert float(mmd(x, y, unbiased=False)) == 0.0
    assert float(energy_distance(x, y)) == 0.0


def test_mmd_point_masses_closed_form(x64):
    a, b = jnp.array([[0.3, -1.0, 2.0]]), jnp.array([[0.1, 0.5, 1.2]])
    sq = float(jnp.sum((a - b) ** 2))
    expected = sum(2.0 - 2.0 * np.exp(-sq / (2 * h**2)) for h in BANDWIDTHS)
    np.testing.assert_allclose(mmd(a, b, unbiased=False), expected, rtol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_matches_double_sums(x64, unbiased):
    x, y = _normal(1, (7, 2)), 0.5 + _normal(2, (5, 2))
    kxx, kyy, kxy = _brute_force(x, y, _rbf, unbiased)
    np.testing.assert_allclose(mmd(x, y, unbiased=unbiased), kxx + kyy - 2 * kxy, rtol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_energy_distance_matches_double_sums(x64, unbiased):
    x, y = _normal(3, (6, 3)), _normal(4, (8, 3)) * 2.0
    dxx, dyy, dxy = _brute_force(x, y, _dist, unbiased)
    np.testing.assert_allclose(energy_distance(x, y, unbiased=unbiased), 2 * dxy - dxx - dyy, rtol=1e-12)


def test_mmd_unbiased_is_centred_under_the_null():
    # The U-statistic is unbiased: over R independent replicates of two samples from N(0, I) its mean must
    # lie within 4 standard errors of 0 (a false failure has probability ~6e-5).
    keys = jax.random.split(jax.random.key(3), 200)
    sample = lambda k: jax.random.normal(k, (2, 100, 2))
    vals = jax.vmap(lambda k: mmd(*sample(k)))(keys)
    assert abs(float(jnp.mean(vals))) < 4 * float(jnp.std(vals)) / np.sqrt(len(vals))
    assert float(jnp.max(jnp.abs(vals))) < 0.1


def test_mmd_positive_for_different_distributions():
    x, y = _normal(5, (200, 2)), 1.0 + _normal(6, (200, 2))
    # Null replicates above stay below 0.1 in absolute value; a unit mean shift is far above.
    assert float(mmd(x, y)) > 0.3


def test_energy_distance_point_masses():
    a, b = 0.7, -1.9
    np.testing.assert_allclose(energy_distance(jnp.array([a]), jnp.array([b])), 2 * abs(a - b), rtol=1e-6)
    p, q = jnp.array([[1.0, 2.0]]), jnp.array([[4.0, 6.0]])
    np.testing.assert_allclose(energy_distance(p, q), 10.0, rtol=1e-6)


def test_energy_distance_gradient_finite_at_coincident_points():
    x = jnp.asarray(_normal(7, (16, 2)), jnp.float32)
    g = jax.grad(energy_distance)(x, x)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_images_are_flattened():
    x, y = _normal(8, (10, 1, 3, 3)), _normal(9, (12, 1, 3, 3))
    flat = lambda z: z.reshape(z.shape[0], -1)
    np.testing.assert_allclose(mmd(x, y), mmd(flat(x), flat(y)), rtol=1e-6)
    np.testing.assert_allclose(energy_distance(x, y), energy_distance(flat(x), flat(y)), rtol=1e-6)
