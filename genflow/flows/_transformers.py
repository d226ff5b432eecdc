"""Parametrised scalar bijections ("transformers" in the terminology of Papamakarios et al. 2021).

A transformer maps one scalar ``x`` to ``y = tau(x; theta)``, monotonically increasing in ``x``, given an
unconstrained parameter vector ``theta`` of length ``num_params`` that a conditioner network produces. Coupling
and autoregressive layers apply it elementwise (with ``jax.vmap``). All-zero parameters give the identity map,
so a conditioner whose output layer starts at zero makes the whole flow start at the identity.

References:
    Papamakarios, Nalisnick, Rezende, Mohamed, Lakshminarayanan, "Normalizing Flows for Probabilistic Modeling
    and Inference", JMLR 2021, section 3.1.
"""

from __future__ import annotations

import abc
import math

import distrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from genflow._checks import check_positive
from genflow.flows._boundaries import AbstractBoundary, Circular, IdentityTails


class AbstractTransformer(eqx.Module):
    """A scalar bijection ``y = tau(x; theta)`` with ``theta`` of length ``num_params``.

    ``circular`` transformers act on an angle in ``[range_min, range_max)`` and map it onto the same circle.
    """

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Length of the unconstrained parameter vector."""

    @property
    @abc.abstractmethod
    def circular(self) -> bool:
        """Whether the transformer maps the circle ``[range_min, range_max)`` onto itself."""

    @abc.abstractmethod
    def transform_and_log_det(self, x: Scalar, params: Float[Array, " p"]) -> tuple[Scalar, Scalar]:
        """``(tau(x), log tau'(x))``."""

    @abc.abstractmethod
    def inverse_and_log_det(self, y: Scalar, params: Float[Array, " p"]) -> tuple[Scalar, Scalar]:
        """``(tau^{-1}(y), -log tau'(tau^{-1}(y)))``."""


class AffineTransformer(AbstractTransformer):
    r"""RealNVP's affine transformer $y = \mu + e^{s} x$ with a softly clamped log-scale.

    $$s = c \tanh(\tilde s / c),$$

    which is the identity near zero and keeps $|s| < c$, so one bad conditioner output cannot blow up the
    flow (Dinh et al. use a tanh-scaled log-scale for the same reason).

    Args:
        max_log_scale: the clamp ``c``.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017.
    """

    max_log_scale: float = eqx.field(static=True, default=5.0)

    @property
    def num_params(self) -> int:
        return 2

    @property
    def circular(self) -> bool:
        return False

    def _loc_log_scale(self, params):
        c = self.max_log_scale
        return params[0], c * jnp.tanh(params[1] / c)

    def transform_and_log_det(self, x, params):
        loc, s = self._loc_log_scale(params)
        return loc + jnp.exp(s) * x, s

    def inverse_and_log_det(self, y, params):
        loc, s = self._loc_log_scale(params)
        return (y - loc) * jnp.exp(-s), -s


class RQSplineTransformer(AbstractTransformer):
    r"""Monotonic rational-quadratic spline on ``[range_min, range_max]`` (distrax's implementation).

    On each bin $k$ with $\xi = (x - x_k)/w_k$, $s_k = h_k / w_k$ and knot slopes $\delta_k$,

    $$y = y_k + \frac{h_k [s_k \xi^2 + \delta_k \xi(1-\xi)]}{s_k + (\delta_{k+1} + \delta_k - 2 s_k)\xi(1-\xi)}.$$

    ``boundary`` sets the behaviour at the ends of the interval:

    - ``IdentityTails()``: boundary slopes 1, identity outside the interval (Durkan et al.'s linear tails);
    - ``LinearTails()``: learned boundary slopes, linear tails with those slopes;
    - ``Circular()``: equal slopes at both ends (Rezende et al.'s circular spline), so ``f(x + P) = f(x) + P``
      with a continuous derivative on the circle of period ``P = range_max - range_min``. It is followed by a
      rotation ``y -> wrap(y + phi)`` with a conditioned angle ``phi`` (one extra parameter), which moves the
      otherwise fixed point ``range_min``. Inputs must lie in ``[range_min, range_max)``.

    Parameters: ``3 K + 1`` (bin widths, bin heights, knot slopes; plus one rotation for circles).

    Out-of-range inputs are safe for gradients: distrax clips the bin coordinate before the rational function,
    so the unused branch of the tail ``where`` stays finite (a NaN there would poison the gradient).

    References:
        Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019.
        Rezende, Papamakarios, Racanière, Albergo, Kanwar, Shanahan, Cranmer, "Normalizing Flows on Tori and
        Spheres", ICML 2020.
    """

    knots: int = eqx.field(static=True)
    range_min: float = eqx.field(static=True)
    range_max: float = eqx.field(static=True)
    boundary: AbstractBoundary
    min_bin_size: float = eqx.field(static=True)
    min_knot_slope: float = eqx.field(static=True)

    def __init__(
        self,
        knots: int = 8,
        interval: float | tuple[float, float] = 4.0,
        boundary: AbstractBoundary | None = None,
        min_bin_size: float = 1e-4,
        min_knot_slope: float = 1e-4,
    ):
        """Build the spline.

        Args:
            knots: number of bins ``K``.
            interval: ``B`` for ``[-B, B]``, or a pair ``(range_min, range_max)``.
            boundary: ``IdentityTails()`` (``None``), ``LinearTails()`` or ``Circular()``.
            min_bin_size: smallest bin width and height.
            min_knot_slope: smallest knot slope.
        """
        check_positive("knots", knots)
        boundary = IdentityTails() if boundary is None else boundary
        if not isinstance(boundary, AbstractBoundary):
            raise ValueError(
                f"boundary={boundary!r} is invalid: allowed are IdentityTails(), LinearTails() and Circular()"
            )
        lo, hi = (-float(interval), float(interval)) if not hasattr(interval, "__len__") else map(float, interval)
        if not lo < hi:
            raise ValueError(f"interval={interval!r} is invalid: must be B > 0 or (range_min, range_max) increasing")
        self.knots, self.range_min, self.range_max, self.boundary = int(knots), lo, hi, boundary
        self.min_bin_size, self.min_knot_slope = float(min_bin_size), float(min_knot_slope)

    @property
    def circular(self) -> bool:
        return isinstance(self.boundary, Circular)

    @property
    def period(self) -> float:
        return self.range_max - self.range_min

    @property
    def num_params(self) -> int:
        return 3 * self.knots + 1 + self.boundary.num_extra_params

    def spline(self, params: Float[Array, " p"]) -> distrax.RationalQuadraticSpline:
        """The distrax spline for these parameters (without the rotation)."""
        return distrax.RationalQuadraticSpline(
            params[: 3 * self.knots + 1],
            self.range_min,
            self.range_max,
            boundary_slopes=self.boundary.distrax_slopes,
            min_bin_size=self.min_bin_size,
            min_knot_slope=self.min_knot_slope,
        )

    def transform_and_log_det(self, x, params):
        y, ld = self.spline(params).forward_and_log_det(x)
        extra = params[3 * self.knots + 1 :]
        return self.boundary.after_transform(y, extra, self.range_min, self.range_max), ld

    def inverse_and_log_det(self, y, params):
        y = self.boundary.before_inverse(y, params[3 * self.knots + 1 :], self.range_min, self.range_max)
        return self.spline(params).inverse_and_log_det(y)


def circular_features(x: Float[Array, " d"], range_min: float, range_max: float) -> Float[Array, " two_d"]:
    """``[cos 2 pi u, sin 2 pi u]`` with ``u = (x - range_min)/period``: a conditioner input that is periodic."""
    u = 2 * math.pi * (x - range_min) / (range_max - range_min)
    return jnp.concatenate([jnp.cos(u), jnp.sin(u)])
