"""Data-dependent couplings: in-painting, super-resolution and a user-given conditional mean.

References:
    Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent couplings",
    ICML 2024 (Sections 4.1 and 4.2).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.couplings import DataDependentCoupling, InpaintingCoupling, SuperResolutionCoupling, masked_velocity


def jitted(coupling):
    return eqx.filter_jit(coupling)


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
