"""Independent and minibatch OT couplings (exact and Sinkhorn), and pair sampling from a plan.

The exact-OT oracle is a batch whose optimal pairing is known: x1 = x0[perm] + tiny noise with well separated x0, so
the optimal assignment sends x0[perm[k]] to x1[k]. Its total cost is also checked against POT's ``emd2``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from genflow.couplings import (
    ExactOTCoupling,
    IndependentCoupling,
    SinkhornCoupling,
    pairs_from_plan,
    pairwise_cost,
)
from genflow.couplings._ot import _sample_categorical

OT_COUPLINGS = {"exact": ExactOTCoupling, "sinkhorn": SinkhornCoupling}


# Test data comes from numpy: eager jax ops would each compile, which dominates the run time of these small tests.
def gaussians(seed, n=64, d=2, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(dtype), (rng.normal(size=(n, d)) + 1.0).astype(dtype)


def permuted_pair(seed, n, shape):
    """Well separated x0 and x1 = x0[perm] + tiny noise: the optimal assignment pairs x1[k] with x0[perm[k]]."""
    rng = np.random.default_rng(seed)
    x0 = 10.0 * rng.normal(size=(n, *shape)).astype(np.float32)
    perm = rng.permutation(n)
    return x0, (x0[perm] + 1e-3 * rng.normal(size=x0.shape)).astype(np.float32), perm


def jitted(coupling):
    # Jitted, as in a training step; op-by-op dispatch of the solvers would also be far slower.
    return eqx.filter_jit(coupling)


def mean_pair_cost(x0, x1):
    return float(jnp.mean(jnp.sum((x0 - x1).reshape(x0.shape[0], -1) ** 2, -1)))


def test_independent_is_identity():
    x0, x1 = gaussians(0)
    cond = jnp.arange(64)
    y0, y1, c = IndependentCoupling()(jax.random.key(0), x0, x1, cond)
    assert y0 is x0 and y1 is x1 and c is cond


@pytest.mark.parametrize("shape", [(5,), (2, 3, 3)])
def test_exact_ot_recovers_the_inverse_permutation(shape):
    # Regression test for a transposed plan: pairing x1[k] with x0[k'] for the wrong k' would fail here.
    n = 24
    x0, x1, perm = permuted_pair(1, n, shape)
    cond = {"label": np.arange(n), "noise": -x1}
    y0, y1, c = jitted(ExactOTCoupling(replace=False))(jax.random.key(2), x0, x1, cond)
    np.testing.assert_array_equal(y1, x1)  # x1 and its condition stay in place ...
    np.testing.assert_array_equal(c["label"], jnp.arange(n))
    np.testing.assert_array_equal(y0, x0[perm])  # ... and each x1 row gets its own source row, exactly.


def test_exact_ot_with_replacement_keeps_cond_aligned():
    n = 24
    x0, x1, perm = permuted_pair(3, n, (3,))
    y0, y1, c = jitted(ExactOTCoupling(replace=True))(jax.random.key(4), x0, x1, np.arange(n))
    c = np.asarray(c)
    # c[k] names the x1 row that was returned, and the x0 row paired with it is its source.
    np.testing.assert_array_equal(y1, x1[c])
    np.testing.assert_array_equal(y0, x0[perm[c]])


def test_exact_ot_cost_matches_pot_and_beats_independent(x64):
    x0, x1 = gaussians(5, n=48, d=3, dtype=np.float64)
    y0, y1, _ = jitted(ExactOTCoupling(replace=False))(jax.random.key(0), x0, x1)
    m = np.asarray(pairwise_cost(x0, x1))
    w = np.full(48, 1 / 48)
    np.testing.assert_allclose(mean_pair_cost(y0, y1), ot.emd2(w, w, m), rtol=1e-10)
    assert mean_pair_cost(y0, y1) < 0.6 * mean_pair_cost(x0, x1)


def test_sinkhorn_interpolates_between_exact_and_independent():
    x0, x1 = gaussians(6, n=24)
    exact, _, _ = jitted(ExactOTCoupling(replace=False))(jax.random.key(0), x0, x1)
    sharp, _, _ = jitted(SinkhornCoupling(reg=1e-4, replace=False))(jax.random.key(1), x0, x1)
    assert jnp.mean(jnp.all(sharp == exact, axis=-1)) > 0.8
    # With a huge reg the plan is ~ uniform (the product coupling); average the pair cost over draws.
    blur = SinkhornCoupling(reg=100.0)
    keys = jax.random.split(jax.random.key(2), 16)
    blurred = jnp.mean(jax.jit(jax.vmap(lambda k: mean_pair_cost_jnp(*blur(k, x0, x1)[:2])))(keys))
    independent = jnp.mean(jnp.sum((x0[:, None] - x1[None]) ** 2, -1))
    assert abs(blurred / independent - 1.0) < 0.1


def mean_pair_cost_jnp(x0, x1):
    return jnp.mean(jnp.sum((x0 - x1) ** 2, -1))


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_ot_coupling_under_jit_and_scan_without_retracing(method):
    coupling = OT_COUPLINGS[method]()

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def pair_costs(key, x0s, x1s):
        def step(carry, inputs):
            k, x0, x1 = inputs
            y0, y1, c = coupling(k, x0, x1, jnp.arange(x1.shape[0]))
            return carry + mean_pair_cost_jnp(y0, y1), c

        keys = jax.random.split(key, x0s.shape[0])
        return jax.lax.scan(step, 0.0, (keys, x0s, x1s))

    for seed in (0, 1):
        x0s = jax.random.normal(jax.random.key(seed), (3, 16, 2))
        x1s = jax.random.normal(jax.random.key(seed + 10), (3, 16, 2))
        total, conds = pair_costs(jax.random.key(seed), x0s, x1s)
        assert jnp.isfinite(total) and conds.shape == (3, 16)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"ExactOTCoupling: cost='l1' is invalid: must be an ott.*CostFn"):
        ExactOTCoupling(cost="l1")
    with pytest.raises(ValueError, match=r"SinkhornCoupling: cost='sqeuclidean' is invalid"):
        SinkhornCoupling(cost="sqeuclidean")
    with pytest.raises(ValueError, match=r"SinkhornCoupling: reg=0.0 is invalid: must be a positive number"):
        SinkhornCoupling(reg=0.0)
    with pytest.raises(ValueError, match=r"SinkhornCoupling: schedule='annealed' is invalid: allowed are"):
        SinkhornCoupling(schedule="annealed")


def test_the_cost_is_an_ott_cost_function(x64):
    from ott.geometry import costs

    x0, x1 = gaussians(8, n=5, d=3, dtype=np.float64)
    np.testing.assert_allclose(pairwise_cost(x0, x1), ot.dist(x0, x1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pairwise_cost(x0, x1, costs.Euclidean()), ot.dist(x0, x1, "euclidean"), rtol=1e-12)


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_gradients_flow_through_the_pairing_not_the_plan(method):
    # The plan is a discrete choice (stop_gradient), so grad works even though ot.emd is a host callback.
    x0, x1 = gaussians(7, n=8)
    loss = lambda x0: jnp.sum(OT_COUPLINGS[method](replace=False)(jax.random.key(0), x0, x1)[0] ** 2)
    grad = jax.jit(jax.grad(loss))(x0)
    assert np.all(np.isfinite(grad))
    if method == "exact":  # a permutation: every x0 row is used once
        np.testing.assert_allclose(grad, 2 * x0, rtol=1e-6)


def test_plan_index_sampler_has_the_categorical_law():
    w = jnp.array([0.0, 1.0, 3.0, 0.0, 6.0])
    n = 200_000
    idx = np.asarray(_sample_categorical(jax.random.key(0), w, n))
    counts = np.bincount(idx, minlength=5)
    assert counts[0] == 0 and counts[3] == 0  # zero-mass entries are never drawn
    p = np.asarray(w / w.sum())
    np.testing.assert_allclose(counts / n, p, atol=4 * np.sqrt(p * (1 - p) / n).max())


@pytest.mark.parametrize("replace", [True, False])
def test_pairs_from_plan_follow_a_permutation_plan(replace):
    perm = np.array([2, 0, 3, 1])
    pi = np.zeros((4, 4))
    pi[perm, np.arange(4)] = 0.25  # x1[j] is paired with x0[perm[j]]
    pi = jnp.asarray(pi)
    i, j = jax.jit(pairs_from_plan, static_argnums=2)(jax.random.key(0), pi, replace)
    np.testing.assert_array_equal(np.asarray(i), perm[np.asarray(j)])
    if not replace:
        np.testing.assert_array_equal(j, np.arange(4))
