"""Conditional generation with interpolants: classifier-free guidance, in-painting and super-resolution sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow.couplings import InpaintingCoupling, SuperResolutionCoupling
from genflow.data import ArrayDataset
from genflow.interpolants import FlowMatching, LinearInterpolant, NoGamma, StochasticInterpolant
from genflow.nn import MLP
from genflow.solvers import Euler, EulerMaruyama
from genflow.train import Trainer


def constant_field(t, x, c=None):
    # The null condition moves by -1, label c by c: the guided displacement over [0, 1] is -1 + w (c + 1).
    return jnp.zeros_like(x) + (-1.0 if c is None else c.astype(x.dtype))


@pytest.mark.parametrize("model_cls", [FlowMatching, StochasticInterpolant])
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_sampling_follows_the_cfg_combination(model_cls, w):
    model = model_cls(constant_field, (2,), sampler=Euler(num_steps=4))
    x0 = jnp.zeros((3, 2))
    labels = jnp.array([0, 1, 2])
    x1 = model.sample(jax.random.key(0), 3, x0=x0, cond=labels, guidance=w)
    expected = -1.0 + w * (labels[:, None] + 1.0)
    np.testing.assert_allclose(x1, jnp.broadcast_to(expected, (3, 2)), atol=1e-6)


def two_class_data(n=2000):
    labels = np.arange(n) % 2
    x = np.where(labels[:, None] == 1, 2.0, -2.0) + 0.2 * np.random.default_rng(0).normal(size=(n, 2))
    return ArrayDataset(x.astype(np.float32), labels)


@pytest.mark.parametrize(
    "model_cls", [FlowMatching, pytest.param(StochasticInterpolant, marks=pytest.mark.slow)]
)  # one 1500-step run stays fast; the interpolant shares the label-dropout code
def test_label_dropout_trains_conditional_and_unconditional_fields(model_cls):
    net = MLP(2, width=64, depth=2, num_classes=2, key=jax.random.key(0))
    model = model_cls(net, (2,), sampler=Euler(num_steps=20), label_dropout=0.2, null_label=2)
    trainer = Trainer(optax.adam(3e-3), num_steps=1500, batch_size=128, steps_per_call=500)
    state = trainer.fit(model, two_class_data(), key=jax.random.key(1))
    m = state.ema_model
    for label, mean in ((0, -2.0), (1, 2.0)):
        x = m.sample(jax.random.key(2), 500, cond=jnp.full(500, label))
        assert np.all(np.abs(np.asarray(x).mean(0) - mean) < 0.3), (label, x.mean(0))
    # The unconditional field (null label) gives both classes.
    x = np.asarray(m.sample(jax.random.key(3), 1000))
    frac = (x[:, 0] > 0).mean()
    assert 0.35 < frac < 0.65
    # solve_like: one sample per example of a labelled batch, with that example's label.
    batch = two_class_data().sample(jax.random.key(4), 200)
    y = np.asarray(m.solve_like(jax.random.key(5), batch).y)
    assert np.mean(np.sign(y[:, 0]) == np.where(np.asarray(batch["cond"]) == 1, 1, -1)) > 0.95


def images(n=6, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 1, 8, 8), minval=-1, maxval=1)


@pytest.mark.parametrize("sampler", [Euler(num_steps=5), EulerMaruyama(num_steps=5)])
def test_inpainting_keeps_the_known_pixels_along_the_path(sampler):
    coupling = InpaintingCoupling(tile=2, keep_prob=0.5)
    model = StochasticInterpolant(
        lambda t, x, c: jnp.ones_like(x),
        (1, 8, 8),
        denoiser_net=lambda t, x, c: jnp.ones_like(x),
        interpolant=LinearInterpolant(NoGamma()) if isinstance(sampler, Euler) else None,
        coupling=coupling,
        eps=0.5,
    )
    truth = images()
    sol = model.solve_like(jax.random.key(0), truth, sampler=sampler)
    x0, mask = coupling.sampling_pair(jax.random.split(jax.random.key(0), 3)[1], None, truth)
    assert 0.2 < float(mask.mean()) < 0.8
    known = np.asarray(mask) == 1
    np.testing.assert_array_equal(np.asarray(sol.y)[known], np.asarray(truth)[known])
    if isinstance(sampler, Euler):  # missing pixels moved by exactly the unit velocity
        np.testing.assert_allclose(np.asarray(sol.y)[~known], np.asarray(x0)[~known] + 1.0, atol=1e-5)


def test_super_resolution_sampling_starts_at_the_noisy_upsampled_image():
    coupling = SuperResolutionCoupling(factor=2, sigma=0.1)
    seen = {}

    def net(t, x, c):
        seen["cond_shape"] = c.shape
        return jnp.zeros_like(x)

    model = StochasticInterpolant(net, (1, 8, 8), interpolant=LinearInterpolant(NoGamma()), coupling=coupling)
    truth = images()
    y = model.solve_like(jax.random.key(1), truth, sampler=Euler(num_steps=2)).y
    low = coupling.low_resolution(truth)
    # Zero velocity: the sample is the start x0 = U(D(x1)) + 0.1 zeta.
    assert seen["cond_shape"] == (1, 8, 8)
    assert 0.05 < float(jnp.std(y - low)) < 0.15
