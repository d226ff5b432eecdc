"""Noise schedules of Gaussian diffusions.

Convention (score SDEs): t=0 is data, larger t is noisier, and the forward marginal is

    x_t = alpha_t x0 + sigma_t eps,    eps ~ N(0, I).

Every schedule gives ``alpha_t``, ``sigma_t``, their time derivatives, the log signal-to-noise ratio
``lambda_t = log(alpha_t^2 / sigma_t^2)`` and its inverse. These determine the forward SDE with the same marginals,

    dx = f(t) x dt + g(t) dW,    f = d log(alpha)/dt,    g^2 = d(sigma^2)/dt - 2 f sigma^2 = -sigma^2 d(lambda)/dt,

(Kingma et al. 2021, appendix). ``[t_min, t_max]`` is the interval samplers integrate over and training draws
times from: t runs over [0, 1] except for EDM, where t = sigma runs over [0.002, 80].

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (discrete linear beta).
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021 (VP, sub-VP,
    VE).
    Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021 (cosine).
    Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021 (log-SNR view, g^2 for any schedule).
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from genflow._checks import check_instance, check_positive_int

Time = Float[ArrayLike, "*shape"]
Values = Float[Array, "*shape"]

_BISECTION_ITERS = 64  # halves [0, 1] down to below float64 resolution
_GRID_TOL = 1e-3  # in steps: times this close to a discrete chain's grid point count as on it


def _check_interval(t_min: float, t_max: float, lo: float, hi: float) -> None:
    if not lo <= t_min < t_max <= hi:
        raise ValueError(f"t_min={t_min!r}, t_max={t_max!r} are invalid: need {lo} <= t_min < t_max <= {hi}")


def _log1mexp(x: Array) -> Array:
    """``log(1 - exp(-x))`` for ``x > 0``, accurate for small and large ``x``."""
    return jnp.where(x < math.log(2.0), jnp.log(-jnp.expm1(-x)), jnp.log1p(-jnp.exp(-x)))


class AbstractSchedule(eqx.Module):
    """A Gaussian noising path ``x_t = alpha_t x0 + sigma_t eps`` (t=0 data).

    Subclasses give ``alpha``, ``sigma``, their derivatives, ``log_snr`` and its inverse in closed form; the forward
    SDE, the prior and the noise-to-signal ratio follow from them.
    """

    t_min: eqx.AbstractVar[float]
    t_max: eqx.AbstractVar[float]

    @abc.abstractmethod
    def alpha(self, t: Time) -> Values:
        """Signal scale ``alpha_t``."""

    @abc.abstractmethod
    def sigma(self, t: Time) -> Values:
        """Noise scale ``sigma_t``."""

    @abc.abstractmethod
    def dalpha(self, t: Time) -> Values:
        """``d alpha_t / dt``."""

    @abc.abstractmethod
    def dsigma(self, t: Time) -> Values:
        """``d sigma_t / dt``."""

    @abc.abstractmethod
    def dsigma_sq(self, t: Time) -> Values:
        """``d(sigma_t^2) / dt``, in closed form so that ``g^2`` stays finite where sigma vanishes."""

    @abc.abstractmethod
    def log_snr(self, t: Time) -> Values:
        """``lambda_t = log(alpha_t^2 / sigma_t^2)``, decreasing in t."""

    @abc.abstractmethod
    def t_from_log_snr(self, lam: Time) -> Values:
        """The inverse of ``log_snr``."""

    # -- derived quantities (not overridden) ------------------------------------------------------------------
    def snr(self, t: Time) -> Values:
        """``alpha_t^2 / sigma_t^2``."""
        return jnp.exp(self.log_snr(t))

    def noise_to_signal(self, t: Time) -> Values:
        """``sigma_t / alpha_t``: the noise level of the rescaled state ``x / alpha`` (EDM's sigma)."""
        return jnp.exp(-0.5 * self.log_snr(t))

    def t_from_noise_to_signal(self, ratio: Time) -> Values:
        """The time at which ``sigma_t / alpha_t`` equals ``ratio``."""
        return self.t_from_log_snr(-2.0 * jnp.log(ratio))

    def drift_coeff(self, t: Time) -> Values:
        """``f(t) = d log(alpha_t) / dt``: the forward SDE's drift is ``f(t) x``."""
        return self.dalpha(t) / self.alpha(t)

    def diffusion_sq(self, t: Time) -> Values:
        """``g(t)^2 = d(sigma_t^2)/dt - 2 f(t) sigma_t^2``, the forward SDE's squared diffusion coefficient."""
        return self.dsigma_sq(t) - 2.0 * self.drift_coeff(t) * self.sigma(t) ** 2

    def sde_drift(self, t: Time, x: Array) -> Array:
        """Forward SDE drift ``f(t) x``."""
        return self.drift_coeff(t) * x

    def sde_diffusion(self, t: Time) -> Values:
        """Forward SDE diffusion coefficient ``g(t)``."""
        return jnp.sqrt(self.diffusion_sq(t))

    def prior_std(self) -> Array:
        """Standard deviation of the prior ``N(0, s^2 I)`` at ``t_max``: ``s^2 = alpha^2 + sigma^2``.

        This is the exact marginal at ``t_max`` for whitened data (mean 0, covariance I): 1 for variance-preserving
        schedules, about ``sigma_max`` for variance-exploding ones.
        """
        return jnp.sqrt(self.alpha(self.t_max) ** 2 + self.sigma(self.t_max) ** 2)


def bisect_decreasing(fn, target: Time, lo: float, hi: float) -> Values:
    """Solve ``fn(t) = target`` for a decreasing ``fn`` on ``[lo, hi]`` by bisection (elementwise, jit-able).

    optimistix's ``Bisection`` halves ``[lo, hi]`` a fixed ``_BISECTION_ITERS`` times (zero tolerances, no throw at
    the step cap) and returns the final midpoint, below float64 resolution; a target outside ``fn``'s range gives
    the nearer end. Its implicit-function adjoint gives ``dt/dtarget = 1 / fn'(t)`` (a differentiated loop would give
    zero).
    """
    target = jnp.asarray(target)
    dtype = jnp.result_type(target, float)
    solver = optx.Bisection(rtol=0.0, atol=0.0, flip=True)  # flip: fn decreases, so fn - target > 0 left of the root
    options = {"lower": lo, "upper": hi}
    t0 = jnp.asarray(0.5 * (lo + hi), dtype)

    def residual(t, lam):
        return fn(t) - lam

    def solve(lam):
        sol = optx.root_find(residual, solver, t0, lam, options, max_steps=_BISECTION_ITERS, throw=False)
        return sol.value

    return jax.vmap(solve)(target.astype(dtype).reshape(-1)).reshape(target.shape)


class _AbstractLinearBeta(AbstractSchedule):
    r"""The signal scale shared by VP and sub-VP: a linear ``beta(t)`` and ``alpha_t = e^{-B(t)/2}``.

    $$\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min}), \quad B(t) = \int_0^t \beta.$$
    """

    beta_min: eqx.AbstractVar[float]
    beta_max: eqx.AbstractVar[float]

    def __check_init__(self):
        if not 0 < self.beta_min <= self.beta_max:
            raise ValueError(f"beta_min={self.beta_min!r}, beta_max={self.beta_max!r}: need 0 < beta_min <= beta_max")
        _check_interval(self.t_min, self.t_max, 0.0, 1.0)

    def beta(self, t: Time) -> Values:
        """``beta(t)``."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t: Time) -> Values:
        """``B(t) = int_0^t beta``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha(self, t):
        return jnp.exp(-0.5 * self.integral(t))

    def dalpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)


