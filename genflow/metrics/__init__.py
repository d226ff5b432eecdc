"""Sample-based evaluation metrics: MMD, energy distance, W2 (exact and sliced), BW2-UVP, bits/dim.

Sample sets are arrays of shape ``(n, d)``; examples with more axes (images) are flattened to ``(n, d)``.
Everything is jit-able JAX except ``w2_exact``, which calls POT's exact solver on the host.
"""

from genflow.metrics._digits import (
    DigitsClassifier,
    digits_accuracy,
    digits_feature_mmd,
    digits_features,
    load_digits_classifier,
)
from genflow.metrics._gaussian import (
    bures_wasserstein_sq,
    bw_uvp,
    bw_uvp_samples,
    sample_mean_cov,
    sqrtm_psd,
)
from genflow.metrics._kernel import energy_distance, mmd
from genflow.metrics._likelihood import nll_bits_per_dim
from genflow.metrics._utils import flatten_samples, pairwise_sq_dists
from genflow.metrics._wasserstein import sliced_w2, w2_exact

__all__ = [
    "DigitsClassifier",
    "bures_wasserstein_sq",
    "bw_uvp",
    "bw_uvp_samples",
    "digits_accuracy",
    "digits_feature_mmd",
    "digits_features",
    "energy_distance",
    "flatten_samples",
    "load_digits_classifier",
    "mmd",
    "nll_bits_per_dim",
    "pairwise_sq_dists",
    "sample_mean_cov",
    "sliced_w2",
    "sqrtm_psd",
    "w2_exact",
]
