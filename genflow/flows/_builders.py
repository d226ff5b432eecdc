"""Ready-made flow architectures: stacks of coupling or masked autoregressive layers with permutations.

Each builder takes a key last (Hydra's ``_partial_: true`` net configs receive it in experiments/train.py) and
returns one bijection whose layers run in a ``lax.scan`` (see :class:`~genflow.flows.Scan`).
"""

from __future__ import annotations

import math

import jax
from jaxtyping import PRNGKeyArray

from genflow._checks import check_choice, check_positive
from genflow.flows._autoregressive import MaskedAutoregressive
from genflow.flows._bijections import AbstractBijection, Chain, Invert, LULinear, Permutation, Scan
from genflow.flows._coupling import Coupling
from genflow.flows._smooth import SmoothMixtureTransformer
from genflow.flows._transformers import AbstractTransformer, AffineTransformer, RQSplineTransformer
from genflow.nn import Activation

TRANSFORMERS = ("affine", "rq_spline", "circular_spline", "smooth", "circular_smooth")
PERMUTATIONS = ("auto", "reverse", "random", "none")


def make_transformer(name: str, knots: int = 8, interval: float | tuple[float, float] = 4.0) -> AbstractTransformer:
    """Build a transformer by name.

    - ``"affine"``: RealNVP's affine map;
    - ``"rq_spline"``: rational-quadratic spline on ``[-interval, interval]`` with identity tails;
    - ``"circular_spline"``: circular spline, on ``[-pi, pi)`` unless ``interval`` is a pair;
    - ``"smooth"``: Köhler et al.'s smooth mixture with ``knots`` components on ``interval`` (a pair; a scalar
      ``B`` means ``[-B, B]``);
    - ``"circular_smooth"``: the smooth mixture on a circle (``[-pi, pi)`` unless ``interval`` is a pair).
    """
    check_choice("transformer", name, TRANSFORMERS)
    if name == "affine":
        return AffineTransformer()
    if name == "rq_spline":
        return RQSplineTransformer(knots, interval)
    circle = interval if hasattr(interval, "__len__") else (-math.pi, math.pi)
    if name == "circular_spline":
        return RQSplineTransformer(knots, circle, boundary="circular")
    if name == "smooth":
        return SmoothMixtureTransformer(knots, interval)
    return SmoothMixtureTransformer(knots, circle, circular=True)


def _permutation(kind: str, dim: int, key: PRNGKeyArray) -> Permutation | None:
    if kind == "auto":
        kind = "reverse" if dim <= 2 else "random"
    if kind == "none" or dim == 1:
        return None
    return Permutation.reverse(dim) if kind == "reverse" else Permutation.random(key, dim)


def _stack(make_layer, num_layers: int, key: PRNGKeyArray) -> Scan:
    check_positive("num_layers", num_layers)
    return Scan.from_keys(make_layer, jax.random.split(key, int(num_layers)))


def coupling_flow(
    data_dim: int,
    transformer: str = "rq_spline",
    num_layers: int = 8,
    width: int = 64,
    depth: int = 1,
    knots: int = 8,
    interval: float | tuple[float, float] = 4.0,
    cond_dim: int = 0,
    activation: Activation = jax.nn.relu,
    permutation: str = "auto",
    lu_linear: bool = False,
    invert: bool = False,
    *,
    key: PRNGKeyArray,
) -> AbstractBijection:
    """A stack of coupling layers, each followed by a permutation (and optionally an LU linear layer).

    ``transformer="affine"`` gives RealNVP, ``"rq_spline"`` a neural spline flow (the setup of FlowJAX's
    ``coupling_flow``: 8 layers, knots 8, interval 4), ``"circular_spline"`` a flow on the torus
    ``[-pi, pi)^d``, ``"smooth"``/``"circular_smooth"`` a smooth flow (Köhler et al. 2021).

    Args:
        data_dim: size of one example (>= 2).
        transformer: one of ``affine, rq_spline, circular_spline, smooth, circular_smooth``.
        num_layers: number of coupling layers.
        width, depth, activation: of each conditioner MLP.
        knots, interval: spline bins (or smooth-mixture components) and the domain.
        cond_dim: size of a vector condition (0: unconditional).
        permutation: ``auto`` (reverse for 2D, random otherwise), ``reverse``, ``random`` or ``none``.
        lu_linear: add an :class:`LULinear` after each permutation (not on the torus).
        invert: swap the directions. Smooth mixtures are analytic in ``transform`` and solved by root finding in
            ``inverse``; ``invert=True`` makes density evaluation (and force matching) the analytic direction.
        key: random key.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017.
        Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019.
    """
    check_choice("permutation", permutation, PERMUTATIONS)
    tau = make_transformer(transformer, knots, interval)
    if lu_linear and tau.circular:
        raise ValueError("lu_linear=True is invalid with transformer='circular_spline': a linear map leaves the torus")

    def layer(k):
        k_c, k_p, k_l = jax.random.split(k, 3)
        parts = [Coupling(tau, data_dim, None, cond_dim, width, depth, activation, key=k_c)]
        perm = _permutation(permutation, int(data_dim), k_p)
        parts += [perm] if perm is not None else []
        parts += [LULinear(data_dim, key=k_l)] if lu_linear else []
        return Chain(parts)

    flow = _stack(layer, num_layers, key)
    return Invert(flow) if invert else flow


def masked_autoregressive_flow(
    data_dim: int,
    transformer: str = "affine",
    num_layers: int = 5,
    width: int = 64,
    depth: int = 2,
    knots: int = 8,
    interval: float | tuple[float, float] = 4.0,
    cond_dim: int = 0,
    activation: Activation = jax.nn.relu,
    permutation: str = "auto",
    invert: bool = True,
    *,
    key: PRNGKeyArray,
) -> AbstractBijection:
    """A stack of masked autoregressive layers with permutations.

    With ``invert=True`` (MAF) density evaluation is one network pass per layer and sampling ``data_dim``
    passes; ``invert=False`` (IAF) the other way round, the right choice for reverse-KL training.

    References:
        Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017.
        Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.
    """
    check_choice("permutation", permutation, PERMUTATIONS)
    tau = make_transformer(transformer, knots, interval)

    def layer(k):
        k_m, k_p = jax.random.split(k)
        parts = [MaskedAutoregressive(tau, data_dim, cond_dim, width, depth, activation, key=k_m)]
        perm = _permutation(permutation, int(data_dim), k_p)
        return Chain(parts + ([perm] if perm is not None else []))

    flow = _stack(layer, num_layers, key)
    return Invert(flow) if invert else flow