class VPSchedule(_AbstractLinearBeta):
    r"""Variance-preserving schedule with a linear ``beta(t)`` (the continuous DDPM).

    $$\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min}), \quad B(t) = \int_0^t \beta, \quad
    \alpha_t = e^{-B(t)/2}, \quad \sigma_t^2 = 1 - e^{-B(t)}, \quad f = -\beta/2, \quad g^2 = \beta.$$

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)
    t_min: float = eqx.field(static=True, default=1e-3)
    t_max: float = eqx.field(static=True, default=1.0)

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(-self.integral(t)))

    def dsigma(self, t):
        return 0.5 * self.dsigma_sq(t) / self.sigma(t)

    def dsigma_sq(self, t):
        return self.beta(t) * self.alpha(t) ** 2  # sigma^2 = 1 - alpha^2

    def log_snr(self, t):
        b = self.integral(t)
        return -b - _log1mexp(b)

    def t_from_log_snr(self, lam):
        b = jax.nn.softplus(-jnp.asarray(lam))  # alpha^2 = sigmoid(lambda) = exp(-B)
        # Root of (beta_max - beta_min)/2 t^2 + beta_min t - B, rationalised so it stays exact as the slope -> 0.
        db = self.beta_max - self.beta_min
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * db * b))


class SubVPSchedule(_AbstractLinearBeta):
    r"""Sub-VP schedule: the VP signal scale with ``sigma_t = 1 - alpha_t^2`` (always below the VP noise).

    $$\alpha_t = e^{-B(t)/2}, \quad \sigma_t = 1 - e^{-B(t)}, \quad f = -\beta/2, \quad
    g^2 = \beta(t)(1 - e^{-2B(t)}).$$

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)
    t_min: float = eqx.field(static=True, default=1e-3)
    t_max: float = eqx.field(static=True, default=1.0)

    def sigma(self, t):
        return -jnp.expm1(-self.integral(t))

    def dsigma(self, t):
        return self.beta(t) * jnp.exp(-self.integral(t))

    def dsigma_sq(self, t):
        return 2.0 * self.sigma(t) * self.dsigma(t)

    def log_snr(self, t):
        b = self.integral(t)
        return -b - 2.0 * _log1mexp(b)

    def t_from_log_snr(self, lam):
        return bisect_decreasing(self.log_snr, lam, 0.0, 1.0)


