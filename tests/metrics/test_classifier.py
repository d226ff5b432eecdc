"""The image classifier (FID/KID features): shapes, training on a separable fixture, the asset round trip."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import ArrayDataset, Digits
from genflow.metrics import (
    AbstractFeatureExtractor,
    DigitsClassifier,
    ImageClassifier,
    classifier_accuracy,
    digits_features,
    load_digits_classifier,
    load_image_classifier,
)
from tests.scripts._scripts import ROOT, load_script

ARCH = {"image_shape": [1, 8, 8], "widths": [4, 8], "feature_dim": 16, "num_classes": 4}


def _quadrant_images(seed, n):
    """8-bit 8x8 images whose class (0..3) is the one bright quadrant, with pixel noise: linearly separable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, 1, 8, 8))
    for i, c in enumerate(labels):
        r, s = divmod(int(c), 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * s : 4 * s + 4] += 180
    return x.astype(np.uint8), labels


def test_shapes_and_layouts():
    # Shapes by abstract evaluation (nothing compiles): the MNIST default runs 28 -> 14 -> 7.
    shape = lambda f, m, x: jax.eval_shape(f, m, x).shape
    clf = eqx.filter_eval_shape(lambda: ImageClassifier(key=jax.random.key(0)))
    x = jax.ShapeDtypeStruct((1, 28, 28), jnp.float32)
    assert shape(type(clf).features, clf, x) == (128,) and shape(type(clf).__call__, clf, x) == (10,)
    assert clf.feature.in_features == 7 * 7 * 64
    odd = eqx.filter_eval_shape(lambda: ImageClassifier((3, 9, 7), (2, 3, 4), 5, 2, key=jax.random.key(0)))
    assert shape(type(odd).__call__, odd, jax.ShapeDtypeStruct((3, 9, 7), jnp.float32)) == (2,)
    assert odd.feature.in_features == 3 * 2 * 4
    small = ImageClassifier(**ARCH, key=jax.random.key(1))  # the fixture's shapes: the training test reuses them
    z = jax.random.normal(jax.random.key(2), (1, 8, 8))
    both = eqx.filter_jit(lambda m, z: (m.features(z.reshape(64)), m.features(z)))(small, z)
    np.testing.assert_array_equal(*both)  # any layout with C*H*W pixels
    with pytest.raises(ValueError, match="image_shape"):
        ImageClassifier((28, 28), key=jax.random.key(0))
    with pytest.raises(ValueError, match="widths=0"):
        ImageClassifier((1, 8, 8), widths=(4, 0), key=jax.random.key(0))


def test_the_digits_classifier_is_a_feature_extractor_with_unchanged_numbers():
    clf = load_digits_classifier()
    assert isinstance(clf, DigitsClassifier) and isinstance(clf, AbstractFeatureExtractor)
    x = Digits(split="test").images[:16]
    before = eqx.filter_jit(lambda c, z: jax.vmap(c.features)(z.reshape(z.shape[0], -1)))  # the former code
    np.testing.assert_array_equal(digits_features(x, clf), before(clf, x))


def test_training_script_on_a_separable_fixture_and_the_asset_round_trip(tmp_path):
    script = load_script(ROOT / "scripts/assets/train_image_classifier.py")
    (xtr, ytr), (xte, yte) = _quadrant_images(0, 512), _quadrant_images(1, 200)
    train, test = ArrayDataset(xtr, ytr), ArrayDataset(xte, yte)
    untrained = ImageClassifier(**ARCH, key=jax.random.key(0))
    assert float(classifier_accuracy(untrained, xte, yte)) < 0.6  # chance is 1/4: the check below can fail
    record = script.run("mnist", train, test, out=tmp_path, architecture=ARCH, steps=60, batch_size=32)
    assert record["test_accuracy"] > 0.95, record
    on_disk = json.loads((tmp_path / "mnist_classifier.json").read_text())
    assert on_disk["architecture"] == ARCH and on_disk["test_accuracy"] == record["test_accuracy"]
    clf = load_image_classifier("mnist", tmp_path)
    assert float(classifier_accuracy(clf, xte, yte)) == record["test_accuracy"]
    # 8-bit pixels are scaled as the datasets scale them, k / 127.5 - 1
    np.testing.assert_array_equal(classifier_accuracy(clf, xte / 127.5 - 1, yte), classifier_accuracy(clf, xte, yte))
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_image_classifier.py --dataset fashion_mnist"):
        load_image_classifier("fashion_mnist", tmp_path)
    with pytest.raises(ValueError, match="dataset='cifar10'"):
        load_image_classifier("cifar10")
