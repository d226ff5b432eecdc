"""Time grids of the diffusion samplers: decreasing times from ``t_max`` to ``t_min``.

A grid is a strategy module: ``grid.times(schedule, num_points)``. Every grid pins its ends to the schedule's
interval and, on a discrete chain, rounds its times to the chain's steps (respacing).

References:
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022,
    eq. 5 (the rho grid).
    Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021 (uniform in log-SNR).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from genflow._checks import check_instance
from genflow.diffusion._schedules import AbstractSchedule, snap_times

GRID_CHOICES = "a time grid module: Uniform(), EDMGrid(rho), LogSNRGrid()"


class AbstractTimeGrid(eqx.Module):
    """Where a sampler evaluates the score: ``times(schedule, n)``, decreasing from ``t_max`` to ``t_min``."""

    @abc.abstractmethod
    def interpolate(self, schedule: AbstractSchedule, frac: Float[Array, " n"]) -> Float[Array, " n"]:
        """The times at fractions ``frac`` in [0, 1] of the way from ``t_max`` (0) to ``t_min`` (1)."""

    def times(self, schedule: AbstractSchedule, num_points: int) -> Float[Array, " num_points"]:
        """``num_points`` decreasing times from ``t_max`` to ``t_min`` (just ``t_max`` when ``num_points = 1``).

        On a discrete chain the times are rounded to its steps, which can repeat a time where the grid is finer than
        the chain (the EDM grid near t=1 on the cosine chain); a repeated time is a step that does nothing.
        """
        t_max, t_min = schedule.t_max, schedule.t_min
        if num_points == 1:
            return jnp.full((1,), t_max, dtype=jnp.result_type(float))
        ts = self.interpolate(schedule, jnp.linspace(0.0, 1.0, num_points))
        # Pin the ends: inverting the noise level rounds, and the ends must be exactly the schedule's interval.
        ts = ts.at[0].set(t_max).at[-1].set(t_min)
        return snap_times(schedule, ts)


class Uniform(AbstractTimeGrid):
    """Uniform in t: ``t_i = t_max + i/(n-1) (t_min - t_max)``."""

    def interpolate(self, schedule, frac):
        return schedule.t_max + frac * (schedule.t_min - schedule.t_max)


class EDMGrid(AbstractTimeGrid):
    r"""Karras et al.'s grid, uniform in ``s^{1/rho}`` for the noise level ``s = sigma / alpha``:

    $$s_i = \left(s_{max}^{1/\rho} + \tfrac{i}{n-1} (s_{min}^{1/\rho} - s_{max}^{1/\rho})\right)^\rho.$$

    Args:
        rho: the grid's exponent (7 in EDM); larger puts more points at low noise.

    References:
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022, eq. 5.
    """

    rho: float = eqx.field(static=True, default=7.0)

    def __check_init__(self):
        if not self.rho > 0:
            raise ValueError(f"rho={self.rho!r} is invalid: must be positive")

    def interpolate(self, schedule, frac):
        rho = self.rho
        s_max, s_min = schedule.noise_to_signal(schedule.t_max), schedule.noise_to_signal(schedule.t_min)
        s = (s_max ** (1 / rho) + frac * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        return schedule.t_from_noise_to_signal(s)


class LogSNRGrid(AbstractTimeGrid):
    """Uniform in the log signal-to-noise ratio ``lambda_t = log(alpha_t^2 / sigma_t^2)``.

    References:
        Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021.
    """

    def interpolate(self, schedule, frac):
        lam_max, lam_min = schedule.log_snr(schedule.t_min), schedule.log_snr(schedule.t_max)
        return schedule.t_from_log_snr(lam_min + frac * (lam_max - lam_min))


def check_grid(grid: object) -> None:
    """A ValueError naming ``grid`` unless it is a time grid module."""
    check_instance("grid", grid, AbstractTimeGrid, GRID_CHOICES)


def time_grid(
    schedule: AbstractSchedule, num_points: int, grid: AbstractTimeGrid = Uniform()
) -> Float[Array, " num_points"]:
    """``grid.times(schedule, num_points)``: decreasing times from ``t_max`` to ``t_min``, snapped and pinned."""
    check_grid(grid)
    return grid.times(schedule, num_points)
