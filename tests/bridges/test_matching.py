"""Bridge matching: the eps convention at the POT boundary, and the models on analytic endpoint fields."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from genflow.bridges import DSBM, BridgeMatching, EntropicOTCoupling, GaussianBridge
from genflow.nn import MLP


def test_entropic_coupling_is_pot_sinkhorn_with_reg_two_eps(x64):
    rng = np.random.default_rng(0)
    x0, x1 = rng.standard_normal((12, 2)), rng.standard_normal((12, 2)) + 1.0
    eps = 0.5
    cost = ot.dist(x0, x1)  # |x - y|^2
    want = ot.sinkhorn(np.full(12, 1 / 12), np.full(12, 1 / 12), cost, reg=2 * eps, stopThr=1e-12, numItermax=10**5)
    got = EntropicOTCoupling(eps, threshold=1e-10, max_iterations=10**5).plan(jnp.asarray(x0), jnp.asarray(x1))
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


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
def test_dsbm_losses_are_finite_and_train_only_their_network(direction):
    net = MLP(2, width=16, depth=1, key=jax.random.key(0))
    model = DSBM(net, (2,), eps=0.2, direction=direction, num_sim_steps=4)
    batch = jax.random.normal(jax.random.key(1), (32, 2))
    loss, grads = jax.value_and_grad(lambda m: m.loss(jax.random.key(2), batch))(model)
    assert np.isfinite(float(loss))
    fwd = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads.forward))
    bwd = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads.backward))
    assert (fwd > 0) == (direction != "backward") and (bwd > 0) == (direction != "forward")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="direction='sideways' is invalid"):
        DSBM(lambda t, x: x, (2,), direction="sideways")
    with pytest.raises(ValueError, match="sampler=.*SDE solvers"):
        from genflow.bridges import ExactConditional

        BridgeMatching(lambda t, x: x, (2,), sampler=ExactConditional())
