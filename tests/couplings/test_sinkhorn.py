"""The Sinkhorn coupling: the entropic plan against POT, and the annealed schedule (epsilon scaling and momentum),
which must reach the same plan where plain Sinkhorn stops short.

References:
    Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.
    Schmitzer, "Stabilized sparse scaling algorithms for entropy regularized transport problems", SIAM J. Sci.
    Comput. 2019.
"""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from genflow.bridges import EOTBenchmark
from genflow.couplings import AnnealedEpsilon, ConstantEpsilon, SinkhornCoupling


def annealed(reg, max_iterations=20000, **kwargs):
    """The absolute-regulariser Sinkhorn of the bridges (SB-CFM's pairs at reg = 2 eps)."""
    return SinkhornCoupling(
        reg, normalize_cost=False, max_iterations=max_iterations, schedule=AnnealedEpsilon(), **kwargs
    )


def _marginal_error(pi):
    n = pi.shape[0]
    return float(jnp.abs(pi.sum(1) - 1 / n).sum() + jnp.abs(pi.sum(0) - 1 / n).sum())


@pytest.mark.parametrize("schedule", [ConstantEpsilon(), AnnealedEpsilon()])
def test_plan_is_pot_sinkhorn_on_the_normalised_cost(x64, schedule):
    rng = np.random.default_rng(1)
    x0, x1 = rng.standard_normal((10, 3)), rng.standard_normal((10, 3)) + 1.0
    cost = ot.dist(x0, x1)
    w = np.full(10, 0.1)
    want = ot.sinkhorn(w, w, cost / cost.max(), reg=0.05, stopThr=1e-12, numItermax=10**5)
    coupling = SinkhornCoupling(0.05, threshold=1e-10, max_iterations=10**5, schedule=schedule)
    np.testing.assert_allclose(coupling.plan(jnp.asarray(x0), jnp.asarray(x1)), want, atol=1e-8)


def test_annealed_plan_with_costs_far_above_reg_is_the_gibbs_plan_with_uniform_marginals(x64):
    # |x - y|^2 of order 25 against reg 0.2: where plain Sinkhorn crawls. The entropic plan is the unique
    # pi = exp((f_i + g_j - C_ij) / reg) with uniform marginals, so both properties are checked, at reg itself (not at
    # an annealed value the solver passed through).
    rng = np.random.default_rng(0)
    x0, x1 = rng.standard_normal((32, 4)), 2.0 * rng.standard_normal((32, 4)) + 1.0
    reg = 0.2
    pi = annealed(reg, threshold=1e-9).plan(jnp.asarray(x0), jnp.asarray(x1))
    assert _marginal_error(pi) < 1e-8
    log_kernel = np.log(np.asarray(pi)) + ot.dist(x0, x1) / reg  # must be f_i + g_j
    residual = log_kernel - log_kernel.mean(1, keepdims=True) - log_kernel.mean(0, keepdims=True) + log_kernel.mean()
    np.testing.assert_allclose(residual, 0.0, atol=1e-8)


def test_annealing_reaches_the_plan_where_plain_sinkhorn_stops_short():
    # An SB-CFM batch of the D = 16, eps = 0.1 benchmark pair (costs ~100 against reg 2 eps = 0.2) in float32: with
    # the same 2000-update cap, plain Sinkhorn ends far from the plan and the annealed solver on it.
    bench = EOTBenchmark.generate(16, 0.1, 0)
    x0, x1 = bench.source.sample(jax.random.key(0), 256), bench.sample_target(jax.random.key(1), 256)
    reference = annealed(0.2, threshold=1e-4).plan(x0, x1)
    plain = SinkhornCoupling(
        0.2, normalize_cost=False, max_iterations=2000, schedule=AnnealedEpsilon(init=1.0, momentum=False)
    ).plan(x0, x1)
    fast = annealed(0.2, max_iterations=2000).plan(x0, x1)
    assert float(jnp.abs(plain - reference).sum()) > 0.05
    assert float(jnp.abs(fast - reference).sum()) < 0.01


@pytest.mark.parametrize(("field", "value"), [("init", 0.5), ("decay", 1.0), ("decay", 0.0)])
def test_bad_annealing_is_rejected(field, value):
    with pytest.raises(ValueError, match=f"AnnealedEpsilon: {field}={value!r} is invalid"):
        AnnealedEpsilon(**{field: value})
