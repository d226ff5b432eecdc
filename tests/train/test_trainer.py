"""Trainer: scan chunking is exact, EMA, checkpoints, exact resume, NaN guard, no recompilation."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow import AbstractGenerativeModel
from genflow.distributions import StandardNormal
from genflow.train import CheckpointManager, NonFiniteLossError, Trainer

TRACES = {"n": 0}


class Regression(AbstractGenerativeModel):
    """Least squares y = W x + b on N(0, I) inputs with a fixed teacher: a model small enough to check by hand."""

    lin: eqx.nn.Linear
    teacher: jax.Array
    frozen_fields = ("teacher",)

    def __init__(self, key):
        self.lin = eqx.nn.Linear(3, 2, key=key)
        self.teacher = jnp.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])

    def loss(self, key, batch):
        TRACES["n"] += 1  # runs once per trace, never per step
        noise = 0.1 * jax.random.normal(key, (batch.shape[0], 2))
        y = batch @ self.teacher.T + noise
        return jnp.mean(jnp.sum((jax.vmap(self.lin)(batch) - y) ** 2, -1))

    def sample(self, key, num, **opts):
        return jax.vmap(self.lin)(jax.random.normal(key, (num, 3)))


DATA = StandardNormal((3,))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def assert_trees_equal(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def trainer(**kw):
    kw.setdefault("optimizer", optax.adam(1e-2))
    kw.setdefault("num_steps", 40)
    kw.setdefault("batch_size", 16)
    kw.setdefault("steps_per_call", 10)
    kw.setdefault("progress", False)
    return Trainer(**kw)


def test_scan_chunk_matches_a_plain_python_loop():
    model, key = Regression(jax.random.key(0)), jax.random.key(1)
    tr = trainer(ema_decay=0.9, ema_warmup=False)
    state, losses, finite = tr.train_chunk(tr.init(model, key), DATA, num_steps=5)
    assert bool(finite)

    opt = optax.adam(1e-2)
    params = eqx.filter(model, eqx.is_inexact_array)
    params = eqx.tree_at(lambda m: m.teacher, params, None)
    frozen = eqx.filter(model, lambda x: x is model.teacher)
    ema, opt_state, ref_losses = params, opt.init(params), []
    for _ in range(5):
        key, kd, kl = jax.random.split(key, 3)
        batch = DATA.sample(kd, 16)
        loss, g = eqx.filter_value_and_grad(lambda p: eqx.combine(p, frozen).loss(kl, batch))(params)
        upd, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        ema = jax.tree_util.tree_map(lambda e, p: 0.9 * e + 0.1 * p, ema, params)
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(state.model.lin.weight, params.lin.weight, rtol=1e-5)
    np.testing.assert_allclose(state.ema_model.lin.weight, ema.lin.weight, rtol=1e-5)
    np.testing.assert_array_equal(state.model.teacher, model.teacher)  # frozen field untouched
    assert int(state.step) == 5


def test_chunk_size_does_not_change_the_numbers():
    model, key = Regression(jax.random.key(0)), jax.random.key(1)
    a = trainer(num_steps=40, steps_per_call=40).fit(model, DATA, key=key)
    b = trainer(num_steps=40, steps_per_call=10).fit(model, DATA, key=key)
    np.testing.assert_allclose(a.model.lin.weight, b.model.lin.weight, rtol=1e-6)


def test_training_converges_to_the_teacher():
    state = trainer(num_steps=2000, steps_per_call=500, batch_size=64).fit(
        Regression(jax.random.key(0)), DATA, key=jax.random.key(1)
    )
    # The least-squares optimum is the teacher; noise std 0.1 bounds how close SGD noise lets it get.
    np.testing.assert_allclose(state.model.lin.weight, state.model.teacher, atol=0.05)


def test_no_recompilation_across_chunks():
    tr = trainer(num_steps=50, steps_per_call=10)
    TRACES["n"] = 0
    tr.fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(2))
    assert TRACES["n"] == 1


def test_checkpoint_roundtrip_atomic_and_keep_last(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    tree = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2), jnp.int32)}
    for s in (10, 20, 30):
        mgr.save(s, jax.tree_util.tree_map(lambda x: x + s, tree))
    (tmp_path / ".ckpt_000000040.eqx.tmp-1").write_bytes(b"partial write")  # a write cut short by a kill
    assert mgr.steps() == [20, 30]
    restored = mgr.restore(tree)
    np.testing.assert_array_equal(restored["a"], jnp.arange(3.0) + 30)
    np.testing.assert_array_equal(mgr.restore(tree, step=20)["b"], 21)
    assert b"pickle" not in mgr.path(30).read_bytes()


def test_resume_gives_identical_numbers(tmp_path):
    model, key = Regression(jax.random.key(0)), jax.random.key(3)
    full = trainer(run_dir=tmp_path / "full", checkpoint_every=10).fit(model, DATA, key=key)
    # A first run stopped after 20 steps, then a fresh trainer with the full budget resumes from its checkpoint.
    trainer(num_steps=20, run_dir=tmp_path / "cut", checkpoint_every=10).fit(model, DATA, key=key)
    resumed = trainer(run_dir=tmp_path / "cut", checkpoint_every=10).fit(model, DATA, key=key)
    assert_trees_equal(full.model, resumed.model)
    assert_trees_equal(full.ema_model, resumed.ema_model)
    assert_trees_equal(full.opt_state, resumed.opt_state)
    log = lambda d: [json.loads(ln) for ln in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert log("full") == [{**r, "steps_per_sec": log("full")[i]["steps_per_sec"]} for i, r in enumerate(log("cut"))]


class Diverging(AbstractGenerativeModel):
    """Loss w^2 |x|^2 under SGD with a step that overshoots: |w| grows ~19x per step until it overflows."""

    w: jax.Array

    def loss(self, key, batch):
        return jnp.mean(jnp.sum((self.w * batch) ** 2, -1))

    def sample(self, key, num, **opts):
        return jnp.zeros((num, 3))


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    tr = trainer(optimizer=optax.sgd(3.0), num_steps=400, steps_per_call=10, run_dir=tmp_path, checkpoint_every=10)
    with pytest.raises(NonFiniteLossError, match=r"not finite at step (\d+)") as err:
        tr.fit(Diverging(jnp.asarray(1.0)), DATA, key=jax.random.key(0))
    bad, good = err.value.step, err.value.checkpoint_step
    assert good is not None and good < bad <= good + 10
    like = tr.init(Diverging(jnp.asarray(0.0)), jax.random.key(0))
    restored = tr.restore(like)
    assert int(restored.step) == good and np.isfinite(float(restored.model.w))


def test_ema_warmup_formula():
    model, key = Regression(jax.random.key(0)), jax.random.key(1)
    tr = trainer(ema_decay=0.99)
    s0 = tr.init(model, key)
    s1, _, _ = tr.train_chunk(s0, DATA, num_steps=1)
    s2, _, _ = tr.train_chunk(s1, DATA, num_steps=1)
    d1, d2 = 2 / 11, 3 / 12  # (1 + t) / (10 + t) < 0.99 for the first steps
    e1 = d1 * s0.model.lin.weight + (1 - d1) * s1.model.lin.weight
    np.testing.assert_allclose(s2.ema_model.lin.weight, d2 * e1 + (1 - d2) * s2.model.lin.weight, rtol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num_steps": 0}, "train.num_steps=0"),
        ({"batch_size": -4}, "train.batch_size=-4"),
        ({"checkpoint_every": 15}, "train.checkpoint_every=15"),
        ({"ema_decay": 1.0}, "train.ema_decay=1.0"),
    ],
)
def test_bad_schedules_fail_before_compiling(kw, match):
    with pytest.raises(ValueError, match=match):
        trainer(**kw)


def test_num_steps_need_not_be_a_multiple_of_steps_per_call(tmp_path):
    model, key = Regression(jax.random.key(0)), jax.random.key(1)
    TRACES["n"] = 0
    state = trainer(num_steps=45, steps_per_call=10, run_dir=tmp_path, checkpoint_every=20).fit(model, DATA, key=key)
    assert int(state.step) == 45 and TRACES["n"] == 2  # chunks 10, 10, 10, 10, 5: the short last one compiles once more
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40, 45]
    assert CheckpointManager(tmp_path / "checkpoints").steps() == [20, 40, 45]  # the cadence, and the end
    one_chunk = trainer(num_steps=45, steps_per_call=45).fit(model, DATA, key=key)
    np.testing.assert_allclose(state.model.lin.weight, one_chunk.model.lin.weight, rtol=1e-6)
    shorter = trainer(num_steps=7, steps_per_call=10).fit(model, DATA, key=key)  # a run shorter than one chunk
    assert int(shorter.step) == 7


def test_resume_with_a_short_last_chunk_gives_identical_numbers(tmp_path):
    model, key = Regression(jax.random.key(0)), jax.random.key(3)
    full = trainer(num_steps=45, run_dir=tmp_path / "full", checkpoint_every=10).fit(model, DATA, key=key)
    trainer(num_steps=20, run_dir=tmp_path / "cut", checkpoint_every=10).fit(model, DATA, key=key)
    resumed = trainer(num_steps=45, run_dir=tmp_path / "cut", checkpoint_every=10).fit(model, DATA, key=key)
    assert_trees_equal(full.model, resumed.model)
    assert_trees_equal(full.ema_model, resumed.ema_model)
    again = trainer(num_steps=45, run_dir=tmp_path / "cut", checkpoint_every=10).fit(model, DATA, key=key)
    assert int(again.step) == 45  # a finished run off the chunk grid resumes as finished
    assert_trees_equal(full.model, again.model)


def test_hooks_run_at_eval_every(tmp_path):
    calls = []
    tr = trainer(run_dir=tmp_path, eval_every=20)
    tr.fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0), hooks=[lambda s, k: calls.append(k) or {"x": 1}])
    assert calls == [20, 40]
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40] and records[1]["x"] == 1


def test_tensorboard_writer_when_installed(tmp_path):
    pytest.importorskip("tensorboardX")
    trainer(run_dir=tmp_path, tensorboard=True).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


class SqrtAtZero(AbstractGenerativeModel):
    """Loss |w| = sqrt(sum w^2) at w = 0: the loss is finite (0) but its gradient is NaN."""

    w: jax.Array

    def loss(self, key, batch):
        return jnp.sqrt(jnp.sum(self.w**2))

    def sample(self, key, num, **opts):
        return jnp.zeros((num, 3))


def test_nan_parameters_with_finite_loss_are_caught(tmp_path):
    # One-step chunks: the bad update is the chunk's last step, so only the parameter check can see it.
    tr = trainer(optimizer=optax.sgd(0.1), run_dir=tmp_path, num_steps=10, steps_per_call=1, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match=r"parameters is not finite by step 1;") as err:
        tr.fit(SqrtAtZero(jnp.zeros(2)), DATA, key=jax.random.key(0))
    assert err.value.checkpoint_step == 0
    restored = tr.restore(tr.init(SqrtAtZero(jnp.ones(2)), jax.random.key(0)))
    np.testing.assert_array_equal(restored.model.w, 0.0)  # the saved state is the good one, not the NaN one


def test_resume_false_refuses_a_used_run_dir(tmp_path):
    trainer(run_dir=tmp_path, checkpoint_every=10).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0))
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        trainer(run_dir=tmp_path).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0), resume=False)


def test_resume_with_other_chunking_is_refused(tmp_path):
    trainer(num_steps=10, run_dir=tmp_path).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0))
    with pytest.raises(ValueError, match="not a multiple of train.steps_per_call=20"):
        trainer(steps_per_call=20, run_dir=tmp_path).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0))


def test_resume_before_first_checkpoint_and_torn_log_line(tmp_path):
    # A run killed after logging but before any checkpoint, mid-way through writing a line.
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "lo')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".ckpt_000000010.eqx.tmp-99").write_bytes(b"partial")
    trainer(run_dir=tmp_path, checkpoint_every=10).fit(Regression(jax.random.key(0)), DATA, key=jax.random.key(0))
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_hook_may_not_overwrite_trainer_keys(tmp_path):
    with pytest.raises(ValueError, match=r"\['loss'\]"):
        trainer(run_dir=tmp_path).fit(
            Regression(jax.random.key(0)), DATA, key=jax.random.key(0), hooks=[lambda s, k: {"loss": 0.0}]
        )


def test_frozen_fields_hold_at_every_depth():
    from genflow._base import trainable_filter
    from genflow.distributions import GaussianMixture
    from genflow.interpolants import FlowMatching
    from genflow.nn import MLP

    class Wrapper(eqx.Module):
        inner: FlowMatching
        extra: jax.Array

    base = GaussianMixture.isotropic(jnp.ones(2) / 2, jnp.array([[-1.0, 0.0], [1.0, 0.0]]), 0.5)
    fm = FlowMatching(MLP(2, width=8, depth=1, key=jax.random.key(0)), (2,), base=base)
    spec = trainable_filter(Wrapper(fm, jnp.ones(3)))
    assert not any(jax.tree_util.tree_leaves(spec.inner.base))
    assert all(jax.tree_util.tree_leaves(spec.inner.net)) and spec.extra is True
    grads = eqx.filter_grad(
        lambda p: eqx.combine(p, eqx.filter(fm, trainable_filter(fm), inverse=True)).loss(
            jax.random.key(1), jnp.ones((8, 2))
        )
    )(eqx.filter(fm, trainable_filter(fm)))
    assert grads.base is None or not jax.tree_util.tree_leaves(grads.base)
