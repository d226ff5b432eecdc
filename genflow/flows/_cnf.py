"""Continuous normalizing flows (FFJORD): a neural ODE trained by maximum likelihood.

Convention: t=0 is the base, t=1 the data (as for flow matching). With ``dx/dt = f(t, x)`` and ``x(0) ~ p_0``,

    log p_1(x(1)) = log p_0(x(0)) - ∫_0^1 div f(t, x(t)) dt,

integrated backwards from data for ``log_prob`` (genflow.solvers' ``ODEPushforward``, shared with the interpolant
models) and forwards from the base for ``sample_and_log_prob``. The divergence is exact (``d``
Jacobian-vector products) or Hutchinson's unbiased estimate ``eps^T (df/dx) eps`` with one Rademacher probe per
example, fixed along the trajectory. Training differentiates through the solver (discretise-then-optimise).

References:
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018.
    Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, "FFJORD: Free-form Continuous Dynamics for Scalable
    Reversible Generative Models", ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, Scalar

from genflow._base import split_batch
from genflow._checks import as_shape
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.solvers import (
    RK4,
    AbstractDivergence,
    AbstractODESolver,
    AbstractPushforwardModel,
    Exact,
    ODEPushforward,
    Solution,
    check_divergence,
)


class CNF(AbstractPushforwardModel):
    """FFJORD: a continuous normalizing flow with a learned velocity ``net(t, x, cond=None)``.

    Args:
        net: per-example velocity network, or any callable with that signature (analytic fields work too).
        data_shape: shape of one example.
        base: ``p_0`` (``N(0, I)`` by default).
        sampler: ODE solver for ``sample`` (``RK4(20)`` by default).
        likelihood_solver: ODE solver for ``log_prob`` and the loss (default: ``sampler``).
        divergence: ``Exact()`` or ``Hutchinson(num_probes)`` for the training loss (``log_prob`` takes it per call).

    References:
        Grathwohl et al., "FFJORD", ICLR 2019.
    """

    net: Callable
    base: AbstractDistribution
    sampler: AbstractODESolver
    likelihood_solver: AbstractODESolver
    data_shape: tuple[int, ...] = eqx.field(static=True)
    divergence: AbstractDivergence
    frozen_fields: ClassVar[tuple[str, ...]] = ("base",)

    def __init__(
        self,
        net: Callable,
        data_shape: Any,
        base: AbstractDistribution | None = None,
        sampler: AbstractODESolver | None = None,
        likelihood_solver: AbstractODESolver | None = None,
        divergence: AbstractDivergence = Exact(),
    ):
        check_divergence(divergence)
        self.net, self.data_shape, self.divergence = net, as_shape(data_shape), divergence
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.sampler = RK4(num_steps=20) if sampler is None else sampler
        self.likelihood_solver = self.sampler if likelihood_solver is None else likelihood_solver
        for name, solver in (("sampler", self.sampler), ("likelihood_solver", self.likelihood_solver)):
            if not isinstance(solver, AbstractODESolver):
                raise ValueError(f"{name}={solver!r} is invalid: a CNF integrates an ODE (an AbstractODESolver)")
        if tuple(self.base.event_shape) != self.data_shape:
            raise ValueError(f"base event_shape {self.base.event_shape} does not match data_shape {self.data_shape}")

    def velocity(self, t, x: Array, cond: Any = None) -> Array:
        """``f(t, x)`` for one example."""
        return self.net(t, x, cond) if cond is not None else self.net(t, x)

    def pushforward(self) -> ODEPushforward:
        """The base pushed forward by the flow of ``f``: samples and likelihoods."""
        return ODEPushforward(self.velocity, self.base, self.sampler, self.likelihood_solver)

    @eqx.filter_jit
    def solve(self, key: PRNGKeyArray, num: int, **opts: Any) -> Solution:
        """Push base samples (or ``x0=``) from t=0 to t=1; ``opts`` as in :meth:`ODEPushforward.solve` (``sampler``,
        ``cond``, ``x0``, ``save_trajectory``). Returns the full :class:`Solution`."""
        return self.pushforward().solve(key, num, **opts)

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """Negative log-likelihood (Hutchinson's estimate with ``divergence=Hutchinson()``)."""
        x, cond = split_batch(batch)
        return -jnp.mean(self.log_prob(x, key=key, cond=cond, divergence=self.divergence))
