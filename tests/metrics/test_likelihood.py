"""Bits-per-dimension conversion examples."""

import jax
import jax.numpy as jnp
import numpy as np

from genflow.metrics import nll_bits_per_dim


def test_continuous():
    d = 10
    np.testing.assert_allclose(nll_bits_per_dim(-3 * d * np.log(2.0), d), 3.0, rtol=1e-6)
    # A standard normal's expected NLL is (d/2) log(2 pi e) nats: 0.5 log2(2 pi e) ~ 2.047 bits per dim.
    np.testing.assert_allclose(
        nll_bits_per_dim(-0.5 * d * np.log(2 * np.pi * np.e), d), 0.5 * np.log2(2 * np.pi * np.e), rtol=1e-6
    )


def test_dequantised_uniform_model_costs_log2_bins():
    # The uniform density on [-1, 1]^D has log p = -D log 2, i.e. 1 bit/dim, and after the correction
    # log2(B/2) it codes each of B levels with log2(B) bits: 8 bits for 8-bit data.
    d = 3 * 8 * 8
    log_p = -d * np.log(2.0)
    np.testing.assert_allclose(nll_bits_per_dim(log_p, d), 1.0, rtol=1e-6)
    np.testing.assert_allclose(nll_bits_per_dim(log_p, d, dequant_bins=256), 8.0, rtol=1e-6)
    np.testing.assert_allclose(nll_bits_per_dim(log_p, d, dequant_bins=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(nll_bits_per_dim(log_p, d, dequant_bins=32), 5.0, rtol=1e-6)


def test_batched_and_jit():
    log_p = jnp.array([-100.0, -200.0, 50.0])
    expected = -np.asarray(log_p) / (64 * np.log(2)) + 7.0
    jitted = jax.jit(nll_bits_per_dim, static_argnums=(1, 2))
    np.testing.assert_allclose(jitted(log_p, 64, 256), expected, rtol=1e-6)
    np.testing.assert_allclose(nll_bits_per_dim(log_p, 64, dequant_bins=256), expected, rtol=1e-6)
