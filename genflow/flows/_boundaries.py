"""What a rational-quadratic spline does at the ends of its interval: linear tails, or a circle.

A boundary module knows the name distrax uses for its boundary slopes (passed through to
``distrax.RationalQuadraticSpline``), how many parameters it adds, and how it wraps the spline's output and input.

References:
    Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019.
    Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan, Cranmer, "Normalizing Flows on Tori and Spheres",
    ICML 2020.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar


class AbstractBoundary(eqx.Module):
    """The behaviour of a spline at the ends of ``[range_min, range_max]``.

    ``distrax_slopes`` is distrax's ``boundary_slopes`` name; ``num_extra_params`` parameters follow the spline's
    ``3 K + 1``.
    """

    distrax_slopes: eqx.AbstractClassVar[str]
    num_extra_params: eqx.AbstractClassVar[int]

    @abc.abstractmethod
    def after_transform(self, y: Scalar, extra: Float[Array, " e"], range_min: float, range_max: float) -> Scalar:
        """Map the spline's output ``y`` to the transformer's output (a rotation for circles)."""

    @abc.abstractmethod
    def before_inverse(self, y: Scalar, extra: Float[Array, " e"], range_min: float, range_max: float) -> Scalar:
        """Undo :meth:`after_transform` before the spline's inverse."""


class _AbstractTails(AbstractBoundary):
    """Linear tails outside the interval: nothing to wrap, no extra parameter."""

    num_extra_params: ClassVar[int] = 0

    def after_transform(self, y, extra, range_min, range_max):
        return y

    def before_inverse(self, y, extra, range_min, range_max):
        return y


class IdentityTails(_AbstractTails):
    """Boundary slopes 1 and the identity outside the interval (Durkan et al.'s linear tails)."""

    distrax_slopes: ClassVar[str] = "identity"


class LinearTails(_AbstractTails):
    """Learned boundary slopes and linear tails with those slopes outside the interval."""

    distrax_slopes: ClassVar[str] = "unconstrained"


class Circular(AbstractBoundary):
    r"""Rezende et al.'s circular spline followed by a conditioned rotation.

    Equal slopes at both ends make ``f(x + P) = f(x) + P`` with a continuous derivative on the circle of period
    ``P = range_max - range_min``. The rotation ``y -> wrap(y + phi)``, ``phi = (P / 2) tanh(theta)`` with one extra
    parameter ``theta``, moves the otherwise fixed point ``range_min`` (tanh keeps ``phi`` within one turn, and
    ``theta = 0`` is the identity). Inputs must lie in ``[range_min, range_max)``.
    """

    distrax_slopes: ClassVar[str] = "circular"
    num_extra_params: ClassVar[int] = 1

    def after_transform(self, y, extra, range_min, range_max):
        return _wrap(y + _rotation(extra, range_max - range_min), range_min, range_max)

    def before_inverse(self, y, extra, range_min, range_max):
        return _wrap(y - _rotation(extra, range_max - range_min), range_min, range_max)


def _wrap(x, range_min, range_max):
    return jnp.mod(x - range_min, range_max - range_min) + range_min


def _rotation(extra, period):
    return 0.5 * period * jnp.tanh(extra[0])
