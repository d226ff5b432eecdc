"""Small symmetric-matrix helpers shared by the bridge modules."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

_HIGHEST = "highest"


def sym(m: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Symmetric part ``(M + M^T) / 2``; removes round-off asymmetry before an eigendecomposition."""
    return 0.5 * (m + jnp.swapaxes(m, -1, -2))


def sym_power(m: Float[Array, "d d"], power: float) -> Float[Array, "d d"]:
    """``M^p`` of a symmetric positive-definite matrix from its eigendecomposition."""
    lam, v = jnp.linalg.eigh(sym(m))
    return jnp.matmul(v * lam**power, v.T, precision=_HIGHEST)


def sym_sqrt(m: Float[Array, "d d"]) -> Float[Array, "d d"]:
    """Principal square root of a symmetric positive semi-definite matrix (round-off negatives clipped)."""
    lam, v = jnp.linalg.eigh(sym(m))
    return jnp.matmul(v * jnp.sqrt(jnp.maximum(lam, 0.0)), v.T, precision=_HIGHEST)


def matmul(a: Array, b: Array) -> Array:
    """Matrix product at full precision (float32 matmuls on some backends default to reduced precision)."""
    return jnp.matmul(a, b, precision=_HIGHEST)
