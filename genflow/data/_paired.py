"""Pairs of independent samplers for source-to-target transport (e.g. 8gaussians -> moons)."""

from __future__ import annotations

import jax
from jaxtyping import Array, PRNGKeyArray

from genflow.distributions import AbstractDistribution


class Paired(AbstractDistribution):
    """Independent draws from a source and a target: ``{"x0": x0 ~ source, "x": x ~ target}``.

    The pair is independent (the product coupling); families that need another coupling (minibatch OT, a
    Schrödinger bridge) re-pair the batch themselves. If the target returns a dict (a conditional dataset),
    its entries (``"x"``, ``"cond"``) are merged into the batch.

    Args:
        source: the distribution at ``t = 0``.
        target: the distribution at ``t = 1``; ``event_shape`` is the target's.

    References:
        Liu, Gong, Liu, "Flow straight and fast", ICLR 2023; Albergo, Vanden-Eijnden, "Building normalizing
        flows with stochastic interpolants", ICLR 2023.
    """

    source: AbstractDistribution
    target: AbstractDistribution

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.target.event_shape

    def sample(self, key: PRNGKeyArray, num: int) -> dict[str, Array]:
        k0, k1 = jax.random.split(key)
        x0 = self.source.sample(k0, num)
        x = self.target.sample(k1, num)
        if isinstance(x, dict):
            return {"x0": x0, **x}
        return {"x0": x0, "x": x}
