"""Classifier-free guidance: condition dropout for training and the guided field for sampling.

A conditional network learns the unconditional field too when its condition is replaced, at random, by the null
condition during training. genflow networks read the null condition as ``cond=None`` (``ConditionEmbedding``'s null
token for labels, zeros for vectors and image channels); inside a batch it is written out as the label
``null_label`` (``= num_classes``) or as zeros, which the networks embed identically.

References:
    Ho & Salimans, "Classifier-free diffusion guidance", NeurIPS 2021 workshop (arXiv:2207.12598).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from genflow._checks import check_probability


def null_condition(cond: Any, null_label: int | None = None) -> Any:
    """The null condition shaped like ``cond``: ``null_label`` for integer leaves (labels), zeros otherwise."""

    def leaf(c):
        c = jnp.asarray(c)
        if jnp.issubdtype(c.dtype, jnp.integer):
            if null_label is None:
                raise ValueError("integer (label) conditions need null_label (the network's num_classes) for dropout")
            return jnp.full_like(c, null_label)
        return jnp.zeros_like(c)

    return jax.tree_util.tree_map(leaf, cond)


def drop_condition(key: PRNGKeyArray, cond: Any, prob: float, null_label: int | None = None) -> Any:
    """Replace each example's condition by the null condition with probability ``prob`` (leading axis = batch)."""
    if cond is None or prob == 0.0:
        return cond
    leaves = jax.tree_util.tree_leaves(cond)
    drop = jax.random.bernoulli(key, prob, (jnp.shape(leaves[0])[0],))
    null = null_condition(cond, null_label)

    def pick(c, n):
        c = jnp.asarray(c)
        return jnp.where(drop.reshape((-1,) + (1,) * (c.ndim - 1)), n, c)

    return jax.tree_util.tree_map(pick, cond, null)


class ConditionDropout(eqx.Module):
    """Condition dropout for classifier-free guidance training (:func:`drop_condition`), shared by every family
    that trains a conditional field: diffusion, flow matching and stochastic interpolants.

    Args:
        prob: probability in [0, 1) of replacing an example's condition by the null condition (0: none).
        null_label: the null class label (the network's ``num_classes``) for integer conditions.

    References:
        Ho & Salimans, "Classifier-free diffusion guidance", NeurIPS 2021 workshop (arXiv:2207.12598).
    """

    prob: float = eqx.field(static=True, default=0.0, converter=float)
    null_label: int | None = eqx.field(static=True, default=None, converter=lambda n: None if n is None else int(n))

    def __check_init__(self):
        check_probability("prob", self.prob)

    def __call__(self, key: PRNGKeyArray, cond: Any) -> Any:
        """The batch of conditions ``cond`` with each example's replaced by the null one with probability ``prob``."""
        return drop_condition(key, cond, self.prob, self.null_label)


def guided(field: Callable[[Any, Array, Any], Array], weight: float | Array) -> Callable[[Any, Array, Any], Array]:
    """The classifier-free-guided field of a per-example ``field(t, x, cond)``:

        f_w(t, x, c) = f(t, x, None) + w (f(t, x, c) - f(t, x, None)),

    so ``w = 0`` is the unconditional field, ``w = 1`` the conditional one, and ``w > 1`` sharpens the condition.
    Diffusion guides the score (equivalently eps) this way, flow matching and interpolants their velocity. A Python
    ``w = 1`` returns ``field`` itself (one evaluation instead of two); an array ``w`` (traced, so that new weights do
    not recompile) always costs both evaluations.
    """
    if isinstance(weight, (int, float)) and weight == 1.0:
        return field

    def f(t, x, cond=None):
        if cond is None:
            return field(t, x, None)
        uncond = field(t, x, None)
        return uncond + weight * (field(t, x, cond) - uncond)

    return f
