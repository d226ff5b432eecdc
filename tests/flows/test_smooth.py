"""Smooth normalizing flows (Köhler, Krämer, Noé, NeurIPS 2021; float64): the smooth step's closed form and flatness,
inverse residuals below 1e-10, periodicity of f, f' and f'' on the circle, implicit derivatives of the root-finding
inverse against finite differences (first and second order), torus normalisation, and force matching on a Gaussian
oracle."""

import math

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import Gaussian, TorusVonMisesMixture
from genflow.flows import (
    Chain,
    Coupling,
    Flow,
    ForceMatching,
    Invert,
    LULinear,
    SmoothMixtureTransformer,
    Uniform,
    WithForces,
    coupling_flow,
    log_smooth_step_derivative,
    smooth_step,
)

from ._helpers import check_bijection, randomize

pytestmark = pytest.mark.usefixtures("x64_module")

INTERVAL = SmoothMixtureTransformer(6, interval=(0.0, 1.0))
CIRCLE = SmoothMixtureTransformer(6, interval=(-math.pi, math.pi), circular=True)


def _params(key, tau, scale=1.0):
    return scale * jax.random.normal(key, (tau.num_params,))


@pytest.mark.parametrize("beta", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_smooth_step_closed_form_and_flat_ends(beta):
    alpha = 1.7
    z = jnp.linspace(0.01, 0.99, 99)
    rho = lambda z: jnp.exp(-alpha * z**-beta) / jnp.exp(-alpha)
    np.testing.assert_allclose(smooth_step(z, alpha, beta), rho(z) / (rho(z) + rho(1 - z)), rtol=1e-12)
    np.testing.assert_allclose(smooth_step(z, alpha, beta) + smooth_step(1 - z, alpha, beta), 1.0, atol=1e-14)
    outside = jnp.array([-1.0, -1e-3, 0.0, 1.0, 1.0 + 1e-3, 2.0])
    np.testing.assert_array_equal(smooth_step(outside, alpha, beta), [0, 0, 0, 1, 1, 1])
    d1 = jax.vmap(jax.grad(lambda z: smooth_step(z, alpha, beta)))
    d2 = jax.vmap(jax.grad(jax.grad(lambda z: smooth_step(z, alpha, beta))))
    # Autodiff of sigmoid is exact only while 1 - sigma does not cancel (z <= 1/2); sigma' is symmetric, so that
    # half is enough, and the log form must keep the symmetry where autodiff underflows to 0.
    left = z[z <= 0.5]
    left = left[np.asarray(d1(left)) > 1e-250]  # below, the float64 derivative underflows; its log does not
    np.testing.assert_allclose(jnp.log(d1(left)), log_smooth_step_derivative(left, alpha, beta), rtol=1e-10)
    np.testing.assert_allclose(
        log_smooth_step_derivative(z, alpha, beta), log_smooth_step_derivative(1 - z, alpha, beta), rtol=1e-10
    )
    # C-infinity at the junctions: every derivative vanishes as z -> 0+ and z -> 1-.
    ends = jnp.array([0.02, 0.98])
    assert np.all(np.abs(np.asarray(d1(ends))) < 1e-8) and np.all(np.abs(np.asarray(d2(ends))) < 1e-6)


@pytest.mark.parametrize("tau", [pytest.param(INTERVAL, marks=pytest.mark.slow), CIRCLE], ids=["interval", "circle"])
def test_inverse_residual_and_log_derivative(tau):
    params = _params(jax.random.key(0), tau)
    x = jnp.linspace(tau.range_min, tau.range_max, 1001)[:-1]

    @jax.jit
    def run(x):
        y, ld = jax.vmap(lambda xi: tau.transform_and_log_det(xi, params))(x)
        x_back, ld_inv = jax.vmap(lambda yi: tau.inverse_and_log_det(yi, params))(y)
        y_again = jax.vmap(lambda xi: tau.transform_and_log_det(xi, params)[0])(x_back)
        slope = jax.vmap(jax.grad(lambda xi: tau.transform_and_log_det(xi, params)[0]))(x)
        return y, ld, x_back, ld_inv, y_again, slope

    y, ld, x_back, ld_inv, y_again, slope = run(x)
    residual = np.asarray(y_again - y)
    if tau.circular:
        residual = (residual + math.pi) % (2 * math.pi) - math.pi
    assert np.max(np.abs(residual)) < 1e-10
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    np.testing.assert_allclose(jnp.log(slope), ld, atol=1e-8)
    assert np.min(np.asarray(ld)) >= math.log(tau.eps) - 1e-12  # f' >= eps
    assert np.ptp(np.asarray(ld)) > 2.0  # a far-from-identity map
    # Round trip in x: the conditioning of the inverse is 1/f', at worst 1/eps = 1e4.
    err = np.asarray(x_back - x)
    if tau.circular:
        err = (err + math.pi) % (2 * math.pi) - math.pi
    assert np.max(np.abs(err)) < 1e-10


def test_circle_lift_is_periodic_in_value_slope_and_curvature():
    params = _params(jax.random.key(1), CIRCLE)

    @jax.jit
    def derivatives(u):
        f = lambda u: CIRCLE.lift(u, params)
        df = jax.grad(f)
        return jax.vmap(f)(u), jax.vmap(df)(u), jax.vmap(jax.grad(df))(u)

    u = jnp.linspace(0.0, 1.0, 11)
    (f0, df0, d2f0), (f1, df1, d2f1) = derivatives(u), derivatives(u + 1.0)
    np.testing.assert_allclose(f1, f0 + 1.0, atol=1e-12)
    np.testing.assert_allclose(df1, df0, rtol=1e-10)
    np.testing.assert_allclose(d2f1, d2f0, rtol=1e-8, atol=1e-8)
    # f'(0) = f'(1) and f''(0) = f''(1): the ends of one period join smoothly.
    np.testing.assert_allclose(df0[-1], df0[0], rtol=1e-10)
    np.testing.assert_allclose(d2f0[-1], d2f0[0], rtol=1e-8, atol=1e-8)
    assert np.ptp(np.asarray(df0)) > 0.1


@jax.jit
def _slopes(tau, params, u):
    return jnp.exp(jax.vmap(lambda v: tau.log_derivative(v, params))(u))


def _moderate_point(tau, params):
    """A y whose preimage has f' in [0.3, 3], where finite differences are accurate."""
    u = jnp.linspace(0.05, 0.95, 181)
    slope = _slopes(tau, params, u)
    i = int(np.argmin(np.abs(np.log(np.asarray(slope)))))
    assert 0.3 < float(slope[i]) < 3.0
    return jax.jit(tau.transform_and_log_det)(tau.range_min + tau.period * u[i], params)[0]


@pytest.mark.parametrize("tau", [pytest.param(INTERVAL, marks=pytest.mark.slow), CIRCLE], ids=["interval", "circle"])
def test_implicit_gradients_match_finite_differences(tau):
    params = _params(jax.random.key(2), tau, scale=0.7)
    y = _moderate_point(tau, params)
    inv = lambda y, p: tau.inverse_and_log_det(y, p)
    h = 1e-6

    @jax.jit
    def derivatives(y, params):
        grads = [jax.grad(lambda y, p, i=i: inv(y, p)[i], argnums=(0, 1))(y, params) for i in (0, 1)]
        fd_y = [(a - b) / (2 * h) for a, b in zip(inv(y + h, params), inv(y - h, params), strict=True)]
        along = lambda d: [
            (a - b) / (2 * h) for a, b in zip(inv(y, params + h * d), inv(y, params - h * d), strict=True)
        ]
        fd_p = jax.vmap(along)(jnp.eye(params.shape[0]))
        return grads, fd_y, fd_p

    (gx_y, gx_p), (gl_y, gl_p) = derivatives(y, params)[0]
    _, fd_y, fd_p = derivatives(y, params)
    for i, (d_y, d_p) in enumerate(((gx_y, gx_p), (gl_y, gl_p))):
        np.testing.assert_allclose(d_y, fd_y[i], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(d_p, fd_p[i], rtol=1e-5, atol=1e-8)
    assert np.max(np.abs(np.asarray(gx_p))) > 1e-3  # differentiating through the loop would give ~0
    # Forward mode goes through the same implicit rule.
    np.testing.assert_allclose(jax.jit(jax.jacfwd(lambda p: inv(y, p)[0]))(params), gx_p, rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # jacobians through two root-finding layers and a 256^2 grid: ~13 s
def test_smooth_coupling_flows_round_trip_and_integrate_to_one_on_the_torus():
    bij = coupling_flow(
        2,
        SmoothMixtureTransformer(4, (-math.pi, math.pi), circular=True),
        num_layers=2,
        width=16,
        key=jax.random.key(3),
    )
    bij = randomize(bij, jax.random.key(4), scale=0.1)
    x = jax.random.uniform(jax.random.key(5), (16, 2), minval=-math.pi, maxval=math.pi)
    check_bijection(bij, x, circular_period=2 * math.pi)
    # Density through the analytic direction (Invert): 65k root solves would dominate the test's runtime.
    flow = Flow(Invert(bij), base=Uniform((2,)))
    n = 256
    g = -math.pi + 2 * math.pi * (np.arange(n) + 0.5) / n
    grid = jnp.asarray(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2))
    log_p = np.asarray(flow.log_prob(grid))
    # Midpoint rule on the periodic grid: errors 6e-4, 2e-5, 3e-7 at n = 64, 128, 256 (the density is smooth but
    # peaked where the inverse maps have small slopes).
    z = np.exp(log_p).sum() * (2 * math.pi / n) ** 2
    assert abs(z - 1) < 2e-6, z
    assert np.ptp(log_p) > 0.5


def test_force_matching_of_a_linear_flow_on_its_own_gaussian_is_pure_likelihood():
    lu = randomize(LULinear(2), jax.random.key(6), scale=0.5)
    w = np.asarray(lu.weight)
    data = WithForces(Gaussian(lu.bias, w @ w.T))
    flow = Flow(Chain([lu]), objective=ForceMatching(nll_weight=1.0, force_weight=3.0))
    batch = data.sample(jax.random.key(7), 64)
    nll = -jnp.mean(flow.log_prob(batch["x"]))
    np.testing.assert_allclose(flow.loss(jax.random.key(8), batch), nll, rtol=1e-12)
    wrong = {"x": batch["x"], "forces": batch["forces"] + 1.0}  # |1|^2 per coordinate: +2 per example, times 3
    np.testing.assert_allclose(flow.loss(jax.random.key(8), wrong), nll + 6.0, rtol=1e-10)


@pytest.mark.slow  # compiles d/dtheta of grad_x log q through the root finder: ~25 s
def test_force_matching_gradient_through_the_root_finder_matches_finite_differences():
    # Density through the root-finding direction: d/dtheta of grad_x log q needs second implicit derivatives.
    tau = SmoothMixtureTransformer(3, interval=(-math.pi, math.pi), circular=True)
    layer = randomize(Coupling(tau, 2, width=8, depth=1, key=jax.random.key(9)), jax.random.key(10), scale=0.3)
    flow = Flow(layer, base=Uniform((2,)), objective=ForceMatching(1.0, 0.5))
    target = WithForces(TorusVonMisesMixture([[0.5, -1.0]], [2.0]))
    batch = target.sample(jax.random.key(11), 8)
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    loss = jax.jit(lambda p: eqx.combine(p, static).loss(jax.random.key(0), batch))
    grad = jax.jit(jax.grad(lambda p: eqx.combine(p, static).loss(jax.random.key(0), batch)))(params)
    flat_g, unravel = jax.flatten_util.ravel_pytree(grad)
    flat_p, _ = jax.flatten_util.ravel_pytree(params)
    for k in range(3):
        v = jax.random.normal(jax.random.key(20 + k), flat_p.shape)
        h = 1e-5
        fd = (loss(unravel(flat_p + h * v)) - loss(unravel(flat_p - h * v))) / (2 * h)
        np.testing.assert_allclose(flat_g @ v, fd, rtol=1e-5)
