"""The variance of the reverse (denoising) kernel ``p(x_s | x_t) = N(mu(x_t, x0_hat), v I)``, ``s < t``.

Ho et al. (2020, section 3.2) give two choices, both optimal for some data: the forward posterior's variance
``sigma_s^2 (1 - r)`` (``tilde beta``, optimal for deterministic x0) and ``sigma_t^2 (1 - r)`` (``beta``, optimal
for x0 ~ N(0, I)), with ``1 - r = 1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2)``. They are strategy modules used
by ancestral sampling and by the DDPM variational bound.

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, section 3.2.
"""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import Array

from genflow.diffusion._schedules import DiscreteSchedule

VARIANCE_CHOICES = "a reverse-variance module: PosteriorVariance() (tilde beta) or BetaVariance() (beta)"


class AbstractReverseVariance(eqx.Module):
    """The variance of the reverse kernel from t to s, and of the DDPM decoder ``p(x0 | x1)``."""

    @abc.abstractmethod
    def variance(self, one_minus_r: Array, sigma_t: Array, sigma_s: Array) -> Array:
        """``v`` of the kernel from t to s, given ``1 - r`` and the noise scales at both times."""

    @abc.abstractmethod
    def decoder_variance(self, schedule: DiscreteSchedule) -> Array:
        """The variance of the last step ``p(x0 | x1)`` on the discrete chain."""


class PosteriorVariance(AbstractReverseVariance):
    """``tilde beta``: ``v = sigma_s^2 (1 - r)``, the forward posterior's variance.

    It vanishes at the chain's first step, so the decoder uses ``tilde beta_2`` there, as Ho et al.'s code does.
    """

    def variance(self, one_minus_r, sigma_t, sigma_s):
        return one_minus_r * sigma_s**2

    def decoder_variance(self, schedule):
        t1 = 1.0 / schedule.num_timesteps
        if schedule.num_timesteps == 1:
            return schedule.sigma(t1) ** 2  # beta_1: there is no second step
        t2 = 2.0 / schedule.num_timesteps
        # beta_tilde_2 = sigma_1^2 beta_2 / sigma_2^2
        return (
            schedule.sigma(t1) ** 2
            * (1.0 - schedule.alpha(t2) ** 2 / schedule.alpha(t1) ** 2)
            / schedule.sigma(t2) ** 2
        )


class BetaVariance(AbstractReverseVariance):
    """``beta``: ``v = sigma_t^2 (1 - r)`` (``beta_n`` on the chain)."""

    def variance(self, one_minus_r, sigma_t, sigma_s):
        return one_minus_r * sigma_t**2

    def decoder_variance(self, schedule):
        return schedule.sigma(1.0 / schedule.num_timesteps) ** 2  # beta_1
