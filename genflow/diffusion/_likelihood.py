"""Diffusion likelihoods: the probability-flow ODE (exact change of variables) and the discrete DDPM bound.

Probability flow (t=0 data): the ODE ``dx/dt = f(t) x - g(t)^2 s(t, x) / 2`` carries p_{t_data} to p_{t_max}, so

    log p_{t_data}(x) = log p_T(x_T) - ∫_{t_data}^{t_max} div(f x - g^2 s / 2)(t, x_t) dt,

computed by ``genflow.solvers.ode_log_prob`` (shared with the other families) with an exact or Hutchinson divergence.
The prior term ``log p_T(x_T)`` is reported separately from the divergence integral.

Discrete DDPM (Ho et al. 2020, eq. 5), nats per example:

    -log p(x0) <= KL(q(x_N | x0) || p(x_N)) + sum_{n=2}^N KL(q(x_{n-1} | x_n, x0) || p(x_{n-1} | x_n))
                  - log p(x0 | x1),

with ``p(x_{n-1} | x_n) = N(mu(x_n, x0_hat), sigma_n^2 I)``: ``mu`` is the true posterior mean with the model's
denoised estimate, ``sigma_n^2`` is the posterior variance ``beta_tilde_n`` or ``beta_n`` (``PosteriorVariance()``
or ``BetaVariance()``), and the decoder ``p(x0 | x1)`` a Gaussian density or its discretization.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021, appendix D.
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, sections 3.2-3.3.
    Grathwohl et al., "FFJORD", ICLR 2019 (Hutchinson's estimator).
    Theis, van den Oord, Bethge, "A note on the evaluation of generative models", ICLR 2016 (dequantization).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Float, PRNGKeyArray

from genflow._checks import check_instance
from genflow.diffusion._samplers import denoise, probability_flow_drift
from genflow.diffusion._schedules import AbstractSchedule, DiscreteSchedule
from genflow.diffusion._variances import VARIANCE_CHOICES, AbstractReverseVariance, PosteriorVariance
from genflow.solvers import AbstractDivergence, AbstractODESolver, DiffraxODE, Exact, ode_log_prob


class LikelihoodTerms(eqx.Module):
    """``log_prob = prior + delta`` per example, and the solver's NFE.

    ``prior`` is ``log p_T(x_T)`` at the ODE's end and ``delta = -∫ div`` the change-of-variables term.
    """

    log_prob: Float[Array, " num"]
    prior: Float[Array, " num"]
    delta: Float[Array, " num"]
    nfe: Any


def gaussian_prior_log_prob(std: Any) -> Callable[[Array], Array]:
    """Per-example ``log N(x; 0, std^2 I)``."""

    def log_prob(x):
        z = x / std
        return -0.5 * jnp.sum(z**2) - x.size * (jnp.log(std) + 0.5 * math.log(2 * math.pi))

    return log_prob


def pf_ode_log_prob(
    score: Callable[[Any, Array], Array],
    schedule: AbstractSchedule,
    x: Float[Array, "num ..."],
    *,
    solver: AbstractODESolver | None = None,
    prior_log_prob: Callable[[Array], Array] | None = None,
    t_data: float | None = None,
    divergence: AbstractDivergence = Exact(),
    key: PRNGKeyArray | None = None,
) -> LikelihoodTerms:
    """``log p_{t_data}(x)`` by the probability-flow ODE, with the prior term reported separately.

    Args:
        score: per-example ``score(t, x)`` (an analytic score, or a network's).
        schedule: the noise schedule.
        x: points at ``t_data``.
        solver: ODE solver (adaptive Tsit5 with rtol = atol = 1e-5 by default).
        prior_log_prob: per-example log-density at ``t_max``; ``N(0, prior_std^2 I)`` by default.
        t_data: where ``x`` lives (``schedule.t_min`` by default: the score is singular at sigma = 0).
        divergence: ``Exact()`` (full Jacobian trace) or ``Hutchinson(num_probes)`` (Rademacher probes per example,
            held fixed for the whole solve; needs ``key``).
        key: probe key for Hutchinson.
    """
    solver = DiffraxODE(diffrax.Tsit5(), rtol=1e-5, atol=1e-5) if solver is None else solver
    prior_log_prob = gaussian_prior_log_prob(schedule.prior_std()) if prior_log_prob is None else prior_log_prob
    t_data = schedule.t_min if t_data is None else t_data
    f = probability_flow_drift(schedule, score)
    logp, prior, nfe = ode_log_prob(
        f, prior_log_prob, x, solver, t_data=t_data, t_base=schedule.t_max, divergence=divergence, key=key
    )
    return LikelihoodTerms(log_prob=logp, prior=prior, delta=logp - prior, nfe=nfe)


# -- the discrete DDPM variational bound ---------------------------------------------------------------------------


class VLBTerms(eqx.Module):
    """The DDPM bound in nats per example: ``total = prior + diffusion + decoder``, and the NFE."""

    total: Float[Array, " num"]
    prior: Float[Array, " num"]
    diffusion: Float[Array, " num"]
    decoder: Float[Array, " num"]
    nfe: int


def _sum_dims(a: Array) -> Array:
    return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def _gaussian_kl(mean_q, var_q, mean_p, var_p) -> Array:
    """``KL(N(mean_q, var_q) || N(mean_p, var_p))`` per dimension."""
    return 0.5 * (jnp.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)


def discretized_gaussian_log_prob(
    x: Array, mean: Array, std: Array, bin_width: float, low: float, high: float
) -> Array:
    """Log-probability of the bin ``[x - w/2, x + w/2]`` under ``N(mean, std^2)``, per dimension; the first and last
    bins (at ``low`` and ``high``) extend to -inf and +inf (Ho et al.'s decoder)."""
    upper = jnp.where(x >= high - 0.5 * bin_width, jnp.inf, (x + 0.5 * bin_width - mean) / std)
    lower = jnp.where(x <= low + 0.5 * bin_width, -jnp.inf, (x - 0.5 * bin_width - mean) / std)
    # log(Phi(u) - Phi(l)) on the side of the mean where the tail probabilities do not cancel.
    flip = lower > 0
    u, lo = jnp.where(flip, -lower, upper), jnp.where(flip, -upper, lower)
    log_u, log_l = log_ndtr(u), log_ndtr(lo)
    return log_u + jnp.log1p(-jnp.exp(jnp.minimum(log_l - log_u, 0.0)))


class AbstractDecoder(eqx.Module):
    """The DDPM decoder ``p(x0 | x1)``: the log-likelihood of the data under ``N(mean, std^2)``, per dimension."""

    @abc.abstractmethod
    def log_prob(self, x0: Array, mean: Array, std: Array) -> Array:
        """``log p(x0 | x1)`` per dimension."""


class GaussianDecoder(AbstractDecoder):
    """The Gaussian density ``N(x0; mean, std^2)``: the bound is on a continuous NLL."""

    def log_prob(self, x0, mean, std):
        return -0.5 * ((x0 - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)


class DiscretizedDecoder(AbstractDecoder):
    """The probability of the data's bin of width ``bin_width`` within ``data_range`` (the end bins extend to
    infinity): the bound is on a discrete NLL (Ho et al. 2020, eq. 13).

    For 8-bit images at ``genflow.metrics.bin_centres(images)`` (``(2k + 1)/256 - 1``), ``bin_width=1/128`` scores
    the same bins that ``genflow.metrics.image_bits_per_dim`` dequantises into (docs/metrics.md); the bound in nats
    over ``D log 2`` is then bits/dim of the discrete data, with no offset.

    Args:
        bin_width: the quantization step (1/8 for digits with values p/8 - 1; 1/128 for 8-bit images on [-1, 1]).
        data_range: the lowest and highest data values.
    """

    bin_width: float = eqx.field(static=True)
    data_range: tuple[float, float] = eqx.field(static=True, default=(-1.0, 1.0), converter=tuple)

    def __check_init__(self):
        if not self.bin_width > 0:
            raise ValueError(f"bin_width={self.bin_width!r} is invalid: must be positive")
        if len(self.data_range) != 2 or not self.data_range[0] < self.data_range[1]:
            raise ValueError(f"data_range={self.data_range!r} is invalid: need (low, high) with low < high")

    def log_prob(self, x0, mean, std):
        return discretized_gaussian_log_prob(x0, mean, std, self.bin_width, *self.data_range)


DECODER_CHOICES = "a decoder module: GaussianDecoder() or DiscretizedDecoder(bin_width, data_range)"


def _stratified_steps(key: PRNGKeyArray, num_t: int, num_terms: int) -> tuple[Array, Array]:
    """One step drawn uniformly from each of ``num_terms`` near-equal strata of ``2..num_t``, and the strata sizes."""
    if isinstance(num_terms, bool) or not isinstance(num_terms, int) or num_terms <= 0:
        raise ValueError(f"num_terms={num_terms!r} is invalid: must be a positive integer or None")
    edges = np.linspace(2, num_t + 1, min(num_terms, num_t - 1) + 1).round().astype(int)  # static strata
    size = jnp.asarray(np.diff(edges))
    n = jnp.asarray(edges[:-1]) + jnp.floor(jax.random.uniform(key, size.shape) * size).astype(jnp.int32)
    return n, size.astype(jnp.result_type(float))


def ddpm_vlb(
    score: Callable[[Any, Array], Array],
    schedule: DiscreteSchedule,
    x0: Float[Array, "num ..."],
    *,
    key: PRNGKeyArray,
    variance: AbstractReverseVariance = PosteriorVariance(),
    decoder: AbstractDecoder = GaussianDecoder(),
    num_terms: int | None = None,
) -> VLBTerms:
    """The discrete DDPM variational bound on ``-log p(x0)``, one noise draw per term (an unbiased estimate).

    Args:
        score: batched ``score(t, x)``; ``t = n / N`` at step n.
        schedule: the discrete chain.
        x0: data.
        key: noise for the terms.
        variance: the reverse kernels' variance: ``PosteriorVariance()`` (``beta_tilde_n``; at n=1, where it
            vanishes, ``beta_tilde_2`` as in Ho et al.'s code) or ``BetaVariance()`` (``beta_n``).
        decoder: ``GaussianDecoder()`` (a density: bounds a continuous NLL) or ``DiscretizedDecoder(bin_width,
            data_range)`` (the probability of the data's bin: bounds a discrete NLL).
        num_terms: None sums all N - 1 KL terms, one step after another (``lax.map``: N evaluations, little memory).
            K estimates the sum from K steps, one drawn uniformly from each of K equal strata of ``n = 2..N`` and
            weighted by its stratum's size (unbiased), all in one vectorised call: no loop, which matters for
            convolutional nets on CPU (XLA runs convolutions inside loops 10-50x slower, jax-ml/jax#12868).
    """
    if not isinstance(schedule, DiscreteSchedule):
        raise ValueError(f"the DDPM bound needs a DiscreteSchedule, got {type(schedule).__name__}")
    check_instance("variance", variance, AbstractReverseVariance, VARIANCE_CHOICES)
    check_instance("decoder", decoder, AbstractDecoder, DECODER_CHOICES)
    num_t = schedule.num_timesteps
    n_ex = x0.shape[0]
    k_steps, k_dec = jax.random.split(key)

    def noised(k, t):
        eps = jax.random.normal(k, x0.shape, x0.dtype)
        return schedule.alpha(t) * x0 + schedule.sigma(t) * eps

    def step_terms(k, t, s):
        alpha_s, sigma_t, sigma_s = schedule.alpha(s), schedule.sigma(t), schedule.sigma(s)
        x_t = noised(k, t)
        x0_hat = denoise(score, schedule, t, x_t)
        one_minus_r = -jnp.expm1(schedule.log_snr(t) - schedule.log_snr(s))
        var_q = sigma_s**2 * one_minus_r
        var_p = variance.variance(one_minus_r, sigma_t, sigma_s)
        diff = alpha_s * one_minus_r * (x0 - x0_hat)  # true minus model posterior mean
        return _sum_dims(_gaussian_kl(diff, var_q, 0.0, var_p))

    if num_t == 1:
        diffusion = jnp.zeros((n_ex,), x0.dtype)
        nfe = 1
    elif num_terms is None:
        n = jnp.arange(2, num_t + 1)
        keys = jax.random.split(k_steps, num_t - 1)
        kls = jax.lax.map(lambda a: step_terms(a[0], a[1] / num_t, (a[1] - 1) / num_t), (keys, n))
        diffusion = jnp.sum(kls, axis=0)
        nfe = num_t
    else:
        k_pick, k_noise = jax.random.split(k_steps)
        n, size = _stratified_steps(k_pick, num_t, num_terms)
        keys = jax.random.split(k_noise, n.shape[0])
        kls = jax.vmap(lambda k, m: step_terms(k, m / num_t, (m - 1) / num_t))(keys, n)
        diffusion = jnp.sum(size[:, None] * kls, axis=0)
        nfe = int(n.shape[0]) + 1

    t1 = 1.0 / num_t
    x1 = noised(k_dec, t1)
    mean = denoise(score, schedule, t1, x1)
    std = jnp.sqrt(variance.decoder_variance(schedule))
    decoder_term = -_sum_dims(decoder.log_prob(x0, mean, std))

    a_T, s_T, p = schedule.alpha(1.0), schedule.sigma(1.0), schedule.prior_std()
    prior = _sum_dims(_gaussian_kl(a_T * x0, s_T**2, 0.0, p**2))
    return VLBTerms(
        total=prior + diffusion + decoder_term, prior=prior, diffusion=diffusion, decoder=decoder_term, nfe=nfe
    )
