"""Interface shared by analytic distributions, energies and dataset samplers."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class AbstractDistribution(eqx.Module):
    """Something that can be sampled from a key inside jit.

    ``sample(key, num)`` returns a batch with leading axis ``num``. ``event_shape`` is the shape of one
    example. Subclasses with a tractable density also override ``log_prob`` (per example, batched by leading
    axes) and get ``score`` for free.
    """

    @property
    @abc.abstractmethod
    def event_shape(self) -> tuple[int, ...]:
        """Shape of a single example."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num ..."]:
        """Draw ``num`` independent samples."""

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """Log-density (normalised unless the subclass says otherwise)."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable log_prob")

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """Score ``grad_x log p(x)``, batched over leading axes."""
        flat = x.reshape((-1, *self.event_shape))
        g = jax.vmap(jax.grad(lambda xi: self.log_prob(xi)))(flat)
        return g.reshape(x.shape)


class StandardNormal(AbstractDistribution):
    """N(0, I) over ``shape``; the default base of flows, interpolants and diffusions."""

    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in (shape if hasattr(shape, "__len__") else (shape,)))

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


class AbstractEnergy(AbstractDistribution):
    r"""A sampling target given by an energy: $p(x) \propto \exp(-E(x))$.

    ``log_prob(x)`` returns $-E(x)$ plus the log-normaliser where it is known; the class attribute
    ``normalized`` says which. ``energy`` and ``score`` are batched over the leading axes of ``x``. ``sample``
    is exact where an exact sampler exists and raises ``NotImplementedError`` otherwise.
    """

    normalized: eqx.AbstractClassVar[bool]

    def energy(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """Energy ``E(x) = -log_prob(x)`` (up to the constant when ``normalized`` is False)."""
        return -self.log_prob(x)
