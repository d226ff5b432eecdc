"""Diffusion samplers: strategy modules that turn a score into samples, each one ``lax.scan`` or one diffrax solve.

One file per sampler behind ``_base.py`` (the abstract sampler and the shared pieces), as diffrax lays out its
solvers:

    Ancestral           DDPM: x_s ~ q(x_s | x_t, x0 = x0_hat) on a grid; the last step returns x0_hat.
    DDIM                x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z, c = eta * posterior std.
    ReverseSDE          dx = [f x - g^2 s] dt + g dW_bar with any SDE solver, t: t_max -> t_min.
    PredictorCorrector  Langevin corrector steps plus a reverse-SDE, ancestral or no predictor.
    ProbabilityFlow     dx/dt = f x - g^2 s / 2 with any ODE solver, in t or in EDM's (x/alpha, sigma/alpha).

Every sampler but the ancestral ones ends with an optional final denoising step ``x <- x0_hat(t_min, x)`` (one more
evaluation); Ancestral and DDIM always end on it, because their last transition goes to the clean state.
"""

from genflow.diffusion._samplers._ancestral import Ancestral
from genflow.diffusion._samplers._base import (
    AbstractDiffusionSampler,
    Score,
    denoise,
    gaussian_posterior,
    transition_table,
)
from genflow.diffusion._samplers._ddim import DDIM
from genflow.diffusion._samplers._grids import AbstractTimeGrid, EDMGrid, LogSNRGrid, Uniform, time_grid
from genflow.diffusion._samplers._make import make_sampler
from genflow.diffusion._samplers._predictor_corrector import (
    AbstractPredictor,
    AncestralPredictor,
    EulerMaruyamaPredictor,
    LangevinCorrector,
    NoPredictor,
    PredictorCorrector,
)
from genflow.diffusion._samplers._probability_flow import (
    AbstractFlowVariable,
    ProbabilityFlow,
    SigmaVariable,
    TimeVariable,
    probability_flow_drift,
)
from genflow.diffusion._samplers._reverse_sde import ReverseSDE

__all__ = [
    "DDIM",
    "AbstractDiffusionSampler",
    "AbstractFlowVariable",
    "AbstractPredictor",
    "AbstractTimeGrid",
    "Ancestral",
    "AncestralPredictor",
    "EDMGrid",
    "EulerMaruyamaPredictor",
    "LangevinCorrector",
    "LogSNRGrid",
    "NoPredictor",
    "PredictorCorrector",
    "ProbabilityFlow",
    "ReverseSDE",
    "Score",
    "SigmaVariable",
    "TimeVariable",
    "Uniform",
    "denoise",
    "gaussian_posterior",
    "make_sampler",
    "probability_flow_drift",
    "time_grid",
    "transition_table",
]
