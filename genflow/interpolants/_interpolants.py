"""Interpolant schedules ``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z``.

Convention: t=0 is the base (source) x0, t=1 is the target x1; alpha(0) = beta(1) = 1, alpha(1) = beta(0) = 0
and gamma(0) = gamma(1) = 0. ``gamma`` is a separate strategy module so that every interpolant can take every noise
schedule. ``gamma * gamma'`` has a closed form that stays finite at the endpoints even where ``gamma'`` does not
(``gamma = sqrt(a t (1 - t))``), and the samplers and losses use that product rather than the two factors.

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions", 2023.
    Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023. Liu et al., "Flow Straight and Fast", 2023.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Time = Float[Array, ""]
_PI = jnp.pi


class AbstractGamma(eqx.Module):
    """Noise schedule gamma(t) with gamma(0) = gamma(1) = 0."""

    @abc.abstractmethod
    def __call__(self, t: Time) -> Time: ...

    @abc.abstractmethod
    def gamma_dgamma(self, t: Time) -> Time:
        """``gamma(t) gamma'(t)`` in closed form (finite on [0, 1])."""

    @abc.abstractmethod
    def dgamma(self, t: Time) -> Time:
        """``gamma'(t)`` (where it diverges, see :func:`dgamma_from_product`)."""


def dgamma_from_product(gamma: AbstractGamma, t: Time) -> Time:
    """``gamma'(t)`` taken as ``(gamma gamma') / gamma``, and 0 where gamma = 0 (only multiplied by zero there).

    For schedules whose ``gamma'`` diverges at the ends (``gamma = sqrt(a t (1 - t))``).
    """
    g = gamma(t)
    safe = jnp.where(g > 0, g, 1.0)
    return jnp.where(g > 0, gamma.gamma_dgamma(t) / safe, 0.0)


def autodiff_derivative(fn, t: Time) -> Time:
    """``fn'(t)`` by autodiff, for coefficients without a closed-form derivative."""
    return jax.grad(fn)(jnp.asarray(t, float))


class NoGamma(AbstractGamma):
    """``gamma = 0``: a deterministic interpolant."""

    def __call__(self, t):
        return jnp.zeros_like(t)

    def gamma_dgamma(self, t):
        return jnp.zeros_like(t)

    def dgamma(self, t):
        return dgamma_from_product(self, t)


class SqrtGamma(AbstractGamma):
    """``gamma = sqrt(a t (1 - t))``, ``gamma gamma' = a (1 - 2t) / 2`` (gamma' itself diverges at 0 and 1)."""

    a: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not 0 < self.a <= 4:
            raise ValueError(f"a={self.a!r} is invalid: must lie in (0, 4] so that gamma <= 1")

    def __call__(self, t):
        return jnp.sqrt(self.a * t * (1 - t))

    def gamma_dgamma(self, t):
        return self.a * (1 - 2 * t) / 2

    def dgamma(self, t):
        return dgamma_from_product(self, t)


class QuadraticGamma(AbstractGamma):
    """``gamma = c t (1 - t)``, ``gamma gamma' = c^2 t (1 - t)(1 - 2t)``."""

    c: float = eqx.field(static=True, default=1.0)

    def __call__(self, t):
        return self.c * t * (1 - t)

    def gamma_dgamma(self, t):
        return self.c**2 * t * (1 - t) * (1 - 2 * t)

    def dgamma(self, t):
        return self.c * (1 - 2 * t)


class SinSquaredGamma(AbstractGamma):
    """``gamma = sin^2(pi t)``, ``gamma gamma' = pi sin^2(pi t) sin(2 pi t)``."""

    def __call__(self, t):
        return jnp.sin(_PI * t) ** 2

    def gamma_dgamma(self, t):
        return _PI * jnp.sin(_PI * t) ** 2 * jnp.sin(2 * _PI * t)

    def dgamma(self, t):
        return _PI * jnp.sin(2 * _PI * t)


class AbstractInterpolant(eqx.Module):
    """Coefficients of a stochastic interpolant and their time derivatives.

    Each final interpolant gives ``alpha``, ``beta`` and their derivatives ``dalpha``, ``dbeta`` (a closed form, or
    :func:`autodiff_derivative`).
    """

    gamma: eqx.AbstractVar[AbstractGamma]

    @abc.abstractmethod
    def alpha(self, t: Time) -> Time: ...

    @abc.abstractmethod
    def beta(self, t: Time) -> Time: ...

    @abc.abstractmethod
    def dalpha(self, t: Time) -> Time: ...

    @abc.abstractmethod
    def dbeta(self, t: Time) -> Time: ...

    def dgamma(self, t: Time) -> Time:
        return self.gamma.dgamma(t)

    def gamma_dgamma(self, t: Time) -> Time:
        return self.gamma.gamma_dgamma(t)

    def interpolate(self, t: Time, x0: Array, x1: Array, z: Array | None = None) -> Array:
        """``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` for one example."""
        xt = self.alpha(t) * x0 + self.beta(t) * x1
        return xt if z is None else xt + self.gamma(t) * z

    def time_derivative(self, t: Time, x0: Array, x1: Array) -> Array:
        """``dI/dt = alpha'(t) x0 + beta'(t) x1`` (the deterministic part of ``d x_t / dt``)."""
        return self.dalpha(t) * x0 + self.dbeta(t) * x1

    def velocity_target(self, t: Time, x0: Array, x1: Array, z: Array | None = None) -> Array:
        """``d x_t / dt = alpha'(t) x0 + beta'(t) x1 + gamma'(t) z`` for one example."""
        v = self.time_derivative(t, x0, x1)
        return v if z is None else v + self.dgamma(t) * z


