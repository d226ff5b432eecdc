"""Fixed-step SDE integrators written as one ``lax.scan``.

``solver.solve(drift, diffusion, y0, t0, t1, key=key)`` integrates ``dY = drift(t, Y) dt + diffusion(t, Y) dW``
with diagonal noise: ``diffusion`` returns an array that multiplies the Brownian increment elementwise (a scalar
broadcasts). All Brownian increments are drawn from keys split up front, so a seed fixes the path.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, PRNGKeyArray

from genflow._checks import check_positive_int
from genflow.solvers._ode import AbstractFixedStep, Solution


class AbstractSDESolver(eqx.Module):
    """An SDE integration strategy: ``solve(drift, diffusion, y0, t0, t1, key=key) -> Solution``."""

    @abc.abstractmethod
    def solve(self, drift, diffusion, y0, t0=0.0, t1=1.0, *, key, save_trajectory=False) -> Solution:
        """Integrate ``dY = drift dt + diffusion dW`` from ``t0`` to ``t1`` (diagonal noise)."""


class AbstractFixedStepSDESolver(AbstractSDESolver, AbstractFixedStep):
    """A one-step SDE method on a time grid, run as one ``lax.scan``."""

    @abc.abstractmethod
    def step(self, drift, diffusion, t, y, dt, dw) -> Array:
        """Advance ``y`` from ``t`` to ``t + dt`` with Brownian increment ``dw``."""

    def solve(
        self,
        drift: Callable[[Any, Array], Array],
        diffusion: Callable[[Any, Array], Array],
        y0: Array,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        key: PRNGKeyArray,
        save_trajectory: bool = False,
    ) -> Solution:
        ts = jnp.linspace(t0, t1, self.num_steps + 1)
        return self.solve_grid(drift, diffusion, y0, ts, key=key, save_trajectory=save_trajectory)

    def solve_grid(self, drift, diffusion, y0, ts, *, key, save_trajectory=False) -> Solution:
        """Integrate over an arbitrary time grid ``ts`` (increasing or decreasing)."""
        keys = jax.random.split(key, ts.shape[0] - 1)

        def advance(y, t, t_next, k):
            dt = t_next - t
            dw = jnp.sqrt(jnp.abs(dt)) * jax.random.normal(k, y.shape, y.dtype)
            return self.step(drift, diffusion, t, y, dt, dw)

        return self.scan_grid(advance, y0, ts, keys, save_trajectory=save_trajectory)


class EulerMaruyama(AbstractFixedStepSDESolver):
    """Euler–Maruyama: ``Y_{n+1} = Y_n + b(t_n, Y_n) h + g(t_n, Y_n) dW_n``; strong order 1/2, weak order 1.

    References:
        Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992.
    """

    num_steps: int = eqx.field(static=True, default=100)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 1

    def step(self, drift, diffusion, t, y, dt, dw):
        return y + drift(t, y) * dt + diffusion(t, y) * dw


class StochasticHeun(AbstractFixedStepSDESolver):
    """Stochastic Heun (predictor–corrector trapezoid) for additive or Stratonovich noise; 2 NFE per step.

    References:
        Kloeden & Platen, 1992, Sec. 15.1; Karras et al., NeurIPS 2022.
    """

    num_steps: int = eqx.field(static=True, default=50)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 2

    def step(self, drift, diffusion, t, y, dt, dw):
        b0, g0 = drift(t, y), diffusion(t, y)
        y_pred = y + b0 * dt + g0 * dw
        b1, g1 = drift(t + dt, y_pred), diffusion(t + dt, y_pred)
        return y + 0.5 * (b0 + b1) * dt + 0.5 * (g0 + g1) * dw


def _levy_area(solver) -> type:
    """The cheapest Brownian-tree output the solver accepts (additive-noise SRK methods need space-time Lévy area)."""
    minimal = getattr(solver, "minimal_levy_area", None)
    for area in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea, diffrax.SpaceTimeTimeLevyArea):
        if minimal is None or issubclass(area, minimal):
            return area
    raise ValueError(f"solver={solver!r} needs a Lévy area that a virtual Brownian tree does not provide")


def _drift_evals(solver) -> int:
    """Drift evaluations per step: a stochastic Runge-Kutta method's stages less those that skip the drift."""
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, diffrax.AbstractSRK):
        ignored = 0 if tableau.ignore_stage_f is None else int(sum(tableau.ignore_stage_f))
        return len(tableau.c) + 1 - ignored
    return getattr(tableau, "num_stages", 1)


