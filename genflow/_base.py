"""The contract every genflow model family meets.

A model is an equinox module. Training calls ``loss(key, batch)`` on a whole minibatch (minibatch couplings need
the whole batch); sampling calls ``sample(key, num)``. Density models also give ``log_prob``.

``batch`` is a pytree: an array of data, or a dict with the data under ``"x"`` and an optional condition under
``"cond"`` (a label, a mask, a low-resolution image).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

if TYPE_CHECKING:
    from genflow.solvers import Solution


class AbstractGenerativeModel(eqx.Module):
    """A generative model: a training loss and a sampler."""

    @abc.abstractmethod
    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """Minibatch training loss (a scalar)."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, num: int, **opts: Any) -> Array:
        """Draw ``num`` samples; ``opts`` pick the sampler and its steps."""


class AbstractDensityModel(AbstractGenerativeModel):
    """A generative model that also evaluates (or unbiasedly estimates) log-densities."""

    @abc.abstractmethod
    def log_prob(self, x: Float[Array, "num ..."], *, key: PRNGKeyArray | None = None) -> Float[Array, " num"]:
        """Log-density of a batch ``x``: exact, or an unbiased estimate where the model allows only that."""


class AbstractSolvableModel(AbstractGenerativeModel):
    """A generative model whose samples are the end state of a solve: an ODE, an SDE or a Markov chain.

    ``solve`` returns the whole :class:`~genflow.solvers.Solution` (end state, the number of function evaluations,
    optionally the trajectory); ``sample`` is its end state.
    """

    @abc.abstractmethod
    def solve(self, key: PRNGKeyArray, num: int, **opts: Any) -> Solution:
        """Run the model's sampler for ``num`` samples; ``opts`` pick the sampler and its steps."""

    def sample(self, key: PRNGKeyArray, num: int, **opts: Any) -> Array:
        """``num`` samples: the end state of :meth:`solve` (``opts`` as there)."""
        return self.solve(key, num, **opts).y


class AbstractSolvableDensityModel(AbstractSolvableModel, AbstractDensityModel):
    """A solvable model that also evaluates log-densities (through the same ODE, for flows and diffusions)."""


def split_batch(batch: Any) -> tuple[Array, Any]:
    """Return ``(x, cond)`` from a batch that is an array or a dict with keys ``"x"`` and ``"cond"``."""
    if isinstance(batch, dict):
        return batch["x"], batch.get("cond")
    return batch, None


def trainable_filter(model: Any) -> Any:
    """Boolean pytree marking a model's trainable leaves: its inexact arrays, except under ``frozen_fields``.

    A module lists fields whose arrays must not be trained (a base distribution's parameters, a fixed reference
    process) in a class variable ``frozen_fields``. This holds at every depth, so a model that wraps another keeps
    the inner model's frozen fields frozen.
    """
    if not isinstance(model, eqx.Module):
        return jax.tree_util.tree_map(_leaf_spec, model, is_leaf=lambda x: isinstance(x, eqx.Module))
    frozen = set(getattr(model, "frozen_fields", ()))
    children, treedef = jax.tree_util.tree_flatten_with_path(model, is_leaf=lambda x: x is not model)
    specs = [
        jax.tree_util.tree_map(lambda _: False, child) if path[0].name in frozen else trainable_filter(child)
        for path, child in children
    ]
    return jax.tree_util.tree_unflatten(treedef, specs)


def _leaf_spec(x: Any) -> Any:
    return trainable_filter(x) if isinstance(x, eqx.Module) else eqx.is_inexact_array(x)
