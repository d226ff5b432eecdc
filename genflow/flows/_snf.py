"""Stochastic normalizing flows: deterministic bijections interleaved with MCMC blocks, and their path weights.

Each stochastic block targets an annealed energy ``u_lambda = (1 - lambda) u_Z + lambda u_X`` between the base
``u_Z = -log p_Z`` and the target ``u_X = -log p~_X`` (unnormalised). Along a path ``y_0 = z -> ... -> y_T = x``
every layer adds

    Delta S = log|det J|                                              (deterministic layer),
    Delta S = log q_backward(y_t -> y_{t-1}) - log q_forward(y_{t-1} -> y_t)     (stochastic layer),

and the path weight ``log w = u_Z(z) - u_X(x) + sum Delta S`` satisfies ``E[w] = Z_X / Z_Z``; self-normalised
weights give consistent expectations under the target. For the blocks here:

- overdamped Langevin ``y = x - e grad u(x) + sqrt(2e) eta``: with ``eta~ = (x - y + e grad u(y)) / sqrt(2e)``,
  ``Delta S = (|eta|^2 - |eta~|^2) / 2``;
- Metropolis-Hastings and HMC, reversible for ``exp(-u_lambda)``: ``Delta S = u(y) - u(x)``, with no gradient
  through the accept decision.

A block's ``Delta S`` is computed the same way whichever direction it runs, so a path run backwards from data
(for maximum likelihood) sums the log-ratios of its own steps, which are minus the forward path's.

Objectives: reverse KL ``E_z[u_X(x) - sum Delta S]`` and maximum likelihood ``E_x[u_Z(z) - sum Delta S_back]``.

References:
    Wu, Köhler, Noé, "Stochastic Normalizing Flows", NeurIPS 2020.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractGenerativeModel, split_batch
from genflow._checks import as_shape, check_positive
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.flows._bijections import AbstractBijection
from genflow.flows._builders import coupling_flow
from genflow.flows._transformers import AbstractTransformer, AffineTransformer


class AnnealedEnergy(eqx.Module):
    """``u_lambda(x) = (1 - lambda) u_Z(x) + lambda u_X(x)`` for one example, ``u = -log_prob``."""

    base: Any
    target: Any
    lam: float = eqx.field(static=True)

    def __call__(self, x: Array) -> Scalar:
        u_z = -self.base.log_prob(x[None])[0] if self.lam < 1 else 0.0
        u_x = -self.target.log_prob(x[None])[0] if self.lam > 0 else 0.0
        return (1 - self.lam) * u_z + self.lam * u_x


class AbstractStochasticLayer(eqx.Module):
    """An MCMC block at annealing position ``lam``: ``layer(key, x, energy) -> (y, Delta S)`` for one example."""

    lam: eqx.AbstractVar[float]

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray, x: Array, energy: AnnealedEnergy) -> tuple[Array, Scalar]:
        """One application of the block."""


def _check_lam(lam: float) -> float:
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam={lam!r} is invalid: the annealing position must lie in [0, 1]")
    return float(lam)


def _check_steps(lam: float, step_size: float, num_steps: int) -> tuple[float, float, int]:
    """``(lam, step_size, num_steps)`` of an MCMC layer, checked and converted."""
    check_positive("num_steps", num_steps)
    if not step_size > 0:
        raise ValueError(f"step_size={step_size!r} is invalid: must be > 0")
    return _check_lam(lam), float(step_size), int(num_steps)


class LangevinLayer(AbstractStochasticLayer):
    """``num_steps`` unadjusted overdamped Langevin steps of size ``step_size`` on ``u_lambda``.

    The step is reparametrised (``eta`` is the randomness), so gradients reach the flow through it.
    """

    lam: float = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __init__(self, lam: float, step_size: float = 0.01, num_steps: int = 1):
        self.lam, self.step_size, self.num_steps = _check_steps(lam, step_size, num_steps)

    def __call__(self, key, x, energy):
        e = self.step_size
        grad = jax.grad(energy)

        def step(carry, k):
            x, ds = carry
            eta = jax.random.normal(k, x.shape, x.dtype)
            y = x - e * grad(x) + jnp.sqrt(2 * e) * eta
            eta_back = (x - y + e * grad(y)) / jnp.sqrt(2 * e)
            return (y, ds + 0.5 * (jnp.sum(eta**2) - jnp.sum(eta_back**2))), None

        (y, ds), _ = jax.lax.scan(step, (x, jnp.zeros((), x.dtype)), jax.random.split(key, self.num_steps))
        return y, ds


def _metropolis(key, x, u_x, proposal, u_proposal, log_ratio_extra=0.0):
    # The accept decision is a discrete choice: no gradient flows through it, only through the chosen state.
    log_accept = jax.lax.stop_gradient(u_x - u_proposal + log_ratio_extra)
    accept = jnp.log(jax.random.uniform(key, (), x.dtype)) < log_accept
    return jnp.where(accept, proposal, x), jnp.where(accept, u_proposal, u_x)


class MetropolisLayer(AbstractStochasticLayer):
    """``num_steps`` random-walk Metropolis steps with Gaussian proposals of scale ``step_size`` on ``u_lambda``."""

    lam: float = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __init__(self, lam: float, step_size: float = 0.5, num_steps: int = 1):
        self.lam, self.step_size, self.num_steps = _check_steps(lam, step_size, num_steps)

    def __call__(self, key, x, energy):
        def step(carry, k):
            x, u = carry
            k_prop, k_acc = jax.random.split(k)
            prop = x + self.step_size * jax.random.normal(k_prop, x.shape, x.dtype)
            return _metropolis(k_acc, x, u, prop, energy(prop)), None

        u0 = energy(x)
        (y, u1), _ = jax.lax.scan(step, (x, u0), jax.random.split(key, self.num_steps))
        return y, u1 - u0


class HMCLayer(AbstractStochasticLayer):
    """``num_steps`` Hamiltonian Monte Carlo steps (fresh N(0, I) momentum, ``num_leapfrog`` leapfrog steps)."""

    lam: float = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    num_leapfrog: int = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __init__(self, lam: float, step_size: float = 0.1, num_leapfrog: int = 5, num_steps: int = 1):
        check_positive("num_leapfrog", num_leapfrog)
        self.lam, self.step_size, self.num_steps = _check_steps(lam, step_size, num_steps)
        self.num_leapfrog = int(num_leapfrog)

    def _leapfrog(self, x, p, grad):
        e = self.step_size
        p = p - 0.5 * e * grad(x)

        def body(_, xp):
            x, p = xp
            x = x + e * p
            return x, p - e * grad(x)

        x, p = jax.lax.fori_loop(0, self.num_leapfrog - 1, body, (x, p))
        x = x + e * p
        return x, p - 0.5 * e * grad(x)

    def __call__(self, key, x, energy):
        grad = jax.grad(energy)

        def step(carry, k):
            x, u = carry
            k_mom, k_acc = jax.random.split(k)
            p = jax.random.normal(k_mom, x.shape, x.dtype)
            x_new, p_new = self._leapfrog(x, p, grad)
            kinetic = 0.5 * (jnp.sum(p**2) - jnp.sum(p_new**2))
            return _metropolis(k_acc, x, u, x_new, energy(x_new), kinetic), None

        u0 = energy(x)
        (y, u1), _ = jax.lax.scan(step, (x, u0), jax.random.split(key, self.num_steps))
        return y, u1 - u0


Layer = AbstractBijection | AbstractStochasticLayer


class AbstractPathObjective(eqx.Module):
    """A training loss of a stochastic normalizing flow, from its forward or backward paths."""

    @abc.abstractmethod
    def __call__(self, snf: StochasticNormalizingFlow, key: PRNGKeyArray, x: Array) -> Scalar:
        """The minibatch loss for data ``x`` (reverse KL uses only its size)."""


class PathReverseKL(AbstractPathObjective):
    """Reverse KL over paths, ``E_z[u_X(x) - sum Delta S]``: needs samples only (Wu et al. 2020, Eq. 11)."""

    def __call__(self, snf, key, x):
        k_z, k_path = jax.random.split(key)
        z = snf.base.sample(k_z, x.shape[0])
        y, ds = snf.forward_paths(k_path, z)
        return jnp.mean(-snf.target.log_prob(y) - ds)


class PathMaximumLikelihood(AbstractPathObjective):
    """Maximum likelihood over backward paths from data, ``E_x[u_Z(z) - sum Delta S_back]`` (Wu et al. 2020)."""

    def __call__(self, snf, key, x):
        _, k_path = jax.random.split(key)
        z, ds_back = snf.backward_paths(k_path, x)
        return jnp.mean(-snf.base.log_prob(z) - ds_back)


class StochasticNormalizingFlow(AbstractGenerativeModel):
    """A stochastic normalizing flow: ``layers`` applied in order to ``z ~ base``, with path weights.

    Args:
        layers: bijections and stochastic blocks (:class:`LangevinLayer`, :class:`MetropolisLayer`,
            :class:`HMCLayer`), applied in order from base to target.
        target: the unnormalised target ``p~_X`` (anything with a batched ``log_prob``, e.g. ``DoubleWell``).
        data_shape: shape of one example (default: that of the first bijection, else the base's).
        base: the normalised base ``p_Z`` (``N(0, I)`` by default).
        objective: ``PathReverseKL()`` (samples only, the default) or ``PathMaximumLikelihood()`` (backward paths
            from data).

    References:
        Wu, Köhler, Noé, "Stochastic Normalizing Flows", NeurIPS 2020.
    """

    layers: tuple[Layer, ...]
    base: AbstractDistribution
    target: Any
    data_shape: tuple[int, ...] = eqx.field(static=True)
    objective: AbstractPathObjective
    frozen_fields: ClassVar[tuple[str, ...]] = ("base", "target")

    def __init__(
        self,
        layers: Sequence[Layer],
        target: Any,
        data_shape: Any = None,
        base: AbstractDistribution | None = None,
        objective: AbstractPathObjective | None = None,
    ):
        objective = PathReverseKL() if objective is None else objective
        if not isinstance(objective, AbstractPathObjective):
            raise ValueError(f"objective={objective!r} is invalid; allowed: PathReverseKL() or PathMaximumLikelihood()")
        self.layers, self.target, self.objective = tuple(layers), target, objective
        shapes = [tuple(b.shape) for b in self.layers if isinstance(b, AbstractBijection)]
        if data_shape is None:
            data_shape = shapes[0] if shapes else (base.event_shape if base is not None else target.event_shape)
        self.data_shape = as_shape(data_shape)
        if any(s != self.data_shape for s in shapes):
            raise ValueError(f"bijections act on shapes {sorted(set(shapes))} but data_shape is {self.data_shape}")
        self.base = StandardNormal(self.data_shape) if base is None else base
        if tuple(self.base.event_shape) != self.data_shape:
            raise ValueError(f"base event_shape {self.base.event_shape} does not match data_shape {self.data_shape}")

    @classmethod
    def from_net(
        cls, net: Sequence[Layer], data_shape: Any, sampler: Any = None, **kwargs
    ) -> StochasticNormalizingFlow:
        """Hydra entry point: the ``net`` group holds the layer sequence (see :func:`snf_layers`)."""
        del sampler
        return cls(net, data_shape=data_shape, **kwargs)

    def _energy(self, lam: float) -> AnnealedEnergy:
        return AnnealedEnergy(self.base, self.target, lam)

    def _path(self, key: PRNGKeyArray, x: Array, backward: bool) -> tuple[Array, Scalar]:
        layers = self.layers[::-1] if backward else self.layers
        keys = jax.random.split(key, max(len(layers), 1))
        total = jnp.zeros((), x.dtype)
        for layer, k in zip(layers, keys, strict=False):
            if isinstance(layer, AbstractBijection):
                x, ds = layer.inverse_and_log_det(x) if backward else layer.transform_and_log_det(x)
            else:
                x, ds = layer(k, x, self._energy(layer.lam))
            total = total + ds
        return x, total

    def forward_paths(
        self, key: PRNGKeyArray, z: Float[Array, "num ..."]
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Run every ``z`` from base to target: ``(x, sum Delta S)``."""
        keys = jax.random.split(key, z.shape[0])
        return jax.vmap(lambda k, zi: self._path(k, zi, backward=False))(keys, z)

    def backward_paths(
        self, key: PRNGKeyArray, x: Float[Array, "num ..."]
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Run every ``x`` from target to base: ``(z, sum Delta S_back)``, with ``sum Delta S_back = -sum Delta S``."""
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda k, xi: self._path(k, xi, backward=True))(keys, x)

    @eqx.filter_jit
    def sample_with_log_weights(
        self, key: PRNGKeyArray, num: int
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Samples and their path log-weights ``log w = u_Z(z) - u_X(x) + sum Delta S`` (``E[w] = Z_X/Z_Z``)."""
        k_z, k_path = jax.random.split(key)
        z = self.base.sample(k_z, num)
        x, ds = self.forward_paths(k_path, z)
        return x, self.target.log_prob(x) - self.base.log_prob(z) + ds

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, num: int, **opts: Any) -> Float[Array, "num ..."]:
        return self.sample_with_log_weights(key, num)[0]

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        x, _ = split_batch(batch)
        return self.objective(self, key, x)


Block = Callable[[float], AbstractStochasticLayer]
# Metropolis-Hastings with 5 steps of size 0.5 per block: Wu et al.'s "RNVP + MC" setting.
DEFAULT_BLOCK: Block = functools.partial(MetropolisLayer, step_size=0.5, num_steps=5)


def _check_block(block: object) -> None:
    if block is not None and not callable(block):
        raise ValueError(
            f"block={block!r} is invalid; allowed: None or a stochastic layer given its annealing position, e.g. "
            "functools.partial(MetropolisLayer, step_size=0.5, num_steps=5) (_partial_: true in a config)"
        )


def interleave_stochastic(bijections: Sequence[AbstractBijection], block: Block = DEFAULT_BLOCK) -> tuple[Layer, ...]:
    """Follow bijection ``i`` of ``n`` by the stochastic layer ``block(lam)`` at ``lam = (i + 1) / n``, so the
    blocks anneal evenly from the base towards the target. ``block`` is a layer class with its other arguments
    bound (:class:`LangevinLayer`, :class:`MetropolisLayer` or :class:`HMCLayer`)."""
    _check_block(block)
    n = len(bijections)
    if n == 0:
        raise ValueError("interleave_stochastic needs at least one bijection")
    layers: list[Layer] = []
    for i, b in enumerate(bijections):
        layers += [b, block((i + 1) / n)]
    return tuple(layers)


def snf_layers(
    data_dim: int,
    num_blocks: int = 3,
    transformer: AbstractTransformer | None = None,
    layers_per_block: int = 2,
    width: int = 64,
    depth: int = 2,
    block: Block | None = DEFAULT_BLOCK,
    *,
    key: PRNGKeyArray,
) -> tuple[Layer, ...]:
    """An SNF layer stack: ``num_blocks`` coupling flows (RealNVP with ``AffineTransformer()``, the default; NSF with
    ``RQSplineTransformer()``), each followed by a stochastic layer ``block(lam)`` (``block=None``: the plain flow,
    for comparisons).

    References:
        Wu, Köhler, Noé, "Stochastic Normalizing Flows", NeurIPS 2020 (RNVP/NSF with and without MC blocks).
    """
    check_positive("num_blocks", num_blocks)
    _check_block(block)
    tau = AffineTransformer() if transformer is None else transformer
    keys = jax.random.split(key, int(num_blocks))
    flows = [coupling_flow(data_dim, tau, layers_per_block, width, depth, key=k) for k in keys]
    if block is None:
        return tuple(flows)
    return interleave_stochastic(flows, block)
