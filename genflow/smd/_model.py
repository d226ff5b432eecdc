"""SMDModel: a diffusion model whose backward kernel is a continuous mixture over a latent (soft mixture denoising).

Convention (the diffusion family's): t=0 data, t_max noise, ``x_t = alpha_t x0 + sigma_t eps``. The denoiser
``F(t, x_t, eta)`` (a :class:`genflow.nn.MixtureDenoiser`) predicts, through the diffusion parametrization, a clean
estimate ``x0_hat(x_t, t, eta)`` that depends on the mixing noise ``eta ~ N(0, I)``. Plugging it into the Gaussian
posterior of the forward process gives the backward kernel from t to any s < t,

    p(x_s | x_t) = E_eta N(x_s; mu(x_t, x0_hat(x_t, t, eta)), sigma_tilde^2 I),
    mu(x_t, x0) = alpha_s (r x_t / alpha_t + (1 - r) x0),   sigma_tilde^2 = sigma_s^2 (1 - r),
    r = alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2),

a continuous Gaussian mixture (Li et al. 2024, eq. 9). If ``x0_hat(x_t, t, eta)`` with random eta is distributed
as the true posterior p(x0 | x_t), this kernel is the exact reverse kernel q(x_s | x_t) for every s, so a model
trained on the chain can be sampled with any number of steps. Sampling draws a fresh eta at every step.

Objectives (strategy modules):
    ``RegressionObjective()``   the official one: the diffusion regression ``E |target - F(t, x_t, eta)|^2`` with
                                one eta per example (Li et al. 2024, eq. 12, up to weights). Its minimiser is
                                ``E[target | x_t]``, which does not depend on eta: nothing makes the latent matter.
    ``MixtureObjective(M)``     the mixture likelihood
                                ``-log (1/M) sum_m N(x_s; mu(x_t, x0_hat(eta_m)), sigma_tilde^2 I)``
                                for ``x_s ~ q(x_s | x_t, x0)``, M eta draws, t and s < t drawn uniformly. By Jensen its
                                mean upper-bounds the kernel's negative log-likelihood, tighter as M grows; it is
                                minimised by ``x0_hat(eta) ~ p(x0 | x_t)`` (for M -> infinity), for every s at once.

The latent is ``GaussianLatent()`` (eta ~ N(0, I)) or ``ZeroLatent()``, which fixes eta = 0 (the capacity-matched
ablation: the same network, a deterministic latent).

References:
    Li, van Breugel, van der Schaar, "Soft Mixture Denoising: Beyond the Expressive Bottleneck of Diffusion Models",
    ICLR 2024.
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Burda, Grosse, Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (the log-mean-exp bound).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractSolvableModel, split_batch
from genflow._checks import check_instance, check_positive_int
from genflow.diffusion import (
    AbstractDiffusionSampler,
    Ancestral,
    DiffusionModel,
    DiscreteSchedule,
    denoising_loss,
    gaussian_posterior,
    make_sampler,
)
from genflow.solvers import Solution


class AbstractLatent(eqx.Module):
    """The distribution of the mixing noise eta."""

    @abc.abstractmethod
    def draw(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype) -> Array:
        """eta of shape ``shape`` (the last axis is ``eta_dim``)."""


class GaussianLatent(AbstractLatent):
    """``eta ~ N(0, I)``: the mixture of Li et al. (2024)."""

    def draw(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype)


class ZeroLatent(AbstractLatent):
    """``eta = 0``: the ablation with the same network and a deterministic latent (no mixture)."""

    def draw(self, key, shape, dtype):
        return jnp.zeros(shape, dtype)


class AbstractObjective(eqx.Module):
    """The training objective of :class:`SMDModel`."""

    @abc.abstractmethod
    def loss(self, model: SMDModel, key: PRNGKeyArray, x0: Float[Array, "num ..."]) -> Scalar:
        """The objective on a minibatch."""


class RegressionObjective(AbstractObjective):
    """The official objective: the diffusion regression with one eta per example (Li et al. 2024, eq. 12), under
    the model's weighting and time sampler."""

    def loss(self, model, key, x0):
        k_eta, k_loss = jax.random.split(key)
        d = model.diffusion
        eta = model.draw_eta(k_eta, x0.shape[:1], x0.dtype)
        value, _ = denoising_loss(k_loss, d.net, x0, eta, d.schedule, d.parametrization, d.weighting, d.time_sampler)
        return value


