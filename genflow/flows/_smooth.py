"""Smooth normalizing flows: mixtures of C-infinity smooth steps on an interval or a circle.

On the unit interval, with the smooth ramp and step (``alpha > 0``, ``beta`` in {1, 2})

    rho(z) = exp(-alpha z^{-beta}) / exp(-alpha)   (z > 0, else 0),
    sigma(z) = rho(z) / (rho(z) + rho(1 - z)) = sigmoid(alpha [(1 - z)^{-beta} - z^{-beta}]),

``sigma`` is 0 for z <= 0, 1 for z >= 1 and C-infinity everywhere. Components and the mixture are

    z_k(u) = s_k (u - mu_k) + 1/2,      g_k(u) = [sigma(z_k(u)) - sigma(z_k(0))] / [sigma(z_k(1)) - sigma(z_k(0))],
    f(u) = (1 - eps) sum_k w_k g_k(u) + eps u,
    log f'(u) = logsumexp_k(log w_k + log((1 - eps) g_k'(u) + eps)).

The ``+ 1/2`` centres each step's transition on ``mu_k`` (as in bgflow); with ``s_k >= 1`` the normaliser is at least
1/2, so no component degenerates. On the circle a component is the periodic staircase
``G_k(u) = floor(v) + sigma(s_k (v mod 1))`` with ``v = u - mu_k + 1/(2 s_k)``: since ``s_k >= 1`` every transition fits
in one period, so ``f(u + 1) = f(u) + 1`` and all derivatives of ``f`` are periodic.

The inverse has no closed form: a multi-bin bracket, bisection and a bracketed Newton finish (optimistix) solve
``f(u) = y``. Its derivatives come from the inverse function theorem (optimistix's implicit adjoint), never from
the loop:

    dx/dy = 1/f'(x),   dx/dtheta = -d_theta f(x) / f'(x),

so forward and reverse mode and higher derivatives (force matching needs d/dtheta of d/dx log q) are exact.

References:
    Köhler, Krämer, Noé, "Smooth Normalizing Flows", NeurIPS 2021.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Scalar

from genflow._checks import check_choice, check_positive
from genflow.flows._transformers import AbstractTransformer

# alpha offsets that make the smooth step's derivative unimodal (bgflow's _SMOOTH_RAMP_INFLECTION_ALPHA_{1,2}).
UNIMODAL_OFFSET = {1: 0.8656721, 2: 0.3052033}
# Values at zero parameters: soft (alpha) and wide (s), overlapping steps make f close to the identity, with
# 0.5 < f' < 1.2 for 4 to 8 evenly spread components. Sharp narrow steps at init would leave plateaus where
# f' = eps, density spikes of 1/eps and an inverse conditioned like 1/eps.
_ALPHA_AT_ZERO = 0.2
_SLOPE_AT_ZERO = 1.1
# Steps are evaluated at z clipped to [_Z_MIN, 1 - _Z_MIN]: there sigma is 0 or 1 to far below float precision
# (alpha z^{-beta} >= 1e6 alpha), and z^{-beta-1} <= 1e18 stays finite in float32, so no branch can make a NaN.
_Z_MIN = 1e-6


def _logit(p):
    return jnp.log(p) - jnp.log1p(-p)


def smooth_step(z: Array, alpha: Array, beta: int) -> Array:
    """``sigma(z) = sigmoid(alpha [(1 - z)^{-beta} - z^{-beta}])`` on (0, 1); 0 below, 1 above."""
    zc = jnp.clip(z, _Z_MIN, 1 - _Z_MIN)
    return jax.nn.sigmoid(alpha * ((1 - zc) ** -beta - zc**-beta))


def log_smooth_step_derivative(z: Array, alpha: Array, beta: int) -> Array:
    """``log sigma'(z) = log sigma + log(1 - sigma) + log(alpha beta (z^{-beta-1} + (1 - z)^{-beta-1}))``.

    Outside (0, 1) it is about ``-1e6 alpha``: the log of an exact zero, but finite and with zero gradient.
    """
    zc = jnp.clip(z, _Z_MIN, 1 - _Z_MIN)
    a = alpha * ((1 - zc) ** -beta - zc**-beta)
    slope = alpha * beta * (zc ** (-beta - 1) + (1 - zc) ** (-beta - 1))
    return jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-a) + jnp.log(slope)


def _bracketed_root(residual, args, lo: float, hi: float, num_bins: int, bisect_steps: int, newton_steps: int):
    """Solve ``residual(u, args) = 0`` for ``residual`` increasing in ``u`` with a root in ``[lo, hi]``.

    ``args[0]`` is the target ``y`` of ``f(u) = y``; its dtype is the solve's.

    One vectorised evaluation on ``num_bins + 1`` grid points brackets the root in one bin; optimistix's
    ``Bisection`` narrows the bracket and ``Newton``, kept inside the narrowed bracket, finishes it. Zero tolerances
    and ``throw=False`` make both run their fixed step counts. The Newton solve's implicit adjoint gives the
    derivatives in ``args`` (the inverse function theorem); the loops are never differentiated.
    """
    grid = jnp.linspace(lo, hi, num_bins + 1, dtype=args[0].dtype)
    values = jax.vmap(lambda u: residual(u, args))(grid)
    k = jnp.clip(jnp.searchsorted(values, jnp.zeros((), values.dtype), side="right") - 1, 0, num_bins - 1)
    bracket = {"lower": grid[k], "upper": grid[k + 1]}
    u0 = 0.5 * (bracket["lower"] + bracket["upper"])
    free = jax.lax.stop_gradient(args)  # the bisection only seeds Newton: its derivatives are never needed
    bisection = optx.Bisection(rtol=0.0, atol=0.0, flip=False)
    sol = optx.root_find(residual, bisection, u0, free, bracket, max_steps=bisect_steps, throw=False)
    bracket = {"lower": sol.state.lower, "upper": sol.state.upper}
    newton = optx.Newton(rtol=0.0, atol=0.0)
    return optx.root_find(residual, newton, sol.value, args, bracket, max_steps=newton_steps, throw=False).value


class SmoothMixtureTransformer(AbstractTransformer):
    r"""Köhler et al.'s smooth mixture of smooth steps, on ``[range_min, range_max]`` or on a circle.

    Parameters per scalar (``4 K``): mixture logits, centres (``mu_k = sigmoid(. + logit((k + 1/2)/K))``, evenly
    spread at zero), slopes (``s_k = s_max^{sigmoid(.)}`` in ``[1, s_max]``, 1.1 at zero) and sharpnesses
    (``alpha_k = alpha_max sigmoid(.)``, 0.2 at zero, plus the unimodality offset). Zero parameters give a map
    close to the identity. ``transform`` is the analytic mixture;
    ``inverse`` is the bracketed root solve with implicit derivatives (wrap a layer in ``Invert`` to make
    density evaluation the analytic direction).

    Args:
        num_components: ``K``.
        interval: the domain ``(range_min, range_max)``; a scalar ``B`` means ``[-B, B]``.
        circular: act on the circle of period ``range_max - range_min`` (torus flows).
        beta: ramp exponent, 1 or 2.
        alpha_max, s_max: upper bounds of the sharpness and the slope.
        eps: weight of the identity in the mixture, so that ``f' >= eps`` (between 1e-6 and 1e-4).
        unimodal: add the unimodality offset to ``alpha``.
        num_bins, bisect_steps, newton_steps: of the inverse (``bisect_steps=None``: 20 in float32, 36 in
            float64, enough with 3 Newton steps for a residual below 1e-10 in float64).

    References:
        Köhler, Krämer, Noé, "Smooth Normalizing Flows", NeurIPS 2021.
    """

    num_components: int = eqx.field(static=True)
    range_min: float = eqx.field(static=True)
    range_max: float = eqx.field(static=True)
    is_circular: bool = eqx.field(static=True)
    beta: int = eqx.field(static=True)
    alpha_max: float = eqx.field(static=True)
    s_max: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    unimodal: bool = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    bisect_steps: int | None = eqx.field(static=True)
    newton_steps: int = eqx.field(static=True)

    def __init__(
        self,
        num_components: int = 8,
        interval: Any = (0.0, 1.0),
        circular: bool = False,
        beta: int = 2,
        alpha_max: float = 10.0,
        s_max: float = 50.0,
        eps: float = 1e-4,
        unimodal: bool = True,
        num_bins: int = 16,
        bisect_steps: int | None = None,
        newton_steps: int = 3,
    ):
        check_positive("num_components", num_components)
        check_choice("beta", beta, (1, 2))
        if not 1e-6 <= eps <= 1e-4:
            raise ValueError(f"eps={eps!r} is invalid: must lie in [1e-6, 1e-4]")
        if not s_max > _SLOPE_AT_ZERO or not alpha_max > _ALPHA_AT_ZERO:
            raise ValueError(
                f"s_max={s_max!r} and alpha_max={alpha_max!r} are invalid: need s_max > {_SLOPE_AT_ZERO} and "
                f"alpha_max > {_ALPHA_AT_ZERO}"
            )
        lo, hi = (-float(interval), float(interval)) if not hasattr(interval, "__len__") else map(float, interval)
        if not lo < hi:
            raise ValueError(f"interval={interval!r} is invalid: must be increasing")
        self.num_components, self.range_min, self.range_max = int(num_components), lo, hi
        self.is_circular, self.beta, self.unimodal = bool(circular), int(beta), bool(unimodal)
        self.alpha_max, self.s_max, self.eps = float(alpha_max), float(s_max), float(eps)
        self.num_bins, self.bisect_steps, self.newton_steps = int(num_bins), bisect_steps, int(newton_steps)

    @property
    def circular(self) -> bool:
        return self.is_circular

    @property
    def num_params(self) -> int:
        return 4 * self.num_components

    @property
    def period(self) -> float:
        return self.range_max - self.range_min

    def components(self, params: Float[Array, " p"]) -> tuple[Array, Array, Array, Array]:
        """``(log w, mu, s, alpha)``, each of shape ``(K,)``."""
        k = self.num_components
        raw_w, raw_mu, raw_s, raw_a = params.reshape(4, k)
        grid = (jnp.arange(k, dtype=params.dtype) + 0.5) / k
        mu = jax.nn.sigmoid(raw_mu + _logit(grid))
        log_s_max = math.log(self.s_max)
        s = jnp.exp(log_s_max * jax.nn.sigmoid(raw_s + _logit(math.log(_SLOPE_AT_ZERO) / log_s_max)))
        alpha = self.alpha_max * jax.nn.sigmoid(raw_a + _logit(_ALPHA_AT_ZERO / self.alpha_max))
        alpha = alpha + (UNIMODAL_OFFSET[self.beta] if self.unimodal else 0.0)
        return jax.nn.log_softmax(raw_w), mu, s, alpha

    def _component_values(self, u: Scalar, params) -> tuple[Array, Array, Array]:
        """``(log w_k, g_k(u), log g_k'(u))`` on the unit domain (the circle's ``g_k`` is the periodic lift)."""
        log_w, mu, s, alpha = self.components(params)
        if self.is_circular:
            v = u - mu + 0.5 / s
            z = s * jnp.mod(v, 1.0)
            g = jnp.floor(v) + smooth_step(z, alpha, self.beta)
            log_dg = jnp.log(s) + log_smooth_step_derivative(z, alpha, self.beta)
            return log_w, g, log_dg
        z0, z1 = 0.5 - s * mu, 0.5 + s * (1 - mu)
        lower = smooth_step(z0, alpha, self.beta)
        norm = smooth_step(z1, alpha, self.beta) - lower
        z = s * (u - mu) + 0.5
        g = (smooth_step(z, alpha, self.beta) - lower) / norm
        log_dg = jnp.log(s) + log_smooth_step_derivative(z, alpha, self.beta) - jnp.log(norm)
        return log_w, g, log_dg

    def lift(self, u: Scalar, params) -> Scalar:
        """The mixture ``f(u)`` on the unit domain (on the circle, the lift with ``f(u + 1) = f(u) + 1``)."""
        log_w, g, _ = self._component_values(u, params)
        return (1 - self.eps) * jnp.sum(jnp.exp(log_w) * g) + self.eps * u

    def log_derivative(self, u: Scalar, params) -> Scalar:
        """``log f'(u) = logsumexp_k(log w_k + log((1 - eps) g_k'(u) + eps))``."""
        log_w, _, log_dg = self._component_values(u, params)
        inner = jnp.logaddexp(math.log1p(-self.eps) + log_dg, math.log(self.eps))
        return logsumexp(log_w + inner)

    def _to_unit(self, x):
        return (x - self.range_min) / self.period

    def _from_unit(self, u):
        return self.range_min + self.period * u

    def transform_and_log_det(self, x, params):
        u = self._to_unit(x)
        y = self.lift(u, params)
        y = jnp.mod(y, 1.0) if self.is_circular else y
        return self._from_unit(y), self.log_derivative(u, params)

    def inverse_and_log_det(self, y, params):
        u = self.solve(self._to_unit(y), params)
        # The log-det is differentiated through u's implicit derivatives: d(-log f')/dy = -f''/f'^2.
        return self._from_unit(u), -self.log_derivative(u, params)

    def _residual(self, u: Scalar, args: tuple[Scalar, Array]) -> Scalar:
        target, params = args
        return self.lift(u, params) - target

    def solve(self, y_unit: Scalar, params) -> Scalar:
        """``u`` in the unit domain with ``f(u) = y`` (mod 1 on circles), with implicit derivatives in y and params."""
        steps = self.bisect_steps
        if steps is None:
            steps = 36 if y_unit.dtype == jnp.float64 else 20
        if self.is_circular:
            f0 = self.lift(jnp.zeros_like(y_unit), params)
            # f maps [0, 1) onto [f(0), f(0) + 1): pick the lift of y in that window.
            target = f0 + jnp.mod(y_unit - f0, 1.0)
        else:
            target = jnp.clip(y_unit, 0.0, 1.0)
        u = _bracketed_root(self._residual, (target, params), 0.0, 1.0, self.num_bins, steps, self.newton_steps)
        return jnp.mod(u, 1.0) if self.is_circular else u
