"""Stochastic interpolants and flow matching (t=0 base, t=1 target)."""

from genflow.interpolants._flow_matching import FlowMatching
from genflow.interpolants._interpolants import (
    AbstractGamma,
    AbstractInterpolant,
    EncoderDecoderInterpolant,
    GVPInterpolant,
    LinearInterpolant,
    MirrorInterpolant,
    NoGamma,
    OneSidedInterpolant,
    QuadraticGamma,
    SinSquaredGamma,
    SqrtGamma,
    TrigInterpolant,
    autodiff_derivative,
    dgamma_from_product,
)
from genflow.interpolants._multimarginal import (
    AbstractSimplexPath,
    EdgePath,
    FourierPath,
    MultimarginalInterpolant,
    optimize_path,
)
from genflow.interpolants._oracles import GaussianMixtureFields, gaussian_fields
from genflow.interpolants._parametrizations import AbstractFieldParametrization, VelocityDenoiser, VelocityScore
from genflow.interpolants._stochastic import LinearEps, StochasticInterpolant

__all__ = [
    "AbstractFieldParametrization",
    "AbstractGamma",
    "AbstractInterpolant",
    "AbstractSimplexPath",
    "EdgePath",
    "EncoderDecoderInterpolant",
    "FlowMatching",
    "FourierPath",
    "GVPInterpolant",
    "GaussianMixtureFields",
    "LinearEps",
    "LinearInterpolant",
    "MirrorInterpolant",
    "MultimarginalInterpolant",
    "NoGamma",
    "OneSidedInterpolant",
    "QuadraticGamma",
    "SinSquaredGamma",
    "SqrtGamma",
    "StochasticInterpolant",
    "TrigInterpolant",
    "VelocityDenoiser",
    "VelocityScore",
    "autodiff_derivative",
    "dgamma_from_product",
    "gaussian_fields",
    "optimize_path",
]
