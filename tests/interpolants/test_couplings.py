"""Couplings: independent, minibatch OT (exact and Sinkhorn) and data-dependent (in-painting, super-resolution).

The exact-OT oracle is a batch whose optimal pairing is known: x1 = x0[perm] + tiny noise with well separated x0, so
the optimal assignment sends x0[perm[k]] to x1[k]. Its total cost is also checked against POT's ``emd2``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from genflow.interpolants._couplings import (
    DataDependentCoupling,
    IndependentCoupling,
    InpaintingCoupling,
    MinibatchOTCoupling,
    SuperResolutionCoupling,
    masked_velocity,
    pairwise_cost,
)


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
    y0, y1, c = jitted(MinibatchOTCoupling("exact", replace=False))(jax.random.key(2), x0, x1, cond)
    np.testing.assert_array_equal(y1, x1)  # x1 and its condition stay in place ...
    np.testing.assert_array_equal(c["label"], jnp.arange(n))
    np.testing.assert_array_equal(y0, x0[perm])  # ... and each x1 row gets its own source row, exactly.


def test_exact_ot_with_replacement_keeps_cond_aligned():
    n = 24
    x0, x1, perm = permuted_pair(3, n, (3,))
    y0, y1, c = jitted(MinibatchOTCoupling("exact", replace=True))(jax.random.key(4), x0, x1, np.arange(n))
    c = np.asarray(c)
    # c[k] names the x1 row that was returned, and the x0 row paired with it is its source.
    np.testing.assert_array_equal(y1, x1[c])
    np.testing.assert_array_equal(y0, x0[perm[c]])


def test_exact_ot_cost_matches_pot_and_beats_independent(x64):
    x0, x1 = gaussians(5, n=48, d=3, dtype=np.float64)
    y0, y1, _ = jitted(MinibatchOTCoupling("exact", replace=False))(jax.random.key(0), x0, x1)
    m = np.asarray(pairwise_cost(x0, x1))
    w = np.full(48, 1 / 48)
    np.testing.assert_allclose(mean_pair_cost(y0, y1), ot.emd2(w, w, m), rtol=1e-10)
    assert mean_pair_cost(y0, y1) < 0.6 * mean_pair_cost(x0, x1)


def test_sinkhorn_interpolates_between_exact_and_independent():
    x0, x1 = gaussians(6, n=24)
    exact, _, _ = jitted(MinibatchOTCoupling("exact", replace=False))(jax.random.key(0), x0, x1)
    sharp, _, _ = jitted(MinibatchOTCoupling("sinkhorn", reg=1e-4, replace=False))(jax.random.key(1), x0, x1)
    assert jnp.mean(jnp.all(sharp == exact, axis=-1)) > 0.8
    # With a huge reg the plan is ~ uniform (the product coupling); average the pair cost over draws.
    blur = MinibatchOTCoupling("sinkhorn", reg=100.0)
    keys = jax.random.split(jax.random.key(2), 16)
    blurred = jnp.mean(jax.jit(jax.vmap(lambda k: mean_pair_cost_jnp(*blur(k, x0, x1)[:2])))(keys))
    independent = jnp.mean(jnp.sum((x0[:, None] - x1[None]) ** 2, -1))
    assert abs(blurred / independent - 1.0) < 0.1


def mean_pair_cost_jnp(x0, x1):
    return jnp.mean(jnp.sum((x0 - x1) ** 2, -1))


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_ot_coupling_under_jit_and_scan_without_retracing(method):
    coupling = MinibatchOTCoupling(method)

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


def test_unknown_method_and_cost_are_rejected():
    with pytest.raises(ValueError, match=r"method='emd'.*'exact', 'sinkhorn'"):
        MinibatchOTCoupling("emd")
    with pytest.raises(ValueError, match="cost='l1'"):
        MinibatchOTCoupling(cost="l1")


def digits_like(seed, n=32, c=1, h=8, w=8):
    return np.random.default_rng(seed).uniform(size=(n, c, h, w)).astype(np.float32)


def test_inpainting_keeps_known_pixels_and_masks_by_tiles():
    x1 = digits_like(0, c=3)
    labels = jnp.arange(32)
    x0, y1, mask = jitted(InpaintingCoupling(tile=2, keep_prob=0.5))(jax.random.key(1), jnp.zeros_like(x1), x1, labels)
    x1, x0, y1, mask = (np.asarray(a) for a in (x1, x0, y1, mask))
    np.testing.assert_array_equal(y1, x1)
    assert mask.shape == (32, 1, 8, 8) and mask.dtype == x1.dtype
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    # Tile structure: the mask is constant on each 2x2 block.
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(mask[:, :, ::2, ::2], 2, 2), 2, 3))
    assert 0.35 < float(mask.mean()) < 0.65
    known = np.broadcast_to(mask, x1.shape) == 1
    np.testing.assert_array_equal(x0[known], x1[known])
    assert np.all(x0[~known] != x1[~known])
    v = np.asarray(masked_velocity(jnp.ones(x1.shape), jnp.asarray(mask)))
    assert np.all(v[known] == 0) and np.all(v[~known] == 1)


def test_inpainting_crops_tiles_that_do_not_divide_the_image():
    mask = InpaintingCoupling(tile=3).mask(jax.random.key(0), digits_like(0, h=8, w=7))
    assert mask.shape == (32, 1, 8, 7)


def test_super_resolution_cond_is_block_mean_and_noise_has_sigma():
    n, sigma = 256, 0.1
    x1 = digits_like(2, n=n, c=2)
    x0, _, cond = jitted(SuperResolutionCoupling(factor=2, sigma=sigma))(jax.random.key(3), None, x1)
    assert cond.shape == x1.shape
    block_means = x1.reshape(n, 2, 4, 2, 4, 2).mean(axis=(3, 5))
    for a in range(2):
        for b in range(2):
            np.testing.assert_allclose(cond[:, :, a::2, b::2], block_means, rtol=1e-6, atol=1e-6)
    # n * 2 * 64 = 32768 normal draws: the std estimate is within ~1% (2 sigma ~ 0.8%).
    resid = np.asarray(x0 - cond)
    assert abs(resid.mean()) < 3 * sigma / np.sqrt(resid.size) * 1.5
    assert abs(resid.std() / sigma - 1.0) < 0.02


def test_super_resolution_rejects_indivisible_images():
    with pytest.raises(ValueError, match="not divisible by factor=3"):
        SuperResolutionCoupling(factor=3)(jax.random.key(0), None, digits_like(0))


def test_uncoupled_baselines_keep_the_base_samples_and_the_condition():
    x1 = jnp.asarray(digits_like(4, c=1))
    base = jax.random.normal(jax.random.key(0), x1.shape)
    inpaint = InpaintingCoupling(tile=2, coupled=False, with_image=True)
    x0, _, cond = inpaint(jax.random.key(1), base, x1)
    np.testing.assert_array_equal(x0, base)
    mask = cond[:, :1]
    assert cond.shape == (32, 2, 8, 8)
    np.testing.assert_allclose(cond[:, 1:], mask * x1)
    # The baseline must move the known pixels (they start as noise): no masking of its velocity.
    np.testing.assert_array_equal(inpaint.constrain(jnp.ones((1, 8, 8)), cond[0]), jnp.ones((1, 8, 8)))
    coupled = InpaintingCoupling(tile=2, with_image=True)
    v = coupled.constrain(jnp.ones((1, 8, 8)), cond[0])
    np.testing.assert_array_equal(v, 1.0 - mask[0])
    x0, _, cond = SuperResolutionCoupling(factor=2, coupled=False)(jax.random.key(2), base, x1)
    np.testing.assert_array_equal(x0, base)
    np.testing.assert_allclose(cond, SuperResolutionCoupling(factor=2).low_resolution(x1))


def test_generic_data_dependent_coupling_replaces_cond():
    coupling = DataDependentCoupling(lambda key, x1: (0.5 * x1, x1[:, :1]), sigma=0.0)
    x1 = jax.random.normal(jax.random.key(0), (8, 3))
    x0, y1, cond = coupling(jax.random.key(1), None, x1, jnp.arange(8))
    np.testing.assert_allclose(x0, 0.5 * x1)
    np.testing.assert_array_equal(cond, x1[:, :1])


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
def test_gradients_flow_through_the_pairing_not_the_plan(method):
    # The plan is a discrete choice (stop_gradient), so grad works even though ot.emd is a host callback.
    x0, x1 = gaussians(7, n=8)
    loss = lambda x0: jnp.sum(MinibatchOTCoupling(method, replace=False)(jax.random.key(0), x0, x1)[0] ** 2)
    grad = jax.jit(jax.grad(loss))(x0)
    assert np.all(np.isfinite(grad))
    if method == "exact":  # a permutation: every x0 row is used once
        np.testing.assert_allclose(grad, 2 * x0, rtol=1e-6)


def test_plan_index_sampler_has_the_categorical_law():
    from genflow.interpolants._couplings import _sample_categorical

    w = jnp.array([0.0, 1.0, 3.0, 0.0, 6.0])
    n = 200_000
    idx = np.asarray(_sample_categorical(jax.random.key(0), w, n))
    counts = np.bincount(idx, minlength=5)
    assert counts[0] == 0 and counts[3] == 0  # zero-mass entries are never drawn
    p = np.asarray(w / w.sum())
    np.testing.assert_allclose(counts / n, p, atol=4 * np.sqrt(p * (1 - p) / n).max())
