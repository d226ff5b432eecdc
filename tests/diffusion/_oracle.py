"""Closed-form noised Gaussian mixtures in 2D, without linear-algebra calls (the Gaussian-mixture score oracle of
Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021).

p0 = sum_k w_k N(mu_k, S_k) stays a mixture under noising: p_t = sum_k w_k N(alpha mu_k, C_k), C_k = alpha^2 S_k +
sigma^2 I, with score -sum_k r_k C_k^{-1} (x - alpha mu_k). The 2x2 inverses are written out, so the score can be
vmapped freely (wide vmaps of batched linalg solves have deadlocked XLA:CPU in the full suite).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from genflow.distributions import GaussianMixture

WEIGHTS = np.array([0.2, 0.3, 0.5])
MEANS = np.array([[-2.5, 0.0], [2.0, 2.0], [1.5, -2.0]])
COVS = np.array([[[0.30, 0.10], [0.10, 0.20]], [[0.40, -0.15], [-0.15, 0.30]], [[0.25, 0.0], [0.0, 0.50]]])


def mixture(weights=WEIGHTS, means=MEANS, covs=COVS) -> GaussianMixture:
    return GaussianMixture(weights, means, covs)


def _component_terms(alpha, sigma, x, means, covs):
    """Per component: log N(x; alpha mu_k, C_k) and C_k^{-1}(x - alpha mu_k); x is (..., 2)."""
    c = alpha**2 * covs + sigma**2 * jnp.eye(2)
    a, b, d = c[:, 0, 0], c[:, 0, 1], c[:, 1, 1]
    det = a * d - b**2
    r = x[..., None, :] - alpha * means  # (..., K, 2)
    prec_r = jnp.stack([d * r[..., 0] - b * r[..., 1], -b * r[..., 0] + a * r[..., 1]], axis=-1) / det[:, None]
    logn = -0.5 * jnp.sum(r * prec_r, axis=-1) - 0.5 * jnp.log(det) - math.log(2 * math.pi)
    return logn, prec_r


def gmm_log_prob(schedule, t, x, weights=WEIGHTS, means=MEANS, covs=COVS):
    logn, _ = _component_terms(schedule.alpha(t), schedule.sigma(t), x, means, covs)
    return jax.scipy.special.logsumexp(jnp.log(weights) + logn, axis=-1)


def gmm_score(schedule, weights=WEIGHTS, means=MEANS, covs=COVS):
    """``score(t, x)`` of the noised mixture, for one example (2,) or a batch (n, 2)."""

    def score(t, x):
        logn, prec_r = _component_terms(schedule.alpha(t), schedule.sigma(t), x, means, covs)
        resp = jax.nn.softmax(jnp.log(weights) + logn, axis=-1)
        return -jnp.sum(resp[..., None] * prec_r, axis=-2)

    return score


def component_score(schedule, k):
    """The score of component k alone (the class-conditional score when components are classes)."""
    return gmm_score(schedule, np.ones(1), MEANS[k : k + 1], COVS[k : k + 1])


def assign_modes(x, weights=WEIGHTS, means=MEANS, covs=COVS):
    """Index of the component with the highest responsibility under p0 (numpy: no compilation)."""
    x = np.asarray(x, dtype=np.float64)
    r = x[:, None, :] - means
    prec_r = np.linalg.solve(covs, r.transpose(1, 2, 0)).transpose(2, 0, 1)
    logn = -0.5 * np.sum(r * prec_r, axis=-1) - 0.5 * np.log(np.linalg.det(covs))
    return np.argmax(np.log(weights) + logn, axis=-1)
