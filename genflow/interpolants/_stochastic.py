"""Stochastic interpolant model: learn the velocity b and the denoiser eta, sample by ODE or SDE.

Convention: t=0 is the base x0 ~ rho0, t=1 the target x1 ~ rho1, ``x_t = alpha x0 + beta x1 + gamma z``.

    b(t, x)   = E[alpha' x0 + beta' x1 + gamma' z | x_t = x]      (velocity)
    eta(t, x) = E[z | x_t = x],    s(t, x) = -eta(t, x) / gamma(t)  (denoiser and score)
    L_b   = E[1/2 |b_hat(t, x_t)|^2 - (dI/dt + gamma' z) . b_hat(t, x_t)]
    L_eta = E[1/2 |eta_hat(t, x_t)|^2 - z . eta_hat(t, x_t)]

Both losses average over the antithetic pair (z, -z), which cancels the ``gamma' z`` term's blow-up where gamma'
diverges (``gamma = sqrt(a t (1 - t))``). Samplers:

    ODE:          dX = b dt,                                   t: 0 -> 1
    forward SDE:  dX = (b + eps s) dt + sqrt(2 eps) dW,        t: t_min -> 1 - t_min
    backward SDE: dY = (b - eps s) dt + sqrt(2 eps) dW,        t: 1 - t_min -> t_min (likelihood estimator)

The SDEs stop ``t_min`` short of the ends because ``s = -eta / gamma`` is 0/0 where gamma vanishes.

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions", 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import split_batch
from genflow._checks import check_probability
from genflow.couplings import AbstractCoupling, IndependentCoupling
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.interpolants._interpolants import AbstractInterpolant, LinearInterpolant, NoGamma, SqrtGamma
from genflow.interpolants._parametrizations import AbstractFieldParametrization, VelocityDenoiser, VelocityScore
from genflow.nn import ConditionDropout, guided
from genflow.solvers import (
    AbstractODESolver,
    AbstractPushforwardModel,
    AbstractSDESolver,
    Euler,
    EulerMaruyama,
    ODEPushforward,
    Solution,
    call_field,
    divergence_exact,
)


def _eps_at(eps: float | Callable, t) -> Array | float:
    return eps(t) if callable(eps) else eps


class LinearEps(eqx.Module):
    """A diffusion-coefficient schedule for the SDE samplers, ``eps(t) = start (1 - t) + end t`` (both >= 0).

    References:
        Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants", 2023, Sec. 2.3 (eps(t) may vary in time).
    """

    start: float = eqx.field(static=True)
    end: float = eqx.field(static=True)

    def __init__(self, start: float = 1.0, end: float = 0.0):
        if start < 0 or end < 0:
            raise ValueError(f"LinearEps: start={start!r} and end={end!r} must be >= 0")
        self.start, self.end = float(start), float(end)

    def __call__(self, t):
        return self.start * (1.0 - t) + self.end * t


def _sqnorm(x: Array) -> Array:
    return jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)


class StochasticInterpolant(AbstractPushforwardModel):
    """Stochastic interpolant with a learned velocity ``b`` and (optionally) a learned denoiser ``eta``.

    Two parametrisations of the fields (strategy modules, see :mod:`genflow.interpolants._parametrizations`):

    - :class:`VelocityDenoiser` (default): ``net`` learns ``b`` with ``L_b`` and ``denoiser_net`` learns ``eta``
      with ``L_eta``.
    - :class:`VelocityScore`: ``net`` learns ``v = E[alpha' x0 + beta' x1 | x_t]`` (b without the noise term) with
      ``L_v = E[1/2 |v_hat|^2 - dI/dt . v_hat]``, and ``denoiser_net`` learns the score with
      ``L_s = E[1/2 |s_hat|^2 + z . s_hat / gamma]``; then ``b = v - gamma gamma' s``. Both are finite at the ends
      where ``gamma' `` diverges, and the antithetic pair cancels the ``1/gamma`` in ``L_s``.

    Conditional generation: fields take ``cond`` (labels, vectors, or the condition ``xi`` a data-dependent
    coupling returns). With ``label_dropout > 0`` the condition is replaced by the null one at that rate during
    training, and sampling with ``guidance=w`` uses the classifier-free-guided fields ``f_null + w (f_c - f_null)``.

    Args:
        net: the velocity ``b(t, x, cond)`` (or ``v``) per example, a network or an analytic callable.
        data_shape: shape of one example.
        denoiser_net: per-example ``eta(t, x, cond)`` (or ``s``); needed for the score, hence for SDE sampling.
        interpolant: the path; ``LinearInterpolant(SqrtGamma(1.0))`` by default.
        base: rho0 (``N(0, I)`` by default).
        coupling: how base and data samples are paired (independent by default).
        sampler: default solver of ``sample``: an ODE solver (probability flow) or an SDE solver (forward SDE).
        eps: diffusion coefficient of the SDE samplers, a number or a schedule ``eps(t) >= 0`` (e.g.
            :class:`LinearEps`); ``eps = 0`` reduces them to the ODE.
        t_min: how far the SDEs stop short of t=0 and t=1.
        likelihood_solver: ODE solver for ``log_prob``.
        parametrization: ``VelocityDenoiser()`` (b and eta) or ``VelocityScore()`` (v and s).
        label_dropout: probability of training on the null condition (classifier-free guidance).
        null_label: the null class label (the network's ``num_classes``) for integer conditions.
        guidance: default guidance weight of ``sample`` (1: plain conditional sampling).
    """

    velocity_net: Callable
    denoiser_net: Callable | None
    interpolant: AbstractInterpolant
    base: AbstractDistribution
    coupling: AbstractCoupling
    sampler: AbstractODESolver | AbstractSDESolver
    likelihood_solver: AbstractODESolver
    data_shape: tuple[int, ...] = eqx.field(static=True)
    eps: float | Callable = eqx.field(static=True)
    t_min: float = eqx.field(static=True)
    parametrization: AbstractFieldParametrization
    condition_dropout: ConditionDropout
    guidance: float = eqx.field(static=True)
    frozen_fields: ClassVar[tuple[str, ...]] = ("base",)

    def __init__(
        self,
        net,
        data_shape,
        denoiser_net=None,
        interpolant=None,
        base=None,
        coupling=None,
        sampler=None,
        eps: float | Callable = 1.0,
        t_min: float = 1e-3,
        likelihood_solver=None,
        parametrization: AbstractFieldParametrization | None = None,
        label_dropout: float = 0.0,
        null_label: int | None = None,
        guidance: float = 1.0,
    ):
        self.velocity_net, self.denoiser_net = net, denoiser_net
        self.data_shape = tuple(int(s) for s in data_shape)
        self.interpolant = LinearInterpolant(SqrtGamma(1.0)) if interpolant is None else interpolant
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.coupling = IndependentCoupling() if coupling is None else coupling
        self.sampler = Euler(num_steps=100) if sampler is None else sampler
        self.likelihood_solver = self.sampler if likelihood_solver is None else likelihood_solver
        self.eps, self.t_min = (eps if callable(eps) else float(eps)), float(t_min)
        self.parametrization = VelocityDenoiser() if parametrization is None else parametrization
        check_probability("label_dropout", label_dropout)
        self.condition_dropout, self.guidance = ConditionDropout(label_dropout, null_label), float(guidance)
        self._check()

    def _check(self) -> None:
        if not isinstance(self.likelihood_solver, AbstractODESolver):
            raise ValueError("likelihood_solver must be an ODE solver (pass one when sampler is an SDE solver)")
        if (not callable(self.eps) and self.eps < 0) or not 0 < self.t_min < 0.5:
            raise ValueError(f"eps={self.eps!r} must be >= 0 and t_min={self.t_min!r} must lie in (0, 0.5)")
        if tuple(self.base.event_shape) != self.data_shape:
            raise ValueError(f"base event_shape {self.base.event_shape} does not match data_shape {self.data_shape}")
        if not isinstance(self.parametrization, AbstractFieldParametrization):
            raise ValueError(
                f"parametrization={self.parametrization!r} is invalid; allowed: VelocityDenoiser() or VelocityScore()"
            )
        no_gamma = isinstance(self.interpolant.gamma, NoGamma)
        if isinstance(self.parametrization, VelocityScore) and (self.denoiser_net is None or no_gamma):
            raise ValueError(
                "parametrization=VelocityScore() needs a denoiser_net (the score) and an interpolant with gamma"
            )

    # -- fields ------------------------------------------------------------------------------------------------
    def velocity(self, t, x: Array, cond: Any = None) -> Array:
        """``b(t, x)`` for one example (restricted to the coordinates the coupling leaves free)."""
        second = lambda: call_field(self.denoiser_net, t, x, cond)
        b = self.parametrization.velocity(self.interpolant, t, call_field(self.velocity_net, t, x, cond), second)
        return self.coupling.constrain(b, cond)

    def _second(self, t, x: Array, cond: Any) -> Array:
        if self.denoiser_net is None:
            raise ValueError("this model has no denoiser_net: the score (and SDE sampling) needs one")
        return call_field(self.denoiser_net, t, x, cond)

    def denoiser(self, t, x: Array, cond: Any = None) -> Array:
        """``eta(t, x) = E[z | x_t = x]`` for one example."""
        return self.parametrization.denoiser(self.interpolant, t, self._second(t, x, cond))

    def score(self, t, x: Array, cond: Any = None) -> Array:
        """``s(t, x) = -eta(t, x) / gamma(t)`` for one example (0 < t < 1)."""
        return self.parametrization.score(self.interpolant, t, self._second(t, x, cond))

    def pushforward(self, guidance: float = 1.0) -> ODEPushforward:
        """The base pushed forward by the (guided) probability-flow ODE ``dX = b dt``."""
        return ODEPushforward(guided(self.velocity, guidance), self.base, self.sampler, self.likelihood_solver)

    def _batched(self, fn, cond, guidance: float = 1.0):
        fn = guided(fn, guidance)
        axis = None if cond is None else 0
        return lambda t, x: jax.vmap(fn, in_axes=(None, 0, axis))(t, x, cond)

    # -- training ----------------------------------------------------------------------------------------------
    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """``L_b + L_eta`` (or ``L_v + L_s``), each averaged over the antithetic pair (z, -z)."""
        x1, cond = split_batch(batch)
        n = x1.shape[0]
        k0, kc, kt, kz = jax.random.split(key, 4)
        x0 = batch["x0"] if isinstance(batch, dict) and "x0" in batch else self.base.sample(k0, n)
        x0, x1, cond = self.coupling(kc, x0, x1, cond)
        cond = self.condition_dropout(jax.random.fold_in(key, 1), cond)
        t = jax.random.uniform(kt, (n,), x1.dtype)
        z = jax.random.normal(kz, x1.shape, x1.dtype)
        per_example = jax.vmap(self._example_loss, in_axes=(0, 0, 0, 0, None if cond is None else 0))
        return jnp.mean(per_example(t, x0, x1, z, cond))

    def _example_loss(self, t, x0, x1, z, cond) -> Scalar:
        itp = self.interpolant
        mean, dI = itp.interpolate(t, x0, x1), itp.time_derivative(t, x0, x1)
        g, dg = itp.gamma(t), itp.dgamma(t)
        param = self.parametrization
        total = 0.0
        for sign in (1.0, -1.0):
            xt = mean + sign * g * z
            out = call_field(self.velocity_net, t, xt, cond)
            target = param.velocity_target(dI, dg, sign, z)
            total = total + 0.5 * jnp.sum(out**2) - jnp.sum(target * out)
            if self.denoiser_net is not None:
                out = call_field(self.denoiser_net, t, xt, cond)
                total = total + 0.5 * jnp.sum(out**2) - sign * param.second_cross(z, out, g)
        return total / 2

    # -- sampling ----------------------------------------------------------------------------------------------
    @eqx.filter_jit
    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        sampler: AbstractODESolver | AbstractSDESolver | None = None,
        cond: Any = None,
        x0: Array | None = None,
        eps: float | None = None,
        guidance: float | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Transport base samples (or ``x0``) to the target by the ODE, or by the forward SDE for an SDE solver.

        ``cond`` is a batch of conditions and ``guidance`` the classifier-free-guidance weight (default
        ``self.guidance``).
        """
        sampler = self.sampler if sampler is None else sampler
        w = self.guidance if guidance is None else float(guidance)
        k0, kw = jax.random.split(key)
        x0 = self.base.sample(k0, num) if x0 is None else x0
        if isinstance(sampler, AbstractODESolver):
            flow = self.pushforward(w)
            return flow.solve(None, num, sampler=sampler, cond=cond, x0=x0, save_trajectory=save_trajectory)
        drift, noise = self._sde(cond, w, self.eps if eps is None else eps, sign=1.0)
        return sampler.solve(drift, noise, x0, self.t_min, 1.0 - self.t_min, key=kw, save_trajectory=save_trajectory)

    @eqx.filter_jit
    def encode(
        self,
        key: PRNGKeyArray,
        x: Float[Array, "num ..."],
        *,
        sampler: AbstractODESolver | AbstractSDESolver | None = None,
        cond: Any = None,
        eps: float | Callable | None = None,
        guidance: float | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Carry data ``x`` back to the base: the ODE from t=1 to 0, or for an SDE solver the backward SDE
        ``dY = (b - eps s) dt + sqrt(2 eps) dW`` from ``1 - t_min`` to ``t_min``."""
        sampler = self.sampler if sampler is None else sampler
        w = self.guidance if guidance is None else float(guidance)
        if isinstance(sampler, AbstractODESolver):
            return self.pushforward(w).encode(x, sampler=sampler, cond=cond, save_trajectory=save_trajectory)
        drift, noise = self._sde(cond, w, self.eps if eps is None else eps, sign=-1.0)
        return sampler.solve(drift, noise, x, 1.0 - self.t_min, self.t_min, key=key, save_trajectory=save_trajectory)

    def _sde(self, cond, w: float, eps, sign: float):
        """Drift ``b + sign eps(t) s`` and noise ``sqrt(2 eps(t))`` of the forward (sign +1) or backward (-1) SDE,
        both restricted to the coordinates the coupling leaves free."""
        b, s = self._batched(self.velocity, cond, w), self._batched(self.score, cond, w)
        free = self._batched(lambda t, v, c: self.coupling.constrain(v, c), cond)
        drift = lambda t, x: b(t, x) + sign * _eps_at(eps, t) * free(t, s(t, x))
        noise = lambda t, x: free(t, jnp.full_like(x, jnp.sqrt(2.0 * _eps_at(eps, t))))
        return drift, noise

    @eqx.filter_jit
    def solve_like(self, key: PRNGKeyArray, batch: Any, **opts: Any) -> Solution:
        """Samples that correspond to a data batch: its labels, or the condition ``xi`` and the start
        ``x0 ~ rho0(. | x1)`` of a data-dependent coupling (an in-painting mask, a low-resolution image)."""
        x1, cond = split_batch(batch)
        k0, kc, ks = jax.random.split(key, 3)
        x0, cond = self.coupling.sampling_pair(kc, self.base.sample(k0, x1.shape[0]), x1, cond)
        return self.solve(ks, x1.shape[0], x0=x0, cond=cond, **opts)

    # -- likelihood --------------------------------------------------------------------------------------------
    @eqx.filter_jit
    def log_prob_sde(
        self,
        x: Float[Array, "num ..."],
        *,
        key: PRNGKeyArray,
        solver: AbstractSDESolver | None = None,
        eps: float | Callable | None = None,
    ) -> Float[Array, " num"]:
        """One-path estimate of ``log rho1(x)`` along the backward SDE (average several keys to reduce variance):

            log rho1(x) = E[ log rho0(Y_0) - ∫_0^1 (div b_F + eps |s|^2)(t, Y_t) dt ],   b_F = b + eps s,

        with ``dY = (b - eps s) dt + sqrt(2 eps) dW`` run from ``Y_1 = x`` down to t=0 (here ``1 - t_min`` to
        ``t_min``; the ends are taken as those points).
        """
        solver = EulerMaruyama(num_steps=200) if solver is None else solver
        eps = self.eps if eps is None else eps
        n, shape = x.shape[0], x.shape[1:]
        b_f = lambda t, y: self.velocity(t, y) + _eps_at(eps, t) * self.score(t, y)

        def drift(t, state):
            y = state[:, :-1].reshape((n, *shape))
            s = jax.vmap(self.score, in_axes=(None, 0))(t, y)
            dy = jax.vmap(self.velocity, in_axes=(None, 0))(t, y) - _eps_at(eps, t) * s
            dl = jax.vmap(lambda yi: divergence_exact(b_f, t, yi))(y) + _eps_at(eps, t) * _sqnorm(s)
            return jnp.concatenate([dy.reshape(n, -1), dl[:, None]], axis=1)

        d = x[0].size
        noise = lambda t, state: jnp.concatenate([jnp.full((d,), jnp.sqrt(2.0 * _eps_at(eps, t))), jnp.zeros(1)])
        state0 = jnp.concatenate([x.reshape(n, -1), jnp.zeros((n, 1), x.dtype)], axis=1)
        sol = solver.solve(drift, noise, state0, 1.0 - self.t_min, self.t_min, key=key)
        y0 = sol.y[:, :-1].reshape(x.shape)
        return jax.vmap(self.base.log_prob)(y0) + sol.y[:, -1]
