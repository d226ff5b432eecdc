"""2D toy datasets: shapes, determinism under jit, scale, and name validation."""

import equinox as eqx
import jax
import numpy as np
import pytest

from genflow.data import TOY_DATASETS, Paired, Toy2D
from genflow.distributions import AbstractDistribution

EXPECTED = {"moons", "8gaussians", "checkerboard", "swissroll", "pinwheel", "2spirals", "circles", "rings"}


@eqx.filter_jit
def _draw(dist, key):
    return dist.sample(key, 4000)


def test_all_standard_names_are_available():
    assert EXPECTED <= set(TOY_DATASETS)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_samples(name):
    dist = Toy2D(name)
    assert isinstance(dist, AbstractDistribution) and dist.event_shape == (2,)
    a, b = _draw(dist, jax.random.key(0)), _draw(dist, jax.random.key(0))
    c = _draw(dist, jax.random.key(1))
    assert a.shape == (4000, 2)
    x = np.asarray(a)
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, np.asarray(b))
    assert not np.allclose(x, np.asarray(c))
    # Roughly centred and of unit scale, within about [-4, 4] (Gaussian noise may poke slightly past).
    assert np.all(np.abs(x.mean(axis=0)) < 0.6), x.mean(axis=0)
    assert np.all((x.std(axis=0) > 0.5) & (x.std(axis=0) < 2.5)), x.std(axis=0)
    assert np.quantile(np.abs(x), 0.999) < 4.5


def test_scale_multiplies_samples():
    key = jax.random.key(3)
    np.testing.assert_allclose(
        np.asarray(_draw(Toy2D("moons", scale=2.0), key)), 2 * np.asarray(_draw(Toy2D("moons"), key)), rtol=1e-6
    )


def test_no_retrace_across_keys():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(dist, key):
        return dist.sample(key, 16)

    dist = Toy2D("checkerboard")
    for seed in range(3):
        draw(dist, jax.random.key(seed))


def test_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError) as info:
        Toy2D("spiralz")
    message = str(info.value)
    assert "'spiralz'" in message
    assert all(name in message for name in TOY_DATASETS)


def test_paired_returns_source_and_target():
    pair = Paired(Toy2D("8gaussians"), Toy2D("moons"))
    batch = _draw(pair, jax.random.key(4))
    assert set(batch) == {"x0", "x"} and batch["x0"].shape == batch["x"].shape == (4000, 2)
    assert pair.event_shape == (2,)
    # The source is 8gaussians (eight well-separated modes), not moons.
    assert np.max(np.linalg.norm(np.asarray(batch["x0"]), axis=-1)) > 3.0
