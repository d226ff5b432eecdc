"""UNet on 8x8 and 28x28 images, with labels and with image-shaped conditions.

The nets are tiny and share layer shapes, so that parameter-init compilations (the slow part on CPU) are
reused across tests.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import UNet
from genflow.nn._conv import Conv2d, GroupNorm

KEY = jax.random.key(0)
TINY = dict(base_channels=8, emb_dim=8)


@eqx.filter_jit
def apply_batch(net, t, x, cond):
    return jax.vmap(net, in_axes=(0, 0, None if cond is None else 0))(t, x, cond)


@eqx.filter_jit
def outputs_and_param_grads(net, t, x, cond):
    """Batched outputs and d(sum of outputs)/d(params), in one compilation to keep the tests fast."""

    def total(n):
        out = jax.vmap(n)(t, x, cond)
        return jnp.sum(out), out

    (_, out), grads = eqx.filter_value_and_grad(total, has_aux=True)(net)
    return out, grads


@eqx.filter_jit
def apply_one(net, t, x, cond):
    return net(t, x, cond)


def images(n, c, size, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, c, size, size))


@pytest.fixture(scope="module")
def labelled():
    return UNet(in_channels=1, image_size=8, channel_mults=[1, 2], num_classes=3, **TINY, key=KEY)


@pytest.fixture(scope="module")
def image_cond():
    # Three levels on 28x28: 28 -> 14 -> 7 -> 4, so the decoder must resize 4 back to 7.
    return UNet(in_channels=1, image_size=28, channel_mults=[1, 2, 2], cond_channels=1, **TINY, key=KEY)


def test_hydra_lists_stored_as_tuples(labelled, image_cond):
    assert labelled.channel_mults == (1, 2)
    assert labelled.data_shape == (1, 8, 8)
    assert image_cond.data_shape == (1, 28, 28)


def test_8x8_vmap_matches_loop_and_grads_finite(labelled):
    t, x, y = jnp.array([0.2, 0.8]), images(2, 1, 8), jnp.array([0, 3])
    batched, grads = outputs_and_param_grads(labelled, t, x, y)
    assert batched.shape == (2, 1, 8, 8)
    for i in range(2):
        np.testing.assert_allclose(batched[i], apply_one(labelled, t[i], x[i], y[i]), rtol=1e-4, atol=1e-5)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_conditioning_and_time_change_output(labelled):
    x, t = images(1, 1, 8)[0], jnp.array(0.5)
    out0 = apply_one(labelled, t, x, jnp.array(0))
    assert not jnp.allclose(out0, apply_one(labelled, t, x, jnp.array(1)))
    assert not jnp.allclose(out0, apply_one(labelled, jnp.array(0.1), x, jnp.array(0)))


def test_28x28_without_cond_channels(labelled):
    # The network is size-agnostic; image_size only sets data_shape.
    out = apply_batch(labelled, jnp.array([0.5]), images(1, 1, 28), None)
    assert out.shape == (1, 1, 28, 28) and bool(jnp.all(jnp.isfinite(out)))


def test_28x28_with_cond_channels(image_cond):
    t, x, c = jnp.array([0.3, 0.6]), images(2, 1, 28), images(2, 1, 28, seed=3)
    out = apply_batch(image_cond, t, x, c)
    assert out.shape == (2, 1, 28, 28)
    assert not jnp.allclose(out, apply_batch(image_cond, t, x, jnp.zeros_like(c)))
    # cond=None is the all-zero condition (the classifier-free-guidance null); checked on the input stage
    # to spare a compilation of the whole net.
    expected = jnp.concatenate([x[0], jnp.zeros((1, 28, 28))])
    np.testing.assert_array_equal(image_cond._concat_cond(x[0], None), expected)


def test_errors(image_cond):
    t = jnp.array(0.5)
    unconditional = UNet(in_channels=1, image_size=8, channel_mults=[1, 1], **TINY, key=KEY)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(t, jnp.zeros((1, 8, 8)), jnp.array(1))
    with pytest.raises(ValueError, match="image condition"):
        image_cond(t, jnp.zeros((1, 28, 28)), jnp.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="one kind of condition"):
        UNet(cond_channels=1, num_classes=2, **TINY, key=KEY)
    with pytest.raises(ValueError, match="channel_mults"):
        UNet(channel_mults=[], **TINY, key=KEY)


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 1)])
def test_channels_last_conv_matches_equinox_channels_first(stride, padding, kernel):
    conv = Conv2d(3, 5, kernel, stride=stride, padding=padding, key=jax.random.key(0))
    ref = eqx.nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, key=jax.random.key(1))
    ref = eqx.tree_at(lambda c: (c.weight, c.bias), ref, (conv.weight.transpose(3, 2, 0, 1), conv.bias[:, None, None]))
    x = jax.random.normal(jax.random.key(2), (3, 7, 7))
    np.testing.assert_allclose(jnp.moveaxis(conv(jnp.moveaxis(x, 0, -1)), -1, 0), ref(x), rtol=1e-5, atol=1e-5)


def test_channels_last_group_norm_matches_equinox_channels_first():
    norm = GroupNorm(4, 12)
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, (jnp.arange(12.0), -jnp.arange(12.0)))
    ref = eqx.tree_at(lambda n: (n.weight, n.bias), eqx.nn.GroupNorm(4, 12), (jnp.arange(12.0), -jnp.arange(12.0)))
    x = 3 * jax.random.normal(jax.random.key(0), (12, 5, 6)) + 1
    np.testing.assert_allclose(jnp.moveaxis(norm(jnp.moveaxis(x, 0, -1)), -1, 0), ref(x), rtol=1e-5, atol=1e-5)


def test_group_norm_takes_bf16_statistics_in_fp32():
    # Under bf16 mixed precision the statistics keep fp32 accuracy: the bf16 output is the fp32 result rounded once.
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), GroupNorm(4, 12), (jnp.arange(12.0), -jnp.arange(12.0)))
    x = (3 * jax.random.normal(jax.random.key(0), (5, 6, 12)) + 100).astype(jnp.bfloat16)  # mean >> std
    y = norm(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, norm(x.astype(jnp.float32)).astype(jnp.bfloat16))
