"""Importance-sampling diagnostics for flows used as samplers: log-weights ``log p~(x) - log q(x)`` of flow
samples, their summary (Kish ESS, log Z, reverse KL) and a Trainer hook. The weight estimators themselves
(``kish_ess``, ``log_partition_estimate``, ...) live in :mod:`genflow.metrics` and are re-exported here. Stochastic
flows' path weights play the role of ``log w``.

References:
    Kish, "Survey Sampling", 1965 (effective sample size).
    Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.metrics import kish_ess, log_partition_estimate, reweighted_mean, self_normalized_weights

__all__ = [
    "ImportanceSamplingHook",
    "importance_log_weights",
    "importance_summary",
    "kish_ess",
    "log_partition_estimate",
    "reweighted_mean",
    "self_normalized_weights",
]


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