class VESchedule(AbstractSchedule):
    r"""Variance-exploding schedule: ``alpha_t = 1`` and a geometric noise scale.

    $$\sigma_t = \sigma_{min} (\sigma_{max} / \sigma_{min})^t, \quad f = 0, \quad
    g^2 = 2 \sigma_t^2 \log(\sigma_{max} / \sigma_{min}).$$

    At t=0 the state keeps the noise ``sigma_min``; samplers denoise it with their final step.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    """

    sigma_min: float = eqx.field(static=True, default=0.01)
    sigma_max: float = eqx.field(static=True, default=50.0)
    t_min: float = eqx.field(static=True, default=1e-5)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min={self.sigma_min!r}, sigma_max={self.sigma_max!r}: need 0 < sigma_min < sigma_max"
            )
        _check_interval(self.t_min, self.t_max, 0.0, 1.0)

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t):
        return self.sigma_min * jnp.exp(self._log_ratio * t)

    def dalpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def dsigma(self, t):
        return self._log_ratio * self.sigma(t)

    def dsigma_sq(self, t):
        return 2.0 * self._log_ratio * self.sigma(t) ** 2

    def log_snr(self, t):
        return -2.0 * (math.log(self.sigma_min) + self._log_ratio * t)

    def t_from_log_snr(self, lam):
        return (-0.5 * jnp.asarray(lam) - math.log(self.sigma_min)) / self._log_ratio


