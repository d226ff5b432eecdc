"""Fixed-step SDE integrators written as one ``lax.scan``.

``solver.solve(drift, diffusion, y0, t0, t1, key=key)`` integrates ``dY = drift(t, Y) dt + diffusion(t, Y) dW``
with diagonal noise: ``diffusion`` returns an array that multiplies the Brownian increment elementwise (a scalar
broadcasts). All Brownian increments are drawn from keys split up front, so a seed fixes the path.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from genflow.solvers._ode import Solution, check_num_steps


class AbstractSDESolver(eqx.Module):
    """An SDE integration strategy over a time grid."""

    num_steps: eqx.AbstractVar[int]
    stages: ClassVar[int]

    def __check_init__(self):
        check_num_steps(self.num_steps)

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

        def body(y, inputs):
            t, t_next, k = inputs
            dt = t_next - t
            dw = jnp.sqrt(jnp.abs(dt)) * jax.random.normal(k, y.shape, y.dtype)
            y_next = self.step(drift, diffusion, t, y, dt, dw)
            return y_next, (y_next if save_trajectory else None)

        y, ys = jax.lax.scan(body, y0, (ts[:-1], ts[1:], keys))
        if save_trajectory:
            ys = jnp.concatenate([y0[None], ys])
        return Solution(y=y, nfe=self.stages * (ts.shape[0] - 1), ts=ts, ys=ys)


class EulerMaruyama(AbstractSDESolver):
    """Euler–Maruyama: ``Y_{n+1} = Y_n + b(t_n, Y_n) h + g(t_n, Y_n) dW_n``; strong order 1/2, weak order 1.

    References:
        Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992.
    """

    num_steps: int = eqx.field(static=True, default=100)
    stages: ClassVar[int] = 1

    def step(self, drift, diffusion, t, y, dt, dw):
        return y + drift(t, y) * dt + diffusion(t, y) * dw


class StochasticHeun(AbstractSDESolver):
    """Stochastic Heun (predictor–corrector trapezoid) for additive or Stratonovich noise; 2 NFE per step.

    References:
        Kloeden & Platen, 1992, Sec. 15.1; Karras et al., NeurIPS 2022.
    """

    num_steps: int = eqx.field(static=True, default=50)
    stages: ClassVar[int] = 2

    def step(self, drift, diffusion, t, y, dt, dw):
        b0, g0 = drift(t, y), diffusion(t, y)
        y_pred = y + b0 * dt + g0 * dw
        b1, g1 = drift(t + dt, y_pred), diffusion(t + dt, y_pred)
        return y + 0.5 * (b0 + b1) * dt + 0.5 * (g0 + g1) * dw
