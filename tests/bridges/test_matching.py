"""Bridge matching: the eps convention at the POT boundary, and the models on analytic endpoint fields."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import ot
import pytest

from genflow.bridges import (
    DSBM,
    Backward,
    Both,
    BridgeMatching,
    Forward,
    GaussianBridge,
    entropic_coupling,
    fit_dsbm,
)
from genflow.nn import MLP


def test_entropic_coupling_is_pot_sinkhorn_with_reg_two_eps(x64):
    rng = np.random.default_rng(0)
    x0, x1 = rng.standard_normal((12, 2)), rng.standard_normal((12, 2)) + 1.0
    eps = 0.5
    cost = ot.dist(x0, x1)  # |x - y|^2
    want = ot.sinkhorn(np.full(12, 1 / 12), np.full(12, 1 / 12), cost, reg=2 * eps, stopThr=1e-12, numItermax=10**5)
    got = entropic_coupling(eps, threshold=1e-10, max_iterations=10**5).plan(jnp.asarray(x0), jnp.asarray(x1))
    np.testing.assert_allclose(got, want, atol=1e-8)


def test_bridge_matching_drift_from_the_exact_endpoint_is_the_gaussian_drift(x64):
    rng = np.random.default_rng(1)
    gb = GaussianBridge(np.zeros(2), np.eye(2), rng.standard_normal(2), 2.0 * np.eye(2), 0.5)

    def endpoint(t, x):  # E[X1 | X_t = x] = x + (1 - t) g(t, x)
        return x + (1 - t) * gb.drift(t, x)

    model = BridgeMatching(endpoint, (2,), eps=0.5)
    x = jnp.asarray(rng.standard_normal((5, 2)))
    for t in (0.0, 0.5, 0.9):
        np.testing.assert_allclose(model.drift_fn()(t, x), gb.drift(t, x), atol=1e-10)
    # The regression target's minimiser: the loss at the exact endpoint is below that of a perturbed one.
    key = jax.random.key(0)
    x0, x1 = gb.sample_plan(key, 4000)
    exact = float(BridgeMatching(endpoint, (2,), eps=0.5).loss(key, {"x0": x0, "x": x1}))
    shifted = float(BridgeMatching(lambda t, x: endpoint(t, x) + 0.3, (2,), eps=0.5).loss(key, {"x0": x0, "x": x1}))
    assert exact < shifted


@pytest.mark.parametrize("direction", [Forward(), Backward(), Both()])
def test_dsbm_losses_are_finite_and_train_only_their_network(direction):
    net = MLP(2, width=16, depth=1, key=jax.random.key(0))
    model = DSBM(net, (2,), eps=0.2, direction=direction, num_sim_steps=4)
    batch = jax.random.normal(jax.random.key(1), (32, 2))
    loss, grads = jax.value_and_grad(lambda m: m.loss(jax.random.key(2), batch))(model)
    assert np.isfinite(float(loss))
    fwd = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads.forward))
    bwd = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads.backward))
    assert (fwd > 0) == (direction != Backward()) and (bwd > 0) == (direction != Forward())


def test_dsbm_first_stage_trains_on_the_given_coupling_and_later_stages_ignore_it():
    net = MLP(2, width=16, depth=1, key=jax.random.key(0))
    pinned = (jnp.zeros((16, 2)), jnp.ones((16, 2)))

    def pin(key, x0, x1, cond=None):  # a "coupling" that ignores its input pairs
        return *pinned, cond

    def losses(first_stage, coupling):
        model = DSBM(net, (2,), eps=0.2, direction=Forward(), first_stage=first_stage, num_sim_steps=4,
                     coupling=coupling)  # fmt: skip
        return [float(model.loss(jax.random.key(2), jax.random.normal(jax.random.key(s), (16, 2)))) for s in (3, 4)]

    a, b = losses(True, pin)
    assert a == b  # both batches were replaced by the pinned pairs
    a, b = losses(True, None)
    assert a != b
    a, b = losses(False, pin)
    assert a != b  # simulated stages make their own pairs


def test_fit_dsbm_alternates_from_the_independent_coupling_and_ends_forward():
    num_iterations = 3  # odd: forward (independent pairs), backward, forward
    from genflow.distributions import StandardNormal
    from genflow.train import Trainer

    net = MLP(2, width=8, depth=1, key=jax.random.key(0))
    model = DSBM(net, (2,), eps=0.5, backward_net=MLP(2, width=8, depth=1, key=jax.random.key(1)), num_sim_steps=4)
    trainer = Trainer(optax.sgd(1e-2), num_steps=2, batch_size=8, steps_per_call=2, progress=False)
    seen = []

    def watch(stage, direction, m):
        seen.append((stage, direction, m.direction))
        # Only the stage's own network moved: the other one is the one it simulated with.
        moved = m.forward if direction == Forward() else m.backward
        kept = m.backward if direction == Forward() else m.forward
        assert not _same(moved, prev[0].forward if direction == Forward() else prev[0].backward)
        assert _same(kept, prev[0].backward if direction == Forward() else prev[0].forward)
        prev[0] = m

    prev = [model]
    fitted = fit_dsbm(model, StandardNormal((2,)), trainer, key=jax.random.key(2), num_iterations=num_iterations,
                      callback=watch)  # fmt: skip
    want = [Forward() if (num_iterations - i) % 2 else Backward() for i in range(num_iterations)]
    assert seen == [(i + 1, d, Both()) for i, d in enumerate(want)]
    assert want[-1] == Forward() and fitted.direction == Both()
    with pytest.raises(ValueError, match="num_iterations=1 is invalid"):
        fit_dsbm(model, StandardNormal((2,)), trainer, key=jax.random.key(2), num_iterations=1)


def _same(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(leaves_a, leaves_b, strict=True))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="direction='sideways' is invalid"):
        DSBM(lambda t, x: x, (2,), direction="sideways")
    with pytest.raises(ValueError, match="sampler=.*SDE solvers"):
        from genflow.bridges import ExactConditional

        BridgeMatching(lambda t, x: x, (2,), sampler=ExactConditional())