class CosineSchedule(AbstractSchedule):
    r"""Cosine schedule, continuous in t: variance preserving with

    $$\bar\alpha(t) = \frac{\cos^2\phi(t)}{\cos^2\phi(0)}, \quad \phi(t) = \frac{t + s}{1 + s}\frac{\pi}{2}, \quad
    \alpha_t = \sqrt{\bar\alpha(t)}, \quad \sigma_t = \sqrt{1 - \bar\alpha(t)}, \quad
    f = -\phi' \tan\phi, \quad g^2 = -2f.$$

    alpha vanishes at t=1, where f and g blow up (the discrete version clips beta at 0.999 for the same reason),
    so ``t_max`` stops short of 1.

    References:
        Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
    """

    s: float = eqx.field(static=True, default=0.008)
    t_min: float = eqx.field(static=True, default=1e-3)
    t_max: float = eqx.field(static=True, default=0.999)

    def __check_init__(self):
        if not self.s >= 0:
            raise ValueError(f"s={self.s!r} is invalid: must be >= 0")
        _check_interval(self.t_min, self.t_max, 0.0, 1.0)
        if self.t_max >= 1.0:
            raise ValueError(f"t_max={self.t_max!r} is invalid: alpha vanishes at t=1, so t_max must be < 1")

    @property
    def _dphi(self) -> float:
        return 0.5 * math.pi / (1.0 + self.s)

    def _phi(self, t):
        return (t + self.s) * self._dphi

    def alpha(self, t):
        return jnp.cos(self._phi(t)) / math.cos(self._phi(0.0))

    def sigma(self, t):
        return jnp.sqrt(1.0 - self.alpha(t) ** 2)

    def dalpha(self, t):
        return -self._dphi * jnp.sin(self._phi(t)) / math.cos(self._phi(0.0))

    def dsigma(self, t):
        return 0.5 * self.dsigma_sq(t) / self.sigma(t)

    def dsigma_sq(self, t):
        return -2.0 * self.alpha(t) * self.dalpha(t)

    def log_snr(self, t):
        a2 = self.alpha(t) ** 2
        return jnp.log(a2) - jnp.log1p(-a2)

    def t_from_log_snr(self, lam):
        cos_phi = jnp.sqrt(jax.nn.sigmoid(jnp.asarray(lam))) * math.cos(self._phi(0.0))
        return jnp.arccos(cos_phi) / self._dphi - self.s


