r"""The probability-flow ODE (t=0 data, t_max noise), with any ODE solver, in t or in EDM's variables.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, eq. 13.
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import Array

from genflow._checks import check_instance
from genflow.diffusion._samplers._base import AbstractDiffusionSampler, Score, finish
from genflow.diffusion._samplers._grids import AbstractTimeGrid, EDMGrid, check_grid, time_grid
from genflow.diffusion._schedules import AbstractSchedule
from genflow.solvers import AbstractFixedStepSolver, AbstractODESolver, Heun, Solution

ODE_SOLVER_CHOICES = "an ODE solver module: Euler(num_steps), Heun(num_steps), RK4(num_steps), DiffraxODE(...)"
VARIABLE_CHOICES = "TimeVariable() or SigmaVariable()"


def probability_flow_drift(schedule: AbstractSchedule, score: Score) -> Callable[[Any, Array], Array]:
    """The probability-flow ODE's field ``f(t) x - g(t)^2 score(t, x) / 2`` (per example or batched, like ``score``).

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, eq. 13.
    """
    return lambda t, x: schedule.drift_coeff(t) * x - 0.5 * schedule.diffusion_sq(t) * score(t, x)


def _integrate(solver: AbstractODESolver, f, y0, ts, t0, t1, save_trajectory) -> Solution:
    """On the grid ``ts`` for a fixed-step solver; from ``t0`` to ``t1`` (the grid's ends) for an adaptive one."""
    if isinstance(solver, AbstractFixedStepSolver):
        return solver.solve_grid(f, y0, ts, save_trajectory=save_trajectory)
    return solver.solve(f, y0, t0, t1, save_trajectory=save_trajectory)


class AbstractFlowVariable(eqx.Module):
    """The variables the probability-flow ODE is integrated in."""

    @abc.abstractmethod
    def integrate(
        self, solver: AbstractODESolver, score: Score, schedule: AbstractSchedule, x_T: Array, ts: Array, save: bool
    ) -> Solution:
        """Integrate from ``x_T`` at ``ts[0] = t_max`` to ``ts[-1] = t_min``; ``Solution.ts`` is the time grid."""


class TimeVariable(AbstractFlowVariable):
    r"""In t: $dx/dt = f(t) x - \tfrac12 g(t)^2 \nabla_x \log p_t(x)$."""

    def integrate(self, solver, score, schedule, x_T, ts, save):
        f = probability_flow_drift(schedule, score)
        return _integrate(solver, f, x_T, ts, schedule.t_max, schedule.t_min, save)


class SigmaVariable(AbstractFlowVariable):
    r"""In EDM's variables, $y = x / \alpha$ and the noise level $s = \sigma / \alpha$:

    $$\frac{dy}{ds} = -s\, \alpha\, \nabla_x \log p_t(\alpha y) = \frac{y - D(y; s)}{s},$$

    which is much straighter; Euler in these variables is DDIM (eta = 0), and Heun on ``EDMGrid()`` is EDM's
    deterministic sampler (Algorithm 1), whose last step to s=0 is the final denoising step.

    References:
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022, eq. 4 and Algorithm 1.
    """

    def integrate(self, solver, score, schedule, x_T, ts, save):
        def f(s, y):
            t = schedule.t_from_noise_to_signal(s)
            alpha = schedule.alpha(t)
            return -s * alpha * score(t, alpha * y)

        s_grid = schedule.noise_to_signal(ts)
        a_max, a_min = schedule.alpha(schedule.t_max), schedule.alpha(schedule.t_min)
        sol = _integrate(solver, f, x_T / a_max, s_grid, s_grid[0], s_grid[-1], save)
        ys = None
        if save and sol.ys is not None:
            t_saved = schedule.t_from_noise_to_signal(sol.ts)
            ys = sol.ys * schedule.alpha(t_saved).reshape((-1,) + (1,) * (sol.ys.ndim - 1))
        return Solution(y=a_min * sol.y, nfe=sol.nfe, ts=ts, ys=ys)


class ProbabilityFlow(AbstractDiffusionSampler):
    r"""The probability-flow ODE, from ``t_max`` to ``t_min``, with any ODE solver.

    $$\frac{dx}{dt} = f(t) x - \tfrac12 g(t)^2 \nabla_x \log p_t(x),$$

    integrated in t (``TimeVariable()``) or in EDM's variables ``x / alpha`` and ``sigma / alpha``
    (``SigmaVariable()``, the default).

    Args:
        solver: any ODE solver module: fixed-step (``Euler``, ``Heun``, ``Midpoint``, ``RK4``, with their own
            ``num_steps``) on this sampler's grid, or adaptive (``DiffraxODE(diffrax.Tsit5(), rtol, atol)``).
            ``Heun(num_steps=50)`` by default.
        grid: the time grid of fixed-step solvers (``EDMGrid(rho=7)`` by default).
        variable: ``SigmaVariable()`` (EDM's variables) or ``TimeVariable()``.
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022.
    """

    solver: AbstractODESolver = Heun(num_steps=50)
    grid: AbstractTimeGrid = EDMGrid()
    variable: AbstractFlowVariable = SigmaVariable()
    denoise_final: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_instance("solver", self.solver, AbstractODESolver, ODE_SOLVER_CHOICES)
        check_grid(self.grid)
        check_instance("variable", self.variable, AbstractFlowVariable, VARIABLE_CHOICES)

    def sample(self, score, schedule, x_T, *, key=None, save_trajectory=False):
        num = self.solver.num_steps if isinstance(self.solver, AbstractFixedStepSolver) else 1
        ts = time_grid(schedule, num + 1, self.grid)
        sol = self.variable.integrate(self.solver, score, schedule, x_T, ts, save_trajectory)
        return finish(score, schedule, sol, self.denoise_final, save_trajectory)
