"""Denoising score matching: loss weightings and time sampling.

The loss for one example, at a time t from the time sampler, is

    L = (p(t) / q(t)) w(t) |out(t, x_t) - target|^2,    x_t = alpha_t x0 + sigma_t eps,

with ``out`` the network's raw output and ``target`` its regression target under the parametrization. Weightings
are stated in the x0-space convention of Hang et al. (2023), ``w_x0(t) |x0_hat - x0|^2``, and converted to the
network's own space exactly (``|x0_hat - x0|^2 = |eps_hat - eps|^2 / SNR``):

    none        unit weight on the network's own target (the "simple" loss of Ho et al. for eps)
    snr         w_x0 = SNR(t)               (= unweighted eps loss)
    min_snr     w_x0 = min(SNR(t), gamma)   (Hang et al. 2023)
    likelihood  w_x0 = SNR(t) g(t)^2 / sigma_t^2, i.e. g^2 |score_hat - score|^2 (Song et al. 2021): the
                weighted loss bounds the negative log-likelihood
    edm         w_x0 = (s^2 + sigma_d^2) / (s sigma_d)^2, s = sigma/alpha (Karras et al. 2022)

Time samplers draw t (uniform on [t_min, t_max], stratified, log-normal in the noise level, or by importance) and
return the correction ``p(t)/q(t)`` that keeps the loss an unbiased estimate of the objective under uniform p.

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Song, Durkan, Murray, Ermon, "Maximum Likelihood Training of Score-Based Diffusion Models", NeurIPS 2021.
    Kingma, Salimans, Poole, Ho, "Variational Diffusion Models", NeurIPS 2021 (low-discrepancy times).
    Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023.
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow.diffusion._parametrizations import AbstractParametrization
from genflow.diffusion._schedules import AbstractSchedule, DiscreteSchedule, EDMSchedule

# -- weightings ----------------------------------------------------------------------------------------------------


class AbstractWeighting(eqx.Module):
    """A loss weighting, given as the weight on ``|eps_hat - eps|^2`` (the network's weight follows exactly)."""

    @abc.abstractmethod
    def eps_weight(
        self, schedule: AbstractSchedule, parametrization: AbstractParametrization, t: Array
    ) -> Float[Array, "*t"]:
        """Weight on ``|eps_hat - eps|^2`` at times ``t``."""


class NoWeighting(AbstractWeighting):
    """Unit weight on the network's own regression target (eps, x0, v, score or EDM's F)."""

    def eps_weight(self, schedule, parametrization, t):
        return 1.0 / parametrization.eps_factor(schedule.alpha(t), schedule.sigma(t)) ** 2


class SNRWeighting(AbstractWeighting):
    """``w_x0 = SNR``: the plain eps loss, whatever the network predicts."""

    def eps_weight(self, schedule, parametrization, t):
        return jnp.ones_like(schedule.sigma(t))


class MinSNRWeighting(AbstractWeighting):
    """``w_x0 = min(SNR, gamma)`` (Hang et al. 2023); as an eps weight, ``min(1, gamma / SNR)``.

    Args:
        gamma: the SNR cap (5 in the paper).
    """

    gamma: float = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        if not self.gamma > 0:
            raise ValueError(f"gamma={self.gamma!r} is invalid: must be positive")

    def eps_weight(self, schedule, parametrization, t):
        return jnp.minimum(1.0, self.gamma * jnp.exp(-schedule.log_snr(t)))


class LikelihoodWeighting(AbstractWeighting):
    """``g(t)^2 |score_hat - score|^2 = (g^2 / sigma^2) |eps_hat - eps|^2`` (Song et al. 2021).

    Averaged over uniform t in [t_min, t_max] and multiplied by ``(t_max - t_min) / 2``, this loss is the score
    matching bound on the negative log-likelihood up to a constant. Its eps weight varies by orders of magnitude
    over t, so pair it with ``ImportanceTime`` to reduce the variance.
    """

    def eps_weight(self, schedule, parametrization, t):
        return schedule.diffusion_sq(t) / schedule.sigma(t) ** 2


class EDMWeighting(AbstractWeighting):
    """EDM's ``lambda(s) = (s^2 + sigma_d^2) / (s sigma_d)^2`` on ``|x0_hat - x0|^2``, ``s = sigma / alpha``.

    Args:
        sigma_data: the data's standard deviation.
    """

    sigma_data: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data={self.sigma_data!r} is invalid: must be positive")

    def eps_weight(self, schedule, parametrization, t):
        s2 = jnp.exp(-schedule.log_snr(t))
        return (s2 + self.sigma_data**2) / self.sigma_data**2


def network_weight(
    weighting: AbstractWeighting, schedule: AbstractSchedule, parametrization: AbstractParametrization, t: Array
) -> Array:
    """The weight on the network's ``|out - target|^2``: ``eps_weight * eps_factor^2``."""
    c = parametrization.eps_factor(schedule.alpha(t), schedule.sigma(t))
    return weighting.eps_weight(schedule, parametrization, t) * c**2


# -- time sampling -------------------------------------------------------------------------------------------------

WeightFn = Callable[[Array], Array]


def unit_to_time(schedule: AbstractSchedule, u: Array) -> Array:
    """Map ``u`` in [0, 1) to a time: uniform on [t_min, t_max], or the step ``n/N``, ``n = 1..N``, if discrete."""
    if isinstance(schedule, DiscreteSchedule):
        n = jnp.minimum(jnp.floor(u * schedule.num_timesteps) + 1, schedule.num_timesteps)
        return n / schedule.num_timesteps
    return schedule.t_min + u * (schedule.t_max - schedule.t_min)


class AbstractTimeSampler(eqx.Module):
    """Draws training times and their importance weights ``p(t) / q(t)``."""

    @abc.abstractmethod
    def __call__(
        self, key: PRNGKeyArray, num: int, schedule: AbstractSchedule, weight_fn: WeightFn, dtype: Any
    ) -> tuple[Float[Array, " num"], Float[Array, " num"]]:
        """``(t, p/q)`` for ``num`` examples; ``weight_fn(t)`` is the loss's eps weight (used by importance)."""


class UniformTime(AbstractTimeSampler):
    """``t ~ U[t_min, t_max]`` (or a uniform step of a discrete chain)."""

    def __call__(self, key, num, schedule, weight_fn, dtype):
        u = jax.random.uniform(key, (num,), dtype)
        return unit_to_time(schedule, u), jnp.ones((num,), dtype)


class StratifiedTime(AbstractTimeSampler):
    """Stratified uniform times: example i gets ``u_i = (i + U_i) / num``, one draw per stratum.

    Each u_i is still uniform over a random example order, so the loss stays unbiased, and the batch covers [0, 1)
    evenly, which lowers the variance of the loss (Kingma et al. 2021 use the related low-discrepancy sampler).
    """

    def __call__(self, key, num, schedule, weight_fn, dtype):
        u = (jnp.arange(num, dtype=dtype) + jax.random.uniform(key, (num,), dtype)) / num
        return unit_to_time(schedule, u), jnp.ones((num,), dtype)


class ImportanceTime(AbstractTimeSampler):
    """Importance sampling ``q(t) ∝ w(t)``, the loss's eps weight, with the correction ``p(t)/q(t)``.

    With ``q`` proportional to the weight, the weighted loss ``w(t) p(t)/q(t)`` is constant in t, which removes the
    variance the weight itself causes (Song et al. 2021 sample t this way for likelihood weighting). ``q`` is
    piecewise constant on ``num_bins`` bins of [t_min, t_max] equally spaced in log-SNR, where weights like
    ``g^2 / sigma^2 ~ 1/t`` change by a fixed factor per bin; the correction uses that density exactly. On a
    discrete chain ``q`` is a categorical over its steps.

    Args:
        num_bins: bins of the piecewise-constant proposal (continuous schedules).
    """

    num_bins: int = eqx.field(static=True, default=1000)

    def __check_init__(self):
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins <= 0:
            raise ValueError(f"num_bins={self.num_bins!r} is invalid: must be a positive integer")

    def __call__(self, key, num, schedule, weight_fn, dtype):
        k_bin, k_u = jax.random.split(key)
        if isinstance(schedule, DiscreteSchedule):
            nodes = jnp.arange(1, schedule.num_timesteps + 1, dtype=dtype) / schedule.num_timesteps
            widths = jnp.ones_like(nodes) / schedule.num_timesteps
        else:
            lam = jnp.linspace(schedule.log_snr(schedule.t_min), schedule.log_snr(schedule.t_max), self.num_bins + 1)
            edges = schedule.t_from_log_snr(lam.astype(dtype)).at[0].set(schedule.t_min).at[-1].set(schedule.t_max)
            widths = jnp.diff(edges)
            nodes = edges[:-1] + 0.5 * widths
        mass = weight_fn(nodes) * widths
        cdf = jnp.cumsum(mass) / jnp.sum(mass)
        # Inverse-CDF draws: a categorical would draw num x bins Gumbels.
        idx = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(k_bin, (num,), dtype)), nodes.shape[0] - 1)
        prob = jnp.diff(cdf, prepend=0.0)[idx]
        total = jnp.sum(widths)
        correction = widths[idx] / (total * prob)  # p/q = (1 / total) / (prob / width)
        if isinstance(schedule, DiscreteSchedule):
            return nodes[idx], correction
        u = jax.random.uniform(k_u, (num,), dtype) - 0.5
        return nodes[idx] + u * widths[idx], correction


