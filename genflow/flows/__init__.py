"""Normalizing flows: bijections, coupling/spline/autoregressive/smooth flows, stochastic normalizing flows,
MixFlows, continuous normalizing flows (FFJORD), and flow training objectives.

Convention: a bijection's ``transform`` maps base to data (sampling) and ``inverse`` maps data to base
(density evaluation). Bijections act on one example; callers batch with ``jax.vmap``.
"""

from genflow.distributions import Uniform  # re-exported: the torus flows' base (configs name genflow.flows.Uniform)
from genflow.flows._autoregressive import MADE, MaskedAutoregressive
from genflow.flows._bijections import (
    AbstractBijection,
    Affine,
    Chain,
    Identity,
    Invert,
    LULinear,
    Permutation,
    Scan,
)
from genflow.flows._boundaries import AbstractBoundary, Circular, IdentityTails, LinearTails
from genflow.flows._builders import (
    AbstractPermutationRule,
    AutoPermutation,
    RandomPermutation,
    ReversePermutation,
    coupling_flow,
    masked_autoregressive_flow,
)
from genflow.flows._cnf import CNF
from genflow.flows._coupling import Coupling
from genflow.flows._diagnostics import (
    ImportanceSamplingHook,
    importance_log_weights,
    importance_summary,
    kish_ess,
    log_partition_estimate,
    reweighted_mean,
    self_normalized_weights,
)
from genflow.flows._flow import (
    AbstractFlowObjective,
    Flow,
    ForceMatching,
    MaximumLikelihood,
    ReverseKL,
    WithForces,
)
from genflow.flows._mixflows import (
    MixFlow,
    UncorrectedHamiltonianMap,
    laplace_cdf,
    laplace_icdf,
    tune_mixflow,
)
from genflow.flows._smooth import SmoothMixtureTransformer, log_smooth_step_derivative, smooth_step
from genflow.flows._snf import (
    AbstractPathObjective,
    AbstractStochasticLayer,
    AnnealedEnergy,
    HMCLayer,
    LangevinLayer,
    MetropolisLayer,
    PathMaximumLikelihood,
    PathReverseKL,
    StochasticNormalizingFlow,
    interleave_stochastic,
    snf_layers,
)
from genflow.flows._transformers import AbstractTransformer, AffineTransformer, RQSplineTransformer

__all__ = [
    "AbstractPathObjective",
    "AbstractPermutationRule",
    "AutoPermutation",
    "PathMaximumLikelihood",
    "PathReverseKL",
    "RandomPermutation",
    "ReversePermutation",
    "CNF",
    "MADE",
    "AbstractBijection",
    "AbstractBoundary",
    "AbstractFlowObjective",
    "AbstractStochasticLayer",
    "AbstractTransformer",
    "Affine",
    "AffineTransformer",
    "AnnealedEnergy",
    "Chain",
    "Circular",
    "Coupling",
    "Flow",
    "ForceMatching",
    "HMCLayer",
    "Identity",
    "IdentityTails",
    "ImportanceSamplingHook",
    "Invert",
    "LULinear",
    "LinearTails",
    "LangevinLayer",
    "MaskedAutoregressive",
    "MaximumLikelihood",
    "MetropolisLayer",
    "MixFlow",
    "Permutation",
    "RQSplineTransformer",
    "ReverseKL",
    "Scan",
    "SmoothMixtureTransformer",
    "StochasticNormalizingFlow",
    "UncorrectedHamiltonianMap",
    "Uniform",
    "WithForces",
    "coupling_flow",
    "importance_log_weights",
    "importance_summary",
    "interleave_stochastic",
    "kish_ess",
    "laplace_cdf",
    "laplace_icdf",
    "log_partition_estimate",
    "log_smooth_step_derivative",
    "masked_autoregressive_flow",
    "reweighted_mean",
    "self_normalized_weights",
    "smooth_step",
    "snf_layers",
    "tune_mixflow",
]
