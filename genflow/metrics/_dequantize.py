"""Quantised data: pixel scaling, bins and uniform dequantisation (one home, shared by every family).

Discrete values ``k in {0, ..., B-1}`` are identified with the bins ``[e_k, e_{k+1})``, ``e_k = low + k w``, of width
``w = (high - low) / B`` that tile an interval ``[low, high]`` (``[-1, 1]`` by default). Uniform dequantisation draws a
point of the value's bin; a continuous density evaluated there bounds the discrete likelihood (Theis et al. 2016).
A discretised decoder (Ho et al. 2020) that integrates a density over the same bins, e.g. the diffusion family's
``DiscretizedDecoder(bin_width=w)`` evaluated at :func:`bin_centres`, scores the same events.

References:
    Theis, van den Oord, Bethge. "A note on the evaluation of generative models". ICLR 2016.
    Ho, Jain, Abbeel. "Denoising Diffusion Probabilistic Models". NeurIPS 2020, section 3.3.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray


def pixels_to_unit_interval(x: ArrayLike) -> Float[Array, "*shape"]:
    """8-bit pixels ``k`` to ``k / 127.5 - 1`` in ``[-1, 1]`` (the datasets' scaling); floats pass through unchanged."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.result_type(float)) / 127.5 - 1.0


def _check_bins(num_bins: int, interval: Sequence[float]) -> tuple[float, float]:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins={num_bins!r} is invalid: must be an integer >= 2 (256 for 8-bit data)")
    if len(interval) != 2 or not float(interval[0]) < float(interval[1]):
        raise ValueError(f"interval={interval!r} is invalid: need (low, high) with low < high")
    return float(interval[0]), float(interval[1])


def bin_width(num_bins: int = 256, interval: Sequence[float] = (-1.0, 1.0)) -> float:
    """``w = (high - low) / B``, the width of each of ``B`` bins tiling ``interval`` (1/128: 8-bit data on [-1, 1])."""
    low, high = _check_bins(num_bins, interval)
    return (high - low) / num_bins


def bin_centres(
    values: Int[ArrayLike, "*shape"], num_bins: int = 256, interval: Sequence[float] = (-1.0, 1.0)
) -> Float[Array, "*shape"]:
    """The centres ``low + (k + 1/2) w`` of the bins of integer values ``k`` (``(2k + 1)/256 - 1`` for 8-bit data)."""
    low, _ = _check_bins(num_bins, interval)
    k = jnp.asarray(values).astype(jnp.result_type(float))
    return low + (k + 0.5) * bin_width(num_bins, interval)


def dequantize(key: PRNGKeyArray, x: Float[Array, "*shape"], bin_width: float) -> Float[Array, "*shape"]:
    """Uniform dequantisation of bin centres: ``x + (u - 1/2) w`` with ``u ~ U[0, 1)``, a point of each value's bin.

    ``E_u[log p(x + (u - 1/2) w)] - D log w`` lower-bounds the log-probability of the discrete value (Jensen).

    References:
        Theis, van den Oord, Bethge. "A note on the evaluation of generative models". ICLR 2016.
    """
    return x + (jax.random.uniform(key, x.shape, x.dtype) - 0.5) * bin_width


def dequantize_images(
    key: PRNGKeyArray,
    images: Int[ArrayLike, "*shape"],
    num_bins: int = 256,
    interval: Sequence[float] = (-1.0, 1.0),
) -> Float[Array, "*shape"]:
    """Integer images to uniformly dequantised points ``low + (k + u) w``, ``u ~ U[0, 1)`` (``2(k + u)/256 - 1``)."""
    return dequantize(key, bin_centres(images, num_bins, interval), bin_width(num_bins, interval))
