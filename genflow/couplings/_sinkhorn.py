from __future__ import annotations

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

from genflow.couplings._epsilon import AbstractEpsilonSchedule, ConstantEpsilon
from genflow.couplings._ot import AbstractOTCoupling, check_cost

# ott checks the marginal error every 10 updates by default; the momentum's start is counted in these.
_INNER_ITERATIONS = 10


class SinkhornCoupling(AbstractOTCoupling):
    """Minibatch entropic OT: ``pi = argmin_{pi in Pi(1/n0, 1/n1)} <pi, C> - reg H(pi)``, paired as in
    :class:`AbstractOTCoupling`, by ott-jax's log-domain Sinkhorn (in JAX, inside the training step's jit).

    Args:
        reg: entropic regularisation (relative to the max cost when ``normalize_cost``).
        cost: an ott ``CostFn``; ``None`` is ``SqEuclidean()``.
        replace: sample pairs from the plan with replacement (see :func:`pairs_from_plan`).
        normalize_cost: divide the cost matrix by its maximum (``False`` where ``reg`` is absolute, as for bridges).
        threshold: stop when the marginal error (L1) falls below it.
        max_iterations: cap on Sinkhorn updates.
        schedule: the regulariser's schedule, :class:`ConstantEpsilon` (``None``, plain Sinkhorn) or
            :class:`AnnealedEpsilon` (epsilon scaling and momentum, for small ``reg`` against large costs).

    References:
        Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.
        Tong et al., "Improving and generalizing flow-based generative models with minibatch optimal transport",
        TMLR 2024.
    """

    reg: float = eqx.field(static=True)
    cost: Any
    replace: bool = eqx.field(static=True)
    normalize_cost: bool = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    max_iterations: int = eqx.field(static=True)
    schedule: AbstractEpsilonSchedule

    def __init__(
        self,
        reg: float = 0.05,
        cost: Any = None,
        replace: bool = True,
        normalize_cost: bool = True,
        threshold: float = 1e-3,
        max_iterations: int = 2000,
        schedule: AbstractEpsilonSchedule | None = None,
    ):
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
            raise ValueError(f"SinkhornCoupling: reg={reg!r} is invalid: must be a positive number")
        schedule = ConstantEpsilon() if schedule is None else schedule
        if not isinstance(schedule, AbstractEpsilonSchedule):
            raise ValueError(
                f"SinkhornCoupling: schedule={schedule!r} is invalid: allowed are ConstantEpsilon(), AnnealedEpsilon()"
            )
        self.reg = float(reg)
        self.cost = check_cost("SinkhornCoupling", cost)
        self.replace = bool(replace)
        self.normalize_cost = bool(normalize_cost)
        self.threshold = float(threshold)
        self.max_iterations = int(max_iterations)
        self.schedule = schedule

    def solve(self, c: Float[Array, "n0 n1"]) -> Float[Array, "n0 n1"]:
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn

        geom = geometry.Geometry(cost_matrix=c, epsilon=self.schedule.epsilon(c, self.reg))
        solver = sinkhorn.Sinkhorn(
            threshold=self.threshold,
            max_iterations=self.max_iterations,
            inner_iterations=_INNER_ITERATIONS,
            momentum=self.schedule.acceleration(_INNER_ITERATIONS),
        )
        return solver(linear_problem.LinearProblem(geom)).matrix