class LogNormalTime(AbstractTimeSampler):
    """EDM's noise distribution: ``log s ~ N(mean, std^2)`` for ``s = sigma / alpha``.

    On the EDM schedule t = s. On other schedules t is the time with that noise level, clipped to [t_min, t_max]
    (which moves the tails' mass onto the ends).

    Args:
        mean, std: of ``log s`` (EDM: -1.2 and 1.2).
    """

    mean: float = eqx.field(static=True, default=-1.2)
    std: float = eqx.field(static=True, default=1.2)

    def __check_init__(self):
        if not self.std > 0:
            raise ValueError(f"std={self.std!r} is invalid: must be positive")

    def __call__(self, key, num, schedule, weight_fn, dtype):
        s = jnp.exp(self.mean + self.std * jax.random.normal(key, (num,), dtype))
        if isinstance(schedule, EDMSchedule):
            return s, jnp.ones((num,), dtype)
        t = jnp.clip(schedule.t_from_noise_to_signal(s), schedule.t_min, schedule.t_max)
        return t, jnp.ones((num,), dtype)


# -- the loss ------------------------------------------------------------------------------------------------------


def denoising_loss(
    key: PRNGKeyArray,
    net: Callable,
    x0: Float[Array, "num ..."],
    cond: Any,
    schedule: AbstractSchedule,
    parametrization: AbstractParametrization,
    weighting: AbstractWeighting,
    time_sampler: AbstractTimeSampler,
) -> tuple[Scalar, dict[str, Array]]:
    """The weighted denoising loss on a minibatch (mean over examples, sum over dimensions).

    ``net(t, x, cond)`` acts on one example. Returns the loss and, for diagnostics, the per-example times and
    unweighted squared errors.
    """
    n = x0.shape[0]
    k_t, k_eps = jax.random.split(key)
    weight_fn = lambda t: weighting.eps_weight(schedule, parametrization, t)
    t, correction = time_sampler(k_t, n, schedule, weight_fn, x0.dtype)
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    tb = t.reshape((n,) + (1,) * (x0.ndim - 1))
    alpha, sigma = schedule.alpha(tb), schedule.sigma(tb)
    xt = alpha * x0 + sigma * eps
    cond_axis = None if cond is None else 0
    apply = lambda ti, xi, ci, a, s: parametrization(net, ti, xi, ci, a, s)
    out = jax.vmap(apply, in_axes=(0, 0, cond_axis, 0, 0))(t, xt, cond, alpha, sigma)
    target = parametrization.target(x0, eps, xt, alpha, sigma)
    sq = jnp.sum(((out - target) ** 2).reshape(n, -1), axis=-1)
    w = network_weight(weighting, schedule, parametrization, t) * correction
    return jnp.mean(w * sq), {"t": t, "sq_err": sq}
