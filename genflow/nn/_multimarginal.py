r"""A network for multimarginal interpolants: one field per marginal, conditioned on a point of the simplex.

A multimarginal interpolant learns $g_k(a, x) = \mathbb E[x_k \mid x(a) = x]$ for $k = 0..K$ with one network
$g(a, x) \to (K + 1, d)$. genflow networks have the signature ``net(t, x, cond)``; here the simplex point $a$ is the
vector condition and the time input is held at 0, since the fields depend on $a$ only.

References:
    Albergo, Boffi, Lindsey, Vanden-Eijnden, "Multimarginal generative modeling with stochastic interpolants",
    ICLR 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.nn._heads import MultiHead


class SimplexConditionedNet(eqx.Module):
    r"""Adapts a genflow network ``net(t, x, cond) -> (K + 1, d)`` to the field signature ``g(a, x)``.

    The simplex point $a$ is the vector condition and the time input is held at 0 (the fields do not depend on
    time, only on $a$).
    """

    net: Callable

    def __call__(self, a: Float[Array, " num_marginals"], x: Float[Array, " d"]) -> Float[Array, "num_marginals d"]:
        return self.net(jnp.zeros((), x.dtype), x, a)


def multimarginal_net(
    data_dim: int, num_marginals: int, width: int = 128, depth: int = 3, *, key: PRNGKeyArray, **kwargs: Any
) -> SimplexConditionedNet:
    """A ``MultiHead`` MLP with one head per marginal and the simplex point as its vector condition.

    Args:
        data_dim: size of one example.
        num_marginals: $K + 1$, base included.
        width: hidden width.
        depth: number of hidden layers.
        key: initialisation key.
        **kwargs: other arguments of ``genflow.nn.MultiHead`` (``emb_dim``, ``activation``, ...).
    """
    head = MultiHead(data_dim, num_marginals, width, depth, cond_dim=num_marginals, key=key, **kwargs)
    return SimplexConditionedNet(head)
