"""Pluggable feature spaces for sample-quality metrics (FID, KID, feature-space MMD).

An extractor maps one example to a feature vector; :func:`extract_features` batches it. Any network with a
penultimate layer fits: the shipped classifiers (:class:`~genflow.metrics.DigitsClassifier`,
:class:`~genflow.metrics.ImageClassifier`) or an adapter around weights the user supplies.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, Float


class AbstractFeatureExtractor(eqx.Module):
    """A fixed map from one example to a feature vector, ``features(x) -> (d,)``.

    Metrics compare distributions of ``features(x)``: FID fits a Gaussian to them (Heusel et al. 2017), KID compares
    them with a polynomial kernel (Binkowski et al. 2018). The extractor acts on one example; callers vmap.
    """

    @abc.abstractmethod
    def features(self, x: Float[Array, "*shape"]) -> Float[Array, " d"]:
        """The feature vector of one example."""


@eqx.filter_jit
def extract_features(
    extractor: AbstractFeatureExtractor, x: Float[Array, "n ..."], batch_size: int | None = None
) -> Float[Array, "n d"]:
    """``extractor.features`` over a batch, vmapped in chunks of ``batch_size`` examples (None: all at once).

    Chunking bounds the memory of convolutional extractors on large sample sets (a ``lax.map`` over chunks);
    each chunk is one vectorised call. Jit-compiled (``batch_size`` is static).
    """
    return jax.lax.map(extractor.features, x, batch_size=batch_size) if batch_size else jax.vmap(extractor.features)(x)