def _has_error_estimate(solver) -> bool:
    """Adaptive SDE steps need an SRK method with an embedded error estimate (ShARK, SRA1, SPaRK)."""
    return isinstance(solver, diffrax.AbstractSRK) and solver.tableau.b_error is not None


class DiffraxSDE(AbstractSDESolver):
    """SDE solve with diffrax on a virtual Brownian tree, with diagonal noise; fixed or adaptive steps.

    ``diffrax.Euler()`` is Itô Euler–Maruyama and ``diffrax.Heun()`` is Stratonovich; ``diffrax.ShARK()``,
    ``SRA1()`` and ``SPaRK()`` are for
    additive noise (diffusion independent of ``y``, as in diffusion models and interpolant SDEs), where Itô and
    Stratonovich agree, and they support adaptive steps (``rtol``/``atol``). Integration with ``t1 < t0`` runs
    the time-reversed equation ``s = -t``: drift ``-f(-s, y)``, same diffusion, a fresh Brownian motion.

    Args:
        solver: a diffrax solver instance; adaptive steps need an SRK method with an error estimate.
        num_steps: steps on [t0, t1] when ``rtol`` is None (fixed step size), else the initial step count.
        rtol, atol: PID tolerances; ``None`` for fixed steps.
        brownian_tol: resolution of the virtual Brownian tree.
        max_steps: cap on steps.

    References:
        Kidger, "On Neural Differential Equations", 2021 (virtual Brownian tree); Foster, dos Reis, Strange,
        "High order splitting methods for SDEs satisfying a commutativity condition", 2023 (ShARK).
    """

    solver: diffrax.AbstractSolver = eqx.field(static=True, default=diffrax.Euler())
    num_steps: int = eqx.field(static=True, default=100)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    brownian_tol: float = eqx.field(static=True, default=1e-4)
    max_steps: int = eqx.field(static=True, default=16384)

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise ValueError(
                f"solver={self.solver!r} is invalid; allowed: a diffrax solver instance, e.g. diffrax.ShARK()"
            )
        check_positive_int("num_steps", self.num_steps)
        check_positive_int("max_steps", self.max_steps)
        if (self.rtol is None) != (self.atol is None):
            raise ValueError(f"rtol={self.rtol!r}, atol={self.atol!r}: give both (adaptive) or neither (fixed)")
        if self.rtol is not None and not _has_error_estimate(self.solver):
            raise ValueError(
                f"solver={self.solver!r} has no error estimate; adaptive steps need ShARK(), SRA1() or SPaRK()"
            )
        _levy_area(self.solver)

    def solve(self, drift, diffusion, y0, t0=0.0, t1=1.0, *, key, save_trajectory=False, num_save: int = 101):
        evals, levy = _drift_evals(self.solver), _levy_area(self.solver)
        sign = 1.0 if t1 >= t0 else -1.0  # integrate in s = sign * t, which always increases
        s0, s1 = sign * t0, sign * t1
        bm = diffrax.VirtualBrownianTree(s0, s1, tol=self.brownian_tol, shape=y0.shape, key=key, levy_area=levy)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda s, y, args: sign * drift(sign * s, y)),
            diffrax.ControlTerm(
                lambda s, y, args: lx.DiagonalLinearOperator(jnp.broadcast_to(diffusion(sign * s, y), y.shape)), bm
            ),
        )
        adaptive = self.rtol is not None
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol) if adaptive else diffrax.ConstantStepSize()
        saveat = diffrax.SaveAt(ts=jnp.linspace(s0, s1, num_save)) if save_trajectory else diffrax.SaveAt(t1=True)
        sol = diffrax.diffeqsolve(
            terms,
            self.solver,
            s0,
            s1,
            (s1 - s0) / self.num_steps,
            y0,
            saveat=saveat,
            stepsize_controller=controller,
            max_steps=self.max_steps,
        )
        ys = sol.ys if save_trajectory else None
        return Solution(y=sol.ys[-1], nfe=evals * sol.stats["num_steps"], ts=sign * sol.ts, ys=ys)
