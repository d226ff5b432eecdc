"""FiLM-conditioned MLPs for vector data.

Each network acts on one example, ``net(t, x, cond=None)`` with ``x`` of shape ``(data_dim,)``; batch with
``jax.vmap``. The same classes serve as score, velocity, denoiser or (via ``PotentialHead``) potential nets.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow._checks import check_callable, check_positive
from genflow.nn._embeddings import (
    ConditionEmbedding,
    SinusoidalEmbedding,
    TimeEmbeddingFactory,
    check_condition_args,
)

Activation = Callable[[Array], Array]
"""An elementwise nonlinearity, passed as the function itself (``jax.nn.silu``, ``jnp.tanh``, ...)."""


def check_activation(activation: object) -> None:
    """Raise a ValueError unless ``activation`` is a callable (a function, not its name)."""
    check_callable("activation", activation, "such as jax.nn.silu or jax.numpy.tanh")


class FiLM(eqx.Module):
    r"""Feature-wise linear modulation of features ``h`` by an embedding ``e``.

    $$[\gamma, \beta] = W\,\mathrm{silu}(e) + b, \qquad \mathrm{FiLM}(h, e) = h \odot (1 + \gamma) + \beta.$$

    ``h`` has the features on axis ``axis`` (the first by default, ``(features, ...)``; the last for a
    channels-last image); $\gamma, \beta$ broadcast over the other axes (the pixels of an image). The bias $b$
    starts at zero so that the modulation comes from $e$ alone at init.

    References:
        Perez et al. 2018, "FiLM: visual reasoning with a general conditioning layer".
    """

    linear: eqx.nn.Linear
    features: int = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(self, emb_dim: int, features: int, *, key: PRNGKeyArray, axis: int = 0):
        """Build the projection from an ``emb_dim`` embedding to a scale and a shift of ``features`` each."""
        linear = eqx.nn.Linear(emb_dim, 2 * features, key=key)
        self.linear = eqx.tree_at(lambda lin: lin.bias, linear, jnp.zeros_like(linear.bias))
        self.features, self.axis = int(features), int(axis)

    def __call__(self, h: Float[Array, "*shape"], e: Float[Array, " emb_dim"]) -> Float[Array, "*shape"]:
        gamma, beta = jnp.split(self.linear(jax.nn.silu(e)), 2)
        broadcast = [1] * h.ndim
        broadcast[self.axis] = self.features
        return h * (1 + gamma.reshape(broadcast)) + beta.reshape(broadcast)


class _AbstractFiLMNet(eqx.Module):
    r"""A vector network whose layers are FiLM-modulated by the time/condition embedding $e(t, c)$.

    Holds what MLP and ResMLP share (the embedding, the hyperparameters, ``data_shape`` and ``__call__``);
    the final subclass supplies the trunk $f(x, e)$.
    """

    embed: ConditionEmbedding
    data_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)

    def _set_hyperparameters(
        self, data_dim: int, width: int, out_dim: int | None, activation: Activation, condition_args: tuple
    ) -> None:
        """Validate and store the shared hyperparameters; called before any random number is drawn."""
        check_positive("data_dim", data_dim)
        check_positive("width", width)
        check_activation(activation)
        check_condition_args(*condition_args)
        self.data_dim, self.width = int(data_dim), int(width)
        self.out_dim = self.data_dim if out_dim is None else int(out_dim)
        self.activation = activation

    @property
    def data_shape(self) -> tuple[int]:
        """Shape of one example ``x``."""
        return (self.data_dim,)

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, " data_dim"], cond: ArrayLike | None = None
    ) -> Float[Array, " out_dim"]:
        return self.trunk(x, self.embed(t, cond))

    @abc.abstractmethod
    def trunk(self, x: Float[Array, " data_dim"], e: Float[Array, " emb_dim"]) -> Float[Array, " out_dim"]:
        """The network applied to ``x`` given the embedding ``e = embed(t, cond)``."""


class MLP(_AbstractFiLMNet):
    r"""MLP whose every hidden layer is FiLM-modulated by the time/condition embedding.

    $$h_0 = x, \qquad h_\ell = \mathrm{FiLM}_\ell(\sigma(W_\ell h_{\ell-1} + b_\ell),\, e(t, c)), \qquad
    f(t, x, c) = W_{\mathrm{out}} h_L + b_{\mathrm{out}},$$

    for $\ell = 1, \dots, L$ (``depth``), with $e$ from ``ConditionEmbedding`` (see there for ``cond``).

    References:
        Perez et al. 2018, "FiLM: visual reasoning with a general conditioning layer".
    """

    layers: tuple[eqx.nn.Linear, ...]
    films: tuple[FiLM, ...]
    out: eqx.nn.Linear
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        width: int = 128,
        depth: int = 3,
        emb_dim: int = 64,
        num_classes: int = 0,
        cond_dim: int = 0,
        out_dim: int | None = None,
        activation: Activation = jax.nn.silu,
        time_embedding: TimeEmbeddingFactory = SinusoidalEmbedding,
        *,
        key: PRNGKeyArray,
    ):
        r"""Build the network.

        Args:
            data_dim: size of ``x``.
            width: hidden width.
            depth: number of hidden (FiLM-modulated) layers.
            emb_dim: size of the time/condition embedding.
            num_classes: number of class labels (0: none); label ``num_classes`` is the null token.
            cond_dim: size of a vector condition (0: none).
            out_dim: output size; defaults to ``data_dim``.
            activation: the nonlinearity $\sigma$, e.g. ``jax.nn.silu`` (default), ``jax.nn.relu``, ``jnp.tanh``.
            time_embedding: ``SinusoidalEmbedding`` (default), ``GaussianFourierEmbedding`` or a partial of either.
            key: random key.
        """
        condition_args = (time_embedding, emb_dim, num_classes, cond_dim)
        self._set_hyperparameters(data_dim, width, out_dim, activation, condition_args)
        check_positive("depth", depth)
        self.depth = int(depth)
        k_embed, k_out, *keys = jax.random.split(key, 2 + 2 * self.depth)
        self.embed = ConditionEmbedding(*condition_args, key=k_embed)
        sizes = (self.data_dim,) + (self.width,) * self.depth
        self.layers = tuple(
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys[::2], strict=True)
        )
        self.films = tuple(FiLM(emb_dim, self.width, key=k) for k in keys[1::2])
        self.out = eqx.nn.Linear(self.width, self.out_dim, key=k_out)

    def trunk(self, x: Float[Array, " data_dim"], e: Float[Array, " emb_dim"]) -> Float[Array, " out_dim"]:
        h = x
        for layer, film in zip(self.layers, self.films, strict=True):
            h = film(self.activation(layer(h)), e)
        return self.out(h)


class _ResMLPBlock(eqx.Module):
    r"""Pre-norm residual block: $h + W_2\,\sigma(\mathrm{FiLM}(W_1 \mathrm{LN}(h), e))$."""

    norm: eqx.nn.LayerNorm
    linear1: eqx.nn.Linear
    film: FiLM
    linear2: eqx.nn.Linear

    def __init__(self, width: int, emb_dim: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm = eqx.nn.LayerNorm(width)
        self.linear1 = eqx.nn.Linear(width, width, key=k1)
        self.film = FiLM(emb_dim, width, key=k2)
        self.linear2 = eqx.nn.Linear(width, width, key=k3)

    def __call__(
        self, h: Float[Array, " width"], e: Float[Array, " emb_dim"], act: Activation
    ) -> Float[Array, " width"]:
        return h + self.linear2(act(self.film(self.linear1(self.norm(h)), e)))


class ResMLP(_AbstractFiLMNet):
    r"""Residual MLP with FiLM-conditioned pre-norm blocks.

    $$h_0 = W_{\mathrm{in}} x, \qquad h_k = h_{k-1} + W_{k,2}\,\sigma(\mathrm{FiLM}_k(W_{k,1}\,
    \mathrm{LN}(h_{k-1}), e(t, c))), \qquad f(t, x, c) = W_{\mathrm{out}}\,\sigma(\mathrm{LN}(h_K)),$$

    for $k = 1, \dots, K$ (``num_blocks``), with $e$ from ``ConditionEmbedding`` (see there for ``cond``).
    The arguments are those of :class:`MLP`, with ``num_blocks`` residual blocks in place of ``depth`` layers
    (``width`` is the width of the residual stream).

    References:
        He et al. 2016, "Identity mappings in deep residual networks"; Perez et al. 2018, "FiLM: visual
        reasoning with a general conditioning layer".
    """

    linear_in: eqx.nn.Linear
    blocks: tuple[_ResMLPBlock, ...]
    norm_out: eqx.nn.LayerNorm
    out: eqx.nn.Linear
    num_blocks: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        width: int = 128,
        num_blocks: int = 3,
        emb_dim: int = 64,
        num_classes: int = 0,
        cond_dim: int = 0,
        out_dim: int | None = None,
        activation: Activation = jax.nn.silu,
        time_embedding: TimeEmbeddingFactory = SinusoidalEmbedding,
        *,
        key: PRNGKeyArray,
    ):
        condition_args = (time_embedding, emb_dim, num_classes, cond_dim)
        self._set_hyperparameters(data_dim, width, out_dim, activation, condition_args)
        check_positive("num_blocks", num_blocks)
        self.num_blocks = int(num_blocks)
        k_embed, k_in, k_out, *keys = jax.random.split(key, 3 + self.num_blocks)
        self.embed = ConditionEmbedding(*condition_args, key=k_embed)
        self.linear_in = eqx.nn.Linear(self.data_dim, self.width, key=k_in)
        self.blocks = tuple(_ResMLPBlock(self.width, emb_dim, key=k) for k in keys)
        self.norm_out = eqx.nn.LayerNorm(self.width)
        self.out = eqx.nn.Linear(self.width, self.out_dim, key=k_out)

    def trunk(self, x: Float[Array, " data_dim"], e: Float[Array, " emb_dim"]) -> Float[Array, " out_dim"]:
        h = self.linear_in(x)
        for block in self.blocks:
            h = block(h, e, self.activation)
        return self.out(self.activation(self.norm_out(h)))
