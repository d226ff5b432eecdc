"""Every JAX metric traces inside an outer jit (and vmap) and agrees with the direct call."""

import jax
import jax.numpy as jnp
import numpy as np

from genflow.metrics import (
    bures_wasserstein_sq,
    bw_uvp,
    bw_uvp_samples,
    energy_distance,
    fid,
    mmd,
    nll_bits_per_dim,
    sliced_w2,
)


def _all_metrics(key, x, y):
    mean, cov = jnp.mean(y, axis=0), jnp.cov(y.T)
    return jnp.stack(
        [
            mmd(x, y),
            mmd(x, y, unbiased=False),
            energy_distance(x, y),
            energy_distance(x, y, unbiased=True),
            sliced_w2(key, x, y, num_projections=16),
            sliced_w2(key, x, y[:-3], num_projections=16),
            bures_wasserstein_sq(jnp.mean(x, axis=0), jnp.cov(x.T), mean, cov),
            bw_uvp(x, mean, cov),
            bw_uvp_samples(x, y),
            nll_bits_per_dim(-jnp.sum(x**2), x.shape[1], dequant_bins=256),
            fid(x, y),
        ]
    )


def test_outer_jit_and_vmap():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 20, 2)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((3, 25, 2)) + 0.5, jnp.float32)
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.jit(jax.vmap(_all_metrics))(keys, x, y)
    for i in range(3):
        np.testing.assert_allclose(batched[i], _all_metrics(keys[i], x[i], y[i]), rtol=1e-4, atol=1e-5)
