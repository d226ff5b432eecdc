"""Exact, jit-able rejection sampling for a batch of independent draws."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray


def rejection_sample(
    key: PRNGKeyArray,
    propose: Callable[[PRNGKeyArray], tuple[Float[Array, "*shape"], Bool[Array, "*shape"]]],
    shape: tuple[int, ...],
    dtype,
) -> Float[Array, "*shape"]:
    """Run independent rejection samplers elementwise until every element has accepted once.

    ``propose(key)`` returns a candidate for every element and whether it is accepted. Each element keeps its
    first accepted candidate, so every output is an exact draw, unlike a fixed number of proposals that might
    all fail. A ``lax.while_loop`` keeps it jit-able; the loop runs ``O(log num)`` rounds for a fixed
    acceptance rate.

    References:
        von Neumann, "Various techniques used in connection with random digits", 1951.
    """

    def cond(state):
        return ~jnp.all(state[2])

    def body(state):
        key, x, done = state
        key, sub = jax.random.split(key)
        candidate, accept = propose(sub)
        return key, jnp.where(accept & ~done, candidate, x), done | accept

    init = (key, jnp.zeros(shape, dtype), jnp.zeros(shape, bool))
    return jax.lax.while_loop(cond, body, init)[1]
