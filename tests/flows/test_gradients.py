"""Finite float32 gradients of the spline transformers at knots, at the boundaries and outside the domain (Durkan et
al., "Neural Spline Flows", NeurIPS 2019: both branches of jnp.where are differentiated, so an unclipped branch would
give NaN)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from genflow.flows import Circular, RQSplineTransformer

SPLINE = RQSplineTransformer(knots=5, interval=3.0)
CIRCLE = RQSplineTransformer(knots=5, interval=(-math.pi, math.pi), boundary=Circular())


def _spline_params(key, knots, extra=0):
    return jax.random.normal(key, (3 * knots + 1 + extra,), jnp.float32)


@jax.jit
def _grads(params, pts, circle_params, circle_pts):
    def loss(p, x, tau, direction):
        fn = tau.transform_and_log_det if direction == "fwd" else tau.inverse_and_log_det
        y, ld = fn(x, p)
        return y + ld

    g = lambda tau, p, x, d: jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0, None, None))(p, x, tau, d)
    return (
        g(SPLINE, params, pts[0], "fwd"),
        g(SPLINE, params, pts[1], "inv"),
        g(CIRCLE, circle_params, circle_pts, "fwd"),
    )


def test_spline_gradients_finite_float32_at_knots_boundaries_and_outside():
    params = _spline_params(jax.random.key(17), SPLINE.knots)
    knots_x = SPLINE.spline(params).x_pos
    knots_y = SPLINE.spline(params).y_pos
    xs = jnp.concatenate([knots_x, jnp.array([-3.0, 3.0, -10.0, 10.0, -3.0 - 1e-6, 3.0 + 1e-6], jnp.float32)])
    ys = jnp.concatenate([knots_y, jnp.array([-3.0, 3.0, -10.0, 10.0], jnp.float32)])

    circle_params = _spline_params(jax.random.key(18), CIRCLE.knots, extra=1)
    circle_pts = jnp.concatenate([CIRCLE.spline(circle_params).x_pos[:-1], jnp.array([-math.pi, math.pi - 1e-6])])
    for gp, gx in _grads(params, (xs, ys), circle_params, circle_pts.astype(jnp.float32)):
        assert gp.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(gp))) and np.all(np.isfinite(np.asarray(gx)))


def test_smooth_mixture_gradients_finite_float32_at_boundaries_centres_and_outside():
    from genflow.flows import SmoothMixtureTransformer

    interval = SmoothMixtureTransformer(4, interval=(0.0, 1.0))
    circle = SmoothMixtureTransformer(4, interval=(-math.pi, math.pi), circular=True)

    @jax.jit
    def grads(params):
        out = []
        for tau, pts in (
            (interval, jnp.array([0.0, 1.0, -0.5, 1.5, 1e-7, 1 - 1e-7])),
            (circle, jnp.array([-math.pi, math.pi - 1e-6, 0.0, 1e-7])),
        ):
            mu = tau.components(params)[1]
            pts = jnp.concatenate([pts, tau.range_min + tau.period * mu]).astype(jnp.float32)
            for fn in (tau.transform_and_log_det, tau.inverse_and_log_det):
                g = jax.vmap(jax.grad(lambda x, p, fn=fn: sum(fn(x, p)), argnums=(0, 1)), in_axes=(0, None))(
                    pts, params
                )
                out.append(g)
        return out

    params = jax.random.normal(jax.random.key(19), (interval.num_params,), jnp.float32)
    for gx, gp in grads(params):
        assert gp.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gp)))