class EDMSchedule(AbstractSchedule):
    r"""The EDM schedule: no scaling and noise equal to time.

    $$\alpha_t = 1, \quad \sigma_t = t, \quad f = 0, \quad g^2 = 2t, \quad t \in [\sigma_{min}, \sigma_{max}].$$

    Pair it with ``EDMPreconditioning`` (``c_skip, c_out, c_in, c_noise`` with ``sigma_data``) and ``LogNormalTime``
    (``log sigma ~ N(-1.2, 1.2^2)``) for the full EDM recipe, and sample with ``ProbabilityFlow`` on the ``"edm"``
    grid.

    References:
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022.
    """

    t_min: float = eqx.field(static=True, default=0.002)
    t_max: float = eqx.field(static=True, default=80.0)

    def __check_init__(self):
        _check_interval(self.t_min, self.t_max, 1e-12, math.inf)

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t):
        return jnp.asarray(t, dtype=jnp.result_type(t, float))

    def dalpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def dsigma(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def dsigma_sq(self, t):
        return 2.0 * jnp.asarray(t, dtype=jnp.result_type(t, float))

    def log_snr(self, t):
        return -2.0 * jnp.log(t)

    def t_from_log_snr(self, lam):
        return jnp.exp(-0.5 * jnp.asarray(lam))


class AbstractBetas(eqx.Module):
    """The betas ``beta_1..beta_N`` of a discrete DDPM chain."""

    @abc.abstractmethod
    def __call__(self, num_timesteps: int) -> np.ndarray:
        """``beta_n`` for ``n = 1..num_timesteps``, in float64."""


class LinearBetas(AbstractBetas):
    """Betas linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020: 1e-4 to 0.02 for N = 1000)."""

    beta_start: float = eqx.field(static=True, default=1e-4)
    beta_end: float = eqx.field(static=True, default=0.02)

    def __call__(self, num_timesteps):
        return np.linspace(self.beta_start, self.beta_end, num_timesteps, dtype=np.float64)


class CosineBetas(AbstractBetas):
    """``alphabar_n = f(n)/f(0)``, ``f(n) = cos^2((n/N + s)/(1 + s) pi/2)``, with ``beta_n`` clipped at ``max_beta``
    (Nichol & Dhariwal 2021, eq. 17)."""

    s: float = eqx.field(static=True, default=0.008)
    max_beta: float = eqx.field(static=True, default=0.999)

    def __call__(self, num_timesteps):
        f = np.cos((np.arange(num_timesteps + 1) / num_timesteps + self.s) / (1 + self.s) * np.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        return np.minimum(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], self.max_beta)


class DiscreteSchedule(AbstractSchedule):
    r"""The discrete DDPM chain ``q(x_n | x_{n-1}) = N(sqrt(1 - beta_n) x_{n-1}, beta_n I)``, ``n = 1..N``.

    $$\bar\alpha_n = \prod_{m \le n} (1 - \beta_m), \qquad x_n = \sqrt{\bar\alpha_n}\, x_0 + \sqrt{1 - \bar\alpha_n}\,
    \epsilon.$$

    Step ``n`` sits at time ``t = n / N``. Between steps ``log alpha`` is interpolated linearly, which makes the
    chain a continuous variance-preserving schedule (``alpha^2 + sigma^2 = 1``) that is exact on the grid, so the
    SDE and ODE samplers and the likelihood run on it too. Ancestral sampling and the variational bound use the
    grid only.

    Args:
        num_timesteps: N, the chain's length.
        beta_schedule: ``LinearBetas(beta_start, beta_end)`` (Ho et al., the default) or ``CosineBetas(s,
            max_beta)`` (Nichol & Dhariwal).

    References:
        Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
        Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
    """

    betas: Float[Array, " N"]
    num_timesteps: int = eqx.field(static=True)
    beta_schedule: AbstractBetas

    def __init__(self, num_timesteps: int = 1000, beta_schedule: AbstractBetas = LinearBetas()):
        check_positive_int("num_timesteps", num_timesteps)
        check_instance(
            "beta_schedule", beta_schedule, AbstractBetas, "LinearBetas(beta_start, beta_end), CosineBetas(s)"
        )
        betas = beta_schedule(num_timesteps)
        if not (np.all(betas > 0) and np.all(betas < 1)):
            raise ValueError(f"betas must lie in (0, 1); got [{betas.min()}, {betas.max()}] ({beta_schedule!r})")
        self.num_timesteps, self.beta_schedule = num_timesteps, beta_schedule
        self.betas = jnp.asarray(betas, dtype=jnp.result_type(float))

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_timesteps

    @property
    def t_max(self) -> float:
        return 1.0

    @property
    def alphas_cumprod(self) -> Float[Array, " N"]:
        """``alphabar_n`` for ``n = 1..N``."""
        return jnp.exp(jnp.cumsum(jnp.log1p(-self.betas)))

    def _log_alpha_grid(self) -> Float[Array, " N+1"]:
        """``log alpha`` at ``t = n/N`` for ``n = 0..N`` (``alpha = sqrt(alphabar)``)."""
        return jnp.concatenate([jnp.zeros(1, self.betas.dtype), 0.5 * jnp.cumsum(jnp.log1p(-self.betas))])

    def _log_alpha(self, t):
        grid = jnp.linspace(0.0, 1.0, self.num_timesteps + 1, dtype=self.betas.dtype)
        return jnp.interp(t, grid, self._log_alpha_grid())

    def snap(self, t: Time) -> Values:
        """Round times to the grid ``n / N`` (respacing: samplers use integer steps of the chain)."""
        return jnp.round(jnp.asarray(t) * self.num_timesteps) / self.num_timesteps

    def alpha(self, t):
        return jnp.exp(self._log_alpha(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))

    def dalpha(self, t):
        la = self._log_alpha_grid()
        # log alpha is linear on each step, so its slope jumps at the grid points; there the step ending at t counts
        # (g^2 = -N log(1 - beta_n) at t = n/N), decided with a tolerance so rounding of t N cannot flip the side.
        pos = jnp.asarray(t) * self.num_timesteps
        n = jnp.clip(jnp.ceil(pos - _GRID_TOL) - 1, 0, self.num_timesteps - 1).astype(jnp.int32)
        slope = (la[n + 1] - la[n]) * self.num_timesteps
        return slope * self.alpha(t)

    def dsigma(self, t):
        return 0.5 * self.dsigma_sq(t) / self.sigma(t)

    def dsigma_sq(self, t):
        return -2.0 * self.alpha(t) * self.dalpha(t)

    def log_snr(self, t):
        b = -2.0 * self._log_alpha(t)  # -log alphabar
        return -b - _log1mexp(b)

    def t_from_log_snr(self, lam):
        return bisect_decreasing(self.log_snr, lam, 0.0, 1.0)


def snap_times(schedule: AbstractSchedule, t: Time) -> Values:
    """Round times onto a discrete schedule's grid; identity for continuous schedules."""
    return schedule.snap(t) if isinstance(schedule, DiscreteSchedule) else jnp.asarray(t)
