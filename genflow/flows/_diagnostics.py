"""Importance-sampling diagnostics for flows used as samplers: log-weights, Kish ESS and log Z.

With samples ``x_i ~ q`` and an unnormalised target ``p~ = Z p``, the log-weights ``log w_i = log p~(x_i) -
log q(x_i)`` give

    Z_hat = (1/n) sum_i w_i                   (unbiased for Z),
    ESS = (sum_i w_i)^2 / sum_i w_i^2          (Kish; n for perfect weights, 1 for one dominant weight),
    E_p[f] ~ sum_i w_i f(x_i) / sum_i w_i      (self-normalised, consistent).

Everything is computed in log space. The same functions serve stochastic flows, whose path weights play the
role of ``log w``.

References:
    Kish, "Survey Sampling", 1965 (effective sample size).
    Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar


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


def importance_log_weights(
    model: Any, target: Any, key: PRNGKeyArray, num: int
) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
    """Draw ``x ~ q`` from ``model.sample_and_log_prob`` and return ``(x, log p~(x) - log q(x))``."""
    x, log_q = model.sample_and_log_prob(key, num)
    return x, target.log_prob(x) - log_q


def importance_summary(log_w: Float[Array, " n"]) -> dict[str, Array]:
    """``log_z``, ``ess``, ``ess_fraction`` and the reverse-KL estimate ``E_q[log q - log p~] = -mean(log w)``.

    ``-mean(log w)`` is ``KL(q || p) - log Z``, so it bounds ``-log Z`` from above (the ELBO, negated).
    """
    ess = kish_ess(log_w)
    return {
        "log_z": log_partition_estimate(log_w),
        "ess": ess,
        "ess_fraction": ess / log_w.shape[0],
        "reverse_kl_minus_log_z": -jnp.mean(log_w),
    }


class ImportanceSamplingHook:
    """Trainer hook: log ``ess_fraction``, ``log_z`` and ``reverse_kl_minus_log_z`` of the EMA model against an
    unnormalised target, from ``num_samples`` fresh samples.

    Works for any model with ``sample_and_log_prob`` (flows, CNFs) or ``sample_with_log_weights`` (stochastic
    flows, whose path weights take the place of ``p~/q``). Keys come from ``seed`` and the step, so evaluation
    never touches the training key stream.
    """

    def __init__(self, target: Any, num_samples: int = 4096, seed: int = 0):
        self.target, self.num_samples = target, int(num_samples)
        self.key = jax.random.key(seed + 104729)

    def __call__(self, state: Any, step: int) -> dict[str, float]:
        model, key = state.ema_model, jax.random.fold_in(self.key, step)
        if hasattr(model, "sample_with_log_weights"):
            _, log_w = model.sample_with_log_weights(key, self.num_samples)
        else:
            _, log_w = importance_log_weights(model, self.target, key, self.num_samples)
        return {f"is_{k}": float(v) for k, v in importance_summary(log_w).items() if k != "ess"}
