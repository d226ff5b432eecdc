"""The contract every genflow model family meets.

A model is an equinox module. Training calls ``loss(key, batch)`` on a whole minibatch (minibatch couplings need
the whole batch); sampling calls ``sample(key, num)``. Density models also give ``log_prob``.

``batch`` is a pytree: an array of data, or a dict with the data under ``"x"`` and an optional condition under
``"cond"`` (a label, a mask, a low-resolution image).
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, Scalar


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


def split_batch(batch: Any) -> tuple[Array, Any]:
    """Return ``(x, cond)`` from a batch that is an array or a dict with keys ``"x"`` and ``"cond"``."""
    if isinstance(batch, dict):
        return batch["x"], batch.get("cond")
    return batch, None


def trainable_filter(model: eqx.Module) -> Any:
    """Boolean pytree marking a model's trainable leaves: its inexact arrays, except under ``frozen_fields``.

    A model lists fields whose arrays must not be trained (a base distribution's parameters, a fixed reference
    process) in a class variable ``frozen_fields``; everything else that is a floating array is a parameter.
    """
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    for name in getattr(model, "frozen_fields", ()):
        frozen = jax.tree_util.tree_map(lambda _: False, getattr(model, name))
        spec = eqx.tree_at(lambda m, n=name: getattr(m, n), spec, frozen, is_leaf=lambda x: x is None)
    return spec
