"""MLP and ResMLP: shapes, batching, jit, gradients and conditioning."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.nn import MLP, GaussianFourierEmbedding, ResMLP

KEY = jax.random.key(0)
DIM, BATCH = 3, 4
SMALL = dict(width=16, emb_dim=8)  # shared with the other nn tests: init compilations are reused

# cond_name -> (constructor kwargs, a batch of conditions or None); both time embeddings get covered.
CONDS = {
    "none": ({"time_embedding": GaussianFourierEmbedding}, None),
    "class": ({"num_classes": 3}, jnp.array([0, 1, 2, 3])),
    "vector": (
        {"cond_dim": 2, "time_embedding": GaussianFourierEmbedding},
        jax.random.normal(jax.random.key(1), (BATCH, 2)),
    ),
}


def build(cls, cond_kwargs, **kwargs):
    depth = {"depth": 2} if cls is MLP else {"num_blocks": 2}
    return cls(DIM, **SMALL, **depth, **cond_kwargs, **kwargs, key=KEY)


@eqx.filter_jit
def outputs_and_param_grads(net, t, x, cond):
    """Batched outputs and d(sum of outputs)/d(params), in one compilation to keep the tests fast."""

    def total(n):
        out = jax.vmap(n, in_axes=(0, 0, None if cond is None else 0))(t, x, cond)
        return jnp.sum(out), out

    (_, out), grads = eqx.filter_value_and_grad(total, has_aux=True)(net)
    return out, grads


def inputs():
    t = jnp.linspace(0.1, 0.9, BATCH)
    x = jax.random.normal(jax.random.key(2), (BATCH, DIM))
    return t, x


@pytest.mark.parametrize("cls", [MLP, ResMLP])
@pytest.mark.parametrize("cond_name", list(CONDS))
def test_jit_vmap_matches_eager_loop_and_grads_finite(cls, cond_name):
    cond_kwargs, cond = CONDS[cond_name]
    net = build(cls, cond_kwargs)
    t, x = inputs()
    batched, grads = outputs_and_param_grads(net, t, x, cond)
    assert batched.shape == (BATCH, DIM)
    for i in range(BATCH):
        single = net(t[i], x[i], None if cond is None else cond[i])  # eager, unbatched
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    # The weights do receive signal (the frozen Fourier frequencies are the one exception).
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


@pytest.mark.parametrize("cls", [MLP, ResMLP])
def test_out_dim_and_data_shape(cls):
    net = build(cls, {}, out_dim=5)
    assert net.data_shape == (DIM,)
    assert net(jnp.array(0.5), jnp.ones(DIM)).shape == (5,)


@pytest.mark.parametrize("cls", [MLP, ResMLP])
def test_conditioning_changes_output(cls):
    x, t = jnp.ones(DIM), jnp.array(0.5)
    labelled = build(cls, {"num_classes": 3})
    assert not jnp.allclose(labelled(t, x, jnp.array(0)), labelled(t, x, jnp.array(1)))
    assert not jnp.allclose(labelled(t, x, jnp.array(0)), labelled(t, x))  # null token
    vector = build(cls, {"cond_dim": 2})
    assert not jnp.allclose(vector(t, x, jnp.array([1.0, 0.0])), vector(t, x, jnp.array([0.0, 1.0])))
    plain = build(cls, {})
    assert not jnp.allclose(plain(jnp.array(0.2), x), plain(jnp.array(0.7), x))


@pytest.mark.parametrize("cls", [MLP, ResMLP])
def test_errors(cls):
    with pytest.raises(ValueError, match=r"activation='swish' is not allowed: pass a callable.*jax.nn.silu"):
        build(cls, {}, activation="swish")
    with pytest.raises(ValueError, match=r"time_embedding='fourrier' is not allowed: pass a callable.*Sinusoidal"):
        build(cls, {}, time_embedding="fourrier")
    net = build(cls, {})
    with pytest.raises(ValueError, match="unconditional"):
        net(jnp.array(0.5), jnp.ones(DIM), jnp.array(1))
    with pytest.raises(ValueError, match="unconditional"):
        outputs_and_param_grads(net, *inputs(), jnp.arange(BATCH))


@pytest.mark.parametrize("activation", [jax.nn.silu, jax.nn.gelu, jax.nn.relu, jnp.tanh, jax.nn.softplus])
def test_activations(activation):
    out = build(MLP, {}, activation=activation)(jnp.array(0.5), jnp.ones(DIM))
    assert out.shape == (DIM,) and bool(jnp.all(jnp.isfinite(out)))


def test_no_retrace_across_times():
    net = build(MLP, {"num_classes": 3})

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(net, t, x, c):
        return net(t, x, c)

    for t in (0.1, 0.5, 0.9):
        f(net, jnp.array(t), jnp.ones(DIM), jnp.array(1))


def test_eval_shape_builds_skeleton():
    # Checkpoint loading rebuilds the skeleton this way, without allocating parameters.
    skeleton = eqx.filter_eval_shape(MLP, DIM, 16, 2, 8, num_classes=3, key=KEY)
    assert skeleton.data_shape == (DIM,)
