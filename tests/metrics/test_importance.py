"""Importance-sampling estimators against closed forms for weights of two levels."""

import math

import jax.numpy as jnp
import numpy as np

from genflow.metrics import kish_ess, log_partition_estimate, reweighted_mean, self_normalized_weights


def test_two_level_weights():
    a, b, c = 6, 2, 5.0  # a weights of 1, b weights of c, shifted by a constant that must cancel
    log_w = jnp.log(jnp.array([1.0] * a + [c] * b)) + 30.0
    np.testing.assert_allclose(kish_ess(log_w), (a + b * c) ** 2 / (a + b * c**2), rtol=1e-5)
    np.testing.assert_allclose(log_partition_estimate(log_w), 30.0 + math.log((a + b * c) / (a + b)), rtol=1e-6)
    w = self_normalized_weights(log_w)
    np.testing.assert_allclose(jnp.sum(w), 1.0, rtol=1e-6)
    f = jnp.array([0.0] * a + [1.0] * b)
    np.testing.assert_allclose(reweighted_mean(log_w, f), b * c / (a + b * c), rtol=1e-5)
    np.testing.assert_allclose(kish_ess(jnp.zeros(7)), 7.0, rtol=1e-6)  # equal weights: ESS = n
