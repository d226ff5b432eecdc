"""Bijection oracles (Durkan et al., "Neural Spline Flows", NeurIPS 2019; float64): round trips below 1e-10, log-dets
against log|det jax.jacobian| in both directions, ldj_fwd(x) + ldj_inv(f(x)) = 0, identity at init, monotone splines and
periodic circular splines.

Compilation dominates these tests, so each architecture is built once per module and every check on it reuses the
one compiled oracle (randomised and initial parameters share a structure, hence a compiled program).
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.flows import (
    Affine,
    AffineTransformer,
    Chain,
    Circular,
    Coupling,
    LULinear,
    MaskedAutoregressive,
    Permutation,
    RQSplineTransformer,
    Scan,
    coupling_flow,
    masked_autoregressive_flow,
)

from ._helpers import check_bijection, randomize, transform

pytestmark = pytest.mark.usefixtures("x64_module")

DIM = 4
SPLINE = RQSplineTransformer(knots=5, interval=3.0)
CIRCLE = RQSplineTransformer(knots=5, interval=(-math.pi, math.pi), boundary=Circular())
K = jax.random.split(jax.random.key(0), 12)
FACTORIES = {
    "affine": lambda: Affine(jnp.zeros(DIM)),
    "lu_linear": lambda: LULinear(DIM, key=K[0], init_scale=0.3),
    "permutation": lambda: Permutation.random(K[1], DIM),
    "coupling_spline": lambda: Coupling(SPLINE, DIM, untransformed_dim=1, width=16, depth=1, key=K[3]),
    "coupling_flow": lambda: coupling_flow(
        DIM, RQSplineTransformer(4), num_layers=3, width=16, lu_linear=True, key=K[6]
    ),
    "realnvp": lambda: coupling_flow(DIM, AffineTransformer(), num_layers=3, width=16, key=K[7]),
    "maf": lambda: masked_autoregressive_flow(DIM, RQSplineTransformer(), num_layers=2, width=16, depth=1, key=K[8]),
}


@functools.cache
def built(name):
    # Built on first use, inside the module's float64 scope (parameters created earlier would be float32).
    return FACTORIES[name]()


# Spread over and beyond the spline interval [-3, 3], so tails and bins are both exercised.
X = np.asarray(2.0 * jax.random.normal(jax.random.key(2), (16, DIM), jnp.float32), np.float64)


# Fast: one of each kind of layer; slow: architectures the fast ones already cover (each costs a compile).
COVERED = ("coupling_spline", "realnvp")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in COVERED else n for n in sorted(FACTORIES)]
)
def test_round_trip_and_log_det(name):
    # Moderate noise keeps the maps well conditioned: a spline with slopes near its floor of 1e-4 amplifies
    # rounding by 1/f' in the inverse, which is conditioning, not a bug.
    bij = randomize(built(name), jax.random.key(1), scale=0.2)
    _, ld = check_bijection(bij, jnp.asarray(X))
    if name not in ("permutation", "affine", "lu_linear"):  # the others have a constant log-det
        assert np.std(np.asarray(ld)) > 1e-2, "a log-det that does not vary with x tests nothing"


@pytest.mark.parametrize("name", ["coupling_flow", pytest.param("realnvp", marks=pytest.mark.slow), "maf"])
def test_builders_are_identity_at_init(name):
    y, ld = transform(built(name), jnp.asarray(X))
    # Permutations reorder coordinates; the identity couplings keep their values.
    np.testing.assert_allclose(np.sort(np.asarray(y), axis=1), np.sort(X, axis=1), atol=1e-12)
    np.testing.assert_allclose(ld, 0.0, atol=1e-12)


@pytest.mark.slow  # structural; the round trips already exercise Scan in both directions
def test_scan_applies_its_layers_in_order():
    scan = randomize(built("coupling_flow"), jax.random.key(13), scale=0.2)
    params, static = eqx.partition(scan.layers, eqx.is_array)
    layers = [eqx.combine(jax.tree_util.tree_map(lambda a, i=i: a[i], params), static) for i in range(3)]
    y, ld = transform(scan, jnp.asarray(X))
    x, total = jnp.asarray(X), 0.0
    for layer in layers:  # identical structures: one compiled oracle for all three
        x, ld_i = transform(layer, x)
        total = total + ld_i
    np.testing.assert_allclose(y, x, atol=1e-12)
    np.testing.assert_allclose(ld, total, atol=1e-12)
    assert isinstance(scan, Scan)


@pytest.mark.slow  # the fast suite checks conditional flows end to end (test_flow.py)
def test_conditional_layers_round_trip_and_use_the_condition():
    k1, k2 = jax.random.split(jax.random.key(3))
    bij = Chain(
        [
            MaskedAutoregressive(AffineTransformer(), DIM, cond_dim=3, width=16, depth=1, key=k1),
            Permutation.reverse(DIM),
            Coupling(SPLINE, DIM, cond_dim=3, width=16, depth=1, key=k2),
        ]
    )
    bij = randomize(bij, jax.random.key(5), scale=0.2)
    cond = jax.random.normal(jax.random.key(7), (16, 3))
    y1, _ = check_bijection(bij, jnp.asarray(X), cond)
    y2, _ = transform(bij, jnp.asarray(X), cond + 1.0)
    # Every coordinate must see the condition, including the first coordinate of the autoregressive layer (which
    # the permutation and coupling pass on to every output).
    assert np.all(np.max(np.abs(np.asarray(y1 - y2)), axis=0) > 1e-3)
    maf = Chain([bij.bijections[0]])  # the autoregressive layer alone
    a, _ = transform(maf, jnp.asarray(X), cond)
    b, _ = transform(maf, jnp.asarray(X), cond + 1.0)
    assert np.all(np.max(np.abs(np.asarray(a - b)), axis=0) > 1e-3)


@pytest.mark.slow  # the fast suite integrates a circular-spline flow on the torus (test_flow.py)
def test_circular_coupling_round_trip_stays_on_torus():
    bij = randomize(Coupling(CIRCLE, 3, width=16, depth=1, key=jax.random.key(8)), jax.random.key(9), scale=0.3)
    x = jax.random.uniform(jax.random.key(10), (32, 3), minval=-math.pi, maxval=math.pi)
    y, ld = check_bijection(bij, x, circular_period=2 * math.pi)
    assert np.all((np.asarray(y) >= -math.pi) & (np.asarray(y) < math.pi))
    assert np.std(np.asarray(ld)) > 1e-2


@jax.jit
def _spline_curve(params, xs):
    y, ld = jax.vmap(lambda x: SPLINE.transform_and_log_det(x, params))(xs)
    slope = jax.vmap(jax.grad(lambda x: SPLINE.transform_and_log_det(x, params)[0]))(xs)
    return y, ld, slope


def test_spline_is_monotone_with_identity_tails_and_zero_params_identity():
    xs = jnp.linspace(-5.0, 5.0, 2001)
    params = 1.5 * jax.random.normal(jax.random.key(15), (SPLINE.num_params,))
    ys, ld, slope = _spline_curve(params, xs)
    assert np.all(np.diff(np.asarray(ys)) > 0)
    np.testing.assert_allclose(np.log(slope), ld, atol=1e-9)
    outside = np.abs(np.asarray(xs)) > 3.0
    np.testing.assert_allclose(np.asarray(ys)[outside], np.asarray(xs)[outside], atol=1e-12)
    ys, ld, _ = _spline_curve(jnp.zeros(SPLINE.num_params), xs)
    np.testing.assert_allclose(ys, xs, atol=1e-12)
    np.testing.assert_allclose(ld, 0.0, atol=1e-12)


def test_circular_spline_is_periodic_with_matching_slopes():
    params = jax.random.normal(jax.random.key(16), (CIRCLE.num_params,))
    lo, hi = -math.pi, math.pi

    @jax.jit
    def ends(params):
        f = lambda x: CIRCLE.spline(params).forward(x)
        g = lambda x: CIRCLE.transform_and_log_det(x, params)[1]
        pts = jnp.array([lo + 1e-9, hi - 1e-9])
        return f(jnp.array(lo)), f(jnp.array(hi)), jax.vmap(jax.grad(f))(pts), jax.vmap(g)(pts)

    f_lo, f_hi, slopes, log_slopes = ends(params)
    # f(lo) = lo, f(hi) = hi and f'(lo) = f'(hi): the lift has f(x + 2 pi) = f(x) + 2 pi with f' continuous, and
    # the rotation after it keeps the circle map's derivative continuous across the seam.
    np.testing.assert_allclose([f_lo, f_hi], [lo, hi], atol=1e-12)
    np.testing.assert_allclose(slopes[0], slopes[1], rtol=1e-6)
    np.testing.assert_allclose(log_slopes[0], log_slopes[1], atol=1e-6)
    y, _ = jax.jit(jax.vmap(lambda x: CIRCLE.transform_and_log_det(x, jnp.zeros(CIRCLE.num_params))))(
        jnp.linspace(lo, hi, 64, endpoint=False)
    )
    np.testing.assert_allclose(y, jnp.linspace(lo, hi, 64, endpoint=False), atol=1e-12)


def test_lu_linear_weight_and_actnorm_init():
    lu = randomize(built("lu_linear"), jax.random.key(19), scale=0.5)
    y, ld = transform(lu, jnp.asarray(X))
    np.testing.assert_allclose(y, X @ np.asarray(lu.weight).T + np.asarray(lu.bias), atol=1e-12)
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(lu.weight))[1], atol=1e-12)
    data = 3.0 + 2.0 * jax.random.normal(jax.random.key(21), (500, DIM))
    actnorm = Affine.from_data(data)
    z = (np.asarray(data) - np.asarray(actnorm.loc)) * np.exp(-np.asarray(actnorm.log_scale))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-12)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="untransformed_dim=0"):
        Coupling(AffineTransformer(), 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="boundary='periodic'"):
        RQSplineTransformer(boundary="periodic")
    with pytest.raises(ValueError, match="transformer='spline' is invalid"):
        coupling_flow(2, "spline", key=jax.random.key(0))
    with pytest.raises(ValueError, match="permutation='reverse' is invalid"):
        coupling_flow(2, permutation="reverse", key=jax.random.key(0))
    with pytest.raises(ValueError, match="lu_linear=True is invalid"):
        coupling_flow(2, RQSplineTransformer(8, (-math.pi, math.pi), Circular()), lu_linear=True, key=jax.random.key(0))
    with pytest.raises(ValueError, match="different shapes"):
        Chain([Affine(jnp.zeros(2)), Affine(jnp.zeros(3))])
