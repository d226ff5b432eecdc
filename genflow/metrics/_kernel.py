"""Kernel two-sample statistics: kernels, maximum mean discrepancy and energy distance."""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Scalar

from genflow._checks import check_positive_int
from genflow.metrics._utils import flatten_samples, pairwise_sq_dists, safe_sqrt

_HIGHEST = lax.Precision.HIGHEST


class AbstractKernel(eqx.Module):
    """A positive-definite kernel ``k(a, b)`` on vectors, evaluated as a Gram matrix between two sample sets."""

    @abc.abstractmethod
    def gram(self, x: Float[Array, "n d"], y: Float[Array, "m d"]) -> Float[Array, "n m"]:
        """``K_ij = k(x_i, y_j)``."""


class RBFKernel(AbstractKernel):
    r"""A sum of Gaussian RBF kernels, $k(a, b) = \sum_h \exp(-|a - b|^2 / (2 h^2))$.

    Args:
        bandwidths: the bandwidths ``h`` (floats or traced scalars).

    References:
        Gretton, Borgwardt, Rasch, Schölkopf, Smola. "A Kernel Two-Sample Test". JMLR 2012.
    """

    bandwidths: tuple

    def __init__(self, bandwidths: Sequence[float]):
        self.bandwidths = tuple(bandwidths)

    def gram(self, x, y):
        sq = pairwise_sq_dists(x, y)
        return sum(jnp.exp(-sq / (2.0 * h**2)) for h in self.bandwidths)


class PolynomialKernel(AbstractKernel):
    r"""The polynomial kernel $k(a, b) = (\gamma\, a \cdot b + c)^p$, with $\gamma = 1/d$ by default.

    With the defaults ($p = 3$, $c = 1$, $\gamma = 1/d$ for $d$-dimensional features) it is the kernel of KID.

    Args:
        degree: the power ``p``.
        coef0: the offset ``c``.
        gamma: the scale of the inner product; None for ``1/d``.

    References:
        Binkowski, Sutherland, Arbel, Gretton. "Demystifying MMD GANs". ICLR 2018.
    """

    degree: int = eqx.field(static=True, default=3)
    coef0: float = eqx.field(static=True, default=1.0)
    gamma: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_positive_int("degree", self.degree)
        if self.gamma is not None and not self.gamma > 0:
            raise ValueError(f"gamma={self.gamma!r} is invalid: must be positive, or None for 1/d")

    def gram(self, x, y):
        gamma = 1.0 / x.shape[-1] if self.gamma is None else self.gamma
        return (gamma * jnp.matmul(x, y.T, precision=_HIGHEST) + self.coef0) ** self.degree


def _within_mean(k: Float[Array, "n n"], unbiased: bool) -> Scalar:
    """Mean of a within-sample Gram matrix; the U-statistic drops the ``i == j`` terms."""
    n = k.shape[0]
    if unbiased:
        return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))
    return jnp.mean(k)


@eqx.filter_jit
def kernel_mmd(
    x: Float[Array, "n ..."], y: Float[Array, "m ..."], kernel: AbstractKernel, unbiased: bool = True
) -> Scalar:
    r"""Squared maximum mean discrepancy under any kernel.

    $$\mathrm{MMD}^2 = \mathbb{E}\,k(X, X') + \mathbb{E}\,k(Y, Y') - 2\,\mathbb{E}\,k(X, Y).$$

    The unbiased U-statistic averages the within-sample terms over ``i != j`` only (it can be slightly
    negative); the biased V-statistic averages over all pairs and is exactly 0 when ``x`` and ``y`` coincide.
    Examples with more than one axis are flattened. Jit-compiled (``unbiased`` is static).

    Args:
        x: samples of shape ``(n, ...)``; the U-statistic needs ``n >= 2``.
        y: samples of shape ``(m, ...)``; the U-statistic needs ``m >= 2``.
        kernel: the kernel, e.g. :class:`RBFKernel` or :class:`PolynomialKernel`.
        unbiased: U-statistic if True, V-statistic if False.

    Returns:
        The estimate of MMD^2 (not its square root).

    References:
        Gretton, Borgwardt, Rasch, Schölkopf, Smola. "A Kernel Two-Sample Test". JMLR 2012.
    """
    x, y = flatten_samples(x), flatten_samples(y)
    kxx, kyy, kxy = kernel.gram(x, x), kernel.gram(y, y), kernel.gram(x, y)
    return _within_mean(kxx, unbiased) + _within_mean(kyy, unbiased) - 2.0 * jnp.mean(kxy)


@functools.partial(jax.jit, static_argnames="unbiased")
def mmd(
    x: Float[Array, "n ..."],
    y: Float[Array, "m ..."],
    bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    unbiased: bool = True,
) -> Scalar:
    r"""Squared maximum mean discrepancy with a sum of RBF kernels (:func:`kernel_mmd` with :class:`RBFKernel`).

    $$\mathrm{MMD}^2 = \mathbb{E}\,k(X, X') + \mathbb{E}\,k(Y, Y') - 2\,\mathbb{E}\,k(X, Y), \qquad
    k(a, b) = \sum_h \exp\!\big(-|a - b|^2 / (2 h^2)\big).$$

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
    return kernel_mmd(x, y, RBFKernel(bandwidths), unbiased)


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
