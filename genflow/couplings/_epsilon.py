"""Regulariser schedules for the Sinkhorn coupling: a constant one, and epsilon scaling with momentum."""

from __future__ import annotations

import abc
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@functools.cache
def _batch_epsilon():
    """ott's ``Epsilon`` scheduler with its initial multiple as a leaf, so that it can depend on the batch's costs
    (ott keeps it as static data)."""
    from ott.geometry import epsilon_scheduler

    @jax.tree_util.register_pytree_node_class
    class BatchEpsilon(epsilon_scheduler.Epsilon):
        def tree_flatten(self):
            return (self.target, self.init), {"decay": self.decay}

        @classmethod
        def tree_unflatten(cls, aux_data, children):
            return cls(*children, **aux_data)

    return BatchEpsilon


class AbstractEpsilonSchedule(eqx.Module):
    """How Sinkhorn's regulariser moves towards its target ``reg`` over the updates, and the acceleration after."""

    @abc.abstractmethod
    def epsilon(self, cost: Float[Array, "n0 n1"], reg: float) -> Any:
        """The ``epsilon`` handed to ott's ``Geometry``: a number or an ott ``Epsilon`` scheduler."""

    @abc.abstractmethod
    def acceleration(self, inner_iterations: int) -> Any:
        """The ``momentum`` handed to ott's ``Sinkhorn`` (``None`` for plain updates)."""


class ConstantEpsilon(AbstractEpsilonSchedule):
    """Plain Sinkhorn: every update uses the target regulariser ``reg``."""

    def epsilon(self, cost, reg):
        del cost
        return reg

    def acceleration(self, inner_iterations):
        del inner_iterations
        return None


class AnnealedEpsilon(AbstractEpsilonSchedule):
    r"""Epsilon scaling from the batch's mean cost, then over-relaxation.

    Small ``reg`` against large costs (``reg = 0.2`` with ``|x - y|^2`` of order 100 in 16 dimensions) makes plain
    Sinkhorn crawl: it stops at ``max_iterations`` far from the plan. So the regulariser is annealed,

        reg_k = reg max(m decay^k, 1),    m = clip(mean_ij C_ij / reg, 1, init)

    (epsilon scaling, Schmitzer 2019), and after the annealing the updates are over-relaxed with the adaptive
    momentum of Lehmann et al. (2021). Both change the path, not the fixed point: the plan is the same entropic plan.

    Args:
        init: Cap on the first regulariser as a multiple of ``reg`` (1 turns the annealing off); below it the first
            regulariser is the batch's mean cost, so easy batches anneal for a few updates only.
        decay: Geometric decay of that multiple per update, in (0, 1).
        momentum: Whether to over-relax after the annealing.

    References:
        Schmitzer. "Stabilized sparse scaling algorithms for entropy regularized transport problems". SIAM J. Sci.
        Comput. 2019.
        Lehmann, von Renesse, Sambale, Uschmajew. "A note on overrelaxation in the Sinkhorn algorithm".
        Optimization Letters 2021.
    """

    init: float = eqx.field(static=True, default=1000.0)
    decay: float = eqx.field(static=True, default=0.95)
    momentum: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not self.init >= 1.0:
            raise ValueError(f"AnnealedEpsilon: init={self.init!r} is invalid: must be >= 1")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"AnnealedEpsilon: decay={self.decay!r} is invalid: must be in (0, 1)")

    def epsilon(self, cost, reg):
        start = jnp.clip(jnp.mean(cost) / reg, 1.0, self.init)
        return _batch_epsilon()(reg, start, decay=self.decay)

    def acceleration(self, inner_iterations):
        if not self.momentum:
            return None
        from ott.solvers.linear.acceleration import Momentum

        # Momentum measures the convergence rate from the errors at its start, so it starts after the longest
        # annealing (from the cap; ott's start is static, the batch's own ramp is at most this long).
        ramp = math.log(self.init) / -math.log(self.decay)
        return Momentum(start=inner_iterations * (math.ceil(ramp / inner_iterations) + 5))
