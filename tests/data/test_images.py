"""MNIST, FashionMNIST and CIFAR10 on small files in the published formats: values, scaling, dequantisation, flips,
minibatching inside jit; the Hydra configs; the real offline copies when they are present."""

import inspect
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import get_method, instantiate
from omegaconf import OmegaConf

from genflow.data import (
    CATALOGUES,
    CIFAR10,
    MNIST,
    AbstractFiniteDataset,
    FashionMNIST,
    ImageDataset,
    locate,
    make_dataset,
)

from ._files import (
    CIFAR_NAME,
    cifar_catalogue,
    cifar_like_arrays,
    idx_catalogue,
    mnist_like_arrays,
    write_cifar_archive,
    write_idx_dataset,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist_root")
    arrays = mnist_like_arrays()
    return root, arrays, idx_catalogue(write_idx_dataset(root / "mnist", arrays))


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_root")
    arrays = cifar_like_arrays()
    return root, arrays, cifar_catalogue(write_cifar_archive(root / "cifar10" / CIFAR_NAME, arrays))


def _scaled(k):
    return 2.0 * np.asarray(k, np.float64) / 255.0 - 1.0


@eqx.filter_jit
def _draw(dist, key):
    return dist.sample(key, 256)


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_idx_datasets_hold_uint8_and_labels(mnist_files, cls):
    root, arrays, cat = mnist_files
    for split in ("train", "test"):
        data = cls(split, root=root, files=cat, download=False)
        images, labels = arrays[split]
        assert isinstance(data, ImageDataset) and isinstance(data, AbstractFiniteDataset)
        assert data.pixels.dtype == jnp.uint8 and isinstance(data.pixels, jax.Array)
        np.testing.assert_array_equal(np.asarray(data.pixels), images[:, None])
        np.testing.assert_array_equal(np.asarray(data.labels), labels)
        assert data.event_shape == (1, 28, 28) and data.num_examples == images.shape[0] and data.num_classes == 10
    flat = cls("test", flatten=True, root=root, files=cat, download=False)
    assert flat.event_shape == (784,) and flat.pixels.shape == (10, 784)
    with pytest.raises(ValueError, match=r"split='valid' is not allowed; choose one of \('train', 'test'\)"):
        cls("valid", root=root, files=cat, download=False)


def test_scaling_maps_0_and_255_to_the_ends(mnist_files):
    root, arrays, cat = mnist_files
    data = MNIST("train", root=root, files=cat, download=False)
    x = np.asarray(eqx.filter_jit(data.transform)(jax.random.key(0), data.pixels))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, _scaled(arrays["train"][0][:, None]), rtol=0, atol=1e-6)
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("flatten", [False, True])
def test_conditional_sampling_inside_jit_without_recompiling(mnist_files, flatten):
    root, arrays, cat = mnist_files

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(dist, key):
        return dist.sample(key, 64)

    # Test labels are 0..9, one per image, so a label names the image drawn.
    data = MNIST("test", conditional=True, flatten=flatten, root=root, files=cat, download=False)
    images = arrays["test"][0].reshape(10, -1 if flatten else 1, *(() if flatten else (28, 28)))
    batches = [draw(data, jax.random.key(i)) for i in range(3)]
    # A second instance with the same shapes reuses the compiled program too.
    batches.append(draw(MNIST("test", conditional=True, flatten=flatten, root=root, files=cat, download=False),
                        jax.random.key(3)))  # fmt: skip
    for batch in batches:
        assert batch["x"].shape == (64, *data.event_shape) and batch["cond"].dtype == jnp.int32
        np.testing.assert_allclose(np.asarray(batch["x"]), _scaled(images[np.asarray(batch["cond"])]), atol=1e-6)
    assert not np.array_equal(np.asarray(batches[0]["cond"]), np.asarray(batches[1]["cond"]))


