"""A small UNet for channels-first images ``(C, H, W)``.

It acts on one example, ``net(t, x, cond=None)``; batch with ``jax.vmap``. Small enough to train on CPU on 8x8
digits, and works on 28x28 images (28 -> 14 -> 7) or any other size: upsampling resizes to the skip
connection's size, so odd sizes need no special care. Inside, features are channels-last ``(H, W, C)``: XLA:CPU
runs channels-first convolutions 10-15x slower inside loops (genflow/nn/_conv.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow._checks import check_nonnegative, check_positive
from genflow.nn._conv import Conv2d, GroupNorm
from genflow.nn._embeddings import ConditionEmbedding, SinusoidalEmbedding, TimeEmbeddingFactory, check_condition_args
from genflow.nn._mlp import FiLM


def _group_norm(channels: int) -> GroupNorm:
    # gcd(8, C) always divides C, whereas min(8, C) does not (e.g. C = 12).
    return GroupNorm(math.gcd(8, channels), channels)


def _conv3x3(c_in: int, c_out: int, *, key: PRNGKeyArray, stride: int = 1) -> Conv2d:
    return Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, key=key)


class _ResBlock(eqx.Module):
    r"""Residual block $h + \mathrm{conv}(\mathrm{silu}(\mathrm{FiLM}(\mathrm{GN}(r), e)))$,
    $r = \mathrm{conv}(\mathrm{silu}(\mathrm{GN}(h)))$; a 1x1 conv on the skip path if the channels change."""

    norm1: GroupNorm
    conv1: Conv2d
    film: FiLM
    norm2: GroupNorm
    conv2: Conv2d
    skip: Conv2d | None

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, key: PRNGKeyArray):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1 = _group_norm(c_in)
        self.conv1 = _conv3x3(c_in, c_out, key=k1)
        self.film = FiLM(emb_dim, c_out, key=k2, axis=-1)
        self.norm2 = _group_norm(c_out)
        self.conv2 = _conv3x3(c_out, c_out, key=k3)
        self.skip = Conv2d(c_in, c_out, kernel_size=1, key=k4) if c_in != c_out else None

    def __call__(self, h: Float[Array, "H W c_in"], e: Float[Array, " emb_dim"]) -> Float[Array, "H W c_out"]:
        r = self.conv1(jax.nn.silu(self.norm1(h)))
        r = self.conv2(jax.nn.silu(self.film(self.norm2(r), e)))
        return r + (h if self.skip is None else self.skip(h))


class _Upsample(eqx.Module):
    """Nearest-neighbour resize to a target size, then a 3x3 conv (avoids transposed-conv checkerboards)."""

    conv: Conv2d

    def __init__(self, c_in: int, c_out: int, *, key: PRNGKeyArray):
        self.conv = _conv3x3(c_in, c_out, key=key)

    def __call__(self, h: Float[Array, "h w c_in"], size: tuple[int, int]) -> Float[Array, "H W c_out"]:
        return self.conv(jax.image.resize(h, (*size, h.shape[-1]), method="nearest"))


class UNet(eqx.Module):
    r"""UNet with FiLM-conditioned residual blocks, for channels-first images.

    Level $i$ works at resolution $H / 2^i$ with ``base_channels * channel_mults[i]`` channels. The encoder
    runs ``num_res_blocks`` residual blocks per level and downsamples with a stride-2 convolution; the decoder
    concatenates the encoder's output of the same level, runs ``num_res_blocks`` blocks and upsamples (nearest
    + conv). Each residual block modulates its normalised features with the embedding $e(t, c)$:

    $$r = \mathrm{conv}_1(\mathrm{silu}(\mathrm{GN}(h))), \qquad
    h' = h + \mathrm{conv}_2(\mathrm{silu}(\mathrm{GN}(r) \odot (1 + \gamma(e)) + \beta(e))).$$

    Conditions: class labels (``num_classes``) or a vector (``cond_dim``) go through ``ConditionEmbedding``;
    image-shaped conditions (``cond_channels``; an in-painting mask, a low-resolution image) of shape
    ``(cond_channels, H, W)`` are concatenated to the input channels; there ``cond=None`` stands for zeros.

    References:
        Ronneberger et al. 2015, "U-Net: convolutional networks for biomedical image segmentation"; Ho et al.
        2020, "Denoising diffusion probabilistic models"; Nichol & Dhariwal 2021, "Improved denoising
        diffusion probabilistic models" (scale-shift norm).
    """

    embed: ConditionEmbedding
    conv_in: Conv2d
    down_blocks: tuple[tuple[_ResBlock, ...], ...]
    downsamples: tuple[Conv2d, ...]
    mid_blocks: tuple[_ResBlock, _ResBlock]
    up_blocks: tuple[tuple[_ResBlock, ...], ...]
    upsamples: tuple[_Upsample, ...]
    norm_out: GroupNorm
    conv_out: Conv2d
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    channel_mults: tuple[int, ...] = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 8,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        emb_dim: int = 128,
        num_classes: int = 0,
        cond_dim: int = 0,
        cond_channels: int = 0,
        time_embedding: TimeEmbeddingFactory = SinusoidalEmbedding,
        *,
        key: PRNGKeyArray,
    ):
        """Build the network.

        Args:
            in_channels: channels of ``x``.
            out_channels: channels of the output; defaults to ``in_channels``.
            image_size: height and width of ``x`` (used for ``data_shape``; the network accepts any size).
            base_channels: channels at the first level.
            channel_mults: channel multiplier of each level; its length is the number of levels.
            num_res_blocks: residual blocks per level, in the encoder and in the decoder.
            emb_dim: size of the time/condition embedding.
            num_classes: number of class labels (0: none); label ``num_classes`` is the null token.
            cond_dim: size of a vector condition (0: none).
            cond_channels: channels of an image-shaped condition concatenated to ``x`` (0: none).
            time_embedding: ``SinusoidalEmbedding`` (default), ``GaussianFourierEmbedding`` or a partial of either.
            key: random key.
        """
        self._check_args(in_channels, image_size, base_channels, channel_mults, num_res_blocks, cond_channels)
        check_condition_args(time_embedding, emb_dim, num_classes, cond_dim)
        if cond_channels and (num_classes or cond_dim):
            raise ValueError(
                f"cond_channels={cond_channels} with num_classes={num_classes}, cond_dim={cond_dim}: "
                "a network takes one kind of condition."
            )
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.cond_channels = int(cond_channels)
        self.out_channels = self.in_channels if out_channels is None else int(out_channels)
        self.channel_mults = tuple(int(m) for m in channel_mults)
        chans = tuple(base_channels * m for m in self.channel_mults)
        # Enough keys for every layer: embedding, in/out convs, 2 mid blocks and, per level, the encoder and
        # decoder blocks plus one resampling conv each way.
        keys = iter(jax.random.split(key, 5 + 2 * len(chans) * (num_res_blocks + 1)))
        self.embed = ConditionEmbedding(time_embedding, emb_dim, num_classes, cond_dim, key=next(keys))
        self.conv_in = _conv3x3(self.in_channels + cond_channels, chans[0], key=next(keys))
        self.down_blocks = tuple(
            tuple(_ResBlock(c_prev if j == 0 else c, c, emb_dim, key=next(keys)) for j in range(num_res_blocks))
            for c_prev, c in zip((chans[0],) + chans[:-1], chans, strict=True)
        )
        self.downsamples = tuple(_conv3x3(c, c, stride=2, key=next(keys)) for c in chans[:-1])
        self.mid_blocks = tuple(_ResBlock(chans[-1], chans[-1], emb_dim, key=next(keys)) for _ in range(2))
        self.up_blocks = tuple(
            tuple(_ResBlock(2 * c if j == 0 else c, c, emb_dim, key=next(keys)) for j in range(num_res_blocks))
            for c in chans
        )
        self.upsamples = tuple(
            _Upsample(c, c_prev, key=next(keys)) for c_prev, c in zip(chans[:-1], chans[1:], strict=True)
        )
        self.norm_out = _group_norm(chans[0])
        self.conv_out = _conv3x3(chans[0], self.out_channels, key=next(keys))

    @staticmethod
    def _check_args(
        in_channels: int,
        image_size: int,
        base_channels: int,
        channel_mults: Sequence[int],
        num_res_blocks: int,
        cond_channels: int,
    ) -> None:
        for name, value in (
            ("in_channels", in_channels),
            ("image_size", image_size),
            ("base_channels", base_channels),
            ("num_res_blocks", num_res_blocks),
        ):
            check_positive(name, value)
        check_nonnegative("cond_channels", cond_channels)
        if len(channel_mults) == 0:
            raise ValueError("channel_mults=[] must name at least one level.")
        for m in channel_mults:
            check_positive("channel_mults[i]", m)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """Shape of one example ``x``: ``(in_channels, image_size, image_size)``."""
        return (self.in_channels, self.image_size, self.image_size)

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, "C H W"], cond: ArrayLike | None = None
    ) -> Float[Array, "C_out H W"]:
        e = self.embed(t, None if self.cond_channels else cond)
        h = self.conv_in(jnp.moveaxis(self._concat_cond(x, cond), 0, -1))  # channels-last inside
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, e)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        for block in self.mid_blocks:
            h = block(h, e)
        for i in reversed(range(len(self.up_blocks))):
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for block in self.up_blocks[i]:
                h = block(h, e)
            if i > 0:
                h = self.upsamples[i - 1](h, skips[i - 1].shape[:2])
        return jnp.moveaxis(self.conv_out(jax.nn.silu(self.norm_out(h))), -1, 0)

    def _concat_cond(self, x: Float[Array, "C H W"], cond: ArrayLike | None) -> Float[Array, "C_all H W"]:
        if not self.cond_channels:
            return x
        # cond=None is the null condition of classifier-free guidance: all-zero condition channels.
        cond = jnp.zeros((self.cond_channels, *x.shape[1:]), x.dtype) if cond is None else jnp.asarray(cond)
        if cond.shape != (self.cond_channels, *x.shape[1:]):
            raise ValueError(
                f"An image condition must have shape {(self.cond_channels, *x.shape[1:])} per example, "
                f"got {cond.shape}."
            )
        return jnp.concatenate([x, cond.astype(x.dtype)])
