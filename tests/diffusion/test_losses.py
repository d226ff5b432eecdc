"""Losses: time samplers (uniform, stratified, importance with p/q, log-normal) and the minimal denoising loss of
Gaussian data, E[Var(eps | x_t)] (the Bayes-optimal eps predictor of Gaussian data; Ho et al. 2020, Song et al. 2021,
"Maximum Likelihood Training of Score-Based Diffusion Models", for the importance-sampled likelihood weighting)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import (
    AbstractTimeSampler,
    DiffusionModel,
    DiscreteSchedule,
    EDMSchedule,
    EpsilonPrediction,
    ImportanceTime,
    LikelihoodWeighting,
    LogNormalTime,
    NoWeighting,
    StratifiedTime,
    UniformTime,
    VPSchedule,
    denoising_loss,
    network_weight,
)


@pytest.mark.slow  # plain plumbing; the importance sampler below is the one with a correction to get right
def test_uniform_and_stratified_times():
    vp, chain = VPSchedule(), DiscreteSchedule(10)
    ones = lambda t: jnp.ones_like(t)
    t, w = UniformTime()(jax.random.key(0), 20_000, vp, ones, jnp.float32)
    assert float(t.min()) >= vp.t_min and float(t.max()) <= vp.t_max and np.all(np.asarray(w) == 1)
    assert abs(float(t.mean()) - (vp.t_min + vp.t_max) / 2) < 4 * 0.29 / math.sqrt(20_000)
    t, _ = UniformTime()(jax.random.key(1), 20_000, chain, ones, jnp.float32)
    counts = np.bincount(np.round(np.asarray(t) * 10).astype(int), minlength=11)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 2000) < 5 * math.sqrt(2000))  # steps 1..N, uniform
    t, _ = StratifiedTime()(jax.random.key(2), 16, vp, ones, jnp.float32)
    u = (np.asarray(t) - vp.t_min) / (vp.t_max - vp.t_min)
    np.testing.assert_array_equal(np.floor(u * 16), np.arange(16))  # one time per stratum


@pytest.mark.slow  # compile-heavy (three samplers and a fine quadrature)
def test_importance_sampling_is_unbiased_and_flattens_the_weight(x64):
    """E_q[(p/q) h(t)] = E_p[h(t)], and with q ∝ the eps weight the weighted loss's time factor is constant."""
    vp, chain = VPSchedule(), DiscreteSchedule(50)
    param, weighting = EpsilonPrediction(), LikelihoodWeighting()
    weight_fn = lambda t: weighting.eps_weight(vp, param, t)
    chain_fn = lambda t: weighting.eps_weight(chain, param, t)
    h = lambda t: jnp.sin(3 * t) + t**2  # any test function
    n = 100_000

    @jax.jit
    def draws():
        t, corr = ImportanceTime(num_bins=500)(jax.random.key(0), n, vp, weight_fn, jnp.float64)
        t_u, _ = UniformTime()(jax.random.key(1), n, vp, weight_fn, jnp.float64)
        t_c, corr_c = ImportanceTime()(jax.random.key(2), 1000, chain, chain_fn, jnp.float64)
        exact = jnp.mean(h(jnp.linspace(vp.t_min, vp.t_max, 200_001)))  # E_p[h] for p uniform on [t_min, t_max]
        return corr * h(t), weight_fn(t) * corr, weight_fn(t_u), chain_fn(t_c) * corr_c, exact

    est, flat, plain, flat_chain, exact = (np.asarray(a) for a in draws())
    assert abs(est.mean() - exact) < 5 * est.std() / math.sqrt(n)
    # weight * p/q is constant up to the weight's variation within a bin (bins equally spaced in log-SNR: g^2 /
    # sigma^2 changes by about 3% per bin across the 17 units of log-SNR, so a spread well under 1%)
    assert flat.std() / flat.mean() < 0.01
    assert plain.std() / plain.mean() > 1.0  # what importance sampling removes
    # on a discrete chain q is a categorical over the steps, and weight * p/q is exactly constant
    np.testing.assert_allclose(flat_chain, np.mean(np.asarray(chain_fn(jnp.arange(1, 51) / 50))), rtol=1e-10)


@pytest.mark.slow
def test_lognormal_noise_levels():
    t, w = LogNormalTime()(jax.random.key(0), 50_000, EDMSchedule(), None, jnp.float32)
    log_t = np.log(np.asarray(t))
    assert abs(log_t.mean() + 1.2) < 5 * 1.2 / math.sqrt(50_000) and abs(log_t.std() - 1.2) < 0.02
    vp = VPSchedule()
    t, _ = LogNormalTime()(jax.random.key(1), 1000, vp, None, jnp.float32)
    assert float(t.min()) >= vp.t_min and float(t.max()) <= vp.t_max


class FixedTime(AbstractTimeSampler):
    """All examples at one time (a test helper: the loss at fixed t)."""

    t: float = eqx.field(static=True)

    def __call__(self, key, num, schedule, weight_fn, dtype):
        return jnp.full((num,), self.t, dtype), jnp.ones((num,), dtype)


@pytest.mark.slow
def test_minimal_loss_is_the_posterior_variance_of_eps(x64):
    """For data N(m, s^2 I) the exact eps*(x_t) = E[eps | x_t] gives loss E|eps* - eps|^2 = d sum Var(eps | x_t)
    = d alpha^2 s^2 / (alpha^2 s^2 + sigma^2); any other predictor does worse."""
    vp, m, s, d = VPSchedule(), 0.7, 0.5, 3
    n = 100_000
    x0 = m + s * jax.random.normal(jax.random.key(0), (n, d))
    for t in (0.1, 0.5):
        a, sig = vp.alpha(t), vp.sigma(t)
        var_t = a**2 * s**2 + sig**2
        exact = lambda tt, x: sig * (x - a * m) / var_t  # E[eps | x_t] = sigma (x - a m) / var
        loss, _ = denoising_loss(
            jax.random.key(1), exact, x0, None, vp, EpsilonPrediction(), NoWeighting(), FixedTime(t)
        )
        want = d * a**2 * s**2 / var_t
        per = 2 * d * (a**2 * s**2 / var_t) ** 2  # variance of |eps* - eps|^2 (a chi-square with d dof, scaled)
        assert abs(float(loss) - want) < 5 * math.sqrt(per / n), (t, float(loss), want)
        worse, _ = denoising_loss(
            jax.random.key(1), lambda tt, x: 1.1 * exact(tt, x), x0, None, vp, EpsilonPrediction(), NoWeighting(),
            FixedTime(t),
        )  # fmt: skip
        assert float(worse) > float(loss)


def test_modules_are_checked_by_the_model():
    np.testing.assert_allclose(network_weight(NoWeighting(), VPSchedule(), EpsilonPrediction(), 0.3), 1.0)
    net = lambda t, x, c=None: x
    assert isinstance(DiffusionModel(net, (2,), time_sampler=ImportanceTime()).time_sampler, ImportanceTime)
    assert isinstance(DiffusionModel(net, (2,), weighting=LikelihoodWeighting()).weighting, LikelihoodWeighting)
    with pytest.raises(ValueError, match="time_sampler='sobol' is invalid; allowed: UniformTime()"):
        DiffusionModel(net, (2,), time_sampler="sobol")
    with pytest.raises(ValueError, match="weighting='p2' is invalid; allowed: NoWeighting()"):
        DiffusionModel(net, (2,), weighting="p2")