class LinearInterpolant(AbstractInterpolant):
    """``alpha = 1 - t``, ``beta = t``: the rectified-flow / conditional-OT path (velocity ``x1 - x0`` if gamma = 0)."""

    gamma: AbstractGamma = NoGamma()

    def alpha(self, t):
        return 1.0 - t

    def beta(self, t):
        return t

    def dalpha(self, t):
        return -jnp.ones_like(t)

    def dbeta(self, t):
        return jnp.ones_like(t)


class GVPInterpolant(AbstractInterpolant):
    """Generalised variance-preserving path ``alpha = cos(pi t / 2)``, ``beta = sin(pi t / 2)``."""

    gamma: AbstractGamma = NoGamma()

    def alpha(self, t):
        return jnp.cos(_PI * t / 2)

    def beta(self, t):
        return jnp.sin(_PI * t / 2)

    def dalpha(self, t):
        return -_PI / 2 * jnp.sin(_PI * t / 2)

    def dbeta(self, t):
        return _PI / 2 * jnp.cos(_PI * t / 2)


class TrigInterpolant(AbstractInterpolant):
    """Variance-preserving trigonometric interpolant with noise:

    ``alpha = sqrt(1 - gamma^2) cos(pi t / 2)``, ``beta = sqrt(1 - gamma^2) sin(pi t / 2)``, so that
    ``alpha^2 + beta^2 + gamma^2 = 1``. Derivatives use ``d sqrt(1 - gamma^2)/dt = -gamma gamma' / sqrt(1 - gamma^2)``.
    """

    gamma: AbstractGamma = SqrtGamma(1.0)

    def _r(self, t):
        return jnp.sqrt(1 - self.gamma(t) ** 2)

    def alpha(self, t):
        return self._r(t) * jnp.cos(_PI * t / 2)

    def beta(self, t):
        return self._r(t) * jnp.sin(_PI * t / 2)

    def dalpha(self, t):
        r = self._r(t)
        return -self.gamma_dgamma(t) / r * jnp.cos(_PI * t / 2) - r * _PI / 2 * jnp.sin(_PI * t / 2)

    def dbeta(self, t):
        r = self._r(t)
        return -self.gamma_dgamma(t) / r * jnp.sin(_PI * t / 2) + r * _PI / 2 * jnp.cos(_PI * t / 2)


class EncoderDecoderInterpolant(AbstractInterpolant):
    """Encode x0 into noise on [0, 1/2], decode noise into x1 on [1/2, 1]:

    ``alpha = cos^2(pi t) 1[t < 1/2]``, ``beta = cos^2(pi t) 1[t >= 1/2]``, ``gamma = sin^2(pi t)``.
    """

    gamma: AbstractGamma = SinSquaredGamma()

    def alpha(self, t):
        return jnp.where(t < 0.5, jnp.cos(_PI * t) ** 2, 0.0)

    def beta(self, t):
        return jnp.where(t >= 0.5, jnp.cos(_PI * t) ** 2, 0.0)

    def dalpha(self, t):
        return jnp.where(t < 0.5, -_PI * jnp.sin(2 * _PI * t), 0.0)

    def dbeta(self, t):
        return jnp.where(t >= 0.5, -_PI * jnp.sin(2 * _PI * t), 0.0)


class OneSidedInterpolant(AbstractInterpolant):
    """One-sided interpolant for a Gaussian base x0 ~ N(0, I) and no extra noise: ``x_t = alpha x0 + beta x1``.

    ``schedule`` is the deterministic interpolant whose ``alpha`` and ``beta`` it takes: ``LinearInterpolant()``
    (``alpha = 1 - t``, ``beta = t``, the default) or ``GVPInterpolant()`` (``alpha = cos(pi t / 2)``,
    ``beta = sin(pi t / 2)``). The Gaussian x0 plays the role of the noise, so the score is
    ``s(t, x) = -E[x0 | x_t = x] / alpha(t)``.
    """

    schedule: AbstractInterpolant = LinearInterpolant()
    gamma: AbstractGamma = NoGamma()

    def __check_init__(self):
        if not isinstance(self.schedule, AbstractInterpolant) or not isinstance(self.schedule.gamma, NoGamma):
            raise ValueError(
                f"schedule={self.schedule!r} is invalid; allowed: a deterministic interpolant (gamma NoGamma()), "
                "e.g. LinearInterpolant() or GVPInterpolant()"
            )

    def alpha(self, t):
        return self.schedule.alpha(t)

    def beta(self, t):
        return self.schedule.beta(t)

    def dalpha(self, t):
        return autodiff_derivative(self.alpha, t)

    def dbeta(self, t):
        return autodiff_derivative(self.beta, t)


class MirrorInterpolant(AbstractInterpolant):
    """``x_t = x1 + gamma(t) z``: both endpoints are the data (x0 = x1); the path adds and removes noise."""

    gamma: AbstractGamma = SqrtGamma(1.0)

    def alpha(self, t):
        return jnp.zeros_like(t)

    def beta(self, t):
        return jnp.ones_like(t)

    def dalpha(self, t):
        return jnp.zeros_like(t)

    def dbeta(self, t):
        return jnp.zeros_like(t)
