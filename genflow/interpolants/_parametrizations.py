"""What the two networks of a stochastic interpolant learn: ``(b, eta)`` or ``(v, s)``.

With ``x_t = alpha x0 + beta x1 + gamma z`` and ``dI/dt = alpha' x0 + beta' x1``:

    b(t, x)   = E[dI/dt + gamma' z | x_t = x],   eta(t, x) = E[z | x_t = x],
    v(t, x)   = E[dI/dt | x_t = x],              s(t, x) = -eta(t, x) / gamma(t),
    b = v - gamma gamma' s.

Each strategy gives the fields from the two networks' outputs and the terms of its per-pair loss
``1/2 |out|^2 - target . out`` (velocity) and ``1/2 |out|^2 - sign cross`` (second network).

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions", 2023,
    Sec. 2 (the velocity, denoiser and score and their quadratic losses).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from genflow.interpolants._interpolants import AbstractInterpolant

Time = Float[Array, ""]


class AbstractFieldParametrization(eqx.Module):
    """A choice of the two learned fields; the model's ``velocity``, ``denoiser`` and ``score`` read them."""

    @abc.abstractmethod
    def velocity(self, itp: AbstractInterpolant, t: Time, first: Array, second: Callable[[], Array]) -> Array:
        """``b`` from the first network's output and (lazily) the second's."""

    @abc.abstractmethod
    def denoiser(self, itp: AbstractInterpolant, t: Time, second: Array) -> Array:
        """``eta`` from the second network's output."""

    @abc.abstractmethod
    def score(self, itp: AbstractInterpolant, t: Time, second: Array) -> Array:
        """``s`` from the second network's output."""

    @abc.abstractmethod
    def velocity_target(self, dI: Array, dg: Time, sign: float, z: Array) -> Array:
        """The target the first network's output is regressed on, for the antithetic sample ``sign * z``."""

    @abc.abstractmethod
    def second_cross(self, z: Array, out: Array, g: Time) -> Array:
        """The cross term of the second network's loss (before the antithetic sign)."""


class VelocityDenoiser(AbstractFieldParametrization):
    """The first network learns ``b`` with ``L_b = E[1/2 |b_hat|^2 - (dI/dt + gamma' z) . b_hat]``, the second
    ``eta`` with ``L_eta = E[1/2 |eta_hat|^2 - z . eta_hat]`` (Albergo et al. 2023, Thm. 2.8)."""

    def velocity(self, itp, t, first, second):
        return first

    def denoiser(self, itp, t, second):
        return second

    def score(self, itp, t, second):
        return -second / itp.gamma(t)

    def velocity_target(self, dI, dg, sign, z):
        return dI + sign * dg * z

    def second_cross(self, z, out, g):
        return jnp.sum(z * out)


class VelocityScore(AbstractFieldParametrization):
    """The first network learns ``v`` with ``L_v = E[1/2 |v_hat|^2 - dI/dt . v_hat]``, the second the score with
    ``L_s = E[1/2 |s_hat|^2 + z . s_hat / gamma]``; then ``b = v - gamma gamma' s``.

    Both losses stay finite at the ends where ``gamma'`` diverges, and the antithetic pair cancels the ``1/gamma``
    in ``L_s``. Needs a second network and an interpolant with ``gamma``.
    """

    def velocity(self, itp, t, first, second):
        return first - itp.gamma_dgamma(t) * second()

    def denoiser(self, itp, t, second):
        return -itp.gamma(t) * second

    def score(self, itp, t, second):
        return second

    def velocity_target(self, dI, dg, sign, z):
        return dI

    def second_cross(self, z, out, g):
        # z . s / gamma; where gamma = 0 the pair's terms cancel exactly, so divide by 1 there.
        return -jnp.sum(z * out) / jnp.where(g > 0, g, 1.0)
