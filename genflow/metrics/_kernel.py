"""Kernel two-sample statistics: maximum mean discrepancy and energy distance."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from genflow.metrics._utils import flatten_samples, pairwise_sq_dists, safe_sqrt


def _rbf_sum(sq: Float[Array, "n m"], bandwidths: Sequence[float]) -> Float[Array, "n m"]:
    return sum(jnp.exp(-sq / (2.0 * h**2)) for h in bandwidths)


def _within_mean(k: Float[Array, "n n"], unbiased: bool) -> Scalar:
    """Mean of a within-sample Gram matrix; the U-statistic drops the ``i == j`` terms."""
    n = k.shape[0]
    if unbiased:
        return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))
    return jnp.mean(k)


@functools.partial(jax.jit, static_argnames="unbiased")
def mmd(
    x: Float[Array, "n ..."],
    y: Float[Array, "m ..."],
    bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    unbiased: bool = True,
) -> Scalar:
    r"""Squared maximum mean discrepancy with a sum of RBF kernels.

    $$\mathrm{MMD}^2 = \mathbb{E}\,k(X, X') + \mathbb{E}\,k(Y, Y') - 2\,\mathbb{E}\,k(X, Y), \qquad
    k(a, b) = \sum_h \exp\!\big(-|a - b|^2 / (2 h^2)\big).$$

    The unbiased U-statistic averages the within-sample terms over ``i != j`` only (it can be slightly
    negative); the biased V-statistic averages over all pairs and is exactly 0 when ``x`` and ``y`` coincide.
    Examples with more than one axis are flattened. Jit-compiled, with ``unbiased`` static.

    Args:
        x: samples of shape ``(n, ...)``; the U-statistic needs ``n >= 2``.
        y: samples of shape ``(m, ...)``; the U-statistic needs ``m >= 2``.
        bandwidths: RBF bandwidths ``h`` whose kernels are summed.
        unbiased: U-statistic if True, V-statistic if False.

    Returns:
        The estimate of MMD^2 (not its square root).

    References:
        Gretton, Borgwardt, Rasch, Schölkopf, Smola. "A Kernel Two-Sample Test". JMLR 2012.
    """
    x, y = flatten_samples(x), flatten_samples(y)
    kxx = _rbf_sum(pairwise_sq_dists(x, x), bandwidths)
    kyy = _rbf_sum(pairwise_sq_dists(y, y), bandwidths)
    kxy = _rbf_sum(pairwise_sq_dists(x, y), bandwidths)
    return _within_mean(kxx, unbiased) + _within_mean(kyy, unbiased) - 2.0 * jnp.mean(kxy)


@functools.partial(jax.jit, static_argnames="unbiased")
def energy_distance(x: Float[Array, "n ..."], y: Float[Array, "m ..."], unbiased: bool = False) -> Scalar:
    r"""Squared energy distance between two sample sets.

    $$D^2 = 2\,\mathbb{E}|X - Y| - \mathbb{E}|X - X'| - \mathbb{E}|Y - Y'|.$$

    By default the V-statistic (all pairs, non-negative, exactly 0 for identical sets); ``unbiased=True``
    gives the U-statistic, which drops the ``i == j`` terms of the within-sample means. Distances use a safe
    square root, so gradients stay finite where two points coincide. Examples with more than one axis are
    flattened. Jit-compiled, with ``unbiased`` static.

    Args:
        x: samples of shape ``(n, ...)``.
        y: samples of shape ``(m, ...)``.
        unbiased: U-statistic if True, V-statistic if False.

    Returns:
        The estimate of D^2; for point masses at ``a`` and ``b`` it is ``2 |a - b|``.

    References:
        Székely, Rizzo. "Energy statistics: A class of statistics based on distances". JSPI 2013.
    """
    x, y = flatten_samples(x), flatten_samples(y)
    dxx = safe_sqrt(pairwise_sq_dists(x, x))
    dyy = safe_sqrt(pairwise_sq_dists(y, y))
    dxy = safe_sqrt(pairwise_sq_dists(x, y))
    return 2.0 * jnp.mean(dxy) - _within_mean(dxx, unbiased) - _within_mean(dyy, unbiased)
