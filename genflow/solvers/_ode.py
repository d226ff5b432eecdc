"""Fixed-step ODE integrators written as one ``lax.scan``, and an adaptive diffrax wrapper.

Every solver is a strategy module: ``solver.solve(f, y0, t0, t1)`` integrates ``dy/dt = f(t, y)`` and returns a
:class:`Solution` holding the final state and the number of function evaluations (NFE). ``f`` is any callable on a
pytree state (a trained network batched with ``vmap``, or an analytic velocity), so the same code runs the tests'
closed-form oracles and trained models. ``t1 < t0`` integrates backwards.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from genflow._checks import check_positive_int

VectorField = Callable[[Any, PyTree], PyTree]


class Solution(eqx.Module):
    """Result of a solve: final state ``y``, ``nfe``, and optionally the trajectory ``ys`` at times ``ts``."""

    y: PyTree
    nfe: Any
    ts: Array | None = None
    ys: PyTree | None = None


def _axpy(a, x, y):
    """``a * x + y`` over matching pytrees."""
    return jax.tree_util.tree_map(lambda xi, yi: a * xi + yi, x, y)


def _lincomb(y, terms):
    """``y + sum_i c_i k_i`` for a list of ``(c_i, k_i)``."""
    for c, k in terms:
        y = _axpy(c, k, y)
    return y


class AbstractODESolver(eqx.Module):
    """An ODE integration strategy."""

    @abc.abstractmethod
    def solve(self, f: VectorField, y0: PyTree, t0: float, t1: float, *, save_trajectory: bool = False) -> Solution:
        """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1``."""


class AbstractFixedStep(eqx.Module):
    """What the fixed-step ODE and SDE methods share: ``num_steps`` one-step updates on a grid, one ``lax.scan``."""

    num_steps: eqx.AbstractVar[int]
    # Unrolling the step loop trades compile time for speed where XLA runs loop bodies slowly (convolutions on
    # CPU, jax-ml/jax#12868).
    unroll: eqx.AbstractVar[bool]
    stages: ClassVar[int]

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)

    def scan_grid(
        self,
        advance: Callable[[PyTree, Array, Array, Any], PyTree],
        y0: PyTree,
        ts: Float[Array, " n"],
        xs: Any = None,
        *,
        save_trajectory: bool = False,
    ) -> Solution:
        """``y_{k+1} = advance(y_k, t_k, t_{k+1}, xs_k)`` over the grid ``ts``, with per-step inputs ``xs`` (the
        Brownian keys of an SDE method) scanned along; the NFE is ``stages`` per step."""

        def body(y, inputs):
            t, t_next, x = inputs
            y_next = advance(y, t, t_next, x)
            return y_next, (y_next if save_trajectory else None)

        y, ys = jax.lax.scan(body, y0, (ts[:-1], ts[1:], xs), unroll=self.unroll)
        if save_trajectory:
            ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
        return Solution(y=y, nfe=self.stages * (ts.shape[0] - 1), ts=ts, ys=ys)


class AbstractFixedStepSolver(AbstractODESolver, AbstractFixedStep):
    """A one-step method on a uniform grid of ``num_steps`` steps, run as a single ``lax.scan``."""

    @abc.abstractmethod
    def step(self, f: VectorField, t: Array, y: PyTree, dt: Array) -> PyTree:
        """Advance ``y`` from ``t`` to ``t + dt``."""

    def solve(self, f, y0, t0=0.0, t1=1.0, *, save_trajectory=False):
        ts = jnp.linspace(t0, t1, self.num_steps + 1)
        return self.solve_grid(f, y0, ts, save_trajectory=save_trajectory)

    def solve_grid(self, f: VectorField, y0: PyTree, ts: Float[Array, " n"], *, save_trajectory=False) -> Solution:
        """Integrate over an arbitrary (possibly non-uniform) time grid ``ts``."""
        advance = lambda y, t, t_next, _: self.step(f, t, y, t_next - t)
        return self.scan_grid(advance, y0, ts, save_trajectory=save_trajectory)


class Euler(AbstractFixedStepSolver):
    """Explicit Euler: ``y_{n+1} = y_n + h f(t_n, y_n)``; global order 1."""

    num_steps: int = eqx.field(static=True, default=100)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 1

    def step(self, f, t, y, dt):
        return _axpy(dt, f(t, y), y)


class Heun(AbstractFixedStepSolver):
    """Heun's method (explicit trapezoid), global order 2.

    ``k1 = f(t, y)``, ``k2 = f(t + h, y + h k1)``, ``y_{n+1} = y_n + h/2 (k1 + k2)``.

    References:
        Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
    """

    num_steps: int = eqx.field(static=True, default=50)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 2

    def step(self, f, t, y, dt):
        k1 = f(t, y)
        k2 = f(t + dt, _axpy(dt, k1, y))
        return _lincomb(y, [(dt / 2, k1), (dt / 2, k2)])


class Midpoint(AbstractFixedStepSolver):
    """Explicit midpoint rule, global order 2: ``y_{n+1} = y_n + h f(t + h/2, y_n + h/2 f(t, y_n))``."""

    num_steps: int = eqx.field(static=True, default=50)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 2

    def step(self, f, t, y, dt):
        k1 = f(t, y)
        return _axpy(dt, f(t + dt / 2, _axpy(dt / 2, k1, y)), y)


class RK4(AbstractFixedStepSolver):
    """Classical fourth-order Runge–Kutta, global order 4."""

    num_steps: int = eqx.field(static=True, default=25)
    unroll: bool = eqx.field(static=True, default=False)
    stages: ClassVar[int] = 4

    def step(self, f, t, y, dt):
        k1 = f(t, y)
        k2 = f(t + dt / 2, _axpy(dt / 2, k1, y))
        k3 = f(t + dt / 2, _axpy(dt / 2, k2, y))
        k4 = f(t + dt, _axpy(dt, k3, y))
        return _lincomb(y, [(dt / 6, k1), (dt / 3, k2), (dt / 3, k3), (dt / 6, k4)])


class DiffraxODE(AbstractODESolver):
    """Adaptive ODE solve with diffrax (PID step-size control).

    ``nfe`` is computed from diffrax's step count (accepted plus rejected): each step of an explicit
    Runge–Kutta method with ``s`` stages costs ``s`` evaluations (one fewer for FSAL methods, plus one at start).

    Args:
        solver: a diffrax ODE solver instance (``diffrax.Tsit5()``, ``diffrax.Dopri5()``, ...).
        rtol, atol: tolerances of the PID controller.
        dt0: initial step (``None`` lets diffrax choose).
        max_steps: hard cap on steps; a solve that needs more raises.
    """

    solver: Any = eqx.field(static=True)
    rtol: float = eqx.field(static=True, default=1e-5)
    atol: float = eqx.field(static=True, default=1e-5)
    dt0: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)

    def __init__(self, solver=diffrax.Tsit5(), rtol=1e-5, atol=1e-5, dt0=None, max_steps=4096):
        if not isinstance(solver, diffrax.AbstractSolver):
            raise ValueError(f"solver={solver!r} is invalid; allowed: a diffrax solver instance, e.g. diffrax.Tsit5()")
        for name, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid: must be a positive number")
        if dt0 is not None and (isinstance(dt0, bool) or not isinstance(dt0, (int, float)) or dt0 <= 0):
            raise ValueError(f"dt0={dt0!r} is invalid: must be null or a positive number")
        check_positive_int("max_steps", max_steps)
        self.solver, self.rtol, self.atol, self.dt0, self.max_steps = solver, rtol, atol, dt0, max_steps

    def solve(self, f, y0, t0=0.0, t1=1.0, *, save_trajectory=False, num_save: int = 101):
        term = diffrax.ODETerm(lambda t, y, args: f(t, y))
        saveat = diffrax.SaveAt(ts=jnp.linspace(t0, t1, num_save)) if save_trajectory else diffrax.SaveAt(t1=True)
        sol = diffrax.diffeqsolve(
            term,
            self.solver,
            t0=t0,
            t1=t1,
            dt0=None if self.dt0 is None else math.copysign(self.dt0, t1 - t0),  # backward solves need dt0 < 0
            y0=y0,
            saveat=saveat,
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps,
        )
        y = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        ys = sol.ys if save_trajectory else None
        return Solution(y=y, nfe=_diffrax_nfe(self.solver, sol.stats), ts=sol.ts, ys=ys)


def _diffrax_nfe(solver, stats) -> Array:
    tableau = getattr(solver, "tableau", None)
    steps = stats["num_steps"]
    if tableau is None:
        return steps * 2
    stages = len(tableau.c) + 1
    fsal = bool(getattr(tableau, "fsal", False))
    return steps * (stages - 1 if fsal else stages) + (1 if fsal else 0)
