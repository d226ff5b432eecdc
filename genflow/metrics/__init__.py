"""Sample-based evaluation metrics: MMD and KID (kernels), energy distance, W2 (exact and sliced), the Fréchet distance
and FID, BW2-UVP, bits/dim with dequantisation, feature extractors (the shipped classifiers), and importance-sampling
estimators (Kish ESS, log Z, self-normalised expectations).

Sample sets are arrays of shape ``(n, d)``; examples with more axes (images) are flattened to ``(n, d)``.
Everything is jit-able JAX except ``w2_exact``, which calls POT's exact solver on the host. Equations and
conventions: docs/metrics.md.
"""

from genflow.metrics._classifier import (
    IMAGE_CLASSIFIER_DATASETS,
    ImageClassifier,
    classifier_accuracy,
    load_image_classifier,
    save_image_classifier,
    train_classifier,
)
from genflow.metrics._dequantize import (
    bin_centres,
    bin_width,
    dequantize,
    dequantize_images,
    pixels_to_unit_interval,
)
from genflow.metrics._digits import (
    DigitsClassifier,
    digits_accuracy,
    digits_feature_mmd,
    digits_features,
    load_digits_classifier,
)
from genflow.metrics._features import AbstractFeatureExtractor, extract_features
from genflow.metrics._fid import fid, image_fid_kid, kid
from genflow.metrics._gaussian import (
    bures_wasserstein_sq,
    bw_uvp,
    bw_uvp_samples,
    frechet_distance,
    sample_mean_cov,
    sqrtm_psd,
)
from genflow.metrics._importance import kish_ess, log_partition_estimate, reweighted_mean, self_normalized_weights
from genflow.metrics._kernel import AbstractKernel, PolynomialKernel, RBFKernel, energy_distance, kernel_mmd, mmd
from genflow.metrics._likelihood import dequantized_bits_per_dim, image_bits_per_dim, nll_bits_per_dim
from genflow.metrics._utils import flatten_samples, pairwise_sq_dists
from genflow.metrics._wasserstein import sliced_w2, w2_exact

__all__ = [
    "IMAGE_CLASSIFIER_DATASETS",
    "AbstractFeatureExtractor",
    "AbstractKernel",
    "DigitsClassifier",
    "ImageClassifier",
    "PolynomialKernel",
    "RBFKernel",
    "bin_centres",
    "bin_width",
    "bures_wasserstein_sq",
    "bw_uvp",
    "bw_uvp_samples",
    "classifier_accuracy",
    "dequantize",
    "dequantize_images",
    "dequantized_bits_per_dim",
    "digits_accuracy",
    "digits_feature_mmd",
    "digits_features",
    "energy_distance",
    "extract_features",
    "fid",
    "flatten_samples",
    "frechet_distance",
    "image_bits_per_dim",
    "image_fid_kid",
    "kernel_mmd",
    "kid",
    "kish_ess",
    "load_digits_classifier",
    "load_image_classifier",
    "log_partition_estimate",
    "mmd",
    "nll_bits_per_dim",
    "pairwise_sq_dists",
    "pixels_to_unit_interval",
    "reweighted_mean",
    "sample_mean_cov",
    "save_image_classifier",
    "self_normalized_weights",
    "sliced_w2",
    "sqrtm_psd",
    "train_classifier",
    "w2_exact",
]
