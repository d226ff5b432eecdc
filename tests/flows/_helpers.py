"""Shared checks for the flow tests: randomised parameters and the round-trip / log-det oracles."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np


@eqx.filter_jit
def randomize(module, key, scale=0.5):
    """Add N(0, scale^2) noise to every float leaf: zero-initialised layers are the identity, which hides bugs."""
    params, static = eqx.partition(module, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)  # one random draw, not one per leaf: cheap to compile
    return eqx.combine(unravel(flat + scale * jax.random.normal(key, flat.shape, flat.dtype)), static)


@eqx.filter_jit
def _oracle(bij, x, cond):
    def one(xi, ci):
        y, ld = bij.transform_and_log_det(xi, ci)
        x_back, ld_inv = bij.inverse_and_log_det(y, ci)
        jac = jax.jacfwd(lambda v: bij.transform(v, ci))(xi)
        jac_inv = jax.jacfwd(lambda v: bij.inverse(v, ci))(y)
        return y, x_back, ld, ld_inv, jnp.linalg.slogdet(jac)[1], jnp.linalg.slogdet(jac_inv)[1]

    return jax.vmap(one, in_axes=(0, None if cond is None else 0))(x, cond)


def check_bijection(bij, x, cond=None, *, circular_period=None, atol=1e-10):
    """Round trip below ``atol`` and log-dets equal to log|det jax.jacobian| in both directions (float64)."""
    y, x_back, ld, ld_inv, ld_jac, ld_inv_jac = _oracle(bij, x, cond)
    diff = np.asarray(x_back - x)
    if circular_period is not None:  # the same point on the circle may come back one period away
        diff = (diff + circular_period / 2) % circular_period - circular_period / 2
    np.testing.assert_allclose(diff, 0.0, atol=atol)
    np.testing.assert_allclose(ld, ld_jac, atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(ld_inv, ld_inv_jac, atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    return y, ld


def transform(bij, x, cond=None):
    """``(f(x), log|det|)`` through the same compiled program as :func:`check_bijection` (no extra compile)."""
    y, _, ld, *_ = _oracle(bij, x, cond)
    return y, ld
