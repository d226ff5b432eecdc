from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np
import ot
from jaxtyping import Array, Float

from genflow.couplings._ot import AbstractOTCoupling, check_cost

# POT's default network-simplex budget (1e5 pivots) stops short on batches of a few hundred points; the plan would
# then not be optimal, so allow enough pivots for the batch sizes used in training.
_EMD_MAX_ITER = 10_000_000


def _emd_host(cost: np.ndarray) -> np.ndarray:
    n0, n1 = cost.shape
    a = np.full(n0, 1.0 / n0)
    b = np.full(n1, 1.0 / n1)
    plan = ot.emd(a, b, np.asarray(cost, np.float64), numItermax=_EMD_MAX_ITER)
    return plan.astype(cost.dtype)


def exact_ot_plan(cost: Float[Array, "n0 n1"]) -> Float[Array, "n0 n1"]:
    """Exact OT plan between uniform weights, by POT's network simplex (``ot.emd``) on the host.

    ``pi = argmin_{pi in Pi(1/n0, 1/n1)} <pi, C>``; for ``n0 == n1`` it is a permutation matrix divided by n.
    """
    shape = jax.ShapeDtypeStruct(cost.shape, cost.dtype)
    return jax.pure_callback(_emd_host, shape, cost, vmap_method="sequential")


class ExactOTCoupling(AbstractOTCoupling):
    """Minibatch exact OT: ``pi = argmin_{pi in Pi(1/n0, 1/n1)} <pi, C>``, paired as in :class:`AbstractOTCoupling`.

    The plan comes from POT's network simplex (``ot.emd``) through ``jax.pure_callback``; the host round trip is a
    small cost next to a training step for batches of a few hundred.

    Args:
        cost: an ott ``CostFn``; ``None`` is ``SqEuclidean()`` (W2, the one that straightens linear-interpolant
            paths).
        replace: sample pairs from the plan with replacement (see :func:`pairs_from_plan`).
        normalize_cost: divide the cost matrix by its maximum.

    References:
        Pooladian, Ben-Hamu, Domingo-Enrich, Amos, Lipman, Chen, "Multisample Flow Matching: Straightening Flows
        with Minibatch Couplings", ICML 2023.
    """

    cost: Any = eqx.field(default=None, converter=lambda cost: check_cost("ExactOTCoupling", cost))
    replace: bool = eqx.field(static=True, default=True, converter=bool)
    normalize_cost: bool = eqx.field(static=True, default=True, converter=bool)

    def solve(self, c):
        return exact_ot_plan(c)
