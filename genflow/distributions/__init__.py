"""Analytic densities used as targets and oracles."""

from genflow.distributions._base import AbstractDistribution, StandardNormal

__all__ = ["AbstractDistribution", "StandardNormal"]
