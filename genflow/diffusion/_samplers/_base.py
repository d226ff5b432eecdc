"""The base of the diffusion samplers and the pieces they share: Tweedie's denoiser, the Gaussian posterior of the
forward process, per-transition tables, the reverse SDE and the final denoising step.

Convention: t=0 data, t = t_max noise; sampling runs from ``t_max`` down to ``t_min``. Every sampler has

    sampler.sample(score, schedule, x_T, *, key, save_trajectory=False) -> Solution(y, nfe, ts, ys)

where ``score(t, x)`` is ``grad_x log p_t(x)`` on a batch ``x`` at a scalar time: a trained network (see
``DiffusionModel.batched_score``) or an analytic score, which is what the oracle tests use. ``nfe`` counts score
evaluations. With ``x = alpha x0 + sigma eps``, the denoised mean and noise estimates are

    x0_hat = (x + sigma^2 s) / alpha,    eps_hat = -sigma s     (Tweedie).

References:
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021 (the stable log-SNR form of the
    posterior q(x_s | x_t, x0)).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.diffusion._schedules import AbstractSchedule
from genflow.solvers import Solution

Score = Callable[[Any, Array], Array]


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


def denoise(score: Score, schedule: AbstractSchedule, t, x: Array) -> Array:
    """Tweedie's denoised mean ``x0_hat = (x + sigma_t^2 score(t, x)) / alpha_t`` (one score evaluation)."""
    return (x + schedule.sigma(t) ** 2 * score(t, x)) / schedule.alpha(t)


def transition_table(schedule: AbstractSchedule, ts: Array) -> dict[str, Array]:
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


def posterior(step: dict[str, Array], x: Array, x0: Array) -> tuple[Array, Array]:
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
    return posterior(step, x_t, x0)


def scan_transitions(body, x_T: Array, xs: Any, save_trajectory: bool):
    """``lax.scan`` of ``x <- body(x, inputs)``, with the path (``x_T`` first) when ``save_trajectory``."""

    def wrapped(x, inputs):
        x_next = body(x, inputs)
        return x_next, (x_next if save_trajectory else None)

    y, ys = jax.lax.scan(wrapped, x_T, xs)
    if save_trajectory:
        ys = jnp.concatenate([x_T[None], ys])
    return y, ys


def reverse_sde(score: Score, schedule: AbstractSchedule):
    """Drift ``f(t) x - g(t)^2 score(t, x)`` and diffusion ``g(t)`` of the reverse-time SDE (Anderson 1982)."""
    drift = lambda t, x: schedule.drift_coeff(t) * x - schedule.diffusion_sq(t) * score(t, x)
    diffusion = lambda t, x: schedule.sde_diffusion(t)
    return drift, diffusion


def finish(score: Score, schedule: AbstractSchedule, sol: Solution, denoise_final: bool, save_trajectory: bool):
    """End on ``x0_hat(t_min, x)`` when ``denoise_final`` (one more evaluation, appended to the path)."""
    if not denoise_final:
        return sol
    y = denoise(score, schedule, schedule.t_min, sol.y)
    ys = None if not save_trajectory or sol.ys is None else jnp.concatenate([sol.ys, y[None]])
    return Solution(y=y, nfe=sol.nfe + 1, ts=sol.ts, ys=ys)
