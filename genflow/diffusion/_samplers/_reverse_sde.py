"""The reverse-time SDE (t=0 data, t_max noise), with any SDE solver."""

from __future__ import annotations

import equinox as eqx

from genflow._checks import check_instance
from genflow.diffusion._samplers._base import AbstractDiffusionSampler, finish, reverse_sde
from genflow.diffusion._samplers._grids import AbstractTimeGrid, Uniform, check_grid, time_grid
from genflow.solvers import AbstractFixedStepSDESolver, AbstractSDESolver, EulerMaruyama

SDE_SOLVER_CHOICES = "an SDE solver module: EulerMaruyama(num_steps), StochasticHeun(num_steps), DiffraxSDE(...)"


class ReverseSDE(AbstractDiffusionSampler):
    r"""The reverse-time SDE, integrated from ``t_max`` down to ``t_min``:

    $$dx = [f(t) x - g(t)^2 \nabla_x \log p_t(x)]\, dt + g(t)\, d\bar W.$$

    Args:
        solver: any SDE solver module (``EulerMaruyama(num_steps)`` with 1000 steps by default,
            ``StochasticHeun``, ``DiffraxSDE(diffrax.ShARK(), ...)``); a fixed-step solver runs on this sampler's
            grid, with its own ``num_steps``.
        grid: the time grid of fixed-step solvers (``Uniform()``, ``EDMGrid(rho)``, ``LogSNRGrid()``).
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, eq. 6.
        Anderson, "Reverse-time diffusion equation models", 1982.
    """

    solver: AbstractSDESolver = EulerMaruyama(num_steps=1000)
    grid: AbstractTimeGrid = Uniform()
    denoise_final: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_instance("solver", self.solver, AbstractSDESolver, SDE_SOLVER_CHOICES)
        check_grid(self.grid)

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        drift, diffusion = reverse_sde(score, schedule)
        if isinstance(self.solver, AbstractFixedStepSDESolver):
            ts = time_grid(schedule, self.solver.num_steps + 1, self.grid)
            sol = self.solver.solve_grid(drift, diffusion, x_T, ts, key=key, save_trajectory=save_trajectory)
        else:
            sol = self.solver.solve(
                drift, diffusion, x_T, schedule.t_max, schedule.t_min, key=key, save_trajectory=save_trajectory
            )
        return finish(score, schedule, sol, self.denoise_final, save_trajectory)
