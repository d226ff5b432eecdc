"""Importance-sampling weights: log Z estimates, Kish's effective sample size and self-normalised expectations.

With samples ``x_i ~ q`` and an unnormalised target ``p~ = Z p``, the log-weights ``log w_i = log p~(x_i) -
log q(x_i)`` give

    Z_hat = (1/n) sum_i w_i                   (unbiased for Z),
    ESS = (sum_i w_i)^2 / sum_i w_i^2          (Kish; n for perfect weights, 1 for one dominant weight),
    E_p[f] ~ sum_i w_i f(x_i) / sum_i w_i      (self-normalised, consistent).

Everything is computed in log space. Any sampler with weights uses them: flows used as samplers, the path weights of
stochastic normalizing flows, annealed importance sampling.

References:
    Kish, "Survey Sampling", 1965 (effective sample size).
    Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Scalar


def log_partition_estimate(log_w: Float[Array, " n"]) -> Scalar:
    """``log Z_hat = logsumexp(log w) - log n`` (the log of an unbiased estimate of ``Z``)."""
    return logsumexp(log_w) - math.log(log_w.shape[0])


def kish_ess(log_w: Float[Array, " n"]) -> Scalar:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``, in ``[1, n]``."""
    return jnp.exp(2 * logsumexp(log_w) - logsumexp(2 * log_w))


def self_normalized_weights(log_w: Float[Array, " n"]) -> Float[Array, " n"]:
    """``w_i / sum_j w_j``."""
    return jax.nn.softmax(log_w)


def reweighted_mean(log_w: Float[Array, " n"], values: Float[Array, "n ..."]) -> Array:
    """Self-normalised importance-sampling estimate of ``E_p[f]`` from ``f(x_i)`` and ``log w_i``."""
    w = self_normalized_weights(log_w)
    return jnp.tensordot(w, values, axes=1)
