"""DDIM (t=0 data, t_max noise)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from genflow._checks import check_positive_int
from genflow.diffusion._samplers._base import AbstractDiffusionSampler, scan_transitions, transition_table
from genflow.diffusion._samplers._grids import AbstractTimeGrid, Uniform, check_grid, time_grid
from genflow.solvers import Solution


class DDIM(AbstractDiffusionSampler):
    r"""DDIM on a grid of ``num_steps`` times, the last step going to the clean state.

    $$x_s = \alpha_s \hat x_0 + \sqrt{\sigma_s^2 - c^2}\, \hat\epsilon + c\, z, \quad
    c^2 = \eta^2 \sigma_s^2 (1 - r), \quad r = \frac{\alpha_t^2 \sigma_s^2}{\alpha_s^2 \sigma_t^2}.$$

    ``eta = 0`` is deterministic (it is Euler's method on the probability-flow ODE in the variables ``x / alpha``
    and ``sigma / alpha``); ``eta = 1`` is ancestral sampling with the posterior variance. ``nfe = num_steps``.

    Args:
        num_steps: number of score evaluations (grid points).
        eta: stochasticity, in [0, 1] usually.
        grid: the time grid (``Uniform()``, ``EDMGrid(rho)``, ``LogSNRGrid()``).

    References:
        Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16.
    """

    num_steps: int = eqx.field(static=True, default=50)
    eta: float = eqx.field(static=True, default=0.0)
    grid: AbstractTimeGrid = Uniform()

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        check_grid(self.grid)
        if not self.eta >= 0:
            raise ValueError(f"eta={self.eta!r} is invalid: must be >= 0")

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps, self.grid)
        table = transition_table(schedule, ts)

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
        y, ys = scan_transitions(body, x_T, (table, keys), save_trajectory)
        return Solution(y=y, nfe=self.num_steps, ts=ts, ys=ys)
