"""The shipped digits classifier and the feature-space MMD built on it."""

import jax
import numpy as np

from genflow.data import Digits
from genflow.metrics import digits_accuracy, digits_feature_mmd, digits_features, load_digits_classifier


def test_shipped_classifier_is_accurate_on_held_out_digits():
    test = Digits(split="test")
    assert float(digits_accuracy(test.images, test.labels, load_digits_classifier())) > 0.97
    assert digits_features(test.images[:5]).shape == (5, 64)


def test_feature_mmd_separates_digits_from_blurred_or_mode_dropped_digits():
    clf = load_digits_classifier()
    train, test = Digits(split="train"), Digits(split="test")
    n = test.images.shape[0]
    same = float(digits_feature_mmd(train.images[:n], test.images, clf))
    blurred = test.images.reshape(n, 1, 4, 2, 4, 2).mean(axis=(3, 5)).repeat(2, axis=2).repeat(2, axis=3)
    half = train.images[np.asarray(train.labels) < 5][:n]  # a sampler that dropped five classes
    d_blur, d_half = (
        float(digits_feature_mmd(blurred, test.images, clf)),
        float(digits_feature_mmd(half, test.images, clf)),
    )
    assert abs(same) < 0.02
    assert d_blur > 10 * abs(same) and d_half > 10 * abs(same), (same, d_blur, d_half)
    # Known blind spot, kept visible: i.i.d. pixel noise barely moves the (linear-first-layer) features, so figure
    # scripts report pixel-space MMD beside this one.
    noisy = test.images + 0.2 * jax.random.normal(jax.random.key(0), test.images.shape)
    assert float(digits_feature_mmd(noisy, test.images, clf)) < 0.05
