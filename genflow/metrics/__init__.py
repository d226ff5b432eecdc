"""Sample-based evaluation metrics: MMD, energy distance, W2 (exact and sliced), BW2-UVP, bits/dim, and
importance-sampling estimators (Kish ESS, log Z, self-normalised expectations).

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
from genflow.metrics._importance import kish_ess, log_partition_estimate, reweighted_mean, self_normalized_weights
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
    "kish_ess",
    "load_digits_classifier",
    "log_partition_estimate",
    "mmd",
    "nll_bits_per_dim",
    "pairwise_sq_dists",
    "reweighted_mean",
    "sample_mean_cov",
    "self_normalized_weights",
    "sliced_w2",
    "sqrtm_psd",
    "w2_exact",
]
