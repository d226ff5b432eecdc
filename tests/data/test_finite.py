"""Finite datasets (digits, arrays) sampled by indexing inside jit, and the dataset factory."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import DATASETS, TOY_DATASETS, ArrayDataset, Digits, Paired, Toy2D, make_dataset


@eqx.filter_jit
def _draw(dist, key):
    return dist.sample(key, 256)


@pytest.fixture(scope="module")
def digits():
    return Digits()


def test_digits_images(digits):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(dist, key):
        return dist.sample(key, 256)

    x = draw(digits, jax.random.key(0))
    assert x.shape == (256, 1, 8, 8) and digits.event_shape == (1, 8, 8)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert float(digits.images.min()) == -1.0 and float(digits.images.max()) == 1.0
    assert isinstance(digits.images, jax.Array) and digits.num_classes == 10
    # A second key reuses the compiled program (assert_max_traces) and gives a different batch.
    assert not np.array_equal(np.asarray(x), np.asarray(draw(digits, jax.random.key(1))))


def test_digits_flat_and_conditional():
    dist = Digits(flatten=True, conditional=True)
    batch = _draw(dist, jax.random.key(2))
    assert batch["x"].shape == (256, 64) and dist.event_shape == (64,)
    assert batch["cond"].dtype == jnp.int32
    assert int(batch["cond"].min()) >= 0 and int(batch["cond"].max()) <= 9


def test_digits_splits_partition_the_data():
    train, test, full = Digits(split="train"), Digits(split="test"), Digits(split="all")
    assert train.num_examples + test.num_examples == full.num_examples == 1797
    with pytest.raises(ValueError, match="'val'.*train, test, all"):
        Digits(split="val")


def test_array_dataset_indexes_the_data():
    data = np.arange(10.0)[:, None] * np.ones((10, 3))
    dist = ArrayDataset(data, labels=np.arange(10))
    batch = _draw(dist, jax.random.key(3))
    x, cond = np.asarray(batch["x"]), np.asarray(batch["cond"])
    np.testing.assert_array_equal(x, data[cond])
    assert dist.event_shape == (3,) and dist.num_examples == 10
    plain = _draw(ArrayDataset(data), jax.random.key(3))
    assert plain.shape == (256, 3)
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset(data, labels=np.arange(9))


def test_paired_merges_a_conditional_target():
    batch = _draw(Paired(Toy2D("gaussian"), ArrayDataset(np.zeros((5, 2)), labels=np.arange(5))), jax.random.key(4))
    assert set(batch) == {"x0", "x", "cond"}


def test_make_dataset():
    assert isinstance(make_dataset("moons", scale=2.0), Toy2D)
    digits = make_dataset("digits", flatten=True)
    assert isinstance(digits, Digits) and digits.event_shape == (64,)
    assert set(DATASETS) == {*TOY_DATASETS, "digits", "mnist", "fashion_mnist", "cifar10"}
    with pytest.raises(ValueError) as info:
        make_dataset("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message and all(name in message for name in DATASETS)
