"""Random Gaussian bridges shared by the bridge tests: their oracles are closed forms (Bunne et al., "The
Schrödinger Bridge between Gaussian Measures has a Closed Form", AISTATS 2023)."""

import numpy as np

from genflow.bridges import GaussianBridge


def spd(rng, d, scale=1.0):
    """A random symmetric positive definite ``d x d`` matrix, eigenvalues bounded below by ``scale / 2``."""
    m = rng.standard_normal((d, d))
    return scale * (m @ m.T / d + 0.5 * np.eye(d))


def gaussian_bridge(d=3, eps=0.7, seed=0):
    """The bridge between two random Gaussians in ``d`` dimensions (the target's covariance twice as wide)."""
    rng = np.random.default_rng(seed)
    return GaussianBridge(rng.standard_normal(d), spd(rng, d), rng.standard_normal(d), spd(rng, d, 2.0), eps)