def test_dequantisation_fills_each_pixel_bin(mnist_files):
    root, arrays, cat = mnist_files
    data = FashionMNIST("test", conditional=True, dequantize=True, root=root, files=cat, download=False)
    batch = _draw(data, jax.random.key(0))
    x = np.asarray(batch["x"], np.float64)
    k = arrays["test"][0][np.asarray(batch["cond"])][:, None].astype(np.float64)
    u = (x + 1.0) * 128.0 - k  # x = 2(k + u)/256 - 1
    # u in [0, 1): float32 rounding of k + u may reach the bin's upper edge, never beyond.
    assert u.min() >= -1e-4 and u.max() <= 1.0 + 1e-4
    assert -1.0 <= x.min() and x.max() <= 1.0
    # U[0, 1): mean 1/2, variance 1/12, over 200704 values (standard errors 6e-4 and 2e-4).
    assert abs(u.mean() - 0.5) < 5e-3 and abs(u.var() - 1.0 / 12.0) < 2e-3
    # Fresh noise for every draw of the same image.
    again = np.asarray(_draw(data, jax.random.key(1))["x"])
    assert not np.allclose(np.sort(again.ravel()), np.sort(x.ravel()))


def test_cifar10_values_and_flips(cifar_files):
    root, arrays, cat = cifar_files
    train = CIFAR10("train", root=root, files=cat, download=False)
    assert train.event_shape == (3, 32, 32) and train.num_examples == 15
    np.testing.assert_array_equal(np.asarray(train.pixels), arrays["train"][0])
    test = CIFAR10("test", conditional=True, flip=True, root=root, files=cat, download=False)
    x, cond = [], []
    for i in range(2):
        batch = _draw(test, jax.random.key(i))
        x.append(np.asarray(batch["x"]))
        cond.append(np.asarray(batch["cond"]))
    x, cond = np.concatenate(x), np.concatenate(cond)
    original = _scaled(arrays["test"][0][cond])
    mirrored = original[..., ::-1]
    same = np.all(np.abs(x - original) < 1e-6, axis=(1, 2, 3))
    flipped = np.all(np.abs(x - mirrored) < 1e-6, axis=(1, 2, 3))
    assert np.all(same ^ flipped)  # every image is itself or its left-right mirror (random images: never both)
    assert 0.4 < flipped.mean() < 0.6  # Bernoulli(1/2) over 512 draws: 4.5 standard deviations
    flat = CIFAR10("test", flatten=True, root=root, files=cat, download=False)
    plain = _draw(flat, jax.random.key(0))
    assert plain.shape == (256, 3072)
    # Without flips, every drawn image is one of the originals.
    distances = np.abs(np.asarray(plain)[:, None] - _scaled(arrays["test"][0].reshape(10, -1))[None]).max(axis=-1)
    assert np.all(distances.min(axis=1) < 1e-6)


@pytest.mark.parametrize(("name", "cls"), [("mnist", MNIST), ("fashion_mnist", FashionMNIST), ("cifar10", CIFAR10)])
def test_configs_and_factory(mnist_files, cifar_files, name, cls):
    root, _, cat = cifar_files if cls is CIFAR10 else mnist_files
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    assert get_method(cfg._target_) is cls
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "_target_"}
    inspect.signature(cls).bind(**kwargs)  # every key is a constructor argument
    data = instantiate(cfg, _partial_=True)(root=root, files=cat, download=False)
    assert isinstance(data, ImageDataset) and data.name == cat.name and data.split == "train"
    assert data.flip == (cls is CIFAR10)
    assert isinstance(make_dataset(name, split="test", root=root, files=cat, download=False), ImageDataset)


def _locally(name):
    cat = CATALOGUES[name]
    try:
        for files in cat.splits.values():
            for resource in files:
                locate(cat, resource, allow_download=False)
    except FileNotFoundError:
        return False
    return True


# Examples per class of the published splits (MNIST's are its well-known uneven counts).
REAL = {
    "mnist": (MNIST, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    "fashion_mnist": (FashionMNIST, [6000] * 10, [1000] * 10),
    "cifar10": (CIFAR10, [5000] * 10, [1000] * 10),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REAL))
def test_real_offline_copies(name):
    """The real files (from `make data`, $GENFLOW_DATA or the cache), checked by their published SHA-256s."""
    if not _locally(name):
        pytest.skip(f"{name} is not on this machine (`make data` puts MNIST and Fashion-MNIST in place)")
    cls, train_counts, test_counts = REAL[name]
    shape = CATALOGUES[name].image_shape
    for split, counts in (("train", train_counts), ("test", test_counts)):
        data = cls(split, download=False)
        assert data.pixels.shape == (sum(counts), *shape) and data.pixels.dtype == jnp.uint8
        assert np.bincount(np.asarray(data.labels), minlength=10).tolist() == counts
