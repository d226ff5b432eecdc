"""Channels-last convolution and group norm on one image ``(H, W, C)``, for the UNet.

Channels-last because XLA:CPU runs channels-first convolutions inside a loop body (every ``lax.scan`` training
chunk, sampler and ``while_loop`` ODE solve) 10 to 15x slower than outside one (jax#12868), while channels-last
ones run at full speed in both: a 3x3, 32-channel conv on 64 8x8 images took 10.7 ms per iteration in a
``fori_loop`` channels-first and 0.8 ms channels-last on this machine.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


class Conv2d(eqx.Module):
    r"""2D convolution ``(H, W, C_in) -> (H', W', C_out)`` with symmetric zero padding.

    $$y_{ij} = b + \sum_{u, v} W_{uv}^\top x_{s i + u - p,\, s j + v - p}.$$

    Weights and bias start uniform in $\pm 1/\sqrt{k^2 C_{in}}$ (PyTorch's and equinox's default).
    """

    weight: Float[Array, "k k c_in c_out"]
    bias: Float[Array, " c_out"]
    stride: int = eqx.field(static=True)
    padding: int = eqx.field(static=True)

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0, *, key: PRNGKeyArray
    ):
        k_w, k_b = jax.random.split(key)
        bound = 1.0 / math.sqrt(kernel_size * kernel_size * c_in)
        self.weight = jax.random.uniform(k_w, (kernel_size, kernel_size, c_in, c_out), minval=-bound, maxval=bound)
        self.bias = jax.random.uniform(k_b, (c_out,), minval=-bound, maxval=bound)
        self.stride, self.padding = int(stride), int(padding)

    def __call__(self, x: Float[Array, "H W c_in"]) -> Float[Array, "H2 W2 c_out"]:
        pad = ((self.padding, self.padding),) * 2
        y = jax.lax.conv_general_dilated(
            x[None], self.weight.astype(x.dtype), (self.stride,) * 2, pad, dimension_numbers=_DIMENSIONS
        )
        return y[0] + self.bias.astype(x.dtype)


class GroupNorm(eqx.Module):
    r"""Group normalisation of a channels-last image, with a per-channel affine map.

    $$y = \frac{x - \mu_g}{\sqrt{\sigma_g^2 + \epsilon}} \odot w + b,$$

    with $\mu_g, \sigma_g^2$ over the pixels and the channels of each of ``groups`` channel groups. The statistics
    are taken in float32 or wider (a bf16 input is upcast, as equinox's norms do) and the output has the input's
    dtype: under bf16 mixed precision the means and variances keep fp32 accuracy.

    References:
        Wu & He 2018, "Group normalization".
    """

    weight: Float[Array, " C"]
    bias: Float[Array, " C"]
    groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        if channels % groups:
            raise ValueError(f"GroupNorm: groups={groups} must divide channels={channels}")
        self.weight, self.bias = jnp.ones(channels), jnp.zeros(channels)
        self.groups, self.eps = int(groups), float(eps)

    def __call__(self, x: Float[Array, "H W C"]) -> Float[Array, "H W C"]:
        h, w, c = x.shape
        dtype = jnp.promote_types(x.dtype, jnp.float32)
        g = x.astype(dtype).reshape(h, w, self.groups, c // self.groups)
        mean = jnp.mean(g, axis=(0, 1, 3), keepdims=True)
        var = jnp.var(g, axis=(0, 1, 3), keepdims=True)
        g = (g - mean) * jax.lax.rsqrt(var + self.eps)
        y = g.reshape(h, w, c) * self.weight.astype(dtype) + self.bias.astype(dtype)
        return y.astype(x.dtype)
