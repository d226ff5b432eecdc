"""Energies: analytic scores, normalisation on grids and exact samplers against known moments."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import i0e, i1e
from scipy.stats import kstest, norm, vonmises

from genflow.distributions import (
    AbstractEnergy,
    Banana,
    Cross2D,
    DoubleWell,
    NealFunnel,
    TiltedDoubleWell,
    TorusVonMisesMixture,
    autodiff_score,
    sample_von_mises,
)


def _run(fn, *args):
    """Run ``fn`` under one jit: op-by-op dispatch of the same code is many times slower."""
    return eqx.filter_jit(fn)(*args)


def _sample(dist, key, num):
    return np.asarray(_run(lambda d, k: d.sample(k, num), dist, key), dtype=np.float64)


def _total_mass(dist, x, cell, log_jacobian=0.0):
    return float(_run(lambda d, x, lj: jnp.sum(jnp.exp(d.log_prob(x) + lj)) * cell, dist, x, log_jacobian))


def _torus():
    return TorusVonMisesMixture(
        locs=[[0.5, -2.0], [-2.5, 1.0], [3.0, 3.0]],
        concentrations=[[2.0, 0.5], [8.0, 3.0], [1.0, 1.0]],
        weights=[0.5, 0.3, 0.2],
    )


ENERGIES = {
    "doublewell": lambda: DoubleWell(dim=3, a=2.0, b=0.5),
    "tilted_doublewell": lambda: TiltedDoubleWell(dim=3, c=0.5),
    "banana": lambda: Banana(dim=3, b=0.1),
    "funnel": lambda: NealFunnel(dim=5),
    "cross": lambda: Cross2D(),
    "torus": _torus,
}


def _grid(lo, hi, h, lo2=None, hi2=None):
    g1 = jnp.arange(lo, hi, h)
    g2 = g1 if lo2 is None else jnp.arange(lo2, hi2, h)
    return jnp.stack(jnp.meshgrid(g1, g2, indexing="ij"), axis=-1)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_score_matches_autodiff_and_energy_is_negative_log_prob(x64, name):
    energy = ENERGIES[name]()
    assert isinstance(energy, AbstractEnergy)
    d = energy.event_shape[0]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3, d)))
    score, autodiff, e, lp = _run(
        lambda d, x: (d.score(x), autodiff_score(d, x), d.energy(x), d.log_prob(x)), energy, x
    )
    np.testing.assert_allclose(np.asarray(score), np.asarray(autodiff), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(e), -np.asarray(lp))
    assert lp.shape == (4, 3)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_exact_sampler_is_jittable(name):
    energy = ENERGIES[name]()

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(dist, key):
        return dist.sample(key, 100)

    a, b = draw(energy, jax.random.key(0)), draw(energy, jax.random.key(0))
    c = draw(energy, jax.random.key(1))
    assert a.shape == (100, *energy.event_shape) and np.all(np.isfinite(np.asarray(a)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_normalized_flags():
    assert not DoubleWell.normalized
    assert Banana.normalized and NealFunnel.normalized and Cross2D.normalized and TorusVonMisesMixture.normalized


def test_banana_integrates_to_one(x64):
    # A strongly twisted but compact banana, so a grid covers it: x2 = z2 - b z1^2 + b s^2.
    banana = Banana(dim=2, b=0.5, sigma=2.0)
    h = 0.04
    assert abs(_total_mass(banana, _grid(-14.0, 14.0, h, -80.0, 9.0), h**2) - 1.0) < 1e-6


def test_cross_integrates_to_one(x64):
    h = 0.02
    assert abs(_total_mass(Cross2D(), _grid(-9.0, 9.0, h), h**2) - 1.0) < 1e-6


def test_funnel_integrates_to_one(x64):
    # Substitute x = u exp(v / 2) so one grid resolves the neck and the mouth: dx = exp(v / 2) du.
    funnel = NealFunnel(dim=2)
    h = 0.02
    vu = _grid(-20.0, 20.0, h, -10.0, 10.0)
    v, u = vu[..., 0], vu[..., 1]
    x = jnp.stack([v, u * jnp.exp(0.5 * v)], axis=-1)
    assert abs(_total_mass(funnel, x, h**2, 0.5 * v) - 1.0) < 1e-6


def test_funnel_log_prob_matches_scipy(x64):
    funnel = NealFunnel(dim=10)
    x = np.random.default_rng(1).normal(size=(8, 10))
    v = x[:, 0]
    expected = norm(0, 3).logpdf(v) + norm.logpdf(x[:, 1:], scale=np.exp(v / 2)[:, None]).sum(-1)
    got = _run(lambda d, x: d.log_prob(x), funnel, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-10)


def test_torus_integrates_to_one(x64):
    # The rectangle rule on a periodic grid is spectrally accurate.
    n = 256
    g = -math.pi + 2 * math.pi * jnp.arange(n) / n
    xx = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), axis=-1)
    assert abs(_total_mass(_torus(), xx, (2 * math.pi / n) ** 2) - 1.0) < 1e-10


def _assert_mean_close(samples, expected, num_se=4.0):
    samples = np.asarray(samples, dtype=np.float64)
    se = samples.std(axis=0) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(samples.mean(axis=0) - expected) < num_se * se + 1e-12), (samples.mean(axis=0), expected, se)


def test_funnel_sampler_moments():
    x = _sample(NealFunnel(dim=4), jax.random.key(2), 100_000)
    v = x[:, 0]
    _assert_mean_close(np.stack([v, v**2], -1), [0.0, 9.0])
    # x_i exp(-v/2) is exactly standard normal given v.
    z = x[:, 1:] * np.exp(-v / 2)[:, None]
    _assert_mean_close(np.concatenate([z, z**2], -1), [0.0] * 3 + [1.0] * 3)


def test_banana_sampler_moments():
    b, s = 0.1, 10.0
    x = _sample(Banana(dim=3, b=b, sigma=s), jax.random.key(3), 200_000)
    _assert_mean_close(x, [0.0, 0.0, 0.0])
    _assert_mean_close(x**2, [s**2, 1 + 2 * b**2 * s**4, 1.0])


def test_cross_sampler_moments():
    cross = Cross2D()
    x = _sample(cross, jax.random.key(4), 100_000)
    _assert_mean_close(x, [0.0, 0.0])
    _assert_mean_close(x**2, np.diag(np.asarray(cross.mixture.covariance)))


def test_double_well_sampler_matches_quadrature():
    a, b = 2.0, 0.5
    x = _sample(DoubleWell(dim=3, a=a, b=b), jax.random.key(5), 100_000)
    g = np.linspace(-4, 4, 40001)
    p = np.exp(-a * (g**2 - 1) ** 2)
    p /= p.sum()
    expected = [0.0, 0.0, 0.0, (g**2 * p).sum(), 1 / b, 1 / b]
    _assert_mean_close(np.concatenate([x, x**2], -1), expected)
    cdf = np.cumsum(p)
    assert kstest(x[:, 0], lambda t: np.interp(t, g, cdf)).pvalue > 1e-3


def _tilted_density(a, b, c, g):
    p = np.exp(-(a * g**4 - b * g**2 - c * g))
    return p / p.sum()


def test_tilted_double_well_sampler_matches_quadrature():
    a, b, c = 1.0, 6.0, 0.5  # the SNF paper's double well
    x = _sample(TiltedDoubleWell(dim=2, a=a, b=b, c=c), jax.random.key(8), 100_000)
    g = np.linspace(-4, 4, 40001)
    p = _tilted_density(a, b, c, g)
    _assert_mean_close(np.concatenate([x, x**2], -1), [(g * p).sum(), 0.0, (g**2 * p).sum(), 1.0])
    assert kstest(x[:, 0], lambda t: np.interp(t, g, np.cumsum(p))).pvalue > 1e-3


@pytest.mark.parametrize("a, b, c", [(1.0, 6.0, 0.5), (2.0, 2.0, -0.3), (1.0, 4.0, 3.0)])
def test_tilted_double_well_envelope_bounds_the_target(a, b, c):
    """Rejection is exact only if the envelope constant bounds target / proposal everywhere."""
    well = TiltedDoubleWell(dim=2, a=a, b=b, c=c)
    g = np.linspace(-6, 6, 200001)
    m, s2 = well._proposal()
    log_env = np.logaddexp(-((g - m) ** 2) / (2 * s2), -((g + m) ** 2) / (2 * s2))
    log_env -= math.log(2 * math.sqrt(2 * math.pi * s2))
    log_ratio = -(a * g**4 - b * g**2 - c * g) - log_env - well.log_bound
    assert np.max(log_ratio) <= 1e-9
    assert np.max(log_ratio) > -1.0  # and is not so loose that sampling crawls


def _mean_resultant_length(kappa):
    return i1e(kappa) / i0e(kappa)


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 2.0, 50.0, 1e3])
def test_von_mises_sampler(kappa):
    theta = np.asarray(jax.jit(sample_von_mises)(jax.random.key(6), jnp.full((50_000,), kappa)), dtype=np.float64)
    assert np.all(np.abs(theta) <= math.pi)
    _assert_mean_close(np.stack([np.cos(theta), np.sin(theta)], -1), [_mean_resultant_length(kappa), 0.0])
    assert kstest(theta, vonmises(kappa).cdf).pvalue > 1e-3


def test_torus_sampler_trigonometric_moments():
    torus = _torus()
    x = _sample(torus, jax.random.key(7), 100_000)
    assert np.all(x >= -math.pi) and np.all(x < math.pi)
    # E[exp(i x_j)] = sum_k w_k A(kappa_kj) exp(i mu_kj), with A = I1 / I0.
    w, mu, kappa = (np.asarray(a, dtype=np.float64) for a in (torus.weights, torus.locs, torus.concentrations))
    m1 = np.sum(w[:, None] * _mean_resultant_length(kappa) * np.exp(1j * mu), axis=0)
    _assert_mean_close(np.concatenate([np.cos(x), np.sin(x)], -1), np.concatenate([m1.real, m1.imag]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        NealFunnel(dim=1)
    with pytest.raises(ValueError, match="a and b"):
        DoubleWell(a=-1.0)
    with pytest.raises(ValueError, match="a and b"):
        TiltedDoubleWell(b=0.0)
    with pytest.raises(ValueError, match="weights"):
        TorusVonMisesMixture([[0.0, 0.0]], [1.0], weights=[0.5, 0.5])
