"""Bits/dim of 8-bit images by uniform dequantisation: the closed form of a Gaussian model, the conventions shared
with the discretised decoder, and composition with every density family's real ``log_prob`` (float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import BetaVariance, DiffusionModel, DiscreteSchedule, DiscretizedDecoder, LinearBetas
from genflow.flows import Affine, Flow
from genflow.interpolants import FlowMatching
from genflow.metrics import (
    bin_centres,
    bin_width,
    dequantize,
    dequantize_images,
    dequantized_bits_per_dim,
    image_bits_per_dim,
    nll_bits_per_dim,
)
from genflow.solvers import RK4, Exact, Heun, Hutchinson

SHAPE = (1, 2, 2)
D = 4
W = 1 / 128  # 8-bit data on [-1, 1]


def _images(seed, n=3, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (n, *SHAPE), dtype=np.uint8)


def _gaussian_log_prob(m, s):
    """``log p(x) = sum_i log N(x_i; m, s^2)``: the affine model ``x = m + s z``."""

    def log_prob(x, key=None):
        z = (x - m) / s
        return jnp.sum(-0.5 * z**2 - math.log(s) - 0.5 * math.log(2 * math.pi), axis=(1, 2, 3))

    return log_prob


def _expected_bpd(images, m, s):
    """E_u of the dequantised bits/dim under the affine model, in closed form.

    With ``x = c + v``, ``c`` the bin centre and ``v ~ U[-w/2, w/2]``: ``E (x - m)^2 = (c - m)^2 + w^2 / 12``, so
    ``E[-log p] = sum_i [((c_i - m)^2 + w^2/12) / (2 s^2) + log s + log(2 pi)/2]``; the scale adds ``log2(128) = 7``.
    Also returns the standard deviation of one draw, from ``Var (a + v)^2 = 4 a^2 w^2/12 + w^4/180`` per pixel.
    """
    a = (2 * images.astype(np.float64) + 1) / 256 - 1 - m
    a = a.reshape(len(a), -1)
    nll = np.sum((a**2 + W**2 / 12) / (2 * s**2) + math.log(s) + 0.5 * math.log(2 * math.pi), axis=1)
    var = np.sum((4 * a**2 * W**2 / 12 + W**4 / 180) / (4 * s**4), axis=1)
    return nll / (D * math.log(2)) + 7.0, np.sqrt(var) / (D * math.log(2))


def test_bins_and_dequantisation_of_8bit_images(x64):
    k = np.array([0, 1, 127, 128, 255], dtype=np.uint8)
    assert bin_width() == W and bin_width(16, (0.0, 1.0)) == 1 / 16
    np.testing.assert_array_equal(bin_centres(k), (2 * k.astype(np.float64) + 1) / 256 - 1)
    x = np.asarray(dequantize_images(jax.random.key(0), np.tile(k, 1000)))
    edges = k.astype(np.float64) / 128 - 1  # bin k is [k/128 - 1, (k+1)/128 - 1)
    assert np.all(x.reshape(1000, 5) >= edges) and np.all(x.reshape(1000, 5) < edges + W)
    assert x.min() >= -1 and x.max() < 1
    with pytest.raises(ValueError, match="num_bins=1"):
        bin_width(1)
    with pytest.raises(ValueError, match="interval"):
        bin_centres(k, 256, (1.0, -1.0))


def test_one_draw_is_the_change_of_variables_at_the_dequantised_point(x64):
    images, key, m, s = _images(0), jax.random.key(1), 0.1, 0.3
    log_prob = _gaussian_log_prob(m, s)
    k_deq, _ = jax.random.split(key)
    x = dequantize(k_deq, bin_centres(images), W)
    want = -log_prob(x) / (D * math.log(2)) + 7.0
    np.testing.assert_allclose(image_bits_per_dim(log_prob, images, key), want, rtol=1e-14)
    # the same as the continuous bits/dim with the 7-bit offset of 256 levels on [-1, 1]
    np.testing.assert_allclose(nll_bits_per_dim(log_prob(x), D, dequant_bins=256), want, rtol=1e-14)


def test_many_draws_converge_to_the_closed_form(x64):
    # Pixels within two bins of the model's mean, so the w^2/12 term is large next to the sampling noise.
    m, s, draws = float(bin_centres(130)), 0.01, 20_000
    images = _images(2, n=4, low=128, high=133)
    bpd = image_bits_per_dim(_gaussian_log_prob(m, s), images, jax.random.key(3), num_draws=draws)
    want, std = _expected_bpd(images, m, s)
    tol = 5 * std / math.sqrt(draws)
    np.testing.assert_array_less(np.abs(bpd - want), tol)
    assert np.all(W**2 / 12 / (2 * s**2) / math.log(2) > 3 * tol)  # dropping the w^2/12 term would fail


def test_interval_sets_the_offset(x64):
    # The bins of k / 127.5 - 1 (DDPM's scaling) tile [-1 - 1/255, 1 + 1/255]: offset log2(255 / 2), not 7.
    images, key, log_prob = _images(4), jax.random.key(5), _gaussian_log_prob(0.0, 0.5)
    interval = (-1 - 1 / 255, 1 + 1 / 255)
    np.testing.assert_allclose(bin_centres(images, 256, interval), images / 127.5 - 1, atol=1e-15)
    k_deq, _ = jax.random.split(key)
    x = dequantize(k_deq, jnp.asarray(images / 127.5 - 1), 2 / 255)
    want = -log_prob(x) / (D * math.log(2)) + math.log2(255 / 2)
    np.testing.assert_allclose(image_bits_per_dim(log_prob, images, key, interval=interval), want, rtol=1e-13)


def test_discretised_decoder_scores_the_same_bins(x64):
    # Ho et al.'s decoder at the bin centres with bin_width 1/128 integrates N(mean, std^2) over exactly the bins
    # that dequantisation fills, [k/128 - 1, (k+1)/128 - 1), the end bins extended to infinity.
    k = np.array([0, 1, 100, 128, 200, 254, 255])
    mean, std = 0.05, 0.6
    cdf = lambda e: 0.5 * (1 + math.erf((e - mean) / (std * math.sqrt(2))))
    lo = [0.0 if j == 0 else cdf(j / 128 - 1) for j in k]
    hi = [1.0 if j == 255 else cdf((j + 1) / 128 - 1) for j in k]
    got = DiscretizedDecoder(bin_width=bin_width()).log_prob(bin_centres(k), mean, std)
    np.testing.assert_allclose(got, np.log(np.subtract(hi, lo)), rtol=1e-10)


# -- every density family's log_prob -------------------------------------------------------------------------------


def test_flow_exact_log_prob(x64):
    m, s = 0.2, 0.4
    flow = Flow(Affine(jnp.full(SHAPE, m), jnp.full(SHAPE, math.log(s))))  # x = m + s z, z ~ N(0, I)
    images, key = _images(6), jax.random.key(7)
    got = image_bits_per_dim(flow.log_prob, images, key, num_draws=3)
    np.testing.assert_allclose(got, image_bits_per_dim(_gaussian_log_prob(m, s), images, key, num_draws=3), rtol=1e-13)


def _stationary_diffusion():
    # eps = sigma x is the exact eps-prediction for N(0, I) data on a VP chain, whose probability-flow field
    # (f + g^2 / 2) x then vanishes: every solver is exact and log p = log N(x; 0, I).
    schedule = DiscreteSchedule(20, LinearBetas(beta_end=0.2))
    return DiffusionModel(lambda t, x: schedule.sigma(t) * x, SHAPE, schedule=schedule, likelihood_solver=Heun(2))


@pytest.mark.parametrize(
    "divergence", [Exact(), pytest.param(Hutchinson(2), marks=pytest.mark.slow)], ids=["exact", "hutchinson"]
)  # Hutchinson composes the same way as in the fast flow-matching test below; one more compile of the model
def test_diffusion_pf_ode(x64, divergence):
    model, images, key = _stationary_diffusion(), _images(8), jax.random.key(9)
    want = image_bits_per_dim(_gaussian_log_prob(0.0, 1.0), images, key, num_draws=2)
    log_prob = lambda x, key: model.log_prob(x, key=key, divergence=divergence)
    np.testing.assert_allclose(image_bits_per_dim(log_prob, images, key, num_draws=2), want, rtol=1e-12)


def _discrete_nll_bpd(images, m, s):
    """Exact bits/dim of 8-bit images under N(m, s^2) integrated over the bins [k/128 - 1, (k+1)/128 - 1), the end
    bins extended to infinity (the discretised decoder's events)."""
    cdf = np.vectorize(lambda e: 0.5 * (1 + math.erf((e - m) / (s * math.sqrt(2)))))
    k = images.astype(np.float64).reshape(len(images), -1)
    lo = np.where(k == 0, 0.0, cdf(k / 128 - 1))
    hi = np.where(k == 255, 1.0, cdf((k + 1) / 128 - 1))
    return -np.sum(np.log(hi - lo), axis=1) / (D * math.log(2))


def test_diffusion_elbo_continuous_and_discretised(x64):
    # N(0, I) data are stationary under the VP chain: with beta_n variances every reverse kernel, the decoder and
    # the prior are exact, so the bound's expectation is -log p(x0) (Ho et al. 2020, eq. 5). Dequantised, its
    # expectation is then the closed form; 200 copies of each image give independent estimates.
    schedule = DiscreteSchedule(10, LinearBetas(beta_end=0.3))
    model = DiffusionModel(lambda t, x: schedule.sigma(t) * x, SHAPE, schedule=schedule)
    images, reps = _images(10), 200
    tiled = np.repeat(images, reps, axis=0)
    elbo = lambda x, key: -model.vlb(x, key=key, variance=BetaVariance()).total  # a continuous NLL bound
    bpd = jax.jit(lambda i, k: image_bits_per_dim(elbo, i, k))  # traces inside jit (one compile, not many)
    cont = np.asarray(bpd(tiled, jax.random.key(11))).reshape(3, reps)
    want, _ = _expected_bpd(images, 0.0, 1.0)
    np.testing.assert_array_less(np.abs(cont.mean(1) - want), 5 * cont.std(1) / math.sqrt(reps))
    # With the discretised decoder on the same bins the bound is on the discrete NLL already: no dequantisation and
    # no offset. Its expectation is at least the exact discrete NLL, which the dequantised value bounds (Jensen).
    decoder = DiscretizedDecoder(bin_width=bin_width())
    vlb = model.vlb(bin_centres(tiled), key=jax.random.key(12), variance=BetaVariance(), decoder=decoder)
    disc = np.asarray(nll_bits_per_dim(-vlb.total, D)).reshape(3, reps)
    exact = _discrete_nll_bpd(images, 0.0, 1.0)
    np.testing.assert_array_less(exact - 5 * disc.std(1) / math.sqrt(reps), disc.mean(1))
    assert np.all(exact <= want) and np.all(want - exact < 1e-4)  # for a unit-variance model the two nearly agree


def test_flow_matching_with_an_analytic_velocity(x64):
    # Linear interpolant from N(0, I) to N(m, s^2 I): x_t ~ N(t m, v_t I), v_t = (1-t)^2 + t^2 s^2, and the
    # velocity E[x1 - x0 | x_t] = m + (x - t m) (t s^2 - (1 - t)) / v_t carries N(0, I) exactly to N(m, s^2 I).
    m, s = -0.1, 0.5

    def velocity(t, x):
        return m + (x - t * m) * (t * s**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * s**2)

    model = FlowMatching(velocity, SHAPE, likelihood_solver=RK4(num_steps=100))
    images, key = _images(12), jax.random.key(13)
    want = image_bits_per_dim(_gaussian_log_prob(m, s), images, key)
    np.testing.assert_allclose(image_bits_per_dim(model.log_prob, images, key), want, rtol=1e-9)
    # Rademacher probes give the exact trace of the isotropic Jacobian, so Hutchinson is exact here too.
    hutch = lambda x, key: model.log_prob(x, key=key, divergence=Hutchinson(1))
    np.testing.assert_allclose(image_bits_per_dim(hutch, images, key), want, rtol=1e-9)


def test_float_grid_data_and_draws_shape(x64):
    # Digits-like data (values p/8 - 1, bin 1/8): the same estimator with the offset -log2(1/8) = 3 bits.
    x = jnp.asarray(np.random.default_rng(14).integers(0, 17, (5, 1, 2, 2)) / 8 - 1)
    calls = []

    def log_prob(z, key):
        calls.append(z.shape)
        return _gaussian_log_prob(0.0, 1.0)(z)

    bpd = dequantized_bits_per_dim(log_prob, x, jax.random.key(15), bin_width=1 / 8, num_draws=7)
    assert bpd.shape == (5,) and calls == [(35, 1, 2, 2)]  # the draws go to log_prob in one batch
    with pytest.raises(ValueError, match="num_draws=0"):
        dequantized_bits_per_dim(log_prob, x, jax.random.key(15), bin_width=1 / 8, num_draws=0)
