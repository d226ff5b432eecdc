"""Time embeddings and the conditioning embedding shared by all genflow networks.

Networks do not fix a time convention: ``t`` is a scalar (a float array of shape ``()``) in whatever
convention the calling family uses, typically in [0, 1]. The embeddings here turn ``t`` and an optional
condition (a class label or a vector) into one feature vector ``e`` that modulates the layers of a network.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow._checks import check_callable, check_even, check_nonnegative


def _sin_cos(angles: Float[Array, " half"]) -> Float[Array, " dim"]:
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class AbstractTimeEmbedding(eqx.Module):
    """An embedding ``e(t)`` of a scalar time into ``dim`` features.

    A network takes the embedding's class (or a ``functools.partial`` of it fixing its hyperparameters) as its
    ``time_embedding`` strategy and builds it as ``time_embedding(dim, key=key)``, so every time embedding has the
    constructor signature ``(dim, ..., *, key)``.
    """

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " dim"]:
        """Embed the scalar time ``t`` (shape ``()``)."""


class SinusoidalEmbedding(AbstractTimeEmbedding):
    r"""Fixed sinusoidal embedding of a scalar time.

    $$e(t) = [\sin(s t \omega_0), \dots, \sin(s t \omega_{d/2-1}), \cos(s t \omega_0), \dots,
    \cos(s t \omega_{d/2-1})], \qquad \omega_k = P^{-k / (d/2)},$$

    with $P$ = ``max_period`` and $s$ = ``time_scale``. The default $s = 1000$ spreads times in [0, 1]
    over the range of integer diffusion steps the embedding was designed for, so they get useful frequencies.

    References:
        Vaswani et al. 2017, "Attention is all you need"; Ho et al. 2020, "Denoising diffusion probabilistic
        models".
    """

    dim: int = eqx.field(static=True)
    max_period: float = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __init__(
        self, dim: int, max_period: float = 10000.0, time_scale: float = 1000.0, *, key: PRNGKeyArray | None = None
    ):
        """Build the embedding.

        Args:
            dim: output size (even).
            max_period: longest period $P$ of the sinusoids.
            time_scale: factor $s$ applied to ``t`` before embedding.
            key: unused (the embedding is deterministic); accepted so that every time embedding is built alike.
        """
        del key
        check_even("dim", dim)
        self.dim = int(dim)
        self.max_period = float(max_period)
        self.time_scale = float(time_scale)

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " dim"]:
        half = self.dim // 2
        omega = jnp.exp(-math.log(self.max_period) * jnp.arange(half) / half)
        return _sin_cos(self.time_scale * jnp.reshape(t, ()) * omega)


class GaussianFourierEmbedding(AbstractTimeEmbedding):
    r"""Random Fourier features of a scalar time with frozen Gaussian frequencies.

    $$e(t) = [\sin(2\pi t w), \cos(2\pi t w)], \qquad w \sim \mathcal{N}(0, \sigma^2 I_{d/2}),$$

    with $\sigma$ = ``scale``. The frequencies $w$ are drawn once and never trained: ``__call__`` wraps them
    in ``jax.lax.stop_gradient``, so their gradient is exactly zero. (They are still an array leaf, so an
    optimizer with weight decay would shrink them; filter them out of the optimizer if that matters.)

    References:
        Tancik et al. 2020, "Fourier features let networks learn high frequency functions in low dimensional
        domains"; Song et al. 2021, "Score-based generative modeling through stochastic differential
        equations".
    """

    freqs: Float[Array, " half"]
    dim: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, dim: int, scale: float = 16.0, *, key: PRNGKeyArray):
        r"""Draw the frequencies.

        Args:
            dim: output size (even).
            scale: standard deviation $\sigma$ of the frequencies.
            key: random key for the frequencies.
        """
        check_even("dim", dim)
        self.dim = int(dim)
        self.scale = float(scale)
        self.freqs = self.scale * jax.random.normal(key, (self.dim // 2,))

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " dim"]:
        # Random features are a fixed basis (Tancik et al. 2020); learning them is not part of the method.
        freqs = jax.lax.stop_gradient(self.freqs)
        return _sin_cos(2 * jnp.pi * jnp.reshape(t, ()) * freqs)


TimeEmbeddingFactory = Callable[..., AbstractTimeEmbedding]
"""What a network's ``time_embedding`` is: called as ``time_embedding(dim, key=key)``, it returns the embedding
(``SinusoidalEmbedding``, ``GaussianFourierEmbedding``, or a ``functools.partial`` of either)."""


def check_condition_args(time_embedding: TimeEmbeddingFactory, emb_dim: int, num_classes: int, cond_dim: int) -> None:
    """Validate the arguments of ``ConditionEmbedding``; networks call it before drawing any random numbers."""
    check_callable(
        "time_embedding", time_embedding, "such as SinusoidalEmbedding or functools.partial(GaussianFourierEmbedding)"
    )
    check_even("emb_dim", emb_dim)
    check_nonnegative("num_classes", num_classes)
    check_nonnegative("cond_dim", cond_dim)
    if num_classes and cond_dim:
        raise ValueError(
            f"num_classes={num_classes} and cond_dim={cond_dim}: a network takes one kind of condition, "
            "so at most one of them may be non-zero."
        )


class ConditionEmbedding(eqx.Module):
    r"""Embedding of time and an optional condition, shared by every genflow network.

    $$e(t, c) = W_2\,\mathrm{silu}(W_1 \gamma(t) + b_1) + b_2 + \eta(c),$$

    where $\gamma$ is the time embedding (an ``AbstractTimeEmbedding``: sinusoidal or Gaussian Fourier) and $\eta$
    embeds the condition:

    - class labels (``num_classes > 0``): a learned table with ``num_classes + 1`` rows. Row
      ``null_label = num_classes`` is the null token of classifier-free guidance; ``cond=None`` uses it.
    - vectors (``cond_dim > 0``): a linear map without bias, $\eta(c) = V c$, so ``cond=None`` (the null
      condition, embedded as zeros) and a zero vector agree.
    - none (both zero): $\eta = 0$, and passing a ``cond`` is an error.

    References:
        Ho et al. 2020, "Denoising diffusion probabilistic models" (time MLP); Ho & Salimans 2022,
        "Classifier-free diffusion guidance" (null token).
    """

    time_embed: AbstractTimeEmbedding
    time_linear1: eqx.nn.Linear
    time_linear2: eqx.nn.Linear
    label_embed: eqx.nn.Embedding | None
    cond_linear: eqx.nn.Linear | None
    emb_dim: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(
        self,
        time_embedding: TimeEmbeddingFactory = SinusoidalEmbedding,
        emb_dim: int = 64,
        num_classes: int = 0,
        cond_dim: int = 0,
        *,
        key: PRNGKeyArray,
    ):
        """Build the embedding.

        Args:
            time_embedding: the time embedding's class (or a partial of it), built as
                ``time_embedding(emb_dim, key=key)``: ``SinusoidalEmbedding`` or ``GaussianFourierEmbedding``.
            emb_dim: size of the output vector (even).
            num_classes: number of class labels; 0 for none.
            cond_dim: size of a vector condition; 0 for none. At most one of ``num_classes`` and ``cond_dim``
                may be non-zero.
            key: random key.
        """
        check_condition_args(time_embedding, emb_dim, num_classes, cond_dim)
        self.emb_dim, self.num_classes, self.cond_dim = int(emb_dim), int(num_classes), int(cond_dim)
        k_time, k1, k2, k_cond = jax.random.split(key, 4)
        self.time_embed = time_embedding(self.emb_dim, key=k_time)
        if not isinstance(self.time_embed, AbstractTimeEmbedding) or self.time_embed.dim != self.emb_dim:
            raise ValueError(
                f"time_embedding={time_embedding!r} built {self.time_embed!r}: need an AbstractTimeEmbedding of "
                f"dim={self.emb_dim} (emb_dim)."
            )
        self.time_linear1 = eqx.nn.Linear(self.emb_dim, self.emb_dim, key=k1)
        self.time_linear2 = eqx.nn.Linear(self.emb_dim, self.emb_dim, key=k2)
        self.label_embed = (
            eqx.nn.Embedding(self.num_classes + 1, self.emb_dim, key=k_cond) if self.num_classes else None
        )
        self.cond_linear = (
            eqx.nn.Linear(self.cond_dim, self.emb_dim, use_bias=False, key=k_cond) if self.cond_dim else None
        )

    @property
    def null_label(self) -> int:
        """The class label of the classifier-free-guidance null token (``num_classes``)."""
        return self.num_classes

    @property
    def is_conditional(self) -> bool:
        """Whether this embedding takes a class label or a vector condition."""
        return bool(self.num_classes or self.cond_dim)

    def __call__(self, t: Float[ArrayLike, ""], cond: ArrayLike | None = None) -> Float[Array, " emb_dim"]:
        """Embed time ``t`` (shape ``()``) and ``cond`` (a label of shape ``()``, a vector, or None)."""
        e = self.time_linear2(jax.nn.silu(self.time_linear1(self.time_embed(t))))
        return e + self._embed_cond(cond)

    def _embed_cond(self, cond: ArrayLike | None) -> Float[Array, " emb_dim"] | float:
        if self.label_embed is not None:
            return self._embed_label(cond)
        if self.cond_linear is not None:
            return self._embed_vector(cond)
        if cond is not None:
            raise ValueError(
                "This network is unconditional (num_classes=0, cond_dim=0, cond_channels=0) but was called "
                "with a `cond`. Build it with num_classes, cond_dim or cond_channels, or pass cond=None."
            )
        return 0.0

    def _embed_label(self, cond: ArrayLike | None) -> Float[Array, " emb_dim"]:
        label = self.null_label if cond is None else cond
        if jnp.shape(label) != ():
            raise ValueError(
                f"A class label must be a scalar per example, got shape {jnp.shape(label)}; batch labels with jax.vmap."
            )
        return self.label_embed(jnp.asarray(label, jnp.int32))

    def _embed_vector(self, cond: ArrayLike | None) -> Float[Array, " emb_dim"]:
        if cond is None:
            return jnp.zeros(self.emb_dim)
        if jnp.shape(cond) != (self.cond_dim,):
            raise ValueError(
                f"A vector condition must have shape ({self.cond_dim},) per example, got {jnp.shape(cond)}."
            )
        return self.cond_linear(cond)
