"""Diffusion samplers: strategy modules that turn a score into samples, each one ``lax.scan`` or one diffrax solve.

Convention: t=0 data, t = t_max noise; sampling runs from ``t_max`` down to ``t_min``. Every sampler has

    sampler.sample(score, schedule, x_T, *, key, save_trajectory=False) -> Solution(y, nfe, ts, ys)

where ``score(t, x)`` is ``grad_x log p_t(x)`` on a batch ``x`` at a scalar time: a trained network (see
``DiffusionModel.batched_score``) or an analytic score, which is what the oracle tests use. ``nfe`` counts score
evaluations. With ``x = alpha x0 + sigma eps``, the denoised mean and noise estimates are

    x0_hat = (x + sigma^2 s) / alpha,    eps_hat = -sigma s     (Tweedie).

Samplers:
    Ancestral           DDPM: x_s ~ q(x_s | x_t, x0 = x0_hat) on a grid; the last step returns x0_hat.
    DDIM                x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z, c = eta * posterior std.
    ReverseSDE          dx = [f x - g^2 s] dt + g dW_bar (Euler-Maruyama or any SDE solver), t: t_max -> t_min.
    PredictorCorrector  Langevin corrector steps plus a reverse-SDE (or ancestral) predictor.
    ProbabilityFlow     dx/dt = f x - g^2 s / 2 with any ODE solver, in t or in EDM's (x/alpha, sigma/alpha).

Every sampler but the ancestral ones ends with an optional final denoising step ``x <- x0_hat(t_min, x)`` (one more
evaluation); Ancestral and DDIM always end on it, because their last transition goes to the clean state.

Time grids (``grid``): ``"uniform"`` in t, ``"edm"`` (Karras et al.: ``s_i = (s_max^{1/rho} + i/(n-1) (s_min^{1/rho}
- s_max^{1/rho}))^rho`` in the noise level ``s = sigma/alpha``), or ``"log_snr"`` (uniform in log-SNR). Discrete
schedules round grid times to their steps (respacing).

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
    Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021 (the stable log-SNR form of the
    posterior q(x_s | x_t, x0)).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import check_positive_int
from genflow.diffusion._schedules import AbstractSchedule, snap_times
from genflow.solvers import (
    RK4,
    AbstractFixedStepSDESolver,
    AbstractFixedStepSolver,
    AbstractODESolver,
    AbstractSDESolver,
    DiffraxODE,
    Euler,
    EulerMaruyama,
    Heun,
    Midpoint,
    Solution,
    StochasticHeun,
)

Score = Callable[[Any, Array], Array]
GRIDS = ("uniform", "edm", "log_snr")


def _check_grid(grid: str, rho: float) -> None:
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r} is invalid; allowed: {', '.join(GRIDS)}")
    if not rho > 0:
        raise ValueError(f"rho={rho!r} is invalid: must be positive")


def time_grid(
    schedule: AbstractSchedule, num_points: int, kind: str = "uniform", rho: float = 7.0
) -> Float[Array, " num_points"]:
    """``num_points`` decreasing times from ``t_max`` to ``t_min`` (just ``t_max`` when ``num_points = 1``).

    On a discrete chain the times are rounded to its steps, which can repeat a time where the grid is finer than the
    chain (the EDM grid near t=1 on the cosine chain); a repeated time is a step that does nothing.
    """
    t_max, t_min = schedule.t_max, schedule.t_min
    if num_points == 1:
        return jnp.full((1,), t_max, dtype=jnp.result_type(float))
    frac = jnp.linspace(0.0, 1.0, num_points)
    if kind == "uniform":
        ts = t_max + frac * (t_min - t_max)
    elif kind == "edm":
        s_max, s_min = schedule.noise_to_signal(t_max), schedule.noise_to_signal(t_min)
        s = (s_max ** (1 / rho) + frac * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        ts = schedule.t_from_noise_to_signal(s)
    elif kind == "log_snr":
        lam_max, lam_min = schedule.log_snr(t_min), schedule.log_snr(t_max)
        ts = schedule.t_from_log_snr(lam_min + frac * (lam_max - lam_min))
    else:
        raise ValueError(f"grid={kind!r} is invalid; allowed: {', '.join(GRIDS)}")
    # Pin the ends: inverting the noise level rounds, and the ends must be exactly the schedule's interval.
    ts = ts.at[0].set(t_max).at[-1].set(t_min)
    return snap_times(schedule, ts)


def denoise(score: Score, schedule: AbstractSchedule, t, x: Array) -> Array:
    """Tweedie's denoised mean ``x0_hat = (x + sigma_t^2 score(t, x)) / alpha_t`` (one score evaluation)."""
    return (x + schedule.sigma(t) ** 2 * score(t, x)) / schedule.alpha(t)


