"""Interpolant schedules ``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z``.

Convention: t=0 is the base (source) x0, t=1 is the target x1; alpha(0) = beta(1) = 1, alpha(1) = beta(0) = 0
and gamma(0) = gamma(1) = 0.

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions",
    2023. Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023. Liu et al., "Flow Straight and Fast",
    ICLR 2023.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Time = Float[Array, ""]


class AbstractInterpolant(eqx.Module):
    """Coefficients of a stochastic interpolant and their time derivatives.

    Derivatives default to autodiff of the coefficients; subclasses override them with closed forms where those
    are cheaper or, for ``gamma * gamma'``, finite where autodiff is not (at the endpoints).
    """

    @abc.abstractmethod
    def alpha(self, t: Time) -> Time: ...

    @abc.abstractmethod
    def beta(self, t: Time) -> Time: ...

    def gamma(self, t: Time) -> Time:
        return jnp.zeros_like(t)

    def dalpha(self, t: Time) -> Time:
        return jax.grad(self.alpha)(t)

    def dbeta(self, t: Time) -> Time:
        return jax.grad(self.beta)(t)

    def dgamma(self, t: Time) -> Time:
        return jnp.zeros_like(t)

    def interpolate(self, t: Time, x0: Array, x1: Array, z: Array | None = None) -> Array:
        """``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` for one example."""
        xt = self.alpha(t) * x0 + self.beta(t) * x1
        return xt if z is None else xt + self.gamma(t) * z

    def velocity_target(self, t: Time, x0: Array, x1: Array, z: Array | None = None) -> Array:
        """``d x_t / dt = alpha'(t) x0 + beta'(t) x1 + gamma'(t) z`` for one example."""
        v = self.dalpha(t) * x0 + self.dbeta(t) * x1
        return v if z is None else v + self.dgamma(t) * z


class LinearInterpolant(AbstractInterpolant):
    """``x_t = (1 - t) x0 + t x1``: the rectified-flow / conditional-OT path, velocity ``x1 - x0``."""

    def alpha(self, t):
        return 1.0 - t

    def beta(self, t):
        return t

    def dalpha(self, t):
        return -jnp.ones_like(t)

    def dbeta(self, t):
        return jnp.ones_like(t)
