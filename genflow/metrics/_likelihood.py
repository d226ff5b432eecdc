"""Negative log-likelihood in bits per dimension, of continuous data and of quantised data by dequantisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from genflow._checks import check_positive_int
from genflow.metrics._dequantize import bin_centres, bin_width, dequantize


def nll_bits_per_dim(
    log_prob: Float[ArrayLike, "*batch"], num_dims: int, dequant_bins: int | None = None
) -> Float[Array, "*batch"]:
    r"""Convert a log-likelihood in nats to a negative log-likelihood in bits per dimension.

    Without dequantisation: ``bpd = -log p(x) / (D log 2)``.

    With ``dequant_bins = B``: discrete data ``k in {0, ..., B-1}^D`` is dequantised as ``u = k + U``,
    ``U ~ Uniform[0, 1)^D``, and rescaled to ``[-1, 1)`` by ``x = 2u/B - 1``; ``log_prob`` is the model's
    ``log p_X(x)``. The change of variables gives ``p_U(u) = p_X(x) (2/B)^D``, hence

    $$\mathrm{bpd} = \frac{-\log p_X(x) + D \log(B/2)}{D \log 2}
    = -\frac{\log p_X(x)}{D \log 2} + \log_2(B/2),$$

    e.g. an offset of 7 bits for 8-bit images (``B = 256``). Averaged over ``U`` this upper-bounds the
    discrete model's NLL of ``k``. Elementwise, so a batch of log-likelihoods gives a batch of bpd values.

    Args:
        log_prob: log-likelihood(s) in nats of the (rescaled) data, per example or averaged.
        num_dims: data dimension ``D`` (e.g. ``c * h * w``).
        dequant_bins: number ``B`` of quantisation levels, or None for continuous data.

    Returns:
        Negative log-likelihood in bits per dimension.

    References:
        Theis, van den Oord, Bethge. "A note on the evaluation of generative models". ICLR 2016.
    """
    nll = -jnp.asarray(log_prob)
    if dequant_bins is not None:
        nll = nll + num_dims * jnp.log(dequant_bins / 2.0)
    return nll / (num_dims * jnp.log(2.0))


def dequantized_bits_per_dim(
    log_prob: Callable[..., Float[Array, " num"]],
    x: Float[Array, "num ..."],
    key: PRNGKeyArray,
    *,
    bin_width: float,
    num_draws: int = 1,
) -> Float[Array, " num"]:
    r"""Bits/dim of quantised data under a continuous model, by uniform dequantisation.

    ``x`` holds bin centres on a grid of step ``w = bin_width``. Each draw fills every value's bin,
    ``x' = x + (u - 1/2) w`` with ``u ~ U[0, 1)^D``, and

    $$\mathrm{bpd}(x) = -\frac{1}{D \log 2}\,\frac1R \sum_{r=1}^R \log p(x'_r) - \log_2 w,$$

    an unbiased estimate of ``E_u[-log p(x')] / (D log 2) - log2 w``, which upper-bounds the discrete NLL of the bin
    (Jensen) in bits/dim. The ``-log2 w`` term is the log-determinant of the map from bin units to the model's scale.

    Args:
        log_prob: the model's log-density, called ``log_prob(x, key=k)`` on a batch (a density model's bound
            ``log_prob`` method, or any callable taking ``key``): exact, or an unbiased estimate (Hutchinson, an
            ELBO). It sees the ``R`` draws stacked draw-major, ``R * num`` examples, in one call.
        x: bin centres, shape ``(num, ...)``.
        key: dequantisation and ``log_prob`` key.
        bin_width: the grid step ``w``.
        num_draws: number ``R`` of dequantisation draws averaged per example.

    Returns:
        Bits/dim per example.

    References:
        Theis, van den Oord, Bethge. "A note on the evaluation of generative models". ICLR 2016.
        Dinh, Sohl-Dickstein, Bengio. "Density estimation using Real NVP". ICLR 2017.
    """
    check_positive_int("num_draws", num_draws)
    k_deq, k_lp = jax.random.split(key)
    num, shape = x.shape[0], x.shape[1:]
    x_deq = dequantize(k_deq, jnp.broadcast_to(x, (num_draws, *x.shape)), bin_width)
    logp = log_prob(x_deq.reshape(num_draws * num, *shape), key=k_lp).reshape(num_draws, num)
    return nll_bits_per_dim(jnp.mean(logp, axis=0), math.prod(shape)) - math.log2(bin_width)


def image_bits_per_dim(
    log_prob: Callable[..., Float[Array, " num"]],
    images: Int[ArrayLike, "num ..."],
    key: PRNGKeyArray,
    *,
    num_bins: int = 256,
    interval: Sequence[float] = (-1.0, 1.0),
    num_draws: int = 1,
) -> Float[Array, " num"]:
    r"""Bits/dim of integer images (``uint8``, ``0..255``) under a model of ``[-1, 1]`` data.

    Pixels are dequantised uniformly and rescaled, ``x = low + (k + u) w`` with ``w = (high - low) / B``
    (``x = 2(k + u)/256 - 1``), and

    $$\mathrm{bpd}(k) = -\frac{\mathbb{E}_u \log p_X(x)}{D \log 2} + \log_2\frac{B}{high - low},$$

    the second term being the scale's log-determinant per dimension: ``log2(128) = 7`` bits for 8-bit data on
    ``[-1, 1]``. This is the bits/dim of RealNVP, Glow and FFJORD tables (they rescale to ``[0, 1]``; the density of
    ``u / B`` and of ``2u/B - 1`` differ by exactly the matching factor). A model trained on ``k / 127.5 - 1``
    (DDPM's scaling) has its values at the centres of the bins tiling ``interval=(-1 - 1/255, 1 + 1/255)``.

    Args:
        log_prob: the model's log-density, called ``log_prob(x, key=k)`` (see :func:`dequantized_bits_per_dim`).
        images: integer pixel values ``0..B-1``, shape ``(num, ...)``.
        key: dequantisation and ``log_prob`` key.
        num_bins: number ``B`` of levels (256 for 8-bit images).
        interval: ``(low, high)``, the range that the ``B`` bins tile in the model's space.
        num_draws: dequantisation draws averaged per example.

    Returns:
        Bits/dim per example.

    References:
        Theis, van den Oord, Bethge. "A note on the evaluation of generative models". ICLR 2016.
        Dinh, Sohl-Dickstein, Bengio. "Density estimation using Real NVP". ICLR 2017.
    """
    x = bin_centres(images, num_bins, interval)
    return dequantized_bits_per_dim(log_prob, x, key, bin_width=bin_width(num_bins, interval), num_draws=num_draws)