def classifier_free_guidance(score_cond: Score, score_uncond: Score, w: Any) -> Score:
    """The guided score ``s_u + w (s_c - s_u)`` (equivalently ``eps_u + w (eps_c - eps_u)``).

    ``w = 0`` gives the unconditional score, ``w = 1`` the conditional one, and ``w > 1`` sharpens samples towards
    the condition. Each evaluation costs both scores.

    References:
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    """

    def guided(t, x):
        s_u = score_uncond(t, x)
        return s_u + w * (score_cond(t, x) - s_u)

    return guided


def _transition_table(schedule: AbstractSchedule, ts: Array) -> dict[str, Array]:
    """Per-transition ``(t, alpha, sigma, lambda)`` at the start and end; the last end is the clean state."""
    alpha, sigma, lam = schedule.alpha(ts), schedule.sigma(ts), schedule.log_snr(ts)
    end = lambda a, clean: jnp.concatenate([a[1:], jnp.full((1,), clean, a.dtype)])
    return {
        "t": ts,
        "alpha_t": alpha,
        "sigma_t": sigma,
        "lam_t": lam,
        "alpha_s": end(alpha, 1.0),
        "sigma_s": end(sigma, 0.0),
        "lam_s": end(lam, jnp.inf),
    }


def _posterior(step: dict[str, Array], x: Array, x0: Array) -> tuple[Array, Array]:
    r"""Mean and variance of ``q(x_s | x_t = x, x0)`` for ``s < t``, in the stable log-SNR form of VDM:

    $$r = e^{\lambda_t - \lambda_s}, \quad \mu = \alpha_s (r\, x / \alpha_t + (1 - r)\, x_0), \quad
    \tilde\sigma^2 = \sigma_s^2 (1 - r).$$
    """
    r = jnp.exp(step["lam_t"] - step["lam_s"])
    mean = step["alpha_s"] * (r * x / step["alpha_t"] + (1.0 - r) * x0)
    var = -jnp.expm1(step["lam_t"] - step["lam_s"]) * step["sigma_s"] ** 2
    return mean, var


def gaussian_posterior(schedule: AbstractSchedule, t, s, x_t: Array, x0: Array) -> tuple[Array, Array]:
    r"""Mean and (isotropic) variance of the forward process's posterior ``q(x_s | x_t, x0)``, ``s < t``:

    $$\mu = \alpha_s \left(r\, \frac{x_t}{\alpha_t} + (1 - r)\, x_0\right), \quad
    \tilde\sigma^2 = \sigma_s^2 (1 - r), \quad r = \frac{\alpha_t^2 \sigma_s^2}{\alpha_s^2 \sigma_t^2}.$$

    On the discrete chain with ``s = t - 1/N`` this is DDPM's ``tilde mu`` and ``tilde beta`` (Ho et al. 2020, eq. 7).
    Computed from the log-SNR difference, which stays accurate when s is close to t.

    References:
        Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021, appendix A.
    """
    step = {
        "alpha_t": schedule.alpha(t),
        "alpha_s": schedule.alpha(s),
        "sigma_s": schedule.sigma(s),
        "lam_t": schedule.log_snr(t),
        "lam_s": schedule.log_snr(s),
    }
    return _posterior(step, x_t, x0)


