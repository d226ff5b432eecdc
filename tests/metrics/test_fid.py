"""The Fréchet distance, FID and KID against closed forms, brute-force double loops and their known bias."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.metrics import (
    AbstractFeatureExtractor,
    PolynomialKernel,
    bures_wasserstein_sq,
    extract_features,
    fid,
    frechet_distance,
    image_fid_kid,
    kernel_mmd,
    kid,
)


def _psd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d + (0.0 if rank else 0.1) * np.eye(d)


def _sqrtm_np(c):
    lam, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(lam, 0, None))) @ v.T


# -- the Fréchet distance ----------------------------------------------------------------------------------------


def test_frechet_distance_has_one_home():
    # One function under both names: tests/metrics/test_gaussian.py checks it also on commuting (diagonal)
    # covariances, |m1 - m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2, and against the eigenvalues of C1 C2.
    assert frechet_distance is bures_wasserstein_sq


@pytest.mark.parametrize("rank", [None, 2])
def test_frechet_distance_general_against_the_other_symmetric_form(x64, rank):
    # The reference takes the inner root from the other side, tr (C2^{1/2} C1 C2^{1/2})^{1/2}, in numpy float64;
    # with rank-2 covariances in 5 dimensions the inner matrix is singular and round-off makes eigenvalues negative.
    rng = np.random.default_rng(1 if rank is None else 2)
    c1, c2 = _psd(rng, 5, rank), _psd(rng, 5, rank)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    s2 = _sqrtm_np(c2)
    cross = np.trace(_sqrtm_np(s2 @ c1 @ s2))
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross
    np.testing.assert_allclose(frechet_distance(m1, c1, m2, c2), expected, rtol=1e-9)
    np.testing.assert_allclose(frechet_distance(m2, c2, m1, c1), expected, rtol=1e-9)
    np.testing.assert_allclose(frechet_distance(m1, c1, m1, c1), 0.0, atol=1e-12)


def test_fid_is_the_frechet_distance_of_the_sample_moments(x64):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 3)), 0.5 + 2.0 * rng.standard_normal((30, 3))
    mx, cx = x.mean(0), np.cov(x.T)  # numpy's unbiased covariance, as in the reference FID implementations
    my, cy = y.mean(0), np.cov(y.T)
    np.testing.assert_allclose(fid(x, y), frechet_distance(mx, cx, my, cy), rtol=1e-12)
    np.testing.assert_allclose(fid(x, x), 0.0, atol=1e-12)


def test_sample_fid_bias_has_the_leading_order(x64):
    # Two samples of size n from N(0, I_d): E|m1 - m2|^2 = 2d/n, and near I the squared Bures distance is
    # |S1 - S2|_F^2 / 4, whose mean is d(d+1)/(2(n-1)) for unbiased sample covariances; the rest is O(n^-2)
    # (about 0.5% of the leading order at n = 200, measured). Checked within 5 standard errors plus that 1%.
    d, reps = 2, 1000
    means = []
    for n in (200, 800):
        x = jax.random.normal(jax.random.key(n), (reps, 2, n, d))
        values = np.asarray(jax.vmap(lambda z: fid(z[0], z[1]))(x))
        leading = 2 * d / n + d * (d + 1) / (2 * (n - 1))
        se = values.std() / np.sqrt(reps)
        assert abs(values.mean() - leading) < 5 * se + 0.01 * leading, (n, values.mean(), leading, se)
        means.append(values.mean())
    assert means[1] < means[0] / 3  # the bias falls like 1/n


# -- KID ---------------------------------------------------------------------------------------------------------


def _poly(a, b):
    return (a @ b / a.shape[0] + 1.0) ** 3


def _mmd_u_brute_force(x, y):
    """The U-statistic written out pair by pair, in float64."""
    within = lambda z: np.mean([_poly(z[i], z[j]) for i, j in itertools.product(range(len(z)), repeat=2) if i != j])
    return within(x) + within(y) - 2 * np.mean([_poly(a, b) for a in x for b in y])


def test_polynomial_kernel_gram(x64):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    gram = np.array([[_poly(a, b) for b in y] for a in x])
    np.testing.assert_allclose(PolynomialKernel().gram(x, y), gram, rtol=1e-13)
    k = PolynomialKernel(degree=2, coef0=0.5, gamma=2.0)
    np.testing.assert_allclose(k.gram(x, y), (2.0 * x @ y.T + 0.5) ** 2, rtol=1e-13)


def test_kid_matches_a_double_loop(x64):
    # One subset of all n examples is a permutation of each set: the U-statistic of the full sets.
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((7, 3)), 0.5 + rng.standard_normal((7, 3))
    expected = _mmd_u_brute_force(x, y)
    mean, std = kid(x, y, jax.random.key(0), num_subsets=3, subset_size=100)
    np.testing.assert_allclose(mean, expected, rtol=1e-12)
    np.testing.assert_allclose(std, 0.0, atol=1e-12)
    z = rng.standard_normal((9, 3))  # unequal sizes, no subsets
    np.testing.assert_allclose(kernel_mmd(x, z, PolynomialKernel()), _mmd_u_brute_force(x, z), rtol=1e-12)


def _population_mmd_poly3(mu_x, mu_y, d):
    """MMD^2 of N(mu_x, I) and N(mu_y, I) under (a.b/d + 1)^3, from the moments of s = a.b (a, b independent):
    E s = m.n, E s^2 = d + |m|^2 + |n|^2 + (m.n)^2, E s^3 = (m.n)^3 + 3 (m.n)(|m|^2 + |n|^2) + 3 (d + 2) m.n."""

    def e_k(m, n):
        mn, mm, nn = m @ n, m @ m, n @ n
        s1, s2 = mn, d + mm + nn + mn**2
        s3 = mn**3 + 3 * mn * (mm + nn) + 3 * (d + 2) * mn
        return s3 / d**3 + 3 * s2 / d**2 + 3 * s1 / d + 1

    return e_k(mu_x, mu_x) + e_k(mu_y, mu_y) - 2 * e_k(mu_x, mu_y)


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_kid_is_unbiased(x64, shift):
    # Over R independent pairs of samples, the mean KID must lie within 4 standard errors of the population MMD^2
    # (0 for equal distributions); a false failure has probability ~6e-5.
    d, n, reps = 4, 40, 200
    mu_y = np.full(d, shift)
    keys = jax.random.split(jax.random.key(6), reps)

    def one(k):
        kx, ky, ks = jax.random.split(k, 3)
        x, y = jax.random.normal(kx, (n, d)), mu_y + jax.random.normal(ky, (n, d))
        return kid(x, y, ks, num_subsets=2, subset_size=30)[0]

    values = np.asarray(jax.vmap(one)(keys))
    truth = _population_mmd_poly3(np.zeros(d), mu_y, d)
    se = values.std() / np.sqrt(reps)
    assert abs(values.mean() - truth) < 4 * se, (values.mean(), truth, se)
    if shift:
        assert truth > 10 * se  # the shifted case is far from the null: the check has power


def test_kid_subset_size_is_capped_and_checked():
    x = jax.random.normal(jax.random.key(0), (10, 2))
    mean, std = kid(x, x + 1.0, jax.random.key(1), num_subsets=5, subset_size=1000)
    assert float(std) < 1e-4 * abs(float(mean))  # one subset of everything, five times (float32 sums reordered)
    with pytest.raises(ValueError, match="num_subsets=0"):
        kid(x, x, jax.random.key(1), num_subsets=0)
    with pytest.raises(ValueError, match="at least 2 examples"):
        kid(x[:1], x, jax.random.key(1))


# -- feature extractors and the image convenience ----------------------------------------------------------------


class _Mean(AbstractFeatureExtractor):
    """Features (mean, mean of squares) of an image: a fixed, analytic extractor."""

    def features(self, x):
        return jnp.stack([jnp.mean(x), jnp.mean(x**2)])


def test_image_fid_kid_with_a_pluggable_extractor():
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, (50, 1, 4, 4), dtype=np.uint8)
    scaled = ref / 127.5 - 1.0  # the datasets' scaling
    out = image_fid_kid(scaled, ref, _Mean(), jax.random.key(0), num_subsets=3, subset_size=20, batch_size=16)
    assert set(out) == {"fid", "kid", "kid_std"}
    assert abs(out["fid"]) < 1e-5  # KID's U-statistic of a set against itself is -O(1/n), not 0
    shifted = image_fid_kid(scaled + 0.5, ref, _Mean(), jax.random.key(0), num_subsets=3, subset_size=20)
    fx, fr = extract_features(_Mean(), jnp.asarray(scaled + 0.5)), extract_features(_Mean(), jnp.asarray(scaled))
    np.testing.assert_allclose(shifted["fid"], fid(fx, fr), rtol=1e-6)
    np.testing.assert_allclose(shifted["kid"], kid(fx, fr, jax.random.key(0), 3, 20)[0], rtol=1e-6)


def test_extract_features_in_chunks_equals_one_call():
    x = jax.random.uniform(jax.random.key(1), (10, 1, 3, 3), minval=-1, maxval=1)
    np.testing.assert_array_equal(extract_features(_Mean(), x, 4), extract_features(_Mean(), x))
