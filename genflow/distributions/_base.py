"""Interfaces shared by analytic distributions, energies and dataset samplers.

``AbstractDistribution`` is anything that can be sampled (every dataset is one); ``AbstractDensity`` adds a tractable
log-density and its score; ``AbstractEnergy`` is a density given by an energy, possibly unnormalised.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import as_shape


class AbstractDistribution(eqx.Module):
    """Something that can be sampled from a key inside jit.

    ``sample(key, num)`` returns a batch with leading axis ``num``. ``event_shape`` is the shape of one
    example. Distributions with a tractable density are :class:`AbstractDensity`.
    """

    @property
    @abc.abstractmethod
    def event_shape(self) -> tuple[int, ...]:
        """Shape of a single example."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num ..."]:
        """Draw ``num`` independent samples."""


class AbstractDensity(AbstractDistribution):
    r"""A distribution with a tractable log-density $\log p(x)$ and score $\nabla_x \log p(x)$.

    Both are per example and batched over the leading axes of ``x``. Where no closed-form score is at hand,
    implement ``score`` with :func:`autodiff_score`.
    """

    @abc.abstractmethod
    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """Log-density (normalised unless the class says otherwise, see ``AbstractEnergy.normalized``)."""

    @abc.abstractmethod
    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        r"""Score $\nabla_x \log p(x)$, batched over leading axes."""


def autodiff_score(density: AbstractDensity, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
    r"""$\nabla_x \log p(x)$ of ``density`` by automatic differentiation of its ``log_prob``, batched over leading axes.

    The reference that tests hold closed-form scores to, and the implementation of ``score`` for a density without one.
    """
    flat = x.reshape((-1, *density.event_shape))
    g = jax.vmap(jax.grad(lambda xi: density.log_prob(xi)))(flat)
    return g.reshape(x.shape)


class StandardNormal(AbstractDensity):
    r"""$\mathcal N(0, I)$ over ``shape``; the default base of flows, interpolants and diffusions.

    $$\log p(x) = -\tfrac12 |x|^2 - \tfrac{d}{2} \log 2\pi, \qquad \nabla_x \log p(x) = -x.$$
    """

    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = as_shape(shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.shape

    def sample(self, key, num):
        return jax.random.normal(key, (num, *self.shape))

    def log_prob(self, x):
        axes = tuple(range(x.ndim - len(self.shape), x.ndim))
        d = 1
        for s in self.shape:
            d *= s
        return -0.5 * jnp.sum(x**2, axis=axes) - 0.5 * d * jnp.log(2 * jnp.pi)

    def score(self, x):
        return -x


class AbstractEnergy(AbstractDensity):
    r"""A sampling target given by an energy: $p(x) \propto \exp(-E(x))$.

    ``log_prob(x)`` returns $-E(x)$ plus the log-normaliser where it is known; the class attribute
    ``normalized`` says which. ``energy`` and ``score`` are batched over the leading axes of ``x``. ``sample``
    is exact where an exact sampler exists and raises ``NotImplementedError`` otherwise.
    """

    normalized: eqx.AbstractClassVar[bool]

    def energy(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """Energy ``E(x) = -log_prob(x)`` (up to the constant when ``normalized`` is False)."""
        return -self.log_prob(x)
