"""TimeTabulatedDAE: shapes, nearest-grid-time indexing, vmap/jit, a hand-computed value and the Euler endpoint."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import DenoiserOutput, TimeTabulatedDAE
from genflow.solvers import Euler

D, K = 4, 5


def small(**kwargs) -> TimeTabulatedDAE:
    return TimeTabulatedDAE(**({"data_dim": D, "num_times": K} | kwargs), key=jax.random.key(0))


def with_params(net: TimeTabulatedDAE, c, w) -> TimeTabulatedDAE:
    return eqx.tree_at(lambda m: (m.c, m.w), net, (jnp.asarray(c, float), jnp.asarray(w, float)))


def test_shapes_and_attributes():
    net = small()
    assert net.data_shape == (D,)
    assert net.c.shape == (K,) and net.w.shape == (K, D)
    np.testing.assert_allclose(net.times, np.arange(K) / K)
    assert net(jnp.asarray(0.3), jnp.ones(D)).shape == (D,)


def test_index_is_the_nearest_grid_time():
    net = small()
    # Grid times computed in floats (as a fixed-step sampler does) land on their own row.
    ts = jnp.linspace(0.0, 1.0, K + 1)
    np.testing.assert_array_equal(jax.vmap(net.index)(ts), [0, 1, 2, 3, 4, 4])
    assert int(net.index(0.4 / K)) == 0 and int(net.index(0.6 / K)) == 1
    assert int(net.index(-0.1)) == 0 and int(net.index(1.0)) == K - 1


def test_known_value():
    c = [1.0, 0.5, 2.0, 1.0, 1.0]
    w = np.zeros((K, D))
    w[2] = [1.0, -2.0, 0.0, 2.0]
    net = with_params(small(), c, w)
    x = jnp.array([1.0, 1.0, 3.0, 0.0])
    # Row 2 (t_2 = 0.4): w.x / sqrt(d) = -1/2, so f = 2 x - w and b = (f - x) / (1 - 0.4).
    f = np.array([1.0, 4.0, 6.0, -2.0])
    np.testing.assert_allclose(net.denoise(0.41, x), f, rtol=1e-6)
    np.testing.assert_allclose(net(0.41, x), (f - np.asarray(x)) / 0.6, rtol=1e-6)
    np.testing.assert_allclose(with_params(small(output=DenoiserOutput()), c, w)(0.41, x), f, rtol=1e-6)
    tanh_net = with_params(small(activation=jnp.tanh), c, w)
    np.testing.assert_allclose(tanh_net.denoise(0.4, x), 2 * np.asarray(x) + w[2] * np.tanh(-0.5), rtol=1e-6)


def test_vmap_jit_matches_loop_and_grads_reach_the_right_row():
    net = small(activation=jnp.tanh)
    t = jnp.array([0.0, 0.21, 0.6, 0.99])
    x = jax.random.normal(jax.random.key(1), (4, D))
    batched = eqx.filter_jit(jax.vmap(net))(t, x)
    for i in range(4):
        np.testing.assert_allclose(batched[i], net(t[i], x[i]), rtol=1e-5, atol=1e-6)
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.asarray(0.6), x[0])))(net)
    rows = np.flatnonzero(np.any(np.asarray(grads.w) != 0, axis=1))
    np.testing.assert_array_equal(rows, [3])  # t = 0.6 -> row 3 only


def test_last_euler_step_lands_on_the_denoiser():
    net = small()
    x = jax.random.normal(jax.random.key(2), (3, D))
    field = jax.vmap(net, in_axes=(None, 0))
    y = Euler(num_steps=1).solve(field, x, (K - 1) / K, 1.0).y
    np.testing.assert_allclose(y, jax.vmap(net.denoise, in_axes=(None, 0))((K - 1) / K, x), rtol=1e-5, atol=1e-5)
    # A sampler that queries t = 1 (Heun's last stage) stays finite.
    assert bool(jnp.all(jnp.isfinite(field(jnp.asarray(1.0), x))))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "relu"}, r"activation='relu' is not allowed: pass a callable.*sign.*tanh"),
        ({"output": "score"}, r"output='score' is not allowed: pass VelocityOutput\(\) or DenoiserOutput\(\)"),
        ({"num_times": 0}, r"num_times=0 must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small(**kwargs)


def test_condition_is_refused():
    with pytest.raises(ValueError, match="unconditional"):
        small()(0.5, jnp.ones(D), jnp.array(1))
