"""Ready-made flow architectures: stacks of coupling or masked autoregressive layers with permutations.

Each builder takes a key last (Hydra's ``_partial_: true`` net configs receive it in experiments/train.py) and
returns one bijection whose layers run in a ``lax.scan`` (see :class:`~genflow.flows.Scan`).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray

from genflow._checks import check_positive
from genflow.flows._autoregressive import MaskedAutoregressive
from genflow.flows._bijections import AbstractBijection, Chain, Invert, LULinear, Permutation, Scan
from genflow.flows._coupling import Coupling
from genflow.flows._transformers import AbstractTransformer, AffineTransformer, RQSplineTransformer
from genflow.nn import Activation


class AbstractPermutationRule(eqx.Module):
    """How the builders order coordinates between layers: ``rule(dim, key)`` gives a permutation, or None."""

    @abc.abstractmethod
    def __call__(self, dim: int, key: PRNGKeyArray) -> Permutation | None:
        """The permutation after one layer (None: keep the order)."""


class ReversePermutation(AbstractPermutationRule):
    """Reverse the coordinates after every layer (alternating halves in 2D)."""

    def __call__(self, dim, key):
        return Permutation.reverse(dim) if dim > 1 else None


class RandomPermutation(AbstractPermutationRule):
    """A fixed random permutation after every layer, drawn from the layer's key."""

    def __call__(self, dim, key):
        return Permutation.random(key, dim) if dim > 1 else None


class AutoPermutation(AbstractPermutationRule):
    """Reverse in 1D and 2D (where a random order may repeat itself), random otherwise."""

    def __call__(self, dim, key):
        return (ReversePermutation() if dim <= 2 else RandomPermutation())(dim, key)


def _check_modules(transformer: object, permutation: object) -> None:
    if not isinstance(transformer, AbstractTransformer):
        raise ValueError(
            f"transformer={transformer!r} is invalid; allowed: a transformer module (AffineTransformer(), "
            "RQSplineTransformer(...), SmoothMixtureTransformer(...))"
        )
    if permutation is not None and not isinstance(permutation, AbstractPermutationRule):
        raise ValueError(
            f"permutation={permutation!r} is invalid; allowed: AutoPermutation(), ReversePermutation(), "
            "RandomPermutation() or None"
        )


def _stack(make_layer, num_layers: int, key: PRNGKeyArray) -> Scan:
    check_positive("num_layers", num_layers)
    return Scan.from_keys(make_layer, jax.random.split(key, int(num_layers)))


def coupling_flow(
    data_dim: int,
    transformer: AbstractTransformer | None = None,
    num_layers: int = 8,
    width: int = 64,
    depth: int = 1,
    cond_dim: int = 0,
    activation: Activation = jax.nn.relu,
    permutation: AbstractPermutationRule | None = AutoPermutation(),
    lu_linear: bool = False,
    invert: bool = False,
    *,
    key: PRNGKeyArray,
) -> AbstractBijection:
    """A stack of coupling layers, each followed by a permutation (and optionally an LU linear layer).

    ``AffineTransformer()`` gives RealNVP, ``RQSplineTransformer()`` (the default) a neural spline flow (the setup
    of FlowJAX's ``coupling_flow``: 8 layers, knots 8, interval 4), ``RQSplineTransformer(k, (-pi, pi),
    boundary=Circular())`` a flow on the torus ``[-pi, pi)^d``, ``SmoothMixtureTransformer`` a smooth flow (Köhler
    et al. 2021, ``circular=True`` on the torus).

    Args:
        data_dim: size of one example (>= 2).
        transformer: the elementwise bijection (``RQSplineTransformer(8, 4.0)`` by default).
        num_layers: number of coupling layers.
        width, depth, activation: of each conditioner MLP.
        cond_dim: size of a vector condition (0: unconditional).
        permutation: ``AutoPermutation()`` (reverse for 2D, random otherwise), ``ReversePermutation()``,
            ``RandomPermutation()`` or None.
        lu_linear: add an :class:`LULinear` after each permutation (not on the torus).
        invert: swap the directions. Smooth mixtures are analytic in ``transform`` and solved by root finding in
            ``inverse``; ``invert=True`` makes density evaluation (and force matching) the analytic direction.
        key: random key.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017.
        Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019.
    """
    tau = RQSplineTransformer() if transformer is None else transformer
    _check_modules(tau, permutation)
    if lu_linear and tau.circular:
        raise ValueError("lu_linear=True is invalid with a circular transformer: a linear map leaves the torus")

    def layer(k):
        k_c, k_p, k_l = jax.random.split(k, 3)
        parts = [Coupling(tau, data_dim, None, cond_dim, width, depth, activation, key=k_c)]
        perm = None if permutation is None else permutation(int(data_dim), k_p)
        parts += [perm] if perm is not None else []
        parts += [LULinear(data_dim, key=k_l)] if lu_linear else []
        return Chain(parts)

    flow = _stack(layer, num_layers, key)
    return Invert(flow) if invert else flow


def masked_autoregressive_flow(
    data_dim: int,
    transformer: AbstractTransformer | None = None,
    num_layers: int = 5,
    width: int = 64,
    depth: int = 2,
    cond_dim: int = 0,
    activation: Activation = jax.nn.relu,
    permutation: AbstractPermutationRule | None = AutoPermutation(),
    invert: bool = True,
    *,
    key: PRNGKeyArray,
) -> AbstractBijection:
    """A stack of masked autoregressive layers with permutations.

    With ``invert=True`` (MAF) density evaluation is one network pass per layer and sampling ``data_dim``
    passes; ``invert=False`` (IAF) the other way round, the right choice for reverse-KL training. The transformer
    is ``AffineTransformer()`` by default; the other arguments are as in :func:`coupling_flow`.

    References:
        Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017.
        Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.
    """
    tau = AffineTransformer() if transformer is None else transformer
    _check_modules(tau, permutation)

    def layer(k):
        k_m, k_p = jax.random.split(k)
        parts = [MaskedAutoregressive(tau, data_dim, cond_dim, width, depth, activation, key=k_m)]
        perm = None if permutation is None else permutation(int(data_dim), k_p)
        return Chain(parts + ([perm] if perm is not None else []))

    flow = _stack(layer, num_layers, key)
    return Invert(flow) if invert else flow