def _scan_transitions(body, x_T: Array, xs: Any, save_trajectory: bool):
    def wrapped(x, inputs):
        x_next = body(x, inputs)
        return x_next, (x_next if save_trajectory else None)

    y, ys = jax.lax.scan(wrapped, x_T, xs)
    if save_trajectory:
        ys = jnp.concatenate([x_T[None], ys])
    return y, ys


class AbstractDiffusionSampler(eqx.Module):
    """A sampling strategy: ``sample(score, schedule, x_T, key=...) -> Solution``."""

    @abc.abstractmethod
    def sample(
        self,
        score: Score,
        schedule: AbstractSchedule,
        x_T: Float[Array, "num ..."],
        *,
        key: PRNGKeyArray,
        save_trajectory: bool = False,
    ) -> Solution:
        """Run the reverse process from ``x_T`` at ``schedule.t_max``; ``nfe`` counts score evaluations."""


class Ancestral(AbstractDiffusionSampler):
    r"""DDPM ancestral sampling on a grid of ``num_steps`` times ``t_max = t_1 > ... > t_K = t_min``.

    Each step draws from the Gaussian posterior with ``x0 = x0_hat(t, x_t)``; the last step goes to the clean state,
    where the posterior collapses to ``x0_hat``:

    $$x_s = \alpha_s \left(r\, \frac{x_t}{\alpha_t} + (1 - r)\, \hat x_0\right) + \sqrt{v}\, z, \quad
    r = \frac{\alpha_t^2 \sigma_s^2}{\alpha_s^2 \sigma_t^2}, \quad
    v = \begin{cases} \sigma_s^2 (1 - r) & \text{posterior } (\tilde\beta) \\ \sigma_t^2 (1 - r) & \text{beta}
    \end{cases}$$

    On ``DiscreteSchedule(N)`` with ``num_steps = N`` this is exactly the DDPM sampler; fewer steps respace the
    chain. ``nfe = num_steps``.

    Args:
        num_steps: number of score evaluations (grid points).
        variance: ``"posterior"`` (tilde beta) or ``"beta"`` (Ho et al.'s two choices).
        grid, rho: the time grid.

    References:
        Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, Algorithm 2.
    """

    num_steps: int = eqx.field(static=True, default=1000)
    variance: str = eqx.field(static=True, default="posterior")
    grid: str = eqx.field(static=True, default="uniform")
    rho: float = eqx.field(static=True, default=7.0)

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        _check_grid(self.grid, self.rho)
        if self.variance not in ("posterior", "beta"):
            raise ValueError(f"variance={self.variance!r} is invalid; allowed: posterior, beta")

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps, self.grid, self.rho)
        table = _transition_table(schedule, ts)
        last = jnp.arange(self.num_steps) == self.num_steps - 1

        def body(x, inputs):
            step, k, is_last = inputs
            x0 = denoise(score, schedule, step["t"], x)
            mean, var = _posterior(step, x, x0)
            if self.variance == "beta":
                # Ho et al. return the mean at the last step; sigma_t^2 (1 - r) would re-noise the clean state.
                var = jnp.where(is_last, 0.0, -jnp.expm1(step["lam_t"] - step["lam_s"]) * step["sigma_t"] ** 2)
            return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)

        keys = jax.random.split(key, self.num_steps)
        y, ys = _scan_transitions(body, x_T, (table, keys, last), save_trajectory)
        return Solution(y=y, nfe=self.num_steps, ts=ts, ys=ys)


