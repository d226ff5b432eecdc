"""Stochastic normalizing flows (Wu, Köhler, Noé, NeurIPS 2020; float64): log w = 0 when the target is the prior and
only Metropolis blocks run, log w = log p_X - log q without stochastic blocks, the Langevin Delta S against the Gaussian
transition densities, and mean w = Z_X / Z_Z on a 1D double well (quadrature) within standard errors."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import DoubleWell, Gaussian, StandardNormal
from genflow.flows import (
    Affine,
    AnnealedEnergy,
    Chain,
    Flow,
    HMCLayer,
    LangevinLayer,
    LULinear,
    MetropolisLayer,
    PathMaximumLikelihood,
    PathReverseKL,
    StochasticNormalizingFlow,
    kish_ess,
    reweighted_mean,
    snf_layers,
)

from ._helpers import randomize

pytestmark = pytest.mark.usefixtures("x64_module")


def test_metropolis_blocks_on_the_prior_give_zero_log_weights():
    layers = [MetropolisLayer(0.5, 0.8, 4), HMCLayer(0.7, 0.3, 3, 2), MetropolisLayer(1.0, 1.5, 3)]
    snf = StochasticNormalizingFlow(layers, target=StandardNormal(2), data_shape=(2,))
    x, log_w = snf.sample_with_log_weights(jax.random.key(0), 256)
    np.testing.assert_allclose(log_w, 0.0, atol=1e-12)
    z = StandardNormal(2).sample(jax.random.split(jax.random.key(0))[0], 256)
    assert np.mean(np.any(np.asarray(x) != np.asarray(z), axis=1)) > 0.5  # the chains did move


def test_without_stochastic_blocks_log_w_is_log_p_minus_log_q():
    lu = randomize(LULinear(2), jax.random.key(2), 0.3)
    target = DoubleWell(dim=2)
    snf = StochasticNormalizingFlow([lu, Affine(jnp.array([0.5, -0.2]), jnp.array([0.1, 0.3]))], target)
    flow = Flow(Chain(snf.layers))
    x, log_w = snf.sample_with_log_weights(jax.random.key(3), 128)
    np.testing.assert_allclose(log_w, target.log_prob(x) - flow.log_prob(x), atol=1e-10)
    # Both objectives reduce to the flow's: reverse KL + log Z, and the negative log-likelihood.
    data = target.sample(jax.random.key(4), 128)
    ml = StochasticNormalizingFlow(snf.layers, target, objective=PathMaximumLikelihood())
    ml_loss = eqx.filter_jit(ml.loss)(jax.random.key(5), data)
    np.testing.assert_allclose(ml_loss, -jnp.mean(flow.log_prob(data)), atol=1e-10)


def test_langevin_delta_s_is_the_log_ratio_of_gaussian_transition_densities():
    target = Gaussian(jnp.array([1.0, -0.5]), jnp.array([[1.0, 0.4], [0.4, 0.8]]))
    layer = LangevinLayer(1.0, step_size=0.1, num_steps=1)
    energy = AnnealedEnergy(StandardNormal(2), target, 1.0)
    x = jnp.array([0.3, 0.7])
    y, ds = layer(jax.random.key(6), x, energy)
    e = layer.step_size
    grad_u = lambda v: -target.score(v[None])[0]
    log_kernel = lambda a, b: jnp.sum(-((b - (a - e * grad_u(a))) ** 2) / (4 * e))  # N(b; a - e grad u(a), 2e I)
    np.testing.assert_allclose(ds, log_kernel(y, x) - log_kernel(x, y), rtol=1e-10)


def test_mean_weight_is_the_partition_function_of_a_1d_double_well():
    target = DoubleWell(dim=1, a=2.0)
    xs = np.linspace(-6.0, 6.0, 200001)
    z_x = np.trapezoid(np.exp(np.asarray(target.log_prob(jnp.asarray(xs[:, None])))), xs)  # Z_Z = 1 (normal base)
    layers = [
        Affine(jnp.array([0.1]), jnp.array([0.2])),
        LangevinLayer(0.5, 0.05, 5),
        MetropolisLayer(0.5, 0.5, 5),
        HMCLayer(1.0, 0.2, 5, 3),
        MetropolisLayer(1.0, 0.7, 5),
    ]
    snf = StochasticNormalizingFlow(layers, target)
    n = 20000
    x, log_w = snf.sample_with_log_weights(jax.random.key(7), n)
    w = np.exp(np.asarray(log_w))
    se = w.std() / math.sqrt(n)
    assert abs(w.mean() - z_x) < 4 * se, (w.mean(), z_x, se)
    assert 0.2 < float(kish_ess(log_w)) / n < 0.95  # weights that are neither trivial nor degenerate
    # Self-normalised reweighting recovers E_p[x^2] (quadrature) within a few standard errors.
    p = np.exp(np.asarray(target.log_prob(jnp.asarray(xs[:, None])))) / z_x
    second = np.trapezoid(p * xs**2, xs)
    est = float(reweighted_mean(log_w, x[:, 0] ** 2))
    assert abs(est - second) < 0.05, (est, second)


@pytest.mark.slow  # two second-order compiles (Langevin steps differentiate grad u): ~20 s
def test_snf_objectives_have_finite_gradients():
    layers = snf_layers(
        2,
        num_blocks=2,
        layers_per_block=1,
        width=8,
        depth=1,
        block=functools.partial(LangevinLayer, step_size=0.05, num_steps=2),
        key=jax.random.key(8),
    )
    layers = randomize(layers, jax.random.key(11), 0.1)
    data = DoubleWell(dim=2).sample(jax.random.key(9), 32)
    for objective in (PathReverseKL(), PathMaximumLikelihood()):
        model = StochasticNormalizingFlow(layers, DoubleWell(dim=2), objective=objective)
        grads = eqx.filter_jit(eqx.filter_grad(lambda m: m.loss(jax.random.key(10), data)))(model)
        leaves = [g for g in jax.tree_util.tree_leaves(grads) if eqx.is_inexact_array(g)]
        assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
        assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 0
