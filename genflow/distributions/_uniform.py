"""The uniform distribution on a box (the base of flows on the torus)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import as_shape
from genflow.distributions._base import AbstractDensity


class Uniform(AbstractDensity):
    r"""Uniform on the box $[\text{low}, \text{high})^d$: the base of flows on the torus (angles).

    $$\log p(x) = -d \log(\text{high} - \text{low})$$ inside the box, $-\infty$ outside.

    Args:
        shape: event shape.
        low, high: the interval of every coordinate (default ``[-pi, pi)``).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    low: float = eqx.field(static=True)
    high: float = eqx.field(static=True)

    def __init__(self, shape, low: float = -math.pi, high: float = math.pi):
        self.shape = as_shape(shape)  # Hydra passes sequences; a bare int means a vector of that size
        self.low, self.high = float(low), float(high)
        if not self.low < self.high:
            raise ValueError(f"Uniform: need low < high, got low={low}, high={high}")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.shape

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num ..."]:
        return jax.random.uniform(key, (num, *self.shape), minval=self.low, maxval=self.high)

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        axes = tuple(range(x.ndim - len(self.shape), x.ndim))
        inside = jnp.all((x >= self.low) & (x < self.high), axis=axes)
        size = math.prod(self.shape)
        return jnp.where(inside, -size * math.log(self.high - self.low), -jnp.inf)

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        return jnp.zeros_like(x)
