"""Bridge matching with networks: SB-CFM (minibatch entropic OT pairs) and DSBM / IMF (iterated Markovian fitting).

Both regress on Brownian bridges between coupled pairs ``(x0, x1)``: ``x_t = t x1 + (1-t) x0 + sqrt(eps t(1-t)) xi``.
The network predicts the endpoint, ``f(t, x_t) ≈ E[X1 | X_t]``, and the drift is ``(f - x) / (1 - t)``: the same
minimiser as regressing ``(x1 - x_t)/(1 - t)`` directly, without that target's ``eps d / (1 - t)`` variance.

Convention: reference ``sqrt(eps) W`` on [0, 1], t=0 the source, t=1 the target; minibatch OT is called with the
POT/ott regulariser ``2 eps`` on the cost ``|x - y|^2`` (the same problem as ``eps`` on ``|x - y|^2 / 2``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, Scalar

from genflow._base import AbstractSolvableModel, split_batch
from genflow.bridges import _directions as imf
from genflow.bridges._gaussian import check_eps
from genflow.bridges._samplers import solve_bridge
from genflow.couplings import (
    AbstractCoupling,
    AbstractEpsilonSchedule,
    AnnealedEpsilon,
    IndependentCoupling,
    SinkhornCoupling,
)
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.solvers import AbstractSDESolver, EulerMaruyama, Solution


def entropic_coupling(
    eps: float,
    schedule: AbstractEpsilonSchedule | None = None,
    threshold: float = 1e-3,
    max_iterations: int = 20000,
) -> SinkhornCoupling:
    r"""Minibatch entropic OT pairs for the bridge with reference ``sqrt(eps) W`` (SB-CFM's coupling).

    The static bridge is ``min <pi, C> - 2 eps H(pi)`` with ``C_ij = |x0_i - x1_j|^2`` (the same problem as ``eps``
    on ``|x - y|^2 / 2``), so this is ``SinkhornCoupling(reg=2 eps)`` on the raw cost (not rescaled, because ``eps``
    is absolute), drawing ``n`` index pairs from ``pi`` with replacement.

    Small ``eps`` against large costs (``2 eps = 0.2`` with ``|x - y|^2`` of order 100 in 16 dimensions) makes plain
    Sinkhorn crawl, so the regulariser is annealed by default (:class:`genflow.couplings.AnnealedEpsilon`); the plan
    is the same entropic plan (tested against POT and against its Gibbs-form characterisation).

    Args:
        eps: The bridge's noise level (the Sinkhorn regulariser is ``2 eps``).
        schedule: The regulariser's schedule (``None`` is ``AnnealedEpsilon()``; ``ConstantEpsilon()`` is plain
            Sinkhorn).
        threshold: Stop when the marginal error (L1) falls below it.
        max_iterations: Cap on Sinkhorn updates.

    References:
        Tong, Malkin, Fatras, Atanackovic, Zhang, Huguet, Wolf, Bengio. "Simulation-free Schrödinger bridges via
        score and flow matching". AISTATS 2024.
    """
    eps = check_eps(eps, "entropic_coupling")
    schedule = AnnealedEpsilon() if schedule is None else schedule
    return SinkhornCoupling(
        2.0 * eps, normalize_cost=False, threshold=threshold, max_iterations=max_iterations, schedule=schedule
    )


def _bridge_point(key: PRNGKeyArray, t: Array, x0: Array, x1: Array, eps: float) -> Array:
    xi = jax.random.normal(key, x0.shape, x0.dtype)
    return t * x1 + (1 - t) * x0 + jnp.sqrt(eps * t * (1 - t)) * xi


def _endpoint_loss(net: Callable, key: PRNGKeyArray, x_from: Array, x_to: Array, eps: float, t_max: float) -> Scalar:
    """``E |net(t, x_t) - x_to|^2`` with the bridge running from ``x_from`` (t=0) to ``x_to`` (t=1)."""
    k_t, k_xi = jax.random.split(key)
    t = jax.random.uniform(k_t, (x_from.shape[0], 1), x_from.dtype, 0.0, t_max)
    xt = _bridge_point(k_xi, t, x_from, x_to, eps)
    pred = jax.vmap(net)(t[:, 0], xt)
    return jnp.mean(jnp.sum((pred - x_to) ** 2, axis=-1))


class _DriftBridge(eqx.Module):
    """Adapter giving ``solve_bridge`` a drift ``(f(t, x) - x) / (1 - t)`` from an endpoint network."""

    net: Callable
    eps: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)

    def drift_fn(self):
        def drift(t, x):
            t = jnp.minimum(t, self.t_max)
            return (jax.vmap(self.net, in_axes=(None, 0))(t, x) - x) / (1 - t)

        return drift


class _AbstractSimulatedBridge(AbstractSolvableModel):
    """A bridge sampled by simulating its learned forward SDE from base draws (``drift_fn`` gives the drift)."""

    base: eqx.AbstractVar[AbstractDistribution]
    sampler: eqx.AbstractVar[AbstractSDESolver]

    @abc.abstractmethod
    def drift_fn(self) -> Callable[[Any, Array], Array]:
        """The forward drift ``(t, x) -> b`` on a batch."""

    @eqx.filter_jit
    def solve(self, key, num, *, x0=None, sampler=None, save_trajectory=False) -> Solution:
        k0, k1 = jax.random.split(key)
        x0 = self.base.sample(k0, num) if x0 is None else x0
        return solve_bridge(self.sampler if sampler is None else sampler, self, k1, x0, save_trajectory)

    def sample_conditional(self, key: PRNGKeyArray, x0: Array) -> Array:
        """One simulated ``x1`` per row of ``x0``."""
        return self.solve(key, x0.shape[0], x0=x0).y


class BridgeMatching(_AbstractSimulatedBridge):
    r"""Bridge matching on coupled pairs; with ``entropic_coupling(eps)`` this is SB-CFM.

    Loss: ``E_{t, (x0, x1) ~ coupling, x_t} |f(t, x_t) - x1|^2`` with ``t ~ U[0, t_max]``; samples solve
    ``dX = (f(t, X) - X)/(1 - t) dt + sqrt(eps) dW`` from ``x0 ~ base`` with the SDE ``sampler``.

    Args:
        net: endpoint network ``net(t, x) -> x1_hat`` (a ``genflow.nn`` MLP/ResMLP, or any callable).
        data_shape: ``(d,)``.
        eps: reference variance per unit time.
        base: the source (``N(0, I)`` by default); a batch's ``"x0"`` takes precedence in training.
        sampler: an SDE solver (``EulerMaruyama(100)`` by default).
        coupling: a ``genflow.couplings`` coupling of the base draws and the data; ``None`` is the independent one.
        t_max: upper end of the training times and the time at which the drift is frozen near t=1.

    References:
        Tong et al. "Simulation-free Schrödinger bridges via score and flow matching". AISTATS 2024.
        Shi, De Bortoli, Campbell, Doucet. "Diffusion Schrödinger Bridge Matching". NeurIPS 2023.
    """

    net: Callable
    base: AbstractDistribution
    sampler: AbstractSDESolver
    coupling: AbstractCoupling
    eps: float = eqx.field(static=True)
    data_shape: tuple[int, ...] = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    frozen_fields: ClassVar[tuple[str, ...]] = ("base", "coupling")

    def __init__(self, net, data_shape, eps=1.0, base=None, sampler=None, coupling=None, t_max=0.999):
        self.net = net
        self.eps = check_eps(eps, "BridgeMatching")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.sampler = EulerMaruyama(num_steps=100) if sampler is None else sampler
        if not isinstance(self.sampler, AbstractSDESolver):
            raise ValueError(
                f"BridgeMatching: sampler={self.sampler!r} is invalid: allowed are SDE solvers (EulerMaruyama, "
                "StochasticHeun, DiffraxSDE)"
            )
        if not 0.0 < t_max < 1.0:
            raise ValueError(f"BridgeMatching: t_max={t_max!r} is invalid: must lie in (0, 1)")
        self.t_max = float(t_max)
        self.coupling = IndependentCoupling() if coupling is None else coupling

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        x1, _ = split_batch(batch)
        k0, k_c, k_l = jax.random.split(key, 3)
        x0 = batch["x0"] if isinstance(batch, dict) and "x0" in batch else self.base.sample(k0, x1.shape[0])
        x0, x1, _ = self.coupling(k_c, x0, x1)
        return _endpoint_loss(self.net, k_l, x0, x1, self.eps, self.t_max)

    def drift_fn(self):
        return _DriftBridge(self.net, self.eps, self.t_max).drift_fn()


class DSBM(_AbstractSimulatedBridge):
    r"""Diffusion Schrödinger Bridge Matching: Iterative Markovian Fitting with a forward and a backward network.

    ``forward(t, x) ≈ E[X1 | X_t = x]`` (drift ``(f - x)/(1 - t)`` forwards in time) and
    ``backward(t, x) ≈ E[X0 | X_t = x]`` (drift ``(b - x)/t`` backwards in time). One IMF stage fits one network
    by bridge matching on pairs made by simulating the other (without gradients):

    - ``direction=Forward()``: ``x1 ~ data``, ``x0`` from the backward SDE started at ``x1``; fits ``forward``.
    - ``direction=Backward()``: ``x0 ~ base``, ``x1`` from the forward SDE started at ``x0``; fits ``backward``.
    - ``direction=Both()`` (the default): both losses at once, each on pairs from the other network's current state
      (the online variant; it needs no outer loop, so a Hydra run is one ``Trainer.fit``).

    ``first_stage=True`` uses the independent coupling ``p0 x p1`` instead of simulating (the first IMF step, whose
    Markovian projection starts the iteration), or ``coupling(key, x0, x1)`` on the independent pairs when one is
    given: IMF may start from any coupling of the two marginals, and one nearer the Schrödinger plan (minibatch
    entropic OT, :func:`entropic_coupling`) leaves fewer stages to go. :func:`fit_dsbm` runs the alternating
    outer loop with the shared ``Trainer``.

    References:
        Shi, De Bortoli, Campbell, Doucet. "Diffusion Schrödinger Bridge Matching". NeurIPS 2023.
        Peluchetti. "Diffusion bridge mixture transports, Schrödinger bridge problems and generative modeling".
        JMLR 2023.
    """

    forward: Callable
    backward: Callable
    base: AbstractDistribution
    sampler: AbstractSDESolver
    eps: float = eqx.field(static=True)
    data_shape: tuple[int, ...] = eqx.field(static=True)
    direction: imf.AbstractDirection
    first_stage: bool = eqx.field(static=True)
    num_sim_steps: int = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    coupling: AbstractCoupling
    frozen_fields: ClassVar[tuple[str, ...]] = ("base", "coupling")

    def __init__(
        self,
        net,
        data_shape,
        eps=1.0,
        base=None,
        sampler=None,
        backward_net=None,
        direction=None,
        first_stage=False,
        num_sim_steps=30,
        t_max=0.999,
        coupling=None,
    ):
        self.forward = net
        self.backward = net if backward_net is None else backward_net
        self.eps = check_eps(eps, "DSBM")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.sampler = EulerMaruyama(num_steps=100) if sampler is None else sampler
        if not isinstance(self.sampler, AbstractSDESolver):
            raise ValueError(f"DSBM: sampler={self.sampler!r} is invalid: allowed are SDE solvers")
        direction = imf.Both() if direction is None else direction
        if not isinstance(direction, imf.AbstractDirection):
            raise ValueError(f"DSBM: direction={direction!r} is invalid: allowed are Forward(), Backward(), Both()")
        self.direction, self.first_stage = direction, bool(first_stage)
        if isinstance(num_sim_steps, bool) or not isinstance(num_sim_steps, int) or num_sim_steps <= 0:
            raise ValueError(f"DSBM: num_sim_steps={num_sim_steps!r} is invalid: must be a positive integer")
        self.num_sim_steps = num_sim_steps
        if not 0.0 < t_max < 1.0:
            raise ValueError(f"DSBM: t_max={t_max!r} is invalid: must lie in (0, 1)")
        self.t_max = float(t_max)
        self.coupling = IndependentCoupling() if coupling is None else coupling

    def with_stage(self, direction: imf.AbstractDirection, first_stage: bool = False) -> DSBM:
        """The same networks set up for another IMF stage."""
        return DSBM(
            self.forward,
            self.data_shape,
            self.eps,
            self.base,
            self.sampler,
            self.backward,
            direction,
            first_stage,
            self.num_sim_steps,
            self.t_max,
            self.coupling,
        )

    def _simulate_forward(self, key, x0):
        net = jax.lax.stop_gradient(self.forward)
        drift = _DriftBridge(net, self.eps, self.t_max).drift_fn()
        sol = EulerMaruyama(num_steps=self.num_sim_steps).solve(drift, lambda t, y: jnp.sqrt(self.eps), x0, key=key)
        return sol.y

    def _simulate_backward(self, key, x1):
        net = jax.lax.stop_gradient(self.backward)
        t_min = 1.0 - self.t_max

        def drift(t, x):  # dX/dt along a decreasing grid: X_{t-h} = X_t + h (b - X_t) / t
            t = jnp.maximum(t, t_min)
            return -(jax.vmap(net, in_axes=(None, 0))(t, x) - x) / t

        ts = jnp.linspace(1.0, 0.0, self.num_sim_steps + 1, dtype=x1.dtype)
        solver = EulerMaruyama(num_steps=self.num_sim_steps)
        return solver.solve_grid(drift, lambda t, y: jnp.sqrt(self.eps), x1, ts, key=key).y

    def _backward_loss(self, key, x0, x1):
        # The time-reversed bridge: s = 1 - t runs from x1 to x0, and backward(t, x) is asked for x0.
        def net_rev(s, x):
            return self.backward(1.0 - s, x)

        return _endpoint_loss(net_rev, key, x1, x0, self.eps, self.t_max)

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        x1, _ = split_batch(batch)
        k0, k_sf, k_sb, k_f, k_b, k_c = jax.random.split(key, 6)
        x0 = batch["x0"] if isinstance(batch, dict) and "x0" in batch else self.base.sample(k0, x1.shape[0])
        if self.first_stage:
            x0, x1, _ = self.coupling(k_c, x0, x1)
        total = 0.0
        if isinstance(self.direction, imf.AbstractFitsForward):
            x0_pair = x0 if self.first_stage else self._simulate_backward(k_sb, x1)
            total = total + _endpoint_loss(self.forward, k_f, x0_pair, x1, self.eps, self.t_max)
        if isinstance(self.direction, imf.AbstractFitsBackward):
            x1_pair = x1 if self.first_stage else self._simulate_forward(k_sf, x0)
            total = total + self._backward_loss(k_b, x0, x1_pair)
        return total

    def drift_fn(self):
        return _DriftBridge(self.forward, self.eps, self.t_max).drift_fn()


def fit_dsbm(
    model: DSBM,
    data: Any,
    trainer: Any,
    *,
    key: PRNGKeyArray,
    num_iterations: int = 4,
    callback: Callable[[int, imf.AbstractDirection, DSBM], None] | None = None,
) -> DSBM:
    """Alternating IMF with the shared ``Trainer``: ..., backward, forward, ending on a forward stage.

    Stage 1 fits its network (``backward`` for an even count) on the independent coupling; every later stage fits
    one network on pairs simulated by the other; the last stage is a forward one, so the returned model's
    ``forward`` network is the newest. Each stage is a full ``trainer.fit`` (``trainer.num_steps`` steps) from the
    previous stage's EMA networks.
    ``callback(stage, direction, model)`` runs after every stage (``stage`` counts from 1, ``direction`` is
    ``Forward()`` or ``Backward()``, ``model`` is set up for sampling): IMF can drift as well as converge, so its
    progress is worth watching.
    """
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, int) or num_iterations < 2:
        raise ValueError(f"fit_dsbm: num_iterations={num_iterations!r} is invalid: must be an integer >= 2")
    keys = jax.random.split(key, num_iterations)
    # An even count ends on a forward stage.
    directions = [imf.Backward() if (num_iterations - i) % 2 == 0 else imf.Forward() for i in range(num_iterations)]
    for i, (direction, k) in enumerate(zip(directions, keys, strict=True)):
        model = trainer.fit(model.with_stage(direction, first_stage=(i == 0)), data, key=k).ema_model
        if callback is not None:
            callback(i + 1, direction, model.with_stage(imf.Both()))
    return model.with_stage(imf.Both())
