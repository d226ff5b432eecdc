"""Flow matching: regress a velocity field on the derivative of a deterministic interpolant.

Convention: t=0 is the base x0 ~ rho0, t=1 is the data x1 ~ rho1. With ``x_t = alpha(t) x0 + beta(t) x1``
the loss

    L(v) = E_{t ~ U[0,1], (x0, x1)} |v(t, x_t) - (alpha'(t) x0 + beta'(t) x1)|^2

is minimised by ``b(t, x) = E[alpha' x0 + beta' x1 | x_t = x]``, whose flow ``dX/dt = b(t, X)`` carries rho0 to
rho1. Samples solve that ODE from t=0 to 1; log-likelihoods integrate the instantaneous change of variables.

References:
    Lipman, Chen, Ben-Hamu, Nickel, Le, "Flow Matching for Generative Modeling", ICLR 2023.
    Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic Interpolants", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, Scalar

from genflow._base import split_batch
from genflow._checks import as_shape, check_probability
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.interpolants._interpolants import AbstractInterpolant, LinearInterpolant
from genflow.nn import ConditionDropout, guided
from genflow.solvers import (
    AbstractODESolver,
    AbstractPushforwardModel,
    Euler,
    ODEPushforward,
    Solution,
)


class FlowMatching(AbstractPushforwardModel):
    """Flow matching with a deterministic interpolant (the linear one by default).

    Args:
        net: per-example velocity network ``net(t, x, cond=None)``, or any callable with that signature (an
            analytic velocity works too, which is what the oracle tests use).
        data_shape: shape of one data example.
        base: source distribution rho0 (``N(0, I)`` by default); any ``AbstractDistribution``, e.g. a 2D toy.
        interpolant: the path; ``LinearInterpolant()`` by default.
        sampler: default ODE solver strategy used by ``sample`` (``Euler(100)`` by default).
        likelihood_solver: default solver for ``log_prob``.
        label_dropout: probability of training on the null condition (classifier-free guidance, Ho & Salimans
            2022); sampling with ``guidance=w`` then uses ``v_null + w (v_cond - v_null)``.
        null_label: the null class label (the network's ``num_classes``) for integer conditions.
        guidance: default guidance weight of ``sample`` (1: plain conditional sampling).
    """

    net: Callable
    base: AbstractDistribution
    interpolant: AbstractInterpolant
    sampler: AbstractODESolver
    likelihood_solver: AbstractODESolver
    data_shape: tuple[int, ...] = eqx.field(static=True)
    condition_dropout: ConditionDropout
    guidance: float = eqx.field(static=True)
    # The base is a fixed distribution: x0 = base.sample(...) is reparameterised, so without this its parameters
    # would receive gradients from the loss.
    frozen_fields: ClassVar[tuple[str, ...]] = ("base",)

    def __init__(
        self,
        net,
        data_shape,
        base=None,
        interpolant=None,
        sampler=None,
        likelihood_solver=None,
        label_dropout: float = 0.0,
        null_label: int | None = None,
        guidance: float = 1.0,
    ):
        self.net = net
        check_probability("label_dropout", label_dropout)
        self.condition_dropout, self.guidance = ConditionDropout(label_dropout, null_label), float(guidance)
        self.data_shape = as_shape(data_shape)
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.interpolant = LinearInterpolant() if interpolant is None else interpolant
        self.sampler = Euler(num_steps=100) if sampler is None else sampler
        self.likelihood_solver = likelihood_solver if likelihood_solver is not None else self.sampler
        if not isinstance(self.sampler, AbstractODESolver):
            raise ValueError(f"sampler={self.sampler!r} is invalid: flow matching samples with an ODE solver")
        if tuple(self.base.event_shape) != self.data_shape:
            raise ValueError(f"base event_shape {self.base.event_shape} does not match data_shape {self.data_shape}")

    def velocity(self, t, x: Array, cond: Any = None) -> Array:
        """The learned velocity ``b(t, x)`` for one example."""
        return self.net(t, x, cond) if cond is not None else self.net(t, x)

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        x1, cond = split_batch(batch)
        n = x1.shape[0]
        k0, kt = jax.random.split(key)
        x0 = batch["x0"] if isinstance(batch, dict) and "x0" in batch else self.base.sample(k0, n)
        cond = self.condition_dropout(jax.random.fold_in(key, 1), cond)
        t = jax.random.uniform(kt, (n,), x1.dtype)
        xt = jax.vmap(self.interpolant.interpolate)(t, x0, x1)
        target = jax.vmap(self.interpolant.velocity_target)(t, x0, x1)
        cond_axis = None if cond is None else 0
        pred = jax.vmap(self.velocity, in_axes=(0, 0, cond_axis))(t, xt, cond)
        return jnp.mean(jnp.sum((pred - target).reshape(n, -1) ** 2, axis=-1))

    def pushforward(self, guidance: float = 1.0) -> ODEPushforward:
        """The base pushed forward by the (guided) learned flow: the model's samples and likelihoods."""
        return ODEPushforward(guided(self.velocity, guidance), self.base, self.sampler, self.likelihood_solver)

    @eqx.filter_jit
    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        sampler: AbstractODESolver | None = None,
        cond: Any = None,
        x0: Array | None = None,
        guidance: float | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Push base samples (or the given ``x0``) through the learned flow; returns the full :class:`Solution`.

        ``cond`` is a batch of conditions and ``guidance`` the classifier-free-guidance weight (default
        ``self.guidance``).
        """
        w = self.guidance if guidance is None else float(guidance)
        return self.pushforward(w).solve(key, num, sampler=sampler, cond=cond, x0=x0, save_trajectory=save_trajectory)

    @eqx.filter_jit
    def solve_like(self, key: PRNGKeyArray, batch: Any, **opts: Any) -> Solution:
        """Samples with the conditions of a data batch (its labels), one per example."""
        x1, cond = split_batch(batch)
        return self.solve(key, x1.shape[0], cond=cond, **opts)
