"""A diffusion sampler from any sampler or solver module."""

from __future__ import annotations

from genflow.diffusion._samplers._base import AbstractDiffusionSampler
from genflow.diffusion._samplers._grids import Uniform
from genflow.diffusion._samplers._probability_flow import ProbabilityFlow, TimeVariable
from genflow.diffusion._samplers._reverse_sde import ReverseSDE
from genflow.solvers import AbstractODESolver, AbstractSDESolver


def make_sampler(sampler: AbstractDiffusionSampler | AbstractODESolver | AbstractSDESolver) -> AbstractDiffusionSampler:
    """A diffusion sampler from a sampler, or from a plain ODE solver (the probability-flow ODE, in t, on the uniform
    grid, exactly as configured) or SDE solver (the reverse SDE), so every solver config works for diffusion."""
    if isinstance(sampler, AbstractDiffusionSampler):
        return sampler
    if isinstance(sampler, AbstractODESolver):
        return ProbabilityFlow(sampler, grid=Uniform(), variable=TimeVariable())
    if isinstance(sampler, AbstractSDESolver):
        return ReverseSDE(sampler)
    raise ValueError(
        f"sampler={sampler!r} is invalid: allowed are diffusion samplers (Ancestral, DDIM, ReverseSDE, "
        "PredictorCorrector, ProbabilityFlow), ODE solvers (probability flow) and SDE solvers (reverse SDE)"
    )