class MixtureObjective(AbstractObjective):
    """The mixture likelihood of the kernel, a log-mean-exp over ``num_latent_draws`` eta draws (see
    :meth:`SMDModel.mixture_loss`).

    Args:
        num_latent_draws: M, the eta draws per example.
    """

    num_latent_draws: int = eqx.field(static=True, default=8)

    def __check_init__(self):
        check_positive_int("num_latent_draws", self.num_latent_draws)

    def loss(self, model, key, x0):
        return model.mixture_loss(jax.random.split(key)[1], x0, self.num_latent_draws)


def _time_bits(t) -> Array:
    """The bits of ``t`` as float32: distinct step times give distinct keys when folded in."""
    return jax.lax.bitcast_convert_type(jnp.asarray(t, jnp.float32).reshape(()), jnp.uint32)


class SMDModel(AbstractSolvableModel):
    """Soft mixture denoising on top of :class:`genflow.diffusion.DiffusionModel`.

    Args:
        net: a :class:`genflow.nn.MixtureDenoiser` (or any ``net(t, x, eta)`` with an ``eta_dim`` attribute).
        data_shape: shape of one example.
        schedule: the noise schedule, as in ``DiffusionModel``.
        objective: ``RegressionObjective()`` (official, the default) or ``MixtureObjective(num_latent_draws)``
            (log-mean-exp kernel likelihood).
        latent: ``GaussianLatent()`` (eta ~ N(0, I), the default) or ``ZeroLatent()`` (eta = 0: the ablation).
        diffusion_kwargs: the rest of ``DiffusionModel``'s arguments (``parametrization``, ``weighting``,
            ``time_sampler``: these act on the regression objective); ``sampler`` is a diffusion sampler,
            ``Ancestral()`` (DDPM) by default.
    """

    diffusion: DiffusionModel
    objective: AbstractObjective
    latent: AbstractLatent
    eta_dim: int = eqx.field(static=True)

    def __init__(
        self,
        net: Callable,
        data_shape,
        schedule=None,
        *,
        objective: AbstractObjective = RegressionObjective(),
        latent: AbstractLatent = GaussianLatent(),
        **diffusion_kwargs,
    ):
        check_instance("objective", objective, AbstractObjective, "RegressionObjective(), MixtureObjective(M)")
        check_instance("latent", latent, AbstractLatent, "GaussianLatent(), ZeroLatent()")
        eta_dim = getattr(net, "eta_dim", None)
        if not isinstance(eta_dim, int) or eta_dim < 1:
            raise ValueError(f"net={type(net).__name__} is invalid: SMD needs a net(t, x, eta) with an eta_dim")
        if diffusion_kwargs.get("sampler") is None:
            diffusion_kwargs["sampler"] = Ancestral()
        self.diffusion = DiffusionModel(net, data_shape, schedule, **diffusion_kwargs)
        self.objective, self.latent, self.eta_dim = objective, latent, eta_dim

    @property
    def schedule(self):
        return self.diffusion.schedule

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.diffusion.data_shape

    # -- the latent ----------------------------------------------------------------------------------------------
    def draw_eta(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None) -> Array:
        """Mixing noise of shape ``(*shape, eta_dim)``: N(0, I), or zeros for the ablation."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return self.latent.draw(key, (*shape, self.eta_dim), dtype)

    def predict(self, t, x: Array, eta: Array) -> tuple[Array, Array]:
        """``(x0_hat, eps_hat)`` for one example and one eta."""
        return self.diffusion.predict(t, x, eta)

    def batched_score(self, key: PRNGKeyArray) -> Callable[[Any, Array], Array]:
        """The score on a batch with a fresh eta per example at every time: ``(t, x) -> -eps_hat(eta) / sigma``.

        eta is drawn from ``key`` folded with the bits of ``t``, so each step of a sampler (one time each) sees new
        draws while the samplers themselves stay the diffusion family's, unchanged.
        """

        def score(t, x):
            eta = self.draw_eta(jax.random.fold_in(key, _time_bits(t)), x.shape[:1], x.dtype)
            return jax.vmap(self.diffusion.score, in_axes=(None, 0, 0))(t, x, eta)

        return score

    # -- training ------------------------------------------------------------------------------------------------
    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """The regression or mixture objective on a minibatch (unconditional: a condition is an error)."""
        x0, cond = split_batch(batch)
        if cond is not None:
            raise ValueError("SMDModel is unconditional: the batch must not carry a condition")
        return self.objective.loss(self, key, x0)

    def time_pairs(self, key: PRNGKeyArray, num: int, dtype) -> tuple[Array, Array]:
        """``(t, s)`` with ``s < t``: chain steps ``t = n/N``, ``s = m/N``, ``1 <= m < n``, or uniform times."""
        k_t, k_s = jax.random.split(key)
        sched = self.schedule
        if isinstance(sched, DiscreteSchedule):
            n_steps = sched.num_timesteps
            if n_steps < 2:
                raise ValueError("the mixture objective needs a chain of at least 2 steps (num_timesteps >= 2)")
            n = jax.random.randint(k_t, (num,), 2, n_steps + 1)
            m = jax.random.randint(k_s, (num,), 1, n)  # s = 0 is excluded: there the posterior variance vanishes
            return (n / n_steps).astype(dtype), (m / n_steps).astype(dtype)
        t = jax.random.uniform(k_t, (num,), dtype, sched.t_min, sched.t_max)
        s = sched.t_min + jax.random.uniform(k_s, (num,), dtype) * (t - sched.t_min)
        return t, s

    def kernel_log_lik(
        self, key: PRNGKeyArray, t, s, x_t: Array, x_s: Array, num_draws: int
    ) -> tuple[Float[Array, ""], Float[Array, ""]]:
        r"""For one example: the M-draw estimate ``log (1/M) sum_m N(x_s; mu_m, v I)`` and the variance ``v``.

        ``mu_m = mu(x_t, x0_hat(x_t, t, eta_m))`` (the posterior mean from t to s). By Jensen, ``E[-estimate]``
        upper-bounds ``-log p(x_s | x_t)`` and decreases to it as ``num_draws`` grows.
        """
        eta = self.draw_eta(key, (num_draws,), x_t.dtype)
        x0_hat = jax.vmap(lambda e: self.predict(t, x_t, e)[0])(eta)
        mu, var = gaussian_posterior(self.schedule, t, s, x_t[None], x0_hat)
        sq = jnp.sum((x_s[None] - mu).reshape(num_draws, -1) ** 2, axis=-1)
        dim = x_t.size
        log_n = -0.5 * sq / var - 0.5 * dim * jnp.log(2 * jnp.pi * var)
        return jax.scipy.special.logsumexp(log_n) - math.log(num_draws), var

    def _kernel_batch(self, key: PRNGKeyArray, x0: Array, t: Array, s: Array, num_draws: int):
        n = x0.shape[0]
        k_eps, k_xs, k_eta = jax.random.split(key, 3)
        tb = t.reshape((n,) + (1,) * (x0.ndim - 1))
        sb = s.reshape(tb.shape)
        sched = self.schedule
        x_t = sched.alpha(tb) * x0 + sched.sigma(tb) * jax.random.normal(k_eps, x0.shape, x0.dtype)
        mean, var = gaussian_posterior(sched, tb, sb, x_t, x0)
        x_s = mean + jnp.sqrt(var) * jax.random.normal(k_xs, x0.shape, x0.dtype)
        keys = jax.random.split(k_eta, n)
        loglik, v = jax.vmap(self.kernel_log_lik, in_axes=(0, 0, 0, 0, 0, None))(keys, t, s, x_t, x_s, num_draws)
        return loglik, v, x_t, x_s

    def mixture_loss(self, key: PRNGKeyArray, x0: Float[Array, "num ..."], num_draws: int) -> Scalar:
        r"""The mixture-likelihood objective (mean over the minibatch).

        Per example ``-log (1/M) sum_m N(x_s; mu_m, v I)``, with the constant ``D/2 log(2 pi v)`` dropped and the
        rest multiplied by ``2 v alpha_t^2 / (c^2 sigma_t^2 k^2)``, ``c = alpha_s (1 - r)`` the weight of x0 in the
        posterior mean and ``k`` the parametrization's ``eps_factor``: with all draws equal this is the unweighted
        regression error of the network's output plus a constant, so the scale is the regression's at every
        (t, s) (x0 errors for ``DataPrediction()``, eps errors for ``EpsilonPrediction()``). A positive weight per
        (t, s) leaves each kernel's minimiser unchanged.
        """
        t, s = self.time_pairs(jax.random.fold_in(key, 1), x0.shape[0], x0.dtype)
        loglik, var, _, _ = self._kernel_batch(key, x0, t, s, num_draws)
        sched = self.schedule
        dim = math.prod(x0.shape[1:])
        nll = -loglik - 0.5 * dim * jnp.log(2 * jnp.pi * var)  # the quadratic part only
        r = jnp.exp(sched.log_snr(t) - sched.log_snr(s))
        c = sched.alpha(s) * (1.0 - r)
        k = self.diffusion.parametrization.eps_factor(sched.alpha(t), sched.sigma(t))
        weight = 2.0 * var * sched.alpha(t) ** 2 / (c**2 * sched.sigma(t) ** 2 * k**2)
        return jnp.mean(jax.lax.stop_gradient(weight) * nll)

    @eqx.filter_jit
    def kernel_nll(
        self, key: PRNGKeyArray, x0: Float[Array, "num ..."], t, s, num_draws: int = 64
    ) -> Float[Array, " num"]:
        """Per example, the M-draw upper bound on ``-log p(x_s | x_t)`` at times ``t > s`` (scalars), in nats, with
        ``x_t ~ q(x_t | x0)`` and ``x_s ~ q(x_s | x_t, x0)``. Its mean over data estimates the kernel's
        cross-entropy against the true reverse kernel (plus a bias that shrinks with ``num_draws``)."""
        n = x0.shape[0]
        tt = jnp.full((n,), t, x0.dtype)
        ss = jnp.full((n,), s, x0.dtype)
        loglik, _, _, _ = self._kernel_batch(key, x0, tt, ss, num_draws)
        return -loglik

    # -- sampling ------------------------------------------------------------------------------------------------
    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        sampler: Any = None,
        x_T: Array | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Draw ``num`` samples with the default or given diffusion sampler, a fresh eta at every step."""
        sampler = self.diffusion.sampler if sampler is None else make_sampler(sampler)
        return self._solve(key, num, sampler, x_T, save_trajectory)

    @eqx.filter_jit
    def _solve(self, key, num, sampler: AbstractDiffusionSampler, x_T, save_trajectory) -> Solution:
        k_prior, k_eta, k_sample = jax.random.split(key, 3)
        if x_T is None:
            x_T = self.schedule.prior_std() * jax.random.normal(k_prior, (num, *self.data_shape))
        return sampler.sample(
            self.batched_score(k_eta), self.schedule, x_T, key=k_sample, save_trajectory=save_trajectory
        )

    @eqx.filter_jit
    def x0_draws(self, key: PRNGKeyArray, t, x: Float[Array, "num ..."], num_draws: int) -> Array:
        """``x0_hat(x_t, t, eta_m)`` for ``num_draws`` etas per example, shape ``(num, num_draws, ...)``: how much the
        prediction moves with eta (zero spread: the latent is ignored)."""
        eta = self.draw_eta(key, (x.shape[0], num_draws), x.dtype)
        one = lambda xi, ei: jax.vmap(lambda e: self.predict(t, xi, e)[0])(ei)
        return jax.vmap(one)(x, eta)
