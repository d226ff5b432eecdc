"""Integrators (fixed-step ``lax.scan`` and diffrax), divergences and the change-of-variables ODE."""

from genflow.solvers._divergence import (
    AbstractDivergence,
    Exact,
    Hutchinson,
    check_divergence,
    divergence_exact,
    divergence_hutchinson,
    ode_log_prob,
    rademacher_like,
)
from genflow.solvers._ode import (
    RK4,
    AbstractFixedStepSolver,
    AbstractODESolver,
    DiffraxODE,
    Euler,
    Heun,
    Midpoint,
    Solution,
)
from genflow.solvers._pushforward import AbstractPushforwardModel, ODEPushforward, batch_field, call_field
from genflow.solvers._sde import (
    AbstractFixedStepSDESolver,
    AbstractSDESolver,
    DiffraxSDE,
    EulerMaruyama,
    StochasticHeun,
)

__all__ = [
    "AbstractDivergence",
    "Exact",
    "Hutchinson",
    "check_divergence",
    "RK4",
    "AbstractFixedStepSDESolver",
    "AbstractPushforwardModel",
    "AbstractFixedStepSolver",
    "AbstractODESolver",
    "AbstractSDESolver",
    "DiffraxODE",
    "DiffraxSDE",
    "Euler",
    "EulerMaruyama",
    "Heun",
    "Midpoint",
    "ODEPushforward",
    "Solution",
    "StochasticHeun",
    "batch_field",
    "call_field",
    "divergence_exact",
    "divergence_hutchinson",
    "ode_log_prob",
    "rademacher_like",
]