class DDIM(AbstractDiffusionSampler):
    r"""DDIM on a grid of ``num_steps`` times, the last step going to the clean state.

    $$x_s = \alpha_s \hat x_0 + \sqrt{\sigma_s^2 - c^2}\, \hat\epsilon + c\, z, \quad
    c^2 = \eta^2 \sigma_s^2 (1 - r), \quad r = \frac{\alpha_t^2 \sigma_s^2}{\alpha_s^2 \sigma_t^2}.$$

    ``eta = 0`` is deterministic (it is Euler's method on the probability-flow ODE in the variables ``x / alpha``
    and ``sigma / alpha``); ``eta = 1`` is ancestral sampling with the posterior variance. ``nfe = num_steps``.

    Args:
        num_steps: number of score evaluations (grid points).
        eta: stochasticity, in [0, 1] usually.
        grid, rho: the time grid.

    References:
        Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16.
    """

    num_steps: int = eqx.field(static=True, default=50)
    eta: float = eqx.field(static=True, default=0.0)
    grid: str = eqx.field(static=True, default="uniform")
    rho: float = eqx.field(static=True, default=7.0)

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        _check_grid(self.grid, self.rho)
        if not self.eta >= 0:
            raise ValueError(f"eta={self.eta!r} is invalid: must be >= 0")

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps, self.grid, self.rho)
        table = _transition_table(schedule, ts)

        def body(x, inputs):
            step, k = inputs
            s = score(step["t"], x)
            x0 = (x + step["sigma_t"] ** 2 * s) / step["alpha_t"]
            eps = -step["sigma_t"] * s
            one_minus_r = -jnp.expm1(step["lam_t"] - step["lam_s"])
            c2 = self.eta**2 * step["sigma_s"] ** 2 * one_minus_r
            x_next = step["alpha_s"] * x0 + jnp.sqrt(jnp.maximum(step["sigma_s"] ** 2 - c2, 0.0)) * eps
            if self.eta == 0:
                return x_next
            return x_next + jnp.sqrt(c2) * jax.random.normal(k, x.shape, x.dtype)

        keys = jax.random.split(key, self.num_steps)
        y, ys = _scan_transitions(body, x_T, (table, keys), save_trajectory)
        return Solution(y=y, nfe=self.num_steps, ts=ts, ys=ys)


_SDE_SOLVERS = {"euler_maruyama": EulerMaruyama, "stochastic_heun": StochasticHeun}


def _make_sde_solver(solver: str | AbstractSDESolver, num_steps: int) -> AbstractSDESolver:
    if isinstance(solver, AbstractSDESolver):
        return solver
    if solver in _SDE_SOLVERS:
        return _SDE_SOLVERS[solver](num_steps=num_steps)
    raise ValueError(f"solver={solver!r} is invalid; allowed: {', '.join(_SDE_SOLVERS)} or an SDE solver module")


def _reverse_sde(score: Score, schedule: AbstractSchedule):
    drift = lambda t, x: schedule.drift_coeff(t) * x - schedule.diffusion_sq(t) * score(t, x)
    diffusion = lambda t, x: schedule.sde_diffusion(t)
    return drift, diffusion


def _finish(score, schedule, sol: Solution, denoise_final: bool, save_trajectory: bool) -> Solution:
    if not denoise_final:
        return sol
    y = denoise(score, schedule, schedule.t_min, sol.y)
    ys = None if not save_trajectory or sol.ys is None else jnp.concatenate([sol.ys, y[None]])
    return Solution(y=y, nfe=sol.nfe + 1, ts=sol.ts, ys=ys)


class ReverseSDE(AbstractDiffusionSampler):
    r"""The reverse-time SDE, integrated from ``t_max`` down to ``t_min``:

    $$dx = [f(t) x - g(t)^2 \nabla_x \log p_t(x)]\, dt + g(t)\, d\bar W.$$

    Args:
        solver: ``"euler_maruyama"``, ``"stochastic_heun"``, or any SDE solver module (``EulerMaruyama``,
            ``DiffraxSDE``, ...); a fixed-step solver runs on this sampler's grid.
        num_steps: steps, when ``solver`` is a name.
        grid, rho: the time grid (fixed-step solvers).
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, eq. 6.
        Anderson, "Reverse-time diffusion equation models", 1982.
    """

    solver: AbstractSDESolver
    grid: str = eqx.field(static=True)
    rho: float = eqx.field(static=True)
    denoise_final: bool = eqx.field(static=True)

    def __init__(
        self,
        solver: str | AbstractSDESolver = "euler_maruyama",
        num_steps: int = 1000,
        grid: str = "uniform",
        rho: float = 7.0,
        denoise_final: bool = True,
    ):
        check_positive_int("num_steps", num_steps)
        _check_grid(grid, rho)
        self.solver = _make_sde_solver(solver, num_steps)
        self.grid, self.rho, self.denoise_final = grid, float(rho), bool(denoise_final)

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        drift, diffusion = _reverse_sde(score, schedule)
        if isinstance(self.solver, AbstractFixedStepSDESolver):
            ts = time_grid(schedule, self.solver.num_steps + 1, self.grid, self.rho)
            sol = self.solver.solve_grid(drift, diffusion, x_T, ts, key=key, save_trajectory=save_trajectory)
        else:
            sol = self.solver.solve(
                drift, diffusion, x_T, schedule.t_max, schedule.t_min, key=key, save_trajectory=save_trajectory
            )
        return _finish(score, schedule, sol, self.denoise_final, save_trajectory)


