"""Divergence of a per-example vector field, and the instantaneous change-of-variables ODE.

For ``dx/dt = f(t, x)`` the log-density along a trajectory obeys ``d log p(x_t)/dt = -div f(t, x_t)``
(Chen et al., 2018). So with ``x`` at ``t_data`` and ``X`` its preimage at ``t_base``,

    log p_data(x) = log p_base(X) - ∫_{t_base}^{t_data} div f(t, X_t) dt.

References:
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018.
    Grathwohl et al., "FFJORD", ICLR 2019 (Hutchinson's estimator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.solvers._ode import AbstractODESolver

PerExampleField = Callable[[Any, Array], Array]


def divergence_exact(f: PerExampleField, t, x: Array) -> Float[Array, ""]:
    """Exact ``div f = tr(df/dx)`` from the full Jacobian (cost: d forward passes)."""
    shape = x.shape
    flat = lambda z: f(t, z.reshape(shape)).reshape(-1)
    jac = jax.jacfwd(flat)(x.reshape(-1))
    return jnp.trace(jac)


def divergence_hutchinson(f: PerExampleField, t, x: Array, probe: Array) -> Float[Array, ""]:
    """Hutchinson's unbiased estimate ``eps^T (df/dx) eps`` with a fixed probe ``eps`` (E[eps eps^T] = I)."""
    _, jvp = jax.jvp(lambda z: f(t, z), (x,), (probe,))
    return jnp.sum(jvp * probe)


def rademacher_like(key: PRNGKeyArray, x: Array) -> Array:
    """A Rademacher probe (entries ±1) with the shape and dtype of ``x``."""
    return jax.random.rademacher(key, x.shape, dtype=x.dtype)


def ode_log_prob(
    f: PerExampleField,
    base_log_prob: Callable[[Array], Array],
    x: Float[Array, "num ..."],
    solver: AbstractODESolver,
    *,
    t_data: float = 1.0,
    t_base: float = 0.0,
    divergence: str = "exact",
    key: PRNGKeyArray | None = None,
    cond: Any = None,
) -> tuple[Float[Array, " num"], Float[Array, " num"], Any]:
    """Log-density of a batch under the pushforward of ``base`` by the flow of ``f``.

    Integrates the augmented state ``(x, l)`` from ``t_data`` to ``t_base`` with ``dl/dt = div f``, so that
    ``l(t_base) = -∫_{t_base}^{t_data} div f dt`` and ``log p(x) = log p_base(X) + l(t_base)``.

    Args:
        f: per-example vector field ``f(t, x)``, or ``f(t, x, cond)`` when ``cond`` is given.
        base_log_prob: per-example log-density at ``t_base``.
        x: batch of points at ``t_data``.
        solver: any ODE solver strategy.
        divergence: ``"exact"`` or ``"hutchinson"`` (one fixed Rademacher probe per example, needs ``key``).
        cond: a batch of per-example conditions (leading axis aligned with ``x``), or None.

    Returns:
        ``(log_prob, prior_term, nfe)``: the total, the base term ``log p_base(X)``, and the solver's NFE.
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence={divergence!r}; allowed: 'exact', 'hutchinson'")
    axis = None if cond is None else 0
    fc = (lambda t, z, c: f(t, z)) if cond is None else f
    vel = jax.vmap(fc, in_axes=(None, 0, axis))
    if divergence == "hutchinson":
        if key is None:
            raise ValueError("divergence='hutchinson' needs a key for its probe")
        probes = rademacher_like(key, x)
        hutch = lambda t, z, c, e: divergence_hutchinson(lambda s, y: fc(s, y, c), t, z, e)
        div = jax.vmap(hutch, in_axes=(None, 0, axis, 0))
        field = lambda t, state: (vel(t, state[0], cond), div(t, state[0], cond, probes))
    else:
        exact = lambda t, z, c: divergence_exact(lambda s, y: fc(s, y, c), t, z)
        div = jax.vmap(exact, in_axes=(None, 0, axis))
        field = lambda t, state: (vel(t, state[0], cond), div(t, state[0], cond))
    l0 = jnp.zeros(x.shape[:1], x.dtype)
    sol = solver.solve(field, (x, l0), t_data, t_base)
    x_base, delta = sol.y
    prior = jax.vmap(base_log_prob)(x_base)
    return prior + delta, prior, sol.nfe
