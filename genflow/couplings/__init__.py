"""Minibatch couplings shared by the interpolant and bridge families: independent, exact OT, Sinkhorn (with an
annealed regulariser as an option) and data-dependent (in-painting, super-resolution).

Every coupling is called as ``x0, x1, cond = coupling(key, x0, x1, cond)``. Convention: t=0 is the base (source) x0,
t=1 the data (target) x1.
"""

from genflow.couplings._base import AbstractCoupling, AbstractMarginalCoupling
from genflow.couplings._data_dependent import AbstractDataDependentCoupling, DataDependentCoupling
from genflow.couplings._epsilon import AbstractEpsilonSchedule, AnnealedEpsilon, ConstantEpsilon
from genflow.couplings._exact import ExactOTCoupling, exact_ot_plan
from genflow.couplings._independent import IndependentCoupling
from genflow.couplings._inpainting import InpaintingCoupling, masked_velocity
from genflow.couplings._ot import AbstractOTCoupling, pairs_from_plan, pairwise_cost
from genflow.couplings._sinkhorn import SinkhornCoupling
from genflow.couplings._super_resolution import SuperResolutionCoupling, block_mean

__all__ = [
    "AbstractCoupling",
    "AbstractDataDependentCoupling",
    "AbstractEpsilonSchedule",
    "AbstractMarginalCoupling",
    "AbstractOTCoupling",
    "AnnealedEpsilon",
    "ConstantEpsilon",
    "DataDependentCoupling",
    "ExactOTCoupling",
    "IndependentCoupling",
    "InpaintingCoupling",
    "SinkhornCoupling",
    "SuperResolutionCoupling",
    "block_mean",
    "exact_ot_plan",
    "masked_velocity",
    "pairs_from_plan",
    "pairwise_cost",
]