_PREDICTORS = ("euler_maruyama", "ancestral", "none")


class PredictorCorrector(AbstractDiffusionSampler):
    r"""Predictor–corrector sampling: at each grid time, Langevin corrector steps, then a predictor step.

    Corrector (Langevin MCMC at fixed t), with the step size set by a target signal-to-noise ratio ``r``:

    $$x \leftarrow x + \epsilon\, s(t, x) + \sqrt{2\epsilon}\, z, \quad
    \epsilon = 2 a \left(r \frac{\|z\|}{\|s(t, x)\|}\right)^2, \quad a = (\alpha_t / \alpha_{t'})^2,$$

    (``a = 1 - beta_i`` on the discrete VP chain, 1 for VE), with the norms averaged over the batch as in the
    reference code (so the batch shares one step size). Predictor from t to the next grid time t': one
    Euler–Maruyama step of the reverse SDE, one ancestral step, or none (annealed Langevin dynamics).
    ``nfe = num_steps * (corrector_steps + 1) + denoise_final`` (no +1 without a predictor).

    Args:
        num_steps: predictor steps (the grid has ``num_steps + 1`` times).
        predictor: ``"euler_maruyama"``, ``"ancestral"`` or ``"none"``.
        corrector_steps: Langevin steps per grid time.
        snr: the corrector's target signal-to-noise ratio ``r`` (0.16 in Song et al. for VE on CIFAR-10).
        grid, rho: the time grid.
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021,
        Algorithms 2-5.
    """

    num_steps: int = eqx.field(static=True, default=1000)
    predictor: str = eqx.field(static=True, default="euler_maruyama")
    corrector_steps: int = eqx.field(static=True, default=1)
    snr: float = eqx.field(static=True, default=0.16)
    grid: str = eqx.field(static=True, default="uniform")
    rho: float = eqx.field(static=True, default=7.0)
    denoise_final: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        _check_grid(self.grid, self.rho)
        if self.predictor not in _PREDICTORS:
            raise ValueError(f"predictor={self.predictor!r} is invalid; allowed: {', '.join(_PREDICTORS)}")
        if isinstance(self.corrector_steps, bool) or not isinstance(self.corrector_steps, int):
            raise ValueError(f"corrector_steps={self.corrector_steps!r} is invalid: must be an integer >= 0")
        if self.corrector_steps < 0 or (self.corrector_steps == 0 and self.predictor == "none"):
            raise ValueError(f"corrector_steps={self.corrector_steps!r} is invalid: >= 0, and >= 1 without predictor")
        if not self.snr > 0:
            raise ValueError(f"snr={self.snr!r} is invalid: must be positive")

    def _langevin(self, score, schedule, t, t_next, x, keys):
        a = (schedule.alpha(t) / schedule.alpha(t_next)) ** 2
        n = x.shape[0]

        def step(x, k):
            s = score(t, x)
            z = jax.random.normal(k, x.shape, x.dtype)
            # Batch-averaged norms, as in the reference code: a per-example |s| vanishes at a mode's centre in low
            # dimension, and the step size would blow up there.
            mean_norm = lambda v: jnp.mean(jnp.linalg.norm(v.reshape(n, -1), axis=-1))
            eps = 2.0 * a * (self.snr * mean_norm(z) / mean_norm(s)) ** 2
            return x + eps * s + jnp.sqrt(2.0 * eps) * z, None

        return jax.lax.scan(step, x, keys)[0]

    def _predict(self, score, schedule, step, x, k):
        if self.predictor == "none":
            return x
        if self.predictor == "ancestral":
            x0 = denoise(score, schedule, step["t"], x)
            mean, var = _posterior(step, x, x0)
            return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)
        t, dt = step["t"], step["t_next"] - step["t"]
        drift, diffusion = _reverse_sde(score, schedule)
        dw = jnp.sqrt(jnp.abs(dt)) * jax.random.normal(k, x.shape, x.dtype)
        return x + drift(t, x) * dt + diffusion(t, x) * dw

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps + 1, self.grid, self.rho)
        table = {k: v[:-1] for k, v in _transition_table(schedule, ts).items()}
        table["alpha_s"], table["sigma_s"], table["lam_s"] = (
            schedule.alpha(ts[1:]),
            schedule.sigma(ts[1:]),
            schedule.log_snr(ts[1:]),
        )
        table["t_next"] = ts[1:]
        keys = jax.random.split(key, (self.num_steps, self.corrector_steps + 1))

        def body(x, inputs):
            step, k = inputs
            x = self._langevin(score, schedule, step["t"], step["t_next"], x, k[1:])
            return self._predict(score, schedule, step, x, k[0])

        y, ys = _scan_transitions(body, x_T, (table, keys), save_trajectory)
        per_step = self.corrector_steps + (self.predictor != "none")
        sol = Solution(y=y, nfe=self.num_steps * per_step, ts=ts, ys=ys)
        return _finish(score, schedule, sol, self.denoise_final, save_trajectory)


