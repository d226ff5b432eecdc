"""Time embeddings and the shared condition embedding."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import ConditionEmbedding, GaussianFourierEmbedding, SinusoidalEmbedding

KEY = jax.random.key(0)


def test_sinusoidal_shape_and_value_at_zero():
    emb = SinusoidalEmbedding(8)
    e0 = emb(jnp.array(0.0))
    assert e0.shape == (8,)
    # sin(0) = 0 and cos(0) = 1, whatever the frequencies.
    np.testing.assert_allclose(e0, jnp.r_[jnp.zeros(4), jnp.ones(4)])
    assert not jnp.allclose(emb(jnp.array(0.1)), emb(jnp.array(0.2)))


def test_sinusoidal_time_scale():
    # Scaling t by s is the same as embedding s * t with s = 1.
    e_scaled = SinusoidalEmbedding(6, time_scale=1000.0)(jnp.array(0.25))
    e_plain = SinusoidalEmbedding(6, time_scale=1.0)(jnp.array(250.0))
    np.testing.assert_allclose(e_scaled, e_plain, rtol=1e-6)


def test_fourier_shape_and_frozen_frequencies():
    emb = GaussianFourierEmbedding(8, scale=4.0, key=KEY)
    assert emb(jnp.array(0.3)).shape == (8,)
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.array(0.3)) ** 2))(emb)
    np.testing.assert_array_equal(grads.freqs, jnp.zeros_like(emb.freqs))


@pytest.mark.parametrize("make", [lambda: SinusoidalEmbedding(7), lambda: GaussianFourierEmbedding(5, key=KEY)])
def test_odd_dim_rejected(make):
    with pytest.raises(ValueError, match="even"):
        make()


def test_condition_embedding_null_label_is_none():
    emb = ConditionEmbedding(GaussianFourierEmbedding, 8, num_classes=3, key=KEY)
    assert emb.null_label == 3
    t = jnp.array(0.5)
    np.testing.assert_allclose(emb(t), emb(t, jnp.array(3)))
    assert not jnp.allclose(emb(t, jnp.array(0)), emb(t, jnp.array(1)))


def test_condition_embedding_vector_none_is_zeros():
    emb = ConditionEmbedding(SinusoidalEmbedding, 8, cond_dim=2, key=KEY)
    t = jnp.array(0.5)
    np.testing.assert_allclose(emb(t), emb(t, jnp.zeros(2)))
    assert not jnp.allclose(emb(t, jnp.ones(2)), emb(t, -jnp.ones(2)))


def test_condition_embedding_errors():
    with pytest.raises(ValueError, match="time_embedding='bogus' is not allowed"):
        ConditionEmbedding("bogus", 8, key=KEY)
    with pytest.raises(ValueError, match=r"need an AbstractTimeEmbedding of dim=8"):
        ConditionEmbedding(lambda dim, key: SinusoidalEmbedding(dim + 2), 8, key=KEY)
    with pytest.raises(ValueError, match="one kind of condition"):
        ConditionEmbedding(SinusoidalEmbedding, 8, num_classes=2, cond_dim=2, key=KEY)
    with pytest.raises(ValueError, match="unconditional"):
        ConditionEmbedding(SinusoidalEmbedding, 8, key=KEY)(jnp.array(0.0), jnp.array(1))
    with pytest.raises(ValueError, match="shape"):
        ConditionEmbedding(SinusoidalEmbedding, 8, cond_dim=3, key=KEY)(jnp.array(0.0), jnp.ones(2))
