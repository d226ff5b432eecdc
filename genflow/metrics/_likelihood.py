"""Negative log-likelihood in bits per dimension."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


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
