"""Divergence of a per-example vector field, and the instantaneous change-of-variables ODE.

For ``dx/dt = f(t, x)`` the log-density along a trajectory obeys ``d log p(x_t)/dt = -div f(t, x_t)``
(Chen et al., 2018). So with ``x`` at ``t_data`` and ``X`` its preimage at ``t_base``,

    log p_data(x) = log p_base(X) - ∫_{t_base}^{t_data} div f(t, X_t) dt.

References:
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018.
    Grathwohl et al., "FFJORD", ICLR 2019 (Hutchinson's estimator).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import check_positive_int
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


class AbstractDivergence(eqx.Module):
    """A strategy for ``div f`` over a batch: exact, or an unbiased stochastic estimate."""

    @abc.abstractmethod
    def batched(
        self, f: Callable[[Any, Array, Any], Array], x: Array, cond: Any = None, *, key: PRNGKeyArray | None = None
    ) -> Callable[[Any, Array], Float[Array, " num"]]:
        """``(t, z) -> div f(t, z_i, cond_i)`` for each example of a batch shaped like ``x``.

        Any probes are drawn once from ``key`` here and held fixed along the trajectory, which keeps the integrand
        a smooth function of time for the ODE solver.
        """


class Exact(AbstractDivergence):
    """The exact trace ``tr(df/dx)`` from the full Jacobian (``d`` forward-mode passes per example)."""

    def batched(self, f, x, cond=None, *, key=None):
        axis = None if cond is None else 0
        exact = lambda t, z, c: divergence_exact(lambda s, y: f(s, y, c), t, z)
        return lambda t, z: jax.vmap(exact, in_axes=(None, 0, axis))(t, z, cond)


class Hutchinson(AbstractDivergence):
    """Hutchinson's estimate ``(1/m) sum_j eps_j^T (df/dx) eps_j`` with ``m`` Rademacher probes per example.

    Unbiased for any ``num_probes``; its variance falls as ``1/m``. Needs a ``key``.

    References:
        Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1989; Grathwohl et al., "FFJORD",
        ICLR 2019.
    """

    num_probes: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        check_positive_int("num_probes", self.num_probes)

    def batched(self, f, x, cond=None, *, key=None):
        if key is None:
            raise ValueError("Hutchinson() draws random probes and needs a key")
        axis = None if cond is None else 0
        one = lambda t, z, c, e: divergence_hutchinson(lambda s, y: f(s, y, c), t, z, e)
        per_batch = jax.vmap(one, in_axes=(None, 0, axis, 0))
        if self.num_probes == 1:
            probes = rademacher_like(key, x)
            return lambda t, z: per_batch(t, z, cond, probes)
        probes = jax.vmap(lambda k: rademacher_like(k, x))(jax.random.split(key, self.num_probes))
        many = jax.vmap(per_batch, in_axes=(None, None, None, 0))
        return lambda t, z: jnp.mean(many(t, z, cond, probes), axis=0)


def ode_log_prob(
    f: PerExampleField,
    base_log_prob: Callable[[Array], Array],
    x: Float[Array, "num ..."],
    solver: AbstractODESolver,
    *,
    t_data: float = 1.0,
    t_base: float = 0.0,
    divergence: AbstractDivergence = Exact(),
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
        divergence: :class:`Exact` or :class:`Hutchinson` (probes held fixed per example; needs ``key``).
        cond: a batch of per-example conditions (leading axis aligned with ``x``), or None.

    Returns:
        ``(log_prob, prior_term, nfe)``: the total, the base term ``log p_base(X)``, and the solver's NFE.
    """
    check_divergence(divergence)
    axis = None if cond is None else 0
    fc = (lambda t, z, c: f(t, z)) if cond is None else f
    vel = jax.vmap(fc, in_axes=(None, 0, axis))
    div = divergence.batched(fc, x, cond, key=key)
    field = lambda t, state: (vel(t, state[0], cond), div(t, state[0]))
    l0 = jnp.zeros(x.shape[:1], x.dtype)
    sol = solver.solve(field, (x, l0), t_data, t_base)
    x_base, delta = sol.y
    prior = jax.vmap(base_log_prob)(x_base)
    return prior + delta, prior, sol.nfe


def check_divergence(divergence: Any) -> None:
    """Constructors and likelihoods take a divergence strategy object; anything else fails before tracing."""
    if not isinstance(divergence, AbstractDivergence):
        raise ValueError(f"divergence={divergence!r} is invalid; allowed: Exact() or Hutchinson(num_probes)")
