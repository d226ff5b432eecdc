"""The pushforward of a base distribution by the flow of an ODE: samples and log-densities.

Convention: t=0 is the base, t=1 the target. With ``dx/dt = f(t, x)`` and ``x(0) ~ p_0`` the density of ``x(1)`` is

    log p_1(x(1)) = log p_0(x(0)) - ∫_0^1 div f(t, x(t)) dt.

``log_prob`` integrates the augmented state backwards from data (:func:`~genflow.solvers.ode_log_prob`);
``sample_and_log_prob`` integrates it forwards from base samples. Flow matching, stochastic interpolants (their
probability-flow ODE) and continuous normalizing flows all compose this one module instead of repeating it.

References:
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018.
    Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models", ICLR 2019.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._base import AbstractSolvableDensityModel
from genflow.solvers._divergence import AbstractDivergence, Exact, check_divergence, ode_log_prob
from genflow.solvers._ode import AbstractODESolver, Solution


def call_field(field: Callable, t: Any, x: Array, cond: Any = None) -> Array:
    """``field(t, x)``, or ``field(t, x, cond)`` when there is a condition (analytic fields take two arguments)."""
    return field(t, x) if cond is None else field(t, x, cond)


def batch_field(field: Callable, cond: Any = None) -> Callable[[Any, Array], Array]:
    """``(t, x) -> field(t, x_i, cond_i)`` over a batch, the form every solver integrates."""
    axis = None if cond is None else 0
    return lambda t, x: jax.vmap(lambda xi, ci: call_field(field, t, xi, ci), in_axes=(0, axis))(x, cond)


class ODEPushforward(eqx.Module):
    """The pushforward of ``base`` by the time-1 flow of a per-example velocity ``field``.

    Args:
        field: per-example velocity, called ``field(t, x)`` or ``field(t, x, cond)`` with a condition; a network or
            an analytic callable.
        base: ``p_0``; ``log_prob`` and ``sample_and_log_prob`` need its ``log_prob``.
        sampler: ODE solver for ``solve`` and ``sample_and_log_prob``.
        likelihood_solver: ODE solver for ``log_prob`` (default: ``sampler``).

    References:
        Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018; Grathwohl et al., "FFJORD", ICLR 2019.
    """

    field: Callable
    base: Any
    sampler: AbstractODESolver
    likelihood_solver: AbstractODESolver
    # Samples of the base are reparameterised; its parameters must not be trained through them.
    frozen_fields: ClassVar[tuple[str, ...]] = ("base",)

    def __init__(
        self,
        field: Callable,
        base: Any,
        sampler: AbstractODESolver,
        likelihood_solver: AbstractODESolver | None = None,
    ):
        self.field, self.base, self.sampler = field, base, sampler
        self.likelihood_solver = sampler if likelihood_solver is None else likelihood_solver

    def solve(
        self,
        key: PRNGKeyArray | None,
        num: int,
        *,
        sampler: AbstractODESolver | None = None,
        cond: Any = None,
        x0: Array | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Push ``num`` base samples (or the given ``x0``) from t=0 to t=1."""
        sampler = self.sampler if sampler is None else sampler
        x0 = self.base.sample(key, num) if x0 is None else x0
        return sampler.solve(batch_field(self.field, cond), x0, 0.0, 1.0, save_trajectory=save_trajectory)

    def encode(
        self, x: Float[Array, "num ..."], *, sampler: AbstractODESolver | None = None, cond: Any = None, **opts: Any
    ) -> Solution:
        """Carry data ``x`` back from t=1 to t=0."""
        sampler = self.sampler if sampler is None else sampler
        return sampler.solve(batch_field(self.field, cond), x, 1.0, 0.0, **opts)

    def sample(self, key: PRNGKeyArray, num: int, **opts: Any) -> Array:
        """The end state of :meth:`solve`."""
        return self.solve(key, num, **opts).y

    def log_prob(
        self,
        x: Float[Array, "num ..."],
        *,
        key: PRNGKeyArray | None = None,
        cond: Any = None,
        solver: AbstractODESolver | None = None,
        divergence: AbstractDivergence = Exact(),
    ) -> Float[Array, " num"]:
        """``log p_1(x) = log p_0(X_0) - ∫_0^1 div f(t, X_t) dt`` with ``X`` integrated backwards from ``x``.

        ``divergence=Hutchinson(m)`` gives an unbiased estimate with Rademacher probes per example (needs ``key``).
        """
        solver = self.likelihood_solver if solver is None else solver
        field = self.field
        f = (lambda t, z: call_field(field, t, z)) if cond is None else field
        return ode_log_prob(f, self.base.log_prob, x, solver, divergence=divergence, key=key, cond=cond)[0]

    def sample_and_log_prob(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        cond: Any = None,
        solver: AbstractODESolver | None = None,
        divergence: AbstractDivergence = Exact(),
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Samples and their log-densities from one forward solve of ``(x, log p)`` with ``d log p/dt = -div f``."""
        solver = self.sampler if solver is None else solver
        k_z, k_probe = jax.random.split(key)
        z = self.base.sample(k_z, num)
        check_divergence(divergence)
        div_at = divergence.batched(lambda t, x, c: call_field(self.field, t, x, c), z, cond, key=k_probe)
        vel = batch_field(self.field, cond)
        augmented = lambda t, state: (vel(t, state[0]), -div_at(t, state[0]))
        x, log_p = solver.solve(augmented, (z, self.base.log_prob(z)), 0.0, 1.0).y
        return x, log_p


class AbstractPushforwardModel(AbstractSolvableDensityModel):
    """A model whose samples and likelihoods are those of an :class:`ODEPushforward` it builds from its fields.

    Subclasses give :meth:`pushforward`; the likelihoods follow from it here, once for every such family.
    """

    @abc.abstractmethod
    def pushforward(self) -> ODEPushforward:
        """The model's base pushed forward by its learned velocity (its unguided field)."""

    @eqx.filter_jit
    def log_prob(
        self, x: Float[Array, "num ..."], *, key: PRNGKeyArray | None = None, **opts: Any
    ) -> Float[Array, " num"]:
        """``log p_1(x | cond) = log p_0(X_0) - ∫_0^1 div f(t, X_t) dt`` with ``X`` integrated back from ``x``.

        ``opts`` are those of :meth:`ODEPushforward.log_prob`: ``cond``, ``solver`` (the model's
        ``likelihood_solver`` by default) and ``divergence`` (``Hutchinson(m)`` gives an unbiased estimate with
        Rademacher probes per example and needs ``key``). The base must have a tractable ``log_prob``.
        """
        return self.pushforward().log_prob(x, key=key, **opts)

    @eqx.filter_jit
    def sample_and_log_prob(
        self, key: PRNGKeyArray, num: int, **opts: Any
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Samples and their log-densities from one forward solve (``opts`` as in
        :meth:`ODEPushforward.sample_and_log_prob`: ``cond``, ``solver``, ``divergence``)."""
        return self.pushforward().sample_and_log_prob(key, num, **opts)
