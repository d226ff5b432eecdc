"""Masked autoregressive layers: a MADE network gives each coordinate's transformer parameters from the ones before.

    y_i = tau(x_i; theta_i(x_{<i}, c)),   log|det dy/dx| = sum_i log tau'(x_i).

``transform`` is one network pass; ``inverse`` needs ``dim`` passes (coordinate ``i`` is exact after ``i``
passes). Wrap the layer in :class:`~genflow.flows.Invert` to make density evaluation the one-pass direction (MAF)
instead of sampling (IAF).

References:
    Germain, Gregor, Murray, Larochelle, "MADE: Masked Autoencoder for Distribution Estimation", ICML 2015.
    Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, "Improved Variational Inference with Inverse
    Autoregressive Flow", NeurIPS 2016.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from genflow._checks import check_callable, check_positive
from genflow.flows._bijections import AbstractBijection, as_cond_shape
from genflow.flows._transformers import AbstractTransformer, circular_features
from genflow.nn import Activation


class _MaskedLinear(eqx.Module):
    weight: Float[Array, "out inp"]
    bias: Float[Array, " out"]
    mask: Bool[Array, "out inp"]  # boolean, so the trainer never treats it as a parameter

    def __init__(self, mask: np.ndarray, *, key: PRNGKeyArray, zero: bool = False):
        out, inp = mask.shape
        lin = eqx.nn.Linear(inp, out, key=key)
        self.mask = jnp.asarray(mask, bool)
        self.weight = jnp.zeros_like(lin.weight) if zero else lin.weight * self.mask
        self.bias = jnp.zeros_like(lin.bias) if zero else lin.bias

    def __call__(self, x):
        return jnp.where(self.mask, self.weight, 0.0) @ x + self.bias


def made_degrees(dim: int, width: int, depth: int, conditional: bool) -> list[np.ndarray]:
    """Degrees of the hidden units: cyclic over ``1..dim-1`` (over ``0..dim-1`` with a condition).

    Degree-0 units see only the condition, which is how the first coordinate depends on it.
    """
    lo = 0 if conditional or dim == 1 else 1
    span = max(dim - lo, 1)
    return [lo + np.arange(width) % span for _ in range(depth)]


class MADE(eqx.Module):
    """Masked MLP: output block ``i`` (``num_params`` units) depends only on inputs ``x_{<i}`` and the condition.

    Inputs carry degrees ``1..dim`` (a condition has degree 0); a hidden unit of degree ``k`` sees inputs of
    degree ``<= k``; an output of coordinate ``i`` sees hidden units of degree ``< i``.
    """

    layers: tuple[_MaskedLinear, ...]
    dim: int = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    feature_copies: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        num_params: int,
        cond_dim: int = 0,
        width: int = 64,
        depth: int = 2,
        activation: Activation = jax.nn.relu,
        feature_copies: int = 1,
        *,
        key: PRNGKeyArray,
    ):
        for name, value in (("dim", dim), ("width", width), ("depth", depth)):
            check_positive(name, value)
        check_callable("activation", activation, "such as jax.nn.relu")
        self.dim, self.num_params, self.activation = int(dim), int(num_params), activation
        self.feature_copies = int(feature_copies)
        in_deg = np.concatenate([np.tile(np.arange(1, dim + 1), self.feature_copies), np.zeros(int(cond_dim), int)])
        hidden = made_degrees(self.dim, int(width), int(depth), cond_dim > 0)
        out_deg = np.repeat(np.arange(1, dim + 1), self.num_params)
        masks = [hidden[0][:, None] >= in_deg[None, :]]
        masks += [b[:, None] >= a[None, :] for a, b in zip(hidden[:-1], hidden[1:], strict=True)]
        masks += [out_deg[:, None] > hidden[-1][None, :]]
        keys = jax.random.split(key, len(masks))
        self.layers = tuple(
            _MaskedLinear(m, key=k, zero=(i == len(masks) - 1))
            for i, (m, k) in enumerate(zip(masks, keys, strict=True))
        )

    def __call__(self, features: Array, cond: Array | None = None) -> Float[Array, "dim num_params"]:
        h = features if cond is None else jnp.concatenate([features, cond])
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h).reshape(self.dim, self.num_params)


class MaskedAutoregressive(AbstractBijection):
    """Masked autoregressive layer with any transformer; ``transform`` is the parallel (one-pass) direction.

    Args:
        transformer: the elementwise bijection.
        dim: size of one example.
        cond_dim: size of a vector condition (0: unconditional).
        width, depth, activation: of the MADE network.
        key: random key.
    """

    transformer: AbstractTransformer
    made: MADE
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        transformer: AbstractTransformer,
        dim: int,
        cond_dim: int = 0,
        width: int = 64,
        depth: int = 2,
        activation: Activation = jax.nn.relu,
        *,
        key: PRNGKeyArray,
    ):
        self.transformer = transformer
        self.shape, self.cond_shape = (int(dim),), as_cond_shape(cond_dim)
        copies = 2 if transformer.circular else 1
        self.made = MADE(dim, transformer.num_params, int(cond_dim), width, depth, activation, copies, key=key)

    def _params(self, x, cond):
        t = self.transformer
        feats = circular_features(x, t.range_min, t.range_max) if t.circular else x
        return self.made(feats, cond)

    def transform_and_log_det(self, x, cond=None):
        y, ld = jax.vmap(self.transformer.transform_and_log_det)(x, self._params(x, cond))
        return y, jnp.sum(ld)

    def inverse_and_log_det(self, y, cond=None):
        def body(_, carry):
            x, _ = carry
            return jax.vmap(self.transformer.inverse_and_log_det)(y, self._params(x, cond))

        # After pass i the first i coordinates are exact, so the last pass's parameters (and log-det) are too.
        init = (jnp.zeros_like(y), jnp.zeros_like(y))
        x, ld = jax.lax.fori_loop(0, self.shape[0], body, init)
        return x, jnp.sum(ld)
