"""Stochastic interpolants and flow matching (t=0 base, t=1 target)."""

from genflow.interpolants._couplings import (
    AbstractCoupling,
    AbstractDataDependentCoupling,
    DataDependentCoupling,
    IndependentCoupling,
    InpaintingCoupling,
    MinibatchOTCoupling,
    SuperResolutionCoupling,
    masked_velocity,
)
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
)
from genflow.interpolants._oracles import GaussianMixtureFields, gaussian_fields
from genflow.interpolants._stochastic import StochasticInterpolant

__all__ = [
    "AbstractCoupling",
    "AbstractDataDependentCoupling",
    "AbstractGamma",
    "AbstractInterpolant",
    "DataDependentCoupling",
    "EncoderDecoderInterpolant",
    "FlowMatching",
    "GVPInterpolant",
    "GaussianMixtureFields",
    "IndependentCoupling",
    "InpaintingCoupling",
    "LinearInterpolant",
    "MinibatchOTCoupling",
    "MirrorInterpolant",
    "NoGamma",
    "OneSidedInterpolant",
    "QuadraticGamma",
    "SinSquaredGamma",
    "SqrtGamma",
    "StochasticInterpolant",
    "SuperResolutionCoupling",
    "TrigInterpolant",
    "gaussian_fields",
    "masked_velocity",
]
