"""Soft mixture denoising (Li, van Breugel, van der Schaar, ICLR 2024) on top of :mod:`genflow.diffusion`.

Convention: the diffusion family's (t=0 data, t_max noise; ``x_t = alpha_t x0 + sigma_t eps``).

``SMDModel`` makes the backward kernel a continuous mixture over a latent ``z_t = g_xi(eta, x_t, t)``,
``eta ~ N(0, I)``, with the official regression objective or the mixture-likelihood objective (``RegressionObjective``,
``MixtureObjective``), and the ``eta = 0`` ablation (``ZeroLatent``); it samples with the diffusion family's samplers
(DDPM, DDIM, ...) and a fresh eta at every step. ``MixtureKernelOracle`` is the exact reverse kernel of isotropic
Gaussian-mixture data (a Gaussian mixture) and ancestral sampling with it, exact for any number of steps.
"""

from genflow.smd._model import (
    AbstractLatent,
    AbstractObjective,
    GaussianLatent,
    MixtureObjective,
    RegressionObjective,
    SMDModel,
    ZeroLatent,
)
from genflow.smd._oracle import MixtureKernelOracle

__all__ = [
    "AbstractLatent",
    "AbstractObjective",
    "GaussianLatent",
    "MixtureKernelOracle",
    "MixtureObjective",
    "RegressionObjective",
    "SMDModel",
    "ZeroLatent",
]
