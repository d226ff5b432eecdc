"""Coupling layers: half of the coordinates parametrise an elementwise bijection of the other half.

With ``x = (x_a, x_b)``, ``x_a`` the first ``untransformed_dim`` coordinates,

    y_a = x_a,   y_b = tau(x_b; theta(x_a, c)),   log|det dy/dx| = sum_i log tau'(x_{b,i}),

so both directions cost one conditioner pass. The conditioner is any genflow network ``net(t, x, cond)``; it is
called with ``t = 0`` (coupling layers have no time) and its FiLM embedding takes the condition ``c``.

References:
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017.
    Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from genflow.flows._bijections import AbstractBijection, as_cond_shape
from genflow.flows._transformers import AbstractTransformer, circular_features
from genflow.nn import MLP, Activation


def zero_output_layer(net: eqx.Module) -> eqx.Module:
    """Zero a genflow network's output layer (``net.out``), so that the layer it conditions starts at identity."""
    if not hasattr(net, "out"):
        return net
    return eqx.tree_at(lambda n: (n.out.weight, n.out.bias), net, replace_fn=jnp.zeros_like)


def make_conditioner(
    in_dim: int, out_dim: int, cond_dim: int, width: int, depth: int, activation: Activation, *, key: PRNGKeyArray
) -> MLP:
    """A FiLM MLP from genflow.nn with a zero output layer."""
    net = MLP(
        in_dim, width=width, depth=depth, emb_dim=32, cond_dim=cond_dim, out_dim=out_dim, activation=activation, key=key
    )
    return zero_output_layer(net)


class Coupling(AbstractBijection):
    """A coupling layer with any transformer (affine: RealNVP; rational-quadratic spline: neural spline flow).

    For circular transformers the conditioner sees ``cos`` and ``sin`` of the conditioning angles, so the
    layer is a smooth map of the torus.

    Args:
        transformer: the elementwise bijection, e.g. ``AffineTransformer()`` or ``RQSplineTransformer()``.
        dim: size of one example.
        untransformed_dim: number of leading coordinates that condition the rest (default ``dim // 2``).
        cond_dim: size of a vector condition (0: unconditional).
        width, depth, activation: of the conditioner MLP.
        conditioner: a network ``net(t, x_a_features, cond) -> (dim - untransformed_dim) * num_params``
            to use instead of the default MLP.
        key: random key.
    """

    transformer: AbstractTransformer
    conditioner: Callable
    untransformed_dim: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        transformer: AbstractTransformer,
        dim: int,
        untransformed_dim: int | None = None,
        cond_dim: int = 0,
        width: int = 64,
        depth: int = 2,
        activation: Activation = jax.nn.relu,
        conditioner: Callable | None = None,
        *,
        key: PRNGKeyArray,
    ):
        dim = int(dim)
        d = dim // 2 if untransformed_dim is None else int(untransformed_dim)
        if not 0 < d < dim:
            raise ValueError(
                f"untransformed_dim={d} is invalid for dim={dim}: a coupling needs 0 < untransformed_dim < dim "
                "(use a masked autoregressive layer for dim=1)"
            )
        self.transformer, self.untransformed_dim = transformer, d
        self.shape, self.cond_shape = (dim,), as_cond_shape(cond_dim)
        in_dim = 2 * d if transformer.circular else d
        out_dim = (dim - d) * transformer.num_params
        self.conditioner = (
            make_conditioner(in_dim, out_dim, int(cond_dim), width, depth, activation, key=key)
            if conditioner is None
            else conditioner
        )

    def _params(self, x_a: Array, cond: Array | None) -> Array:
        t = self.transformer
        feats = circular_features(x_a, t.range_min, t.range_max) if t.circular else x_a
        out = self.conditioner(0.0, feats, cond) if cond is not None else self.conditioner(0.0, feats)
        return out.reshape(self.shape[0] - self.untransformed_dim, t.num_params)

    def transform_and_log_det(self, x, cond=None):
        x_a, x_b = x[: self.untransformed_dim], x[self.untransformed_dim :]
        y_b, ld = jax.vmap(self.transformer.transform_and_log_det)(x_b, self._params(x_a, cond))
        return jnp.concatenate([x_a, y_b]), jnp.sum(ld)

    def inverse_and_log_det(self, y, cond=None):
        y_a, y_b = y[: self.untransformed_dim], y[self.untransformed_dim :]
        x_b, ld = jax.vmap(self.transformer.inverse_and_log_det)(y_b, self._params(y_a, cond))
        return jnp.concatenate([y_a, x_b]), jnp.sum(ld)
