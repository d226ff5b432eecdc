"""Heads that change what a trunk network outputs: a scalar potential, or several vector fields at once."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from genflow._checks import check_positive
from genflow.nn._mlp import MLP


class PotentialHead(eqx.Module):
    r"""A scalar potential (energy) $\Phi(t, x, c)$ from a trunk with a one-element output.

    ``__call__`` returns $\Phi$; ``grad`` returns $\nabla_x \Phi(t, x, c)$, shaped like ``x``. Parametrising a
    field as a gradient makes it conservative, as needed for a score $\nabla_x \log p_t$ learned through an
    energy, or for the potential of an optimal-transport map.

    References:
        Salimans & Ho 2021, "Should EBMs model the energy or the score?"; Makkuva et al. 2020, "Optimal
        transport mapping via input convex neural networks".
    """

    trunk: eqx.Module

    def __init__(self, trunk: eqx.Module):
        """Wrap ``trunk``, a network ``trunk(t, x, cond) -> array`` with exactly one element."""
        self.trunk = trunk

    @classmethod
    def from_mlp(
        cls, data_dim: int, width: int = 128, depth: int = 3, *, key: PRNGKeyArray, **mlp_kwargs: Any
    ) -> PotentialHead:
        """Build the head on an ``MLP`` trunk with ``out_dim=1``; the other arguments are those of ``MLP``."""
        return cls(MLP(data_dim, width, depth, out_dim=1, key=key, **mlp_kwargs))

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example ``x`` (that of the trunk)."""
        return self.trunk.data_shape

    def __call__(self, t: Float[ArrayLike, ""], x: Float[Array, "*shape"], cond: ArrayLike | None = None) -> Scalar:
        out = self.trunk(t, x, cond)
        if out.size != 1:
            raise ValueError(f"PotentialHead needs a trunk with a one-element output, got shape {out.shape}.")
        return jnp.reshape(out, ())

    def grad(
        self, t: Float[ArrayLike, ""], x: Float[Array, "*shape"], cond: ArrayLike | None = None
    ) -> Float[Array, "*shape"]:
        r"""$\nabla_x \Phi(t, x, c)$, shaped like ``x``."""
        return jax.grad(lambda x_: self(t, x_, cond))(x)


class MultiHead(eqx.Module):
    r"""$K$ vector fields from one shared MLP trunk: $f(t, x, c) \in \mathbb{R}^{K \times d}$.

    The trunk is an ``MLP`` with ``out_dim = K d`` whose output is reshaped to ``(K, d)``; row $k$ is field
    $k$ (for example one velocity per marginal of a multimarginal interpolant, or one denoiser per mixture
    component). Sharing the trunk costs one forward pass for all $K$ fields.

    References:
        Albergo et al. 2023, "Multimarginal generative modeling with stochastic interpolants".
    """

    trunk: MLP
    num_heads: int = eqx.field(static=True)

    def __init__(
        self, data_dim: int, num_heads: int, width: int = 128, depth: int = 3, *, key: PRNGKeyArray, **mlp_kwargs: Any
    ):
        """Build the trunk; ``num_heads`` is $K$ and the other arguments are those of ``MLP`` (but ``out_dim``)."""
        check_positive("num_heads", num_heads)
        self.num_heads = int(num_heads)
        self.trunk = MLP(data_dim, width, depth, out_dim=self.num_heads * int(data_dim), key=key, **mlp_kwargs)

    @property
    def data_dim(self) -> int:
        """Size of one example ``x``: the trunk's input."""
        return self.trunk.data_dim

    @property
    def data_shape(self) -> tuple[int]:
        """Shape of one example ``x``: the trunk's."""
        return self.trunk.data_shape

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, " data_dim"], cond: ArrayLike | None = None
    ) -> Float[Array, "num_heads data_dim"]:
        return self.trunk(t, x, cond).reshape(self.num_heads, self.data_dim)
