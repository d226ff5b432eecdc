"""Shared helpers: flattening sample sets, pairwise distances and a safe square root."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def flatten_samples(x: Float[Array, "n ..."]) -> Float[Array, "n d"]:
    """Reshape a batch of examples (vectors, images, ...) to a sample matrix of shape ``(n, d)``.

    A 1D array of ``n`` scalars becomes ``(n, 1)``; an image batch ``(n, c, h, w)`` becomes ``(n, c*h*w)``.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x.reshape(x.shape[0], -1)


@jax.jit
def pairwise_sq_dists(x: Float[Array, "n d"], y: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """Squared Euclidean distances ``D_ij = |x_i - y_j|^2``.

    Computed from the differences rather than the expansion ``|x|^2 + |y|^2 - 2 x.y``: the expansion loses
    all precision for nearby points (and gives nonzero self-distances), which the square root in the energy
    distance would amplify. Jitting makes XLA fuse the ``(n, m, d)`` broadcast into the reduction, so only the
    ``(n, m)`` result is stored.
    """
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def safe_sqrt(sq: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """``sqrt(max(sq, 0))`` whose gradient is 0 (not inf or nan) where ``sq <= 0``."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
