"""DDPM ancestral sampling (t=0 data, t_max noise)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from genflow._checks import check_instance, check_positive_int
from genflow.diffusion._samplers._base import (
    AbstractDiffusionSampler,
    denoise,
    posterior,
    scan_transitions,
    transition_table,
)
from genflow.diffusion._samplers._grids import AbstractTimeGrid, Uniform, check_grid, time_grid
from genflow.diffusion._variances import VARIANCE_CHOICES, AbstractReverseVariance, PosteriorVariance
from genflow.solvers import Solution


class Ancestral(AbstractDiffusionSampler):
    r"""DDPM ancestral sampling on a grid of ``num_steps`` times ``t_max = t_1 > ... > t_K = t_min``.

    Each step draws from the Gaussian posterior with ``x0 = x0_hat(t, x_t)``; the last step goes to the clean state,
    where the posterior collapses to ``x0_hat``:

    $$x_s = \alpha_s \left(r\, \frac{x_t}{\alpha_t} + (1 - r)\, \hat x_0\right) + \sqrt{v}\, z, \quad
    r = \frac{\alpha_t^2 \sigma_s^2}{\alpha_s^2 \sigma_t^2}, \quad
    v = \begin{cases} \sigma_s^2 (1 - r) & \text{PosteriorVariance } (\tilde\beta) \\
    \sigma_t^2 (1 - r) & \text{BetaVariance} \end{cases}$$

    On ``DiscreteSchedule(N)`` with ``num_steps = N`` this is exactly the DDPM sampler; fewer steps respace the
    chain. ``nfe = num_steps``.

    Args:
        num_steps: number of score evaluations (grid points).
        variance: ``PosteriorVariance()`` (tilde beta) or ``BetaVariance()`` (Ho et al.'s two choices).
        grid: the time grid (``Uniform()``, ``EDMGrid(rho)``, ``LogSNRGrid()``).

    References:
        Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, Algorithm 2.
    """

    num_steps: int = eqx.field(static=True, default=1000)
    variance: AbstractReverseVariance = PosteriorVariance()
    grid: AbstractTimeGrid = Uniform()

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        check_grid(self.grid)
        check_instance("variance", self.variance, AbstractReverseVariance, VARIANCE_CHOICES)

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps, self.grid)
        table = transition_table(schedule, ts)
        last = jnp.arange(self.num_steps) == self.num_steps - 1

        def body(x, inputs):
            step, k, is_last = inputs
            x0 = denoise(score, schedule, step["t"], x)
            mean, _ = posterior(step, x, x0)
            one_minus_r = -jnp.expm1(step["lam_t"] - step["lam_s"])
            # The last step returns the mean: sigma_t^2 (1 - r) would re-noise the clean state (Ho et al.).
            var = jnp.where(is_last, 0.0, self.variance.variance(one_minus_r, step["sigma_t"], step["sigma_s"]))
            return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)

        keys = jax.random.split(key, self.num_steps)
        y, ys = scan_transitions(body, x_T, (table, keys, last), save_trajectory)
        return Solution(y=y, nfe=self.num_steps, ts=ts, ys=ys)
