"""FID and KID: distances between sample sets in the feature space of a fixed network.

FID fits a Gaussian to each set of features and takes their Fréchet distance; KID is the unbiased MMD^2 of the
features under the cubic polynomial kernel, averaged over random subsets. KID is unbiased in the number of samples
(FID is not: its expectation exceeds the population value by O(d^2 / n)), so KIDs from different sample sizes are
comparable.

References:
    Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter. "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium". NeurIPS 2017.
    Binkowski, Sutherland, Arbel, Gretton. "Demystifying MMD GANs". ICLR 2018.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._checks import check_positive_int
from genflow.metrics._dequantize import pixels_to_unit_interval
from genflow.metrics._features import AbstractFeatureExtractor, extract_features
from genflow.metrics._gaussian import frechet_distance, sample_mean_cov
from genflow.metrics._kernel import AbstractKernel, PolynomialKernel, kernel_mmd


@jax.jit
def fid(features_x: Float[Array, "n d"], features_ref: Float[Array, "m d"]) -> Scalar:
    r"""Fréchet Inception Distance between two sets of features (any extractor's, not only Inception's).

    $$\mathrm{FID} = |\hat\mu_x - \hat\mu_r|^2 + \operatorname{tr}\!\big(\hat\Sigma_x + \hat\Sigma_r
    - 2 (\hat\Sigma_x^{1/2} \hat\Sigma_r \hat\Sigma_x^{1/2})^{1/2}\big),$$

    with sample means and unbiased sample covariances (:func:`frechet_distance`). Biased upwards at finite ``n``:
    for two samples of ``N(0, I_d)`` of size ``n`` each the expectation is ``2d/n + d(d+1)/(2n) + O(n^{-2})``, so
    compare FIDs only at equal sample sizes. Computed in the features' dtype: in float32 the trace terms cancel to
    about ``1e-6 tr(Sigma)``, so enable float64 (``jax_enable_x64``) to resolve FIDs smaller than that. Jit-compiled.

    References:
        Heusel et al. "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium".
        NeurIPS 2017.
    """
    return frechet_distance(*sample_mean_cov(features_x), *sample_mean_cov(features_ref))


@eqx.filter_jit
def kid(
    features_x: Float[Array, "n d"],
    features_ref: Float[Array, "m d"],
    key: PRNGKeyArray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    kernel: AbstractKernel = PolynomialKernel(),
) -> tuple[Scalar, Scalar]:
    r"""Kernel Inception Distance: the unbiased MMD^2 of features, averaged over random subsets.

    $$\mathrm{KID} = \frac1S \sum_{s=1}^S \widehat{\mathrm{MMD}}_u^2(X_s, R_s), \qquad
    k(a, b) = \Big(\frac{a \cdot b}{d} + 1\Big)^3,$$

    where ``X_s`` and ``R_s`` are drawn without replacement from the two sets, ``min(subset_size, n, m)`` each,
    and the U-statistic drops the ``i == j`` terms (:func:`kernel_mmd`). Each term is unbiased for the population
    MMD^2, hence so is the mean; the spread of the terms is returned as a measure of uncertainty.
    Jit-compiled (the sizes are static); subsets are processed one after another, so memory stays at one subset's
    Gram matrices.

    Args:
        features_x: features of the samples.
        features_ref: features of the reference set.
        key: subset key.
        num_subsets: number ``S`` of subsets.
        subset_size: examples per subset (capped at the smaller set's size).
        kernel: the kernel (the cubic polynomial by default).

    Returns:
        The mean and the standard deviation of the ``S`` subset estimates.

    References:
        Binkowski, Sutherland, Arbel, Gretton. "Demystifying MMD GANs". ICLR 2018.
    """
    check_positive_int("num_subsets", num_subsets)
    check_positive_int("subset_size", subset_size)
    n, m = features_x.shape[0], features_ref.shape[0]
    size = min(subset_size, n, m)
    if size < 2:
        raise ValueError(f"KID needs at least 2 examples per set, got {n} samples and {m} reference examples")

    def one(k):
        kx, kr = jax.random.split(k)
        x = features_x[jax.random.choice(kx, n, (size,), replace=False)]
        r = features_ref[jax.random.choice(kr, m, (size,), replace=False)]
        return kernel_mmd(x, r, kernel)

    values = jax.lax.map(one, jax.random.split(key, num_subsets))
    return jnp.mean(values), jnp.std(values)


def image_fid_kid(
    samples: Float[Array, "n ..."],
    reference: Float[Array, "m ..."],
    extractor: AbstractFeatureExtractor,
    key: PRNGKeyArray,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    batch_size: int | None = 256,
) -> dict[str, float]:
    """FID and KID of ``samples`` against ``reference`` in ``extractor``'s feature space.

    Images are ``[-1, 1]`` floats or 8-bit integers (scaled to ``[-1, 1]`` first, as the datasets do).

    Args:
        samples: generated images.
        reference: reference images (e.g. a dataset's test split).
        extractor: the feature extractor, e.g. :func:`load_image_classifier`'s classifier.
        key: KID's subset key.
        num_subsets: KID's number of subsets.
        subset_size: KID's subset size.
        batch_size: feature-extraction chunk size (bounds memory; None for one call).

    Returns:
        ``{"fid", "kid", "kid_std"}`` as floats.
    """
    fx = extract_features(extractor, pixels_to_unit_interval(samples), batch_size)
    fr = extract_features(extractor, pixels_to_unit_interval(reference), batch_size)
    kid_mean, kid_std = kid(fx, fr, key, num_subsets, subset_size)
    return {"fid": float(fid(fx, fr)), "kid": float(kid_mean), "kid_std": float(kid_std)}
