"""Flow distributions against closed forms (float64): affine flows are Gaussians, densities integrate to one by
quadrature in 1D, 2D and on the torus, sample_and_log_prob agrees with log_prob, the identity flow on its own
target has zero reverse KL and ESS = n, and conditional flows broadcast their condition."""

import math
from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import Gaussian, StandardNormal
from genflow.flows import (
    AffineTransformer,
    Chain,
    Circular,
    Flow,
    Identity,
    ImportanceSamplingHook,
    LULinear,
    ReverseKL,
    RQSplineTransformer,
    Uniform,
    coupling_flow,
    importance_log_weights,
    importance_summary,
    masked_autoregressive_flow,
)

from ._helpers import randomize

pytestmark = pytest.mark.usefixtures("x64_module")


def test_linear_flow_is_the_gaussian_it_pushes_forward():
    lu = randomize(LULinear(3), jax.random.key(0), scale=0.5)
    lu = eqx.tree_at(lambda b: b.bias, lu, jnp.array([1.0, -2.0, 0.5]))
    flow = Flow(Chain([lu]))
    w = np.asarray(lu.weight)
    gauss = Gaussian(lu.bias, w @ w.T)
    x = jax.random.normal(jax.random.key(1), (64, 3)) * 2.0
    np.testing.assert_allclose(flow.log_prob(x), gauss.log_prob(x), atol=1e-10)
    xs, log_q = flow.sample_and_log_prob(jax.random.key(2), 64)
    np.testing.assert_allclose(log_q, gauss.log_prob(xs), atol=1e-10)
    np.testing.assert_allclose(flow.sample(jax.random.key(2), 64), xs, atol=1e-12)


def _trapezoid_2d(p, h):
    return np.trapezoid(np.trapezoid(p, dx=h), dx=h)


def test_densities_integrate_to_one_in_1d_and_2d():
    # Small random parameters: large ones make spikes narrower than any fixed grid resolves (quadrature error,
    # not a normalisation error). The grids below converge as O(h^2): errors ~1e-6 (1D) and ~3e-5 (2D).
    maf = masked_autoregressive_flow(
        1, RQSplineTransformer(6, 3.0), num_layers=2, width=8, depth=1, key=jax.random.key(3)
    )
    flow1 = Flow(randomize(maf, jax.random.key(4), scale=0.3))
    xs = jnp.linspace(-12.0, 12.0, 16001)[:, None]
    z1 = np.trapezoid(np.exp(np.asarray(flow1.log_prob(xs))), dx=24.0 / 16000)
    assert abs(z1 - 1) < 1e-5, z1
    nsf = coupling_flow(2, RQSplineTransformer(6, 3.0), num_layers=3, width=16, key=jax.random.key(5))
    flow2 = Flow(randomize(nsf, jax.random.key(6), scale=0.1))
    g = np.linspace(-9.0, 9.0, 401)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(np.asarray(flow2.log_prob(jnp.asarray(grid)))).reshape(401, 401)
    z2 = _trapezoid_2d(p, g[1] - g[0])
    assert abs(z2 - 1) < 2e-4, z2


def test_torus_flow_integrates_to_one_on_the_grid():
    bij = coupling_flow(
        2, RQSplineTransformer(6, (-math.pi, math.pi), Circular()), num_layers=3, width=16, key=jax.random.key(7)
    )
    flow = Flow(randomize(bij, jax.random.key(8), scale=0.1), base=Uniform((2,)))
    n = 200
    # The midpoint rule on a periodic domain: error ~5e-6 at n=200 for these (C^1) circular splines.
    g = -math.pi + 2 * math.pi * (np.arange(n) + 0.5) / n
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_p = np.asarray(flow.log_prob(jnp.asarray(grid)))
    z = np.exp(log_p).sum() * (2 * math.pi / n) ** 2
    assert abs(z - 1) < 5e-5, z
    assert np.ptp(log_p) > 1.0  # not the uniform density by accident
    x = flow.sample(jax.random.key(9), 256)
    assert np.all((np.asarray(x) >= -math.pi) & (np.asarray(x) < math.pi))


def test_identity_flow_on_its_own_target_has_zero_kl_and_full_ess():
    target = Gaussian(jnp.array([1.0, -1.0]), jnp.array([[2.0, 0.3], [0.3, 0.5]]))
    flow = Flow(Identity((2,)), base=target, objective=ReverseKL(target))
    n = 512
    _, log_w = importance_log_weights(flow, target, jax.random.key(10), n)
    np.testing.assert_allclose(log_w, 0.0, atol=1e-12)
    summary = importance_summary(log_w)
    np.testing.assert_allclose(summary["ess"], n, rtol=1e-12)
    np.testing.assert_allclose(summary["log_z"], 0.0, atol=1e-12)
    np.testing.assert_allclose(flow.loss(jax.random.key(11), jnp.zeros((n, 2))), 0.0, atol=1e-12)
    logged = ImportanceSamplingHook(target, num_samples=n)(SimpleNamespace(ema_model=flow), 100)
    np.testing.assert_allclose([logged["is_ess_fraction"], logged["is_log_z"]], [1.0, 0.0], atol=1e-12)


def test_conditional_flow_broadcasts_one_condition_and_takes_one_per_example():
    bij = randomize(
        coupling_flow(3, AffineTransformer(), num_layers=2, width=16, cond_dim=2, key=jax.random.key(12)),
        jax.random.key(13),
        scale=0.2,
    )
    flow = Flow(bij)
    c = jnp.array([0.5, -1.0])
    x, log_q = flow.sample_and_log_prob(jax.random.key(14), 32, cond=c)
    np.testing.assert_allclose(flow.log_prob(x, cond=jnp.broadcast_to(c, (32, 2))), log_q, atol=1e-10)
    np.testing.assert_allclose(flow.log_prob(x, cond=c), log_q, atol=1e-10)
    assert np.max(np.abs(np.asarray(flow.log_prob(x, cond=c + 1.0) - log_q))) > 1e-3
    with pytest.raises(ValueError, match="cond has shape"):
        flow.log_prob(x, cond=jnp.zeros((5, 2)))


def test_shapes_are_checked_and_log_prob_does_not_recompile():
    bij = coupling_flow(2, AffineTransformer(), num_layers=2, width=8, key=jax.random.key(15))
    with pytest.raises(ValueError, match="data_shape is \\(3,\\)"):
        Flow(bij, (3,))
    with pytest.raises(ValueError, match="base event_shape"):
        Flow(bij, base=StandardNormal(3))

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def nll(flow, x):
        return -jnp.mean(flow.log_prob(x))

    for i in range(3):
        flow = Flow(randomize(bij, jax.random.key(i), scale=0.1))
        nll(flow, jax.random.normal(jax.random.key(20 + i), (16, 2)))
