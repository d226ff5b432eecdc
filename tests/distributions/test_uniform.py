"""Uniform on a box: exact log-density inside, -inf outside, samples in range, bad bounds rejected."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import Uniform


def test_uniform_density_and_samples():
    u = Uniform([2], low=-1.0, high=3.0)
    x = u.sample(jax.random.key(0), 1000)
    assert x.shape == (1000, 2) and bool(jnp.all((x >= -1.0) & (x < 3.0)))
    lp = u.log_prob(jnp.array([[0.0, 2.9], [3.0, 0.0], [-1.5, 0.0]]))
    np.testing.assert_allclose(lp[0], -2 * math.log(4.0), rtol=1e-6)
    assert bool(jnp.all(jnp.isneginf(lp[1:])))  # high is excluded, as are points below low
    assert Uniform(3).event_shape == (3,)  # a bare int is a vector size (Hydra passes either)
    with pytest.raises(ValueError, match="low < high"):
        Uniform(2, low=1.0, high=1.0)
