"""PotentialHead (scalar potential and its gradient) and MultiHead (K fields from one trunk)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import MLP, MultiHead, PotentialHead

KEY = jax.random.key(0)
DIM, SMALL = 3, dict(width=16, depth=2, emb_dim=8)


@eqx.filter_jit
def grad_and_central_difference(head, t, x, y, eps):
    potential = jax.vmap(head, in_axes=(None, 0, None))
    steps = eps * jnp.eye(x.size)
    fd = (potential(t, x + steps, y) - potential(t, x - steps, y)) / (2 * eps)
    return head.grad(t, x, y), fd


def test_potential_grad_matches_finite_difference():
    head = PotentialHead.from_mlp(DIM, **SMALL, num_classes=3, key=KEY)
    t, x, y = jnp.array(0.4), jnp.array([0.3, -0.2, 0.5]), jnp.array(1)
    assert head(t, x, y).shape == ()
    grad, fd = grad_and_central_difference(head, t, x, y, 1e-2)
    assert grad.shape == x.shape
    # float32 central difference: O(eps^2) truncation plus O(1e-7 / eps) round-off.
    np.testing.assert_allclose(grad, fd, rtol=1e-2, atol=1e-3)


def test_potential_wraps_trunk_and_batches():
    head = PotentialHead(MLP(DIM, **SMALL, out_dim=1, key=KEY))
    assert head.data_shape == (DIM,)
    t, x = jnp.array([0.1, 0.9]), jnp.ones((2, DIM))
    assert eqx.filter_jit(lambda h, t, x: jax.vmap(h)(t, x))(head, t, x).shape == (2,)
    assert eqx.filter_jit(lambda h, t, x: jax.vmap(h.grad)(t, x))(head, t, x).shape == (2, DIM)


def test_potential_rejects_vector_trunk():
    head = PotentialHead(MLP(DIM, **SMALL, key=KEY))
    with pytest.raises(ValueError, match="one-element"):
        head(jnp.array(0.5), jnp.ones(DIM))


def test_multihead_shape_and_batching():
    net = MultiHead(DIM, num_heads=2, **SMALL, cond_dim=2, key=KEY)
    assert net.data_shape == (DIM,)
    t, x, c = jnp.array([0.1, 0.9]), jnp.ones((2, DIM)), jnp.ones((2, 2))
    out = eqx.filter_jit(lambda n, t, x, c: jax.vmap(n)(t, x, c))(net, t, x, c)
    assert out.shape == (2, 2, DIM)
    np.testing.assert_allclose(out[1], net(t[1], x[1], c[1]), rtol=1e-5, atol=1e-6)
    assert not jnp.allclose(out[:, 0], out[:, 1])  # the heads are different fields
