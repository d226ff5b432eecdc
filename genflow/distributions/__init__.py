"""Analytic densities used as targets and oracles.

Gaussians and Gaussian mixtures (exact log-density, score and moments), and energies used as sampling targets
(double wells, banana, Neal's funnel, a 2D cross, von Mises mixtures on the torus), and the uniform distribution on a
box. ``AbstractDistribution`` is what can be sampled, ``AbstractDensity`` what also has ``log_prob`` and ``score``.
Each energy's class attribute ``normalized`` says whether its ``log_prob`` includes the log-normaliser.
"""

from genflow.distributions._base import (
    AbstractDensity,
    AbstractDistribution,
    AbstractEnergy,
    StandardNormal,
    autodiff_score,
)
from genflow.distributions._energies import Banana, Cross2D, DoubleWell, NealFunnel, TiltedDoubleWell
from genflow.distributions._gaussian import Gaussian, GaussianMixture
from genflow.distributions._rejection import rejection_sample
from genflow.distributions._torus import TorusVonMisesMixture, sample_von_mises, wrap_angle
from genflow.distributions._uniform import Uniform

__all__ = [
    "AbstractDensity",
    "AbstractDistribution",
    "AbstractEnergy",
    "Banana",
    "Cross2D",
    "DoubleWell",
    "Gaussian",
    "GaussianMixture",
    "NealFunnel",
    "StandardNormal",
    "TiltedDoubleWell",
    "TorusVonMisesMixture",
    "Uniform",
    "autodiff_score",
    "rejection_sample",
    "sample_von_mises",
    "wrap_angle",
]
