"""Couplings: how a batch of base samples x0 is paired with a batch of data x1 before a model regresses on them.

An interpolant, flow-matching or bridge-matching loss only sees pairs ``(x0, x1)`` drawn from a coupling
``rho(x0, x1)`` whose marginals are rho0 and rho1. The independent coupling ``rho0 x rho1`` is the default; a better
coupling makes the paths straighter and the learned transport cheaper. Couplings act on a whole minibatch, inside the
jit-compiled training step, with one signature:

    x0, x1, cond = coupling(key, x0, x1, cond)

``cond`` is an optional batch-aligned pytree (labels, ...); a coupling that reorders or resamples x1 reorders
``cond`` with it, so that ``cond[k]`` always belongs to the returned ``x1[k]``.

Convention: t=0 is the base (or source) x0, t=1 is the data (or target) x1.

References:
    Tong, Fatras, Malkin, Huguet, Zhang, Rector-Brooks, Wolf, Bengio, "Improving and generalizing flow-based
    generative models with minibatch optimal transport", TMLR 2024.
    Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent couplings",
    ICML 2024.
"""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


class AbstractCoupling(eqx.Module):
    """A batch-level coupling of base samples and data.

    ``__call__(key, x0, x1, cond)`` returns a paired batch ``(x0, x1, cond)``; ``cond`` stays aligned with ``x1``.
    """

    @abc.abstractmethod
    def __call__(
        self,
        key: PRNGKeyArray,
        x0: Float[Array, "n0 ..."],
        x1: Float[Array, "n ..."],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, "n ..."], Float[Array, "n ..."], PyTree | None]:
        """Pair the batch ``x0`` (from the base) with the batch ``x1`` (data) and its condition ``cond``."""

    @abc.abstractmethod
    def sampling_pair(
        self, key: PRNGKeyArray, x0: Float[Array, "n ..."], x1: Float[Array, "n ..."], cond: PyTree | None = None
    ) -> tuple[Float[Array, "n ..."], PyTree | None]:
        """The starting points and conditions for generating samples that correspond to the data batch ``x1``."""

    @abc.abstractmethod
    def constrain(self, v: Array, cond: PyTree | None) -> Array:
        """Restrict a per-example velocity (or noise amplitude) to the coordinates the coupling leaves free."""


class AbstractMarginalCoupling(AbstractCoupling):
    """A coupling of the base marginal rho0 with the data marginal rho1 alone (independent, optimal transport).

    x0 comes from the base, so samples start from base draws and keep their ``cond``, and every coordinate moves.
    """

    def sampling_pair(self, key, x0, x1, cond=None):
        del key, x1
        return x0, cond

    def constrain(self, v, cond):
        del cond
        return v
