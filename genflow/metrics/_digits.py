"""Sample quality on sklearn digits in the feature space of a fixed classifier (an FID-like statistic for 8x8 digits).

The classifier is trained once by ``scripts/assets/train_digits_classifier.py`` and shipped with the package as
``genflow/metrics/assets/digits_classifier.eqx``, so every model is scored with the same features.
"""

from __future__ import annotations

from importlib import resources

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from genflow.metrics._features import AbstractFeatureExtractor, extract_features
from genflow.metrics._kernel import mmd
from genflow.metrics._utils import flatten_samples, pairwise_sq_dists

ASSET = "digits_classifier.eqx"
FEATURE_DIM = 64


class DigitsClassifier(AbstractFeatureExtractor):
    """MLP classifier for 8x8 digits in ``[-1, 1]``: 64 -> 256 -> 64 (tanh features) -> 10 logits.

    Its tanh layer is a feature space for FID, KID and feature MMD (:class:`AbstractFeatureExtractor`).
    """

    hidden: eqx.nn.Linear
    feature: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.hidden = eqx.nn.Linear(64, 256, key=k1)
        self.feature = eqx.nn.Linear(256, FEATURE_DIM, key=k2)
        self.head = eqx.nn.Linear(FEATURE_DIM, 10, key=k3)

    def features(self, x: Float[Array, "*shape"]) -> Float[Array, " 64"]:
        """Penultimate-layer features of one image (any shape with 64 pixels)."""
        return jnp.tanh(self.feature(jax.nn.gelu(self.hidden(jnp.reshape(x, (64,))))))

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, " 10"]:
        return self.head(self.features(x))


def load_digits_classifier() -> DigitsClassifier:
    """The shipped classifier (trained once; see ``scripts/assets/train_digits_classifier.py``)."""
    skeleton = DigitsClassifier(key=jax.random.key(0))
    with resources.files("genflow.metrics").joinpath("assets", ASSET).open("rb") as f:
        return eqx.tree_deserialise_leaves(f, skeleton)


@eqx.filter_jit
def digits_features(x: Float[Array, "n ..."], classifier: DigitsClassifier | None = None) -> Float[Array, "n 64"]:
    """Classifier features of a batch of digits (``(n, 1, 8, 8)`` or ``(n, 64)``, pixels in ``[-1, 1]``)."""
    classifier = load_digits_classifier() if classifier is None else classifier
    return extract_features(classifier, flatten_samples(x))


def digits_accuracy(x: Float[Array, "n ..."], labels: Int[Array, " n"], classifier=None) -> Scalar:
    """Fraction of ``x`` that the classifier assigns to ``labels`` (e.g. for class-conditional samples)."""
    classifier = load_digits_classifier() if classifier is None else classifier
    logits = jax.vmap(classifier)(flatten_samples(x))
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def digits_feature_mmd(x: Float[Array, "n ..."], ref: Float[Array, "m ..."], classifier=None) -> Scalar:
    """Unbiased MMD^2 between classifier features of ``x`` and ``ref``.

    RBF bandwidths are the median feature distance of ``ref`` times (1/4, 1/2, 1, 2, 4): they depend on the
    reference only, so scores of different models against the same reference are comparable. The statistic sees
    blur and missing classes but is nearly blind to i.i.d. pixel noise (the first layer averages it out): report
    a pixel-space statistic beside it.

    References:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012; Binkowski et al., "Demystifying MMD GANs" (kernel
        distances in a classifier's feature space), ICLR 2018.
    """
    fx, fr = digits_features(x, classifier), digits_features(ref, classifier)
    med = jnp.sqrt(jnp.median(pairwise_sq_dists(fr, fr)))
    return mmd(fx, fr, bandwidths=tuple(med * s for s in (0.25, 0.5, 1.0, 2.0, 4.0)))
