"""Sampling strategies for bridges that know their conditional plan and their posterior ``p(x1 | x_t)``.

A bridge sampler is a strategy module, like the solvers in ``genflow.solvers``: ``sampler.solve(bridge, key, x0,
save_trajectory=...)`` returns a :class:`~genflow.solvers.Solution`. Any ``genflow.solvers`` SDE solver
(Euler–Maruyama, diffrax) also works: it integrates ``dX = g(t, X) dt + sqrt(eps) dW`` with the bridge's drift.

A bridge provides ``eps``, ``sample_conditional(key, x0)``, ``sample_posterior(key, t, x)`` and ``drift_fn()``
(a batched ``(t, x) -> g``, set up once per solve so the work that does not depend on t stays out of the loop).

Convention: t=0 is the source, t=1 the target; the reference process is ``sqrt(eps) W``.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from genflow._checks import check_positive_int
from genflow.solvers import AbstractSDESolver, Solution


class AbstractBridgeSampler(eqx.Module):
    """A way to draw the bridge's endpoint (and path) from starting points ``x0``."""

    @abc.abstractmethod
    def solve(self, bridge: Any, key: PRNGKeyArray, x0: Array, *, save_trajectory: bool = False) -> Solution:
        """Sample ``X1`` (and optionally the path on a grid) started at ``x0``."""


class ExactConditional(AbstractBridgeSampler):
    """One exact draw ``x1 ~ pi(x1 | x0)`` from the closed-form conditional plan; no time discretisation.

    With ``save_trajectory`` the path holds only its two endpoints.
    """

    def solve(self, bridge, key, x0, *, save_trajectory=False):
        x1 = bridge.sample_conditional(key, x0)
        ys = jnp.stack([x0, x1]) if save_trajectory else None
        return Solution(y=x1, nfe=1, ts=jnp.array([0.0, 1.0], x0.dtype), ys=ys)


class ExactPaths(AbstractBridgeSampler):
    r"""Discretisation-free paths on a grid, from the exact posterior ``p(x1 | x_t)``.

    The bridge is a mixture of Brownian bridges and Markov, so given ``x_{t_n}`` the next point is drawn exactly:
    ``x1 ~ p(x1 | x_{t_n})``, then the Brownian bridge from ``(t_n, x_{t_n})`` to ``(1, x1)`` at ``t_{n+1}``,

    $$x_{t_{n+1}} \sim \mathcal N\Big(x_{t_n} + \tfrac{h}{1 - t_n}(x_1 - x_{t_n}),\;
    \epsilon\, \tfrac{h (1 - t_{n+1})}{1 - t_n} I\Big), \qquad h = t_{n+1} - t_n.$$

    Every grid point has the exact time marginal, whatever ``num_steps``. One ``lax.scan``.

    References:
        Korotin, Gushchin, Burnaev. "Light Schrödinger Bridge". ICLR 2024, Sec. 3.3.
    """

    num_steps: int = eqx.field(static=True, default=100)

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)

    def solve(self, bridge, key, x0, *, save_trajectory=False):
        ts = jnp.linspace(0.0, 1.0, self.num_steps + 1, dtype=x0.dtype)
        keys = jax.random.split(key, self.num_steps)
        setup = bridge.posterior_setup()

        def body(x, inputs):
            t, t_next, k = inputs
            k1, k2 = jax.random.split(k)
            x1 = bridge.sample_posterior(k1, t, x, setup)
            h = t_next - t
            mean = x + h / (1 - t) * (x1 - x)
            std = jnp.sqrt(bridge.eps * h * (1 - t_next) / (1 - t))
            x_next = mean + std * jax.random.normal(k2, x.shape, x.dtype)
            return x_next, (x_next if save_trajectory else None)

        y, ys = jax.lax.scan(body, x0, (ts[:-1], ts[1:], keys))
        if save_trajectory:
            ys = jnp.concatenate([x0[None], ys])
        return Solution(y=y, nfe=self.num_steps, ts=ts, ys=ys)


def solve_bridge(sampler: Any, bridge: Any, key: PRNGKeyArray, x0: Array, save_trajectory: bool = False) -> Solution:
    """Dispatch: a bridge sampler, or an SDE solver on ``dX = g dt + sqrt(eps) dW``."""
    if isinstance(sampler, AbstractBridgeSampler):
        return sampler.solve(bridge, key, x0, save_trajectory=save_trajectory)
    if isinstance(sampler, AbstractSDESolver):
        drift = bridge.drift_fn()
        sigma = jnp.sqrt(jnp.asarray(bridge.eps, x0.dtype))
        return sampler.solve(drift, lambda t, y: sigma, x0, 0.0, 1.0, key=key, save_trajectory=save_trajectory)
    raise ValueError(
        f"sampler={sampler!r} is invalid: allowed are ExactConditional, ExactPaths or a genflow.solvers SDE solver "
        "(EulerMaruyama, StochasticHeun, DiffraxSDE)"
    )


def check_bridge_sampler(sampler: Any, where: str) -> None:
    """Raise a ValueError naming the value unless ``sampler`` is a bridge sampler or an SDE solver."""
    if not isinstance(sampler, (AbstractBridgeSampler, AbstractSDESolver)):
        raise ValueError(
            f"{where}: sampler={sampler!r} is invalid: allowed are ExactConditional, ExactPaths or an SDE solver "
            "(EulerMaruyama, StochasticHeun, DiffraxSDE); ODE solvers do not simulate a bridge"
        )