_ODE_SOLVERS = {"euler": Euler, "heun": Heun, "midpoint": Midpoint, "rk4": RK4}
_ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "bosh3": diffrax.Bosh3}
VARIABLES = ("t", "sigma")


def _make_ode_solver(solver: str | AbstractODESolver, num_steps: int, rtol: float, atol: float) -> AbstractODESolver:
    if isinstance(solver, AbstractODESolver):
        return solver
    if solver in _ODE_SOLVERS:
        return _ODE_SOLVERS[solver](num_steps=num_steps)
    if solver in _ADAPTIVE:
        return DiffraxODE(_ADAPTIVE[solver](), rtol=rtol, atol=atol)
    allowed = ", ".join((*_ODE_SOLVERS, *_ADAPTIVE))
    raise ValueError(f"solver={solver!r} is invalid; allowed: {allowed}, or an ODE solver module")


def probability_flow_drift(schedule: AbstractSchedule, score: Score) -> Callable[[Any, Array], Array]:
    """The probability-flow ODE's field ``f(t) x - g(t)^2 score(t, x) / 2`` (per example or batched, like ``score``).

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, eq. 13.
    """
    return lambda t, x: schedule.drift_coeff(t) * x - 0.5 * schedule.diffusion_sq(t) * score(t, x)


class ProbabilityFlow(AbstractDiffusionSampler):
    r"""The probability-flow ODE, from ``t_max`` to ``t_min``, with any ODE solver.

    In t (``variable="t"``): $dx/dt = f(t) x - \tfrac12 g(t)^2 \nabla_x \log p_t(x)$.

    In EDM's variables (``variable="sigma"``): $y = x / \alpha$ and the noise level $s = \sigma / \alpha$,

    $$\frac{dy}{ds} = -s\, \alpha\, \nabla_x \log p_t(\alpha y) = \frac{y - D(y; s)}{s},$$

    which is much straighter; Euler in these variables is DDIM (eta = 0), and Heun on the ``"edm"`` grid is EDM's
    deterministic sampler (Algorithm 1), whose last step to s=0 is the final denoising step here.

    Args:
        solver: ``"euler"``, ``"heun"``, ``"midpoint"``, ``"rk4"`` (fixed steps on this sampler's grid),
            ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"bosh3"`` (adaptive diffrax), or any ODE solver module.
        num_steps: steps, when ``solver`` names a fixed-step method.
        grid, rho: the time grid of fixed-step solvers.
        variable: ``"sigma"`` (EDM's variables) or ``"t"``.
        rtol, atol: tolerances, when ``solver`` names an adaptive method.
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022.
    """

    solver: AbstractODESolver
    grid: str = eqx.field(static=True)
    rho: float = eqx.field(static=True)
    variable: str = eqx.field(static=True)
    denoise_final: bool = eqx.field(static=True)

    def __init__(
        self,
        solver: str | AbstractODESolver = "heun",
        num_steps: int = 50,
        grid: str = "edm",
        rho: float = 7.0,
        variable: str = "sigma",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        denoise_final: bool = True,
    ):
        check_positive_int("num_steps", num_steps)
        _check_grid(grid, rho)
        if variable not in VARIABLES:
            raise ValueError(f"variable={variable!r} is invalid; allowed: {', '.join(VARIABLES)}")
        self.solver = _make_ode_solver(solver, num_steps, rtol, atol)
        self.grid, self.rho, self.variable, self.denoise_final = grid, float(rho), variable, bool(denoise_final)

    def _integrate(self, f, y0, ts, t0, t1, save_trajectory) -> Solution:
        if isinstance(self.solver, AbstractFixedStepSolver):
            return self.solver.solve_grid(f, y0, ts, save_trajectory=save_trajectory)
        return self.solver.solve(f, y0, t0, t1, save_trajectory=save_trajectory)

    def sample(self, score, schedule, x_T, *, key=None, save_trajectory=False):
        num = getattr(self.solver, "num_steps", 1)
        ts = time_grid(schedule, num + 1, self.grid, self.rho)
        if self.variable == "t":
            f = probability_flow_drift(schedule, score)
            sol = self._integrate(f, x_T, ts, schedule.t_max, schedule.t_min, save_trajectory)
        else:
            sol = self._integrate_sigma(score, schedule, x_T, ts, save_trajectory)
        return _finish(score, schedule, sol, self.denoise_final, save_trajectory)

    def _integrate_sigma(self, score, schedule, x_T, ts, save_trajectory) -> Solution:
        def f(s, y):
            t = schedule.t_from_noise_to_signal(s)
            alpha = schedule.alpha(t)
            return -s * alpha * score(t, alpha * y)

        s_grid = schedule.noise_to_signal(ts)
        a_max, a_min = schedule.alpha(schedule.t_max), schedule.alpha(schedule.t_min)
        sol = self._integrate(f, x_T / a_max, s_grid, s_grid[0], s_grid[-1], save_trajectory)
        ys = None
        if save_trajectory and sol.ys is not None:
            t_saved = schedule.t_from_noise_to_signal(sol.ts)
            ys = sol.ys * schedule.alpha(t_saved).reshape((-1,) + (1,) * (sol.ys.ndim - 1))
        return Solution(y=a_min * sol.y, nfe=sol.nfe, ts=ts, ys=ys)


def make_sampler(sampler: AbstractDiffusionSampler | AbstractODESolver | AbstractSDESolver) -> AbstractDiffusionSampler:
    """A diffusion sampler from a sampler, or from a plain ODE solver (the probability-flow ODE, in t, on the uniform
    grid, exactly as configured) or SDE solver (the reverse SDE), so every solver config works for diffusion."""
    if isinstance(sampler, AbstractDiffusionSampler):
        return sampler
    if isinstance(sampler, AbstractODESolver):
        return ProbabilityFlow(sampler, grid="uniform", variable="t")
    if isinstance(sampler, AbstractSDESolver):
        return ReverseSDE(sampler)
    raise ValueError(
        f"sampler={sampler!r} is invalid: allowed are diffusion samplers (Ancestral, DDIM, ReverseSDE, "
        "PredictorCorrector, ProbabilityFlow), ODE solvers (probability flow) and SDE solvers (reverse SDE)"
    )
