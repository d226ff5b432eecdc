"""Precision policies: bf16 mixed precision tracks fp32 training, keeps fp32 masters, computes in bf16.

Tolerances come from bf16's unit roundoff u = 2^-8 (8 significant bits, 7 stored): a squared error computed
from residuals rounded once to bf16 moves by at most 2u relative, d(r^2)/r^2 = 2 dr/r.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow import AbstractGenerativeModel
from genflow.data import Toy2D
from genflow.distributions import StandardNormal
from genflow.interpolants import FlowMatching
from genflow.nn import MLP, UNet
from genflow.train import FullPrecision, MixedPrecision, NonFiniteLossError, Trainer

U = 2.0**-8  # bf16 unit roundoff
MOONS = Toy2D("moons")
STEPS, WINDOW = 400, 100
OPTIMIZER = optax.adam(1e-2)  # one object: trainers that share it (and their other settings) share compilations


def flow_matching():
    return FlowMatching(MLP(2, width=32, depth=2, emb_dim=16, key=jax.random.key(0)), (2,))


def is_float(x):
    return eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)


def float_dtypes(tree):
    return {x.dtype for x in jax.tree_util.tree_leaves(tree) if is_float(x)}


def assert_float_leaves_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if is_float(x):
            np.testing.assert_array_equal(x, y)


def fm_trainer(**kw):
    return Trainer(OPTIMIZER, STEPS, 128, steps_per_call=WINDOW, progress=False, **kw)


@pytest.fixture(scope="module")
def runs():
    """Flow matching with a FiLM MLP on moons, 400 Adam steps, in fp32 (the trainer without the option) and in
    bf16, from the same init and keys."""
    out = {}
    for name, kw in (("fp32", {}), ("bf16", {"precision": MixedPrecision()})):
        tr = fm_trainer(**kw)
        state, losses = tr.init(flow_matching(), jax.random.key(1)), []
        for _ in range(STEPS // WINDOW):
            state, chunk, finite = tr.train_chunk(state, MOONS)
            assert bool(finite)
            losses.append(np.asarray(chunk))
        out[name] = state, np.concatenate(losses)
    return out


def test_bf16_tracks_the_fp32_loss_curve(runs):
    (_, l32), (_, l16) = runs["fp32"], runs["bf16"]
    assert l16.dtype == np.float32
    assert not np.array_equal(l16, l32)  # the bf16 run really ran another computation
    # Same batches and times in both runs (drawn in fp32 from the same keys): each step's loss within 2u.
    np.testing.assert_allclose(l16, l32, rtol=2 * U, atol=0)
    # 100-step means average the per-step rounding noise down by sqrt(100): within 2u / 10. Rounding the time t to
    # bf16 before the sinusoidal embedding (which the policy must not do) fails both checks (measured: 3x over the
    # per-step bound, a third over this one).
    w32, w16 = l32.reshape(-1, WINDOW).mean(1), l16.reshape(-1, WINDOW).mean(1)
    np.testing.assert_allclose(w16, w32, rtol=2 * U / 10, atol=0)
    assert w32[-1] < 0.95 * w32[0]  # the curve being tracked falls by far more than the tolerance


def test_master_parameters_optimizer_state_and_ema_stay_fp32(runs):
    state, _ = runs["bf16"]
    assert (
        float_dtypes(state.model)
        == float_dtypes(state.ema_model)
        == float_dtypes(state.opt_state)
        == {jnp.dtype(jnp.float32)}
    )


def _equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)
                elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    yield from _equations(sub.jaxpr)


def _dtypes(jaxpr, primitive):
    return {v.aval.dtype.name for e in _equations(jaxpr) if e.primitive.name == primitive for v in e.invars}


def test_the_network_computes_in_bf16_and_the_time_embedding_in_fp32():
    model, batch = eqx.filter_eval_shape(flow_matching), jax.ShapeDtypeStruct((8, 2), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda m, b: MixedPrecision().loss(m, jax.random.key(1), b))(model, batch)
    assert _dtypes(jaxpr.jaxpr, "dot_general") == {"bfloat16"}  # every matrix product, none left in fp32
    assert _dtypes(jaxpr.jaxpr, "sin") == _dtypes(jaxpr.jaxpr, "cos") == {"float32"}  # sin(1000 t w) from fp32 t
    assert jaxpr.out_avals[0].dtype == jnp.float32
    # The traced program takes the fp32 master parameters: the casts to bf16 happen inside the loss.
    assert {v.aval.dtype.name for v in jaxpr.jaxpr.invars if jnp.issubdtype(v.aval.dtype, jnp.floating)} == {"float32"}


def test_unet_convolutions_compute_in_bf16():
    def build():
        net = UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1,), emb_dim=16, key=jax.random.key(0))
        return FlowMatching(net, (1, 8, 8))

    model, batch = eqx.filter_eval_shape(build), jax.ShapeDtypeStruct((2, 1, 8, 8), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda m, b: MixedPrecision().loss(m, jax.random.key(2), b))(model, batch).jaxpr
    assert _dtypes(jaxpr, "conv_general_dilated") == _dtypes(jaxpr, "dot_general") == {"bfloat16"}
    assert _dtypes(jaxpr, "reduce_sum") == {"float32"}  # GroupNorm statistics (and the loss's sums) stay fp32


def test_full_precision_is_the_plain_loss_bit_for_bit(runs):
    model, batch = eqx.filter_eval_shape(flow_matching), jax.ShapeDtypeStruct((8, 2), jnp.float32)
    key = jax.random.key(1)
    plain = jax.make_jaxpr(lambda m, b: m.loss(key, b))(model, batch)
    assert str(jax.make_jaxpr(lambda m, b: FullPrecision().loss(m, key, b))(model, batch)) == str(plain)
    # FullPrecision() given explicitly: the numbers of the trainer without the option.
    tr = fm_trainer(precision=FullPrecision())
    state, losses, _ = tr.train_chunk(tr.init(flow_matching(), jax.random.key(1)), MOONS)
    _, fp32_losses = runs["fp32"]
    np.testing.assert_array_equal(losses, fp32_losses[:WINDOW])
    tr_default = fm_trainer()
    assert isinstance(tr_default.precision, FullPrecision)
    default_state, _, _ = tr_default.train_chunk(tr_default.init(flow_matching(), jax.random.key(1)), MOONS)
    assert_float_leaves_equal(state, default_state)


class Regression(AbstractGenerativeModel):
    """Least squares through one linear layer; ``scale`` large makes plain SGD diverge."""

    lin: eqx.nn.Linear
    scale: float = 1.0

    def loss(self, key, batch):
        return jnp.mean(jnp.sum((jax.vmap(self.lin)(batch) - self.scale * batch[:, :2]) ** 2, -1))

    def sample(self, key, num, **opts):
        return jnp.zeros((num, 2))


DATA = StandardNormal((3,))


def test_float32_compute_changes_nothing_but_the_policy():
    # compute_dtype=float32 keeps every cast a no-op: the wrapper layers alone must not move a bit.
    model, batch, key = Regression(eqx.nn.Linear(3, 2, key=jax.random.key(0))), DATA.sample(jax.random.key(1), 16), None

    def value_and_grad(precision):
        return eqx.filter_jit(eqx.filter_value_and_grad(lambda m: precision.loss(m, key, batch)))(model)

    (l_full, g_full), (l_mixed, g_mixed) = value_and_grad(FullPrecision()), value_and_grad(MixedPrecision(jnp.float32))
    np.testing.assert_array_equal(l_full, l_mixed)
    for a, b in zip(jax.tree_util.tree_leaves(g_full), jax.tree_util.tree_leaves(g_mixed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bf16_resume_gives_identical_numbers_from_fp32_checkpoints(tmp_path):
    model, key, optimizer = Regression(eqx.nn.Linear(3, 2, key=jax.random.key(0))), jax.random.key(3), optax.adam(1e-2)

    def trainer(num_steps, run_dir):
        return Trainer(optimizer, num_steps, 16, steps_per_call=10, checkpoint_every=10, progress=False,
                       run_dir=run_dir, precision=MixedPrecision())  # fmt: skip

    full = trainer(30, tmp_path / "full").fit(model, DATA, key=key)
    trainer(20, tmp_path / "cut").fit(model, DATA, key=key)
    resumed = trainer(30, tmp_path / "cut").fit(model, DATA, key=key)
    assert float_dtypes(full) == float_dtypes(resumed) == {jnp.dtype(jnp.float32)}
    assert_float_leaves_equal(full, resumed)
    # The checkpoint is a plain fp32 training state: a full-precision trainer loads it as it is.
    like = Trainer(optimizer, 30, 16, steps_per_call=10, progress=False, run_dir=tmp_path / "cut").init(model, key)
    restored = trainer(30, tmp_path / "cut").restore(like)
    assert float_dtypes(restored) == {jnp.dtype(jnp.float32)} and int(restored.step) == 30


def test_nan_guard_stops_a_diverging_bf16_run(tmp_path):
    tr = Trainer(optax.sgd(3.0), 400, 16, steps_per_call=10, checkpoint_every=10, progress=False, run_dir=tmp_path,
                 precision=MixedPrecision())  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"not finite (at|by) step (\d+)") as err:
        tr.fit(Regression(eqx.nn.Linear(3, 2, key=jax.random.key(0)), scale=10.0), DATA, key=jax.random.key(0))
    assert err.value.checkpoint_step is not None and err.value.checkpoint_step < err.value.step


@pytest.mark.parametrize(
    "value,match",
    [
        (jnp.float16, r"compute_dtype=.*float16.* is invalid: its exponent range is narrower than float32's"),
        ("int8", r"compute_dtype='int8' is invalid: not a floating-point dtype; allowed: bfloat16, float32"),
        ("bf17", r"compute_dtype='bf17' is invalid: not a dtype; allowed: bfloat16, float32 or float64"),
    ],
)
def test_bad_compute_dtypes_are_refused(value, match):
    with pytest.raises(ValueError, match=match):
        MixedPrecision(value)


def test_the_policy_is_checked_before_compiling():
    assert MixedPrecision("bfloat16").compute_dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"train\.precision='bf16' is invalid; allowed: .*MixedPrecision"):
        Trainer(optax.adam(1e-2), 10, 8, precision="bf16")

    class NoLayers(AbstractGenerativeModel):
        w: jax.Array

        def loss(self, key, batch):
            return jnp.mean((self.w * batch) ** 2)

        def sample(self, key, num, **opts):
            return jnp.zeros((num, 3))

    tr = Trainer(optax.adam(1e-2), 10, 8, progress=False, precision=MixedPrecision())
    with pytest.raises(ValueError, match=r"no layer to compute in bfloat16 in NoLayers .*model: FullPrecision"):
        tr.init(NoLayers(jnp.ones(3)), jax.random.key(0))
